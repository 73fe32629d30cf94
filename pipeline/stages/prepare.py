"""`prepare`: turn the configured corpus into `data/manifest.parquet`, one checked row per utterance.

The adapter named by `dataset.name` reads the corpus layout; this stage applies the checks every
later stage relies on (text present, sane times, media inside the root and on disk, known label and
split, unique ids) so a bad row is reported once, here, with its reason, and never reaches a model.
A text-only run (`dataset.media: false`: transcripts without their recordings) skips the media
check and marks the manifest so, for the text features and the models that read only them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import parse_block
from pipeline import paths
from pipeline.config import ConfigError, section
from pipeline.datasets import DatasetConfig, get_adapter
from pipeline.datasets.base import CorpusManifest, uses_media
from pipeline.ledger import Failure, FailureRatioExceeded, write_stage_ledger
from pipeline.manifest import MediaOutsideRoot, resolve_media, write_manifest
from pipeline.runner import Runner
from pipeline.schema import (
    MANIFEST_COLUMNS,
    MANIFEST_OPTIONAL_COLUMNS,
    MANIFEST_TRUTH_COLUMNS,
    SPLITS,
    require_columns,
)

STAGE = "prepare"
TEXT_COLUMNS = ("utt_id", "dialogue_id", "speaker", "text", "label", "split", "media")


class EmptyManifestError(FailureRatioExceeded):
    """No utterance survived the checks: nothing downstream could run (the CLI exits non-zero)."""


def run(params: Mapping[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    """Build, check and write the manifest and this stage's failure ledger; return a summary."""
    dataset = section(params, "dataset")
    config = parse_block(DatasetConfig, dataset, "dataset")
    name, root_value = config.name, config.root
    max_ratio = section(params, "run.max_failure_ratio")
    media = uses_media(dataset)
    if not root_value:
        raise ConfigError("params.yaml: 'dataset.root' is empty; set the corpus folder")
    adapter = get_adapter(name)
    root = Path(root_value).resolve()  # relative roots are read from the current (project) directory
    corpus: CorpusManifest = adapter(dataset, root)

    frame = _normalise(corpus.frame)
    runner.hook(STAGE, completed=0, total=len(frame))
    kept, problems = check_rows(frame, Path(corpus.root), corpus.labels, media)
    runner.hook(STAGE, completed=len(frame), total=len(frame))
    failures = [*(Failure(STAGE, utt_id, reason) for utt_id, reason in corpus.failures), *problems]
    total = len(frame) + len(corpus.failures)

    if kept.empty:
        ledger = write_stage_ledger(STAGE, failures, total, max_ratio=1.0)  # keep the reasons on disk
        examples = "; ".join(f"{f.utt_id}: {f.reason}" for f in failures[:3]) or "the adapter found no utterances"
        raise EmptyManifestError(
            f"[{STAGE}] no usable utterance in {corpus.root} (dataset.name={name}): {len(failures)} row(s) failed "
            f"({examples}); see {ledger}"
        )
    stored_root = _stored_root(root_value, root, Path(corpus.root))
    manifest = write_manifest(kept, Path(stored_root), corpus.labels, name, media=media)
    write_stage_ledger(STAGE, failures, total, max_ratio)
    return summarise(kept, corpus, failures, name, stored_root, manifest)


def check_rows(frame: pd.DataFrame, root: Path, labels: list[str],
               media: bool = True) -> tuple[pd.DataFrame, list[Failure]]:
    """Split rows into usable ones and failures whose reason names every problem of the row
    (media paths only when the run reads media)."""
    require_columns(frame, MANIFEST_COLUMNS, "adapter manifest")
    label_set = set(labels)
    media_problem: dict[str, str | None] = {}
    seen: set[str] = set()
    keep: list[bool] = []
    failures: list[Failure] = []
    for row in frame.itertuples(index=False):
        problems = []
        if row.utt_id in seen:
            problems.append("duplicate utt_id (an earlier row has the same id)")
        if row.split not in SPLITS:
            problems.append(f"split {row.split!r} is not one of {', '.join(SPLITS)}")
        if row.label not in label_set:
            problems.append(f"label {row.label!r} is not one of the classes {', '.join(labels)}")
        if not row.text.strip():
            problems.append("empty transcript")
        time_problem = _time_problem(row.start, row.end)
        if time_problem:
            problems.append(time_problem)
        if media and row.media not in media_problem:
            media_problem[row.media] = _media_problem(root, row.media)
        if media and media_problem[row.media]:
            problems.append(media_problem[row.media])
        seen.add(row.utt_id)
        keep.append(not problems)
        if problems:
            failures.append(Failure(STAGE, row.utt_id, "; ".join(problems)))
    kept = frame[pd.Series(keep, index=frame.index, dtype=bool)].reset_index(drop=True)
    return kept, failures


def summarise(kept: pd.DataFrame, corpus: CorpusManifest, failures: list[Failure], dataset: str, root: str,
              manifest: Path) -> dict[str, Any]:
    """A JSON-able account of what the manifest holds and what was left out, and why."""
    return {
        "dataset": dataset,
        "root": root,
        "manifest": str(manifest),
        "utterances": int(len(kept)),
        "dialogues": int(kept["dialogue_id"].nunique()),
        "splits": {split: int((kept["split"] == split).sum()) for split in SPLITS},
        "labels": {label: int((kept["label"] == label).sum()) for label in corpus.labels},
        "failures": len(failures),
        "excluded": {reason: int(count) for reason, count in corpus.excluded.items()},
        "ledger": str(paths.stage_ledger(STAGE)),
    }


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Contract types: strings (missing -> ''), integer turns, float seconds; truth and optional columns kept."""
    require_columns(frame, MANIFEST_COLUMNS, "adapter manifest")
    truth = [c for c in MANIFEST_TRUTH_COLUMNS if c in frame.columns]
    optional = [c for c in MANIFEST_OPTIONAL_COLUMNS if c in frame.columns]
    frame = frame[[*MANIFEST_COLUMNS, *truth, *optional]].copy()
    for column in (*TEXT_COLUMNS, *optional):
        frame[column] = frame[column].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                                          else str(v)).astype(object)
    frame["turn"] = pd.to_numeric(frame["turn"]).astype("int64")
    frame["start"] = pd.to_numeric(frame["start"], errors="coerce").astype("float64")
    frame["end"] = pd.to_numeric(frame["end"], errors="coerce").astype("float64")
    return frame.reset_index(drop=True)


def _time_problem(start: float, end: float) -> str | None:
    if math.isnan(start) and math.isnan(end):
        return None  # the whole media file
    if math.isnan(start) or math.isnan(end):
        return f"start and end must both be given or both be empty (start={start}, end={end})"
    if start < 0:
        return f"start time {start:.2f} s is negative"
    if end < start:
        return f"end time {end:.2f} s is before start time {start:.2f} s"
    if end == start:
        return f"zero-length utterance (start = end = {start:.2f} s)"
    return None


def _media_problem(root: Path, media: str) -> str | None:
    if not media.strip():
        return "no media path"
    try:
        path = resolve_media(root, media)
    except MediaOutsideRoot as error:
        return str(error)
    if not path.is_file():
        return f"media file not found: {path}"
    return None


def _stored_root(root_value: Any, resolved: Path, corpus_root: Path) -> str:
    """Keep a relative root relative, so the manifest is identical on every checkout of the project."""
    if corpus_root.resolve() == resolved and not Path(root_value).is_absolute():
        return Path(root_value).as_posix()
    return str(corpus_root)
