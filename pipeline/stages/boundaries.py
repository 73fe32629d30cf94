"""`boundaries`: learn, from this corpus's own cuts, where utterances end in a recording nobody cut.

`merc predict` on a video without a transcript finds speech with voice-activity detection, which
splits at every pause. This stage fits the pause model (`pipeline.predict.boundaries`) that decides
which of those pauses lie inside an utterance: on the train split's recordings, with the VAD setting
and probability threshold chosen on the dev split's recordings (test is never read). Only recordings
holding at least two timed utterances teach anything; a corpus of pre-cut clips (MELD) has none, and
then the stage writes why and `merc predict` keeps plain voice-activity detection.

Outputs: `artifacts/boundaries/model.json` (the model, or `{"learned": false, "reason": ...}`) and
`metrics/boundaries.json` (every candidate's dev score, beside plain VAD's).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from core.config import parse_block, setting
from pipeline import paths
from pipeline.ledger import Failure, write_stage_ledger
from pipeline.manifest import read_manifest
from pipeline.media import MediaError, read_audio
from pipeline.predict.boundaries import MODEL_PATH, Recording, fit_boundaries
from pipeline.predict.segments import SAMPLE_RATE, Segment
from pipeline.runner import Runner

STAGE = "boundaries"
METRICS = paths.METRICS_DIR / "boundaries.json"
log = logging.getLogger(f"pipeline.{STAGE}")


@dataclass(frozen=True, kw_only=True)
class BoundariesConfig:
    """The `boundaries` block: the dev-selected grid and what counts as a found utterance."""

    tolerance: float = setting(0.3, positive=True)  # seconds: both ends of an utterance found this close
    min_silence: list[float] = setting(factory=lambda: [0.08, 0.12, 0.16], positive=True, non_empty=True)
    vad_threshold: float = setting(0.5, above=0, below=1)  # silero speech probability


def run(params: dict[str, Any], runner: Runner | None = None, arg: str | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    config = parse_block(BoundariesConfig, params.get(STAGE) or {}, STAGE)
    manifest = read_manifest()
    failures: list[Failure] = []
    recordings = {split: _recordings(manifest, split, failures) for split in ("train", "dev")}
    timed = sum(len(r.truth) for rs in recordings.values() for r in rs)
    write_stage_ledger(STAGE, failures, timed + len(failures), params["run"]["max_failure_ratio"])
    if not recordings["train"] or not recordings["dev"]:
        reason = ("no train and dev recordings holding two or more timed utterances "
                  "(pre-cut clips teach nothing about pauses)")
        return _write({"learned": False, "reason": reason}, {"learned": False, "reason": reason}, started)
    model, table = fit_boundaries(recordings["train"], recordings["dev"], config.min_silence,
                                  config.vad_threshold, config.tolerance)
    plain = max((row["matched"] for row in table if row["threshold"] is None), default=0.0)
    if model is None:
        reason = "the train recordings hold no pause inside an utterance, or none between two"
        return _write({"learned": False, "reason": reason},
                      {"learned": False, "reason": reason, "plain_vad_matched": plain, "candidates": table}, started)
    metrics = {"learned": True, **model.dev, "plain_vad_matched": plain, "min_silence": model.vad.min_silence,
               "threshold": model.threshold, "candidates": table}
    return _write({"learned": True, **asdict(model)}, metrics, started)


def _recordings(manifest: Any, split: str, failures: list[Failure]) -> list[Recording]:
    """The split's recordings with two or more timed utterances, their audio read once each."""
    frame = manifest.frame
    rows = frame[(frame.split == split) & frame.start.notna() & frame.end.notna()]
    out = []
    for media, utterances in rows.groupby("media", sort=True):
        if len(utterances) < 2:
            continue
        try:
            samples = read_audio(manifest.media_path(str(media)), SAMPLE_RATE)
        except MediaError as error:
            failures.extend(Failure(STAGE, u, f"{media}: {error}") for u in utterances.utt_id)
            continue
        ordered = utterances.sort_values("start")
        out.append(Recording(samples, [Segment(float(a), float(b)) for a, b in zip(ordered.start, ordered.end)]))
    return out


def _write(model: dict[str, Any], metrics: dict[str, Any], started: float) -> dict[str, Any]:
    MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
    MODEL_PATH.write_text(json.dumps(model, indent=2) + "\n")
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(metrics, indent=2) + "\n")
    summary = {key: value for key, value in metrics.items() if key != "candidates"}
    return {"stage": STAGE, "seconds": round(time.perf_counter() - started, 2), **summary}

