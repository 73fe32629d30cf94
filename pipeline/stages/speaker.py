"""`speaker`: pick the active speaker's face track per utterance and store its face crops.

Every track is scored against the utterance audio by the scorer named in `speaker.method`; the
choice, its confidence (margin over the runner-up) and a reason are recorded for every utterance,
and the chosen track's crops are saved as JPEG bytes for the visual extractors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import soundfile as sf

from pipeline import paths
from pipeline.cache import PartCache, content_fingerprint
from pipeline.ledger import Failure, write_stage_ledger
from pipeline.media import MediaError, iter_frames
from pipeline.runner import Runner
from pipeline.speaker_select import TrackClip, TrackScorer, build_scorer, choose, mouth_patch
from pipeline.tables import concat_tables, read_frame, write_atomic
from pipeline.tracking import box_at

STAGE = "speaker"
CODE_VERSION = "1"
CROPS_FILE = paths.SPEAKER_TRACKS / "crops.parquet"
SPEAKER_SCHEMA = pa.schema([("utt_id", pa.string()), ("track_id", pa.int64()), ("reason", pa.string()),
                            ("confidence", pa.float64()), ("scores", pa.string()), ("method", pa.string())])
CROPS_SCHEMA = pa.schema([("utt_id", pa.string()), ("frame", pa.int64()), ("jpeg", pa.binary())])


def crop_face(frame: np.ndarray, box: np.ndarray, size: int, margin: float = 0.15) -> np.ndarray:
    """A square crop around the box (enlarged by `margin`), edge-padded at the frame border."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    right, bottom = left + int(round(side)), top + int(round(side))
    pad = max(0, -left, -top, right - frame.shape[1], bottom - frame.shape[0])
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        left, top, right, bottom = left + pad, top + pad, right + pad, bottom + pad
    return cv2.resize(frame[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)


def evenly(start: int, end: int, count: int) -> list[int]:
    if end <= start:
        return []
    return sorted({int(round(x)) for x in np.linspace(start, end - 1, num=min(count, end - start))})


def _tracks_of(faces: pd.DataFrame) -> dict[int, tuple[list[int], list[np.ndarray]]]:
    tracks = {}
    for track_id, rows in faces.groupby("track_id", sort=True):
        rows = rows.sort_values("frame")
        tracks[int(track_id)] = (rows.frame.tolist(), list(rows[["x1", "y1", "x2", "y2"]].to_numpy(float)))
    return tracks


def _speaker_for_utterance(media: Path, cut: Any, faces: pd.DataFrame, scorer: TrackScorer, method: str,
                           cfg: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tracks = _tracks_of(faces)
    crop_frames = evenly(cut.start_frame, cut.end_frame, int(cfg["max_crops"]))
    if scorer.needs_mouths and len(tracks) > 1:
        wanted = list(range(cut.start_frame, cut.end_frame))
    else:
        wanted = crop_frames
    images: dict[int, np.ndarray] = {}
    mouths: dict[int, list[tuple[int, np.ndarray]]] = {t: [] for t in tracks}
    for frame, image in iter_frames(media, wanted, cut.fps):
        if frame in crop_frames:
            images[frame] = image
        if scorer.needs_mouths and len(tracks) > 1:
            for track_id, (frames, boxes) in tracks.items():
                if frames[0] <= frame <= frames[-1]:
                    mouths[track_id].append((frame, mouth_patch(image, box_at(frames, boxes, frame))))
    clips = []
    for track_id, (frames, boxes) in tracks.items():
        if scorer.needs_mouths and len(tracks) > 1 and mouths[track_id]:
            clip_frames = np.array([f for f, _ in mouths[track_id]])
            clip_mouths = np.stack([m for _, m in mouths[track_id]])
        else:
            clip_frames, clip_mouths = np.asarray(frames), None
        clip_boxes = np.stack([box_at(frames, boxes, f) for f in clip_frames])
        clips.append(TrackClip(track_id, clip_frames, clip_boxes, clip_mouths))
    audio, rate = sf.read(cut.audio, dtype="float32")
    chosen = choose(clips, scorer, audio, rate, cut.fps, float(cfg["low_confidence"]))
    scores = json.dumps({str(k): round(v, 6) for k, v in chosen.scores.items()})
    row = {"utt_id": cut.utt_id, "track_id": chosen.track_id, "reason": chosen.reason,
           "confidence": chosen.confidence, "scores": scores, "method": method}
    crops = []
    if chosen.track_id >= 0:
        frames, boxes = tracks[chosen.track_id]
        for frame in crop_frames:
            if frame in images:
                crop = crop_face(images[frame], box_at(frames, boxes, frame), int(cfg["crop_size"]))
                ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
                if ok:
                    crops.append({"utt_id": cut.utt_id, "frame": int(frame), "jpeg": jpeg.tobytes()})
    return row, crops


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    cfg = dict(params["speaker"])
    scorer = build_scorer(cfg)
    method = cfg["method"]
    cuts = read_frame(paths.CUTS)
    faces = read_frame(paths.FACES)
    faces_by_utt = {u: rows for u, rows in faces.groupby("utt_id", sort=False)}
    video_cuts = cuts[cuts.has_video]
    speaker_cache = PartCache(STAGE, cfg, CODE_VERSION)
    crops_cache = PartCache(f"{STAGE}-crops", cfg, CODE_VERSION)
    empty = faces.iloc[0:0]

    def work(item: tuple[str, pd.DataFrame]) -> tuple[pa.Table, pa.Table, list[Failure]]:
        media, rows = item
        utt_faces = {u: faces_by_utt.get(u, empty) for u in rows.utt_id}
        fingerprint = {"media": content_fingerprint(media),
                       "faces": pd.util.hash_pandas_object(pd.concat(utt_faces.values()), index=False).sum().item()
                       if len(rows) else 0,
                       "utts": rows[["utt_id", "start_frame", "end_frame", "audio"]].astype(str).values.tolist()}
        key = speaker_cache.key(fingerprint)
        cached, cached_crops = speaker_cache.load(key), crops_cache.load(key)
        if cached is not None and cached_crops is not None:
            return cached[0], cached_crops[0], cached[1]
        speaker_rows, crop_rows, failures = [], [], []
        for cut in rows.itertuples(index=False):
            try:
                row, crops = _speaker_for_utterance(Path(media), cut, utt_faces[cut.utt_id], scorer, method, cfg)
            except (MediaError, RuntimeError, ValueError) as error:
                failures.append(Failure(STAGE, cut.utt_id, f"speaker selection failed: {error}"))
                continue
            speaker_rows.append(row)
            crop_rows.extend(crops)
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
    write_atomic(speakers, paths.SPEAKER, {"stage": STAGE, "config": cfg, "code_version": CODE_VERSION})
    write_atomic(crops, CROPS_FILE, {"stage": STAGE, "crop_size": cfg["crop_size"]})
    write_stage_ledger(STAGE, failures, len(video_cuts), params["run"]["max_failure_ratio"])
    summary = speakers.to_pandas()
    return {"utterances": len(summary), "reasons": summary.reason.value_counts().to_dict(),
            "crops": crops.num_rows, "failures": len(failures), "method": method,
            **truth_agreement(summary)}


def truth_agreement(choices: pd.DataFrame) -> dict[str, Any]:
    """Share of multi-face utterances whose chosen track is the generator's true speaker (demo)."""
    from pipeline.manifest import read_manifest

    manifest = read_manifest().frame
    if "true_speaker" not in manifest.columns or choices.empty:
        return {}
    faces = read_frame(paths.FACES)
    truth = manifest.set_index("utt_id")
    hits = total = 0
    for row in choices.itertuples(index=False):
        utt_faces = faces[faces.utt_id == row.utt_id]
        if utt_faces.track_id.nunique() < 2 or row.track_id < 0:
            continue
        boxes = json.loads(truth.at[row.utt_id, "true_boxes"])
        centres = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in boxes])
        chosen = utt_faces[utt_faces.track_id == row.track_id][["x1", "y1", "x2", "y2"]].to_numpy().mean(axis=0)
        seat = int(np.argmin(np.linalg.norm(centres - [(chosen[0] + chosen[2]) / 2, (chosen[1] + chosen[3]) / 2],
                                            axis=1)))
        hits += int(seat == int(truth.at[row.utt_id, "true_speaker"]))
        total += 1
    return {"multi_face_utterances": total, "truth_agreement": round(hits / total, 4) if total else None}
