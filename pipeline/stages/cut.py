"""`cut`: one 16 kHz mono wav per utterance and the frame range the visual stages will read.

Long recordings are cut by time stamps; pre-cut clips pass through whole. Video is never
re-encoded: later stages decode frames by index from the source. Each media file is one work item,
decoded once, and cached so a killed run resumes where it stopped.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from core.config import parse_block, setting
from pipeline import paths
from pipeline.cache import PartCache
from pipeline.code_fingerprint import code_fingerprint
from pipeline.file_hash import file_hash
from pipeline.item_guard import guarded
from pipeline.ledger import Failure, write_stage_ledger
from pipeline.manifest import Manifest, read_manifest
from pipeline.media import MediaError, probe, read_audio, write_float_wav
from pipeline.runner import Runner
from pipeline.schema import CUTS_SCHEMA
from pipeline.tables import concat_tables, write_atomic

STAGE = "cut"


@dataclass(frozen=True, kw_only=True)
class CutConfig:
    """The `cut` block: output sample rate and the clip lengths accepted as utterances."""

    sample_rate: float = setting(positive=True)
    max_seconds: float = setting(positive=True)
    min_seconds: float = setting()



def _cut_media(media: Path, rows: pd.DataFrame, cfg: dict[str, Any], wav_dir: Path) -> tuple[pa.Table, list[Failure]]:
    """Cut every utterance of one media file; per-utterance problems become failures."""
    failures: list[Failure] = []

    def fail_all(reason: str) -> tuple[pa.Table, list[Failure]]:
        return CUTS_SCHEMA.empty_table(), [Failure(STAGE, u, reason) for u in rows.utt_id]

    try:
        info = probe(media)
        if not info.has_audio:
            return fail_all("no audio stream")
        audio = read_audio(media, cfg["sample_rate"])
    except MediaError as error:
        return fail_all(str(error))
    rate = cfg["sample_rate"]
    total_seconds = len(audio) / rate
    if total_seconds == 0:
        return fail_all("audio stream is empty")
    wav_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for row in rows.itertuples(index=False):
        whole = pd.isna(row.start) and pd.isna(row.end)
        start = 0.0 if pd.isna(row.start) else float(row.start)
        end = total_seconds if pd.isna(row.end) else min(float(row.end), total_seconds)
        duration = end - start
        if start >= total_seconds:
            reason = f"start {start:.2f} s is past the end of the media ({total_seconds:.2f} s)"
            failures.append(Failure(STAGE, row.utt_id, reason))
            continue
        if duration > cfg["max_seconds"]:
            reason = f"duration {duration:.1f} s exceeds cut.max_seconds={cfg['max_seconds']} (mis-cut clip?)"
            failures.append(Failure(STAGE, row.utt_id, reason))
            continue
        if duration < cfg["min_seconds"]:
            reason = f"duration {duration:.2f} s is below cut.min_seconds={cfg['min_seconds']}"
            failures.append(Failure(STAGE, row.utt_id, reason))
            continue
        samples = audio[int(round(start * rate)) : int(round(end * rate))]
        wav = wav_dir / f"{paths.safe_name(row.utt_id)}.wav"
        tmp = wav.with_suffix(".wav.tmp")
        write_float_wav(tmp, samples, rate)
        os.replace(tmp, wav)
        fps = info.fps if info.has_video else 0.0
        if info.has_video and fps > 0:
            start_frame = int(math.floor(start * fps))
            end_frame = info.frame_count if whole else int(math.ceil(end * fps))
            end_frame = max(start_frame + 1, min(end_frame, max(info.frame_count, start_frame + 1)))
        else:
            start_frame = end_frame = 0
        records.append(
            {
                "utt_id": row.utt_id,
                "media": str(media),
                "audio": str(wav.name),
                "fps": float(fps),
                "start_frame": start_frame,
                "end_frame": end_frame,
                "start": start,
                "duration": float(len(samples) / rate),
                "width": info.width,
                "height": info.height,
                "has_video": bool(info.has_video and fps > 0),
            }
        )
    return pa.Table.from_pylist(records, schema=CUTS_SCHEMA), failures


def _link_into(source: Path, target: Path) -> None:
    """Hard-link a cached wav into the DVC output folder (copy where links are not possible)."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        import shutil

        shutil.copyfile(source, target)


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    cfg = dict(params["cut"])  # as written: hashed into the cache key and recorded in the output
    parse_block(CutConfig, cfg, "cut")
    manifest: Manifest = read_manifest()
    code = code_fingerprint(__name__)
    cache = PartCache(STAGE, cfg, code)
    failures: list[Failure] = []
    groups: list[tuple[Path, pd.DataFrame]] = []
    for media_rel, rows in manifest.frame.groupby("media", sort=True):
        try:
            groups.append((manifest.media_path(media_rel), rows))
        except ValueError as error:
            failures.extend(Failure(STAGE, u, str(error)) for u in rows.utt_id)

    def work(item: tuple[Path, pd.DataFrame]) -> tuple[pa.Table, list[Failure], Path]:
        media, rows = item
        return guarded(STAGE, rows.utt_id, lambda: cut_item(media, rows),
                       lambda failures: (CUTS_SCHEMA.empty_table(), failures, cache.dir))

    def cut_item(media: Path, rows: pd.DataFrame) -> tuple[pa.Table, list[Failure], Path]:
        fingerprint = {
            "media": file_hash(media) if media.exists() else f"missing:{media}",
            "utts": rows[["utt_id", "start", "end"]].astype(str).values.tolist(),
        }
        key = cache.key(fingerprint)
        wav_dir = cache.dir / f"{key}.wav.d"
        cached = cache.load(key)
        if cached is not None and all((wav_dir / name).exists() for name in cached[0].column("audio").to_pylist()):
            return cached[0], cached[1], wav_dir
        table, item_failures = _cut_media(media, rows, cfg, wav_dir)
        cache.store(key, table, item_failures)
        return table, item_failures, wav_dir

    results = runner.map(work, groups, name=STAGE)
    paths.AUDIO_DIR.mkdir(parents=True, exist_ok=True)
    tables = []
    for table, item_failures, wav_dir in results:
        failures.extend(item_failures)
        names = table.column("audio").to_pylist()
        for name in names:
            _link_into(wav_dir / name, paths.AUDIO_DIR / name)
        audio_paths = [str(paths.AUDIO_DIR / name) for name in names]
        column = table.schema.get_field_index("audio")
        tables.append(table.set_column(column, "audio", pa.array(audio_paths, pa.string())))
    cuts = concat_tables(tables, CUTS_SCHEMA).sort_by("utt_id")
    write_atomic(cuts, paths.CUTS, {"stage": STAGE, "config": cfg, "code_version": code})
    total = len(manifest.frame)
    write_stage_ledger(STAGE, failures, total, params["run"]["max_failure_ratio"])
    durations = np.asarray(cuts.column("duration").to_pylist() or [0.0])
    return {"utterances": cuts.num_rows, "failures": len(failures), "media_files": len(groups),
            "audio_seconds": float(durations.sum())}
