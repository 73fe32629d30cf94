"""`speaker`: pick the active speaker's face track per utterance and store its face crops.

Every track is scored against the utterance audio by the scorer named in `speaker.method`; the
choice, its confidence (margin over the runner-up) and a reason are recorded for every utterance,
and the chosen track's crops are saved as JPEG bytes for the visual extractors.

Each media file is decoded once for all of its utterances (`collect_clips`): one forward pass
gathers every frame any utterance needs, and an utterance is scored as soon as the pass has gone
beyond its last frame, so memory holds only small crops of the utterances still open.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import soundfile as sf

from core.config import parse_block, setting
from pipeline import paths
from pipeline.cache import PartCache
from pipeline.clips import DEFAULT_LIP_SIZE, ClipRequest, collect_clips, evenly, tracks_of
from pipeline.code_fingerprint import code_fingerprint
from pipeline.file_hash import file_hash
from pipeline.item_guard import guarded
from pipeline.ledger import Failure, write_stage_ledger
from pipeline.media import MediaError
from pipeline.runner import Runner
from pipeline.schema import CROPS_SCHEMA, SPEAKER_SCHEMA
from pipeline.speaker_methods import LEARNED_METHODS
from pipeline.speaker_select import SCORERS, TrackScorer, UtteranceContext, build_scorer, choose
from pipeline.speaker_truth import truth_agreement
from pipeline.tables import concat_tables, read_frame, write_atomic
from pipeline.video_readers import video_reader

STAGE = "speaker"


@dataclass(frozen=True, kw_only=True)
class SpeakerConfig:
    """The `speaker` block: the scorer that picks the active face track, and the crops kept of it."""

    method: str = setting(choices=tuple(SCORERS))
    crop_size: int = setting()
    max_crops: int = setting()
    low_confidence: float = setting()
    checkpoint: str | None = None  # a LipSyncNet folder other than the one `lipsync_train` writes


def _context_table() -> dict[str, str]:
    """utt_id -> the manifest's `seat_hint` (written by adapters that know it), for the gender_side scorer."""
    if not paths.MANIFEST.exists():
        return {}
    manifest = read_frame(paths.MANIFEST)
    if "seat_hint" not in manifest.columns:
        return {}
    return dict(zip(manifest["utt_id"], manifest["seat_hint"]))


