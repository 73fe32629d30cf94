"""The failure ledger: per-utterance problems are recorded with a reason and skipped, never fatal."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import paths
from pipeline.tables import read_frame, write_frame

COLUMNS = ["stage", "utt_id", "reason"]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    stage: str
    utt_id: str
    reason: str


class FailureRatioExceeded(RuntimeError):
    """More utterances failed than `run.max_failure_ratio` allows: the stage exits non-zero."""


def failures_frame(failures: list[Failure]) -> pd.DataFrame:
    return pd.DataFrame([(f.stage, f.utt_id, f.reason) for f in failures], columns=COLUMNS).astype(str)


def write_stage_ledger(stage: str, failures: list[Failure], total: int, max_ratio: float) -> Path:
    """Write this stage's ledger, log a summary, and fail only past the configured ratio."""
    path = paths.stage_ledger(stage)
    write_frame(failures_frame(sorted(failures, key=lambda f: f.utt_id)), path)
    if failures:
        lines = [f"[{stage}] {len(failures)} of {total} utterances failed (see {path}):",
                 *(f"  {failure.utt_id}: {failure.reason}" for failure in failures[:10])]
        if len(failures) > 10:
            lines.append(f"  ... and {len(failures) - 10} more")
        log.warning("\n".join(lines))
    if total and len(failures) / total > max_ratio:
        raise FailureRatioExceeded(
            f"[{stage}] {len(failures)}/{total} utterances failed, above run.max_failure_ratio={max_ratio}"
        )
    return path


def read_ledger(path: str | Path) -> list[Failure]:
    path = Path(path)
    if not path.exists():
        return []
    frame = read_frame(path)
    return [Failure(*row) for row in frame[COLUMNS].itertuples(index=False)]


def merge_ledgers(ledger_dir: Path = paths.FAILURES_DIR, out: Path = paths.FAILURES) -> pd.DataFrame:
    """Merge every stage ledger into `data/failures.parquet`, the one table a user reads."""
    frames = [read_frame(p) for p in sorted(ledger_dir.glob("*.parquet"))]
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    merged = merged[COLUMNS].astype(str).sort_values(["stage", "utt_id"]).reset_index(drop=True)
    write_frame(merged, out)
    return merged