def _jpeg_rows(utt_id: str, crops: Mapping[int, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for frame in sorted(crops):
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(crops[frame], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        if ok:
            rows.append({"utt_id": utt_id, "frame": int(frame), "jpeg": jpeg.tobytes()})
    return rows


def speaker_for_media(media: Path, rows: pd.DataFrame, faces_by_utt: Mapping[str, pd.DataFrame],
                      scorer: TrackScorer, cfg: Mapping[str, Any], method: str,
                      contexts: Mapping[str, str], reader: str = "pyav"
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Failure]]:
    """Choose the speaker of every utterance (a row of `cuts`) of one media file, decoding it once."""
    cuts = {cut.utt_id: cut for cut in rows.itertuples(index=False)}
    requests = []
    for cut in cuts.values():
        tracks = tracks_of(faces_by_utt[cut.utt_id]) if cut.utt_id in faces_by_utt else {}
        every = scorer.needs_frames and (len(tracks) > 1 or (len(tracks) == 1 and scorer.scores_single))
        requests.append(ClipRequest(cut.utt_id, int(cut.start_frame), int(cut.end_frame), float(cut.fps),
                                    float(cut.start), tracks, evenly(cut.start_frame, cut.end_frame,
                                                                     int(cfg["max_crops"])), every))
    lip_size = getattr(scorer, "lip_size", DEFAULT_LIP_SIZE)
    speaker_rows: list[dict[str, Any]] = []
    crop_rows: list[dict[str, Any]] = []
    failures: list[Failure] = []
    done: set[str] = set()
    try:
        for item in collect_clips(media, requests, lip_size, int(cfg["crop_size"]), reader=reader):
            cut = cuts[item.request.utt_id]
            done.add(cut.utt_id)
            try:
                audio, rate = sf.read(cut.audio, dtype="float32")
                if audio.ndim > 1:
                    audio = audio.mean(axis=1)
                context = UtteranceContext(cut.utt_id, audio, int(rate), float(cut.fps), int(cut.width),
                                           int(cut.height), contexts.get(cut.utt_id))
                chosen = choose(item.clips, scorer, context, float(cfg["low_confidence"]))
            except (RuntimeError, ValueError, OSError) as error:
                failures.append(Failure(STAGE, cut.utt_id, f"speaker selection failed: {error}"))
                continue
            speaker_rows.append({"utt_id": cut.utt_id, "track_id": chosen.track_id, "reason": chosen.reason,
                                 "confidence": chosen.confidence, "method": method,
                                 "scores": json.dumps({str(k): round(v, 6) for k, v in chosen.scores.items()})})
            if chosen.track_id >= 0:
                crop_rows.extend(_jpeg_rows(cut.utt_id, item.face_crops.get(chosen.track_id, {})))
    except MediaError as error:
        failures.extend(Failure(STAGE, u, f"speaker selection failed: {error}") for u in cuts if u not in done)
    return speaker_rows, crop_rows, failures




def _scorer_fingerprint(method: str) -> str | None:
    """A trained scorer's checkpoint (weights and the stored scorer choice) is part of the cache key."""
    if method not in LEARNED_METHODS:
        return None
    files = [paths.LIPSYNC_DIR / name for name in ("model.safetensors", "config.json")]
    return "/".join(file_hash(f) for f in files if f.exists()) or None


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    cfg = dict(params["speaker"])  # as written: hashed into the cache key and recorded in the output
    parse_block(SpeakerConfig, cfg, "speaker")
    scorer_cfg = {**cfg, "lipsync": params.get("lipsync") or {}}
    scorer = build_scorer(scorer_cfg)
    method = getattr(scorer, "name", cfg["method"])  # `auto` records the scorer it delegates to
    reader = video_reader(params)
    cuts = read_frame(paths.CUTS)
    faces = read_frame(paths.FACES)
    faces_by_utt = {u: rows for u, rows in faces.groupby("utt_id", sort=False)}
    contexts = _context_table()
    video_cuts = cuts[cuts.has_video]
    cache_cfg = {**cfg, "scorer": _scorer_fingerprint(cfg["method"]),
                 "max_offset": (params.get("lipsync") or {}).get("max_offset") if cfg["method"] in LEARNED_METHODS
                 else None, "video_reader": reader}
    code = code_fingerprint(__name__)
    speaker_cache = PartCache(STAGE, cache_cfg, code)
    crops_cache = PartCache(f"{STAGE}-crops", cache_cfg, code)
    empty = faces.iloc[0:0]

    def work(item: tuple[str, pd.DataFrame]) -> tuple[pa.Table, pa.Table, list[Failure]]:
        return guarded(STAGE, item[1].utt_id, lambda: speaker_item(*item),
                       lambda failures: (SPEAKER_SCHEMA.empty_table(), CROPS_SCHEMA.empty_table(), failures))

    def speaker_item(media: str, rows: pd.DataFrame) -> tuple[pa.Table, pa.Table, list[Failure]]:
        utt_faces = {u: faces_by_utt.get(u, empty) for u in rows.utt_id}
        fingerprint = {"media": file_hash(media),
                       "faces": pd.util.hash_pandas_object(pd.concat(utt_faces.values()), index=False).sum().item()
                       if len(rows) else 0,
                       "utts": rows[["utt_id", "start_frame", "end_frame", "audio"]].astype(str).values.tolist(),
                       "context": [contexts.get(u) for u in rows.utt_id] if method == "gender_side" else None}
        key = speaker_cache.key(fingerprint)
        cached, cached_crops = speaker_cache.load(key), crops_cache.load(key)
        if cached is not None and cached_crops is not None:
            return cached[0], cached_crops[0], cached[1]
        speaker_rows, crop_rows, failures = speaker_for_media(Path(media), rows, utt_faces, scorer, cfg, method,
                                                              contexts, reader)
        speakers = pa.Table.from_pylist(speaker_rows, schema=SPEAKER_SCHEMA)
        crops_table = pa.Table.from_pylist(crop_rows, schema=CROPS_SCHEMA)
        crops_cache.store(key, crops_table, [])
        speaker_cache.store(key, speakers, failures)
        return speakers, crops_table, failures

    results = runner.map(work, list(video_cuts.groupby("media", sort=True)), name=STAGE)
    failures = [f for _, _, item_failures in results for f in item_failures]
    speakers = concat_tables([r[0] for r in results], SPEAKER_SCHEMA).sort_by("utt_id")
    crops = concat_tables([r[1] for r in results], CROPS_SCHEMA).sort_by([("utt_id", "ascending"),
                                                                         ("frame", "ascending")])
    write_atomic(speakers, paths.SPEAKER, {"stage": STAGE, "config": cfg, "code_version": code})
    write_atomic(crops, paths.CROPS, {"stage": STAGE, "crop_size": cfg["crop_size"]})
    write_stage_ledger(STAGE, failures, len(video_cuts), params["run"]["max_failure_ratio"])
    summary = speakers.to_pandas()
    chosen = {"auto_reason": scorer.reason} if hasattr(scorer, "reason") else {}
    return {"utterances": len(summary), "reasons": summary.reason.value_counts().to_dict(),
            "crops": crops.num_rows, "failures": len(failures), "method": method, **chosen,
            **truth_agreement(summary, faces_by_utt)}

