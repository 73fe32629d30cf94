"""MELD adapter: the official annotation CSVs plus the MELD.Raw folders of pre-cut clips.

Each CSV row is one utterance whose clip is `<clips folder>/dia{Dialogue_ID}_utt{Utterance_ID}.mp4`,
so start/end stay NaN (the whole clip). Dialogue numbers restart in every split, which is why the
split is part of every id: `meld_train_dia12` / `meld_train_dia12_utt3`. With `dataset.media: false`
(the CSVs without MELD.Raw) the clip folders are neither required nor checked.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from pipeline.config import ConfigError
from pipeline.datasets.base import CorpusManifest, RowFailure, adapter_config, uses_media
from pipeline.datasets.encoding import read_text, repair_text
from pipeline.schema import MANIFEST_COLUMNS, SPLITS

# Class order of every MELD model: index i of the logits is LABELS[i].
LABELS = ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
DEFAULT_CSV = {"train": "train_sent_emo.csv", "dev": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
DEFAULT_CLIPS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
REQUIRED_COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


def read_split(csv_path: Path, split: str, clips_dir: str) -> tuple[pd.DataFrame, list[RowFailure]]:
    """Parse one official CSV into manifest rows; rows without usable ids become failures.

    Media paths are where the clip should be (`clips_dir/diaD_uttU.mp4`); whether it exists is the
    caller's business, so the same parse serves text-only benchmarks without the videos.
    """
    raw = pd.read_csv(io.StringIO(read_text(csv_path)), dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{csv_path}: not a MELD CSV, missing column(s) {', '.join(missing)}; "
                         f"has {', '.join(map(str, raw.columns))}")
    rows: list[dict[str, Any]] = []
    failures: list[RowFailure] = []
    for number, record in enumerate(raw.to_dict("records"), start=1):
        dialogue, utterance = record["Dialogue_ID"].strip(), record["Utterance_ID"].strip()
        if not (dialogue.isdigit() and utterance.isdigit()):
            reason = f"Dialogue_ID {dialogue!r} / Utterance_ID {utterance!r} are not whole numbers ({csv_path.name})"
            failures.append(RowFailure(f"meld_{split}_row{number}", reason))
            continue
        dia, utt = int(dialogue), int(utterance)
        dialogue_id = f"meld_{split}_dia{dia}"
        rows.append({
            "utt_id": f"{dialogue_id}_utt{utt}",
            "dialogue_id": dialogue_id,
            "turn": utt,
            "speaker": repair_text(record["Speaker"]).strip(),
            "text": repair_text(record["Utterance"]).strip(),
            "label": record["Emotion"].strip().lower(),
            "split": split,
            "media": str(PurePosixPath(clips_dir) / f"dia{dia}_utt{utt}.mp4"),
            "start": math.nan,
            "end": math.nan,
        })
    return _frame(rows), failures


def build_manifest(dataset_params: Mapping[str, Any], root: Path) -> CorpusManifest:
    """Every utterance of the configured splits; a row whose clip is missing becomes a failure."""
    media = uses_media(dataset_params)
    cfg = adapter_config(MeldConfig, dataset_params, "meld")
    csv_names, clip_dirs = cfg.csv.named(), cfg.clips.named()
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"params.yaml: 'dataset.root' is {root}, which is not a folder "
                          "(MELD expects the official CSVs and the MELD.Raw clip folders there)")
    frames: list[pd.DataFrame] = []
    failures: list[RowFailure] = []
    for split in (s for s in SPLITS if s in csv_names):
        csv_path = root / csv_names[split]
        if not csv_path.is_file():
            raise ConfigError(f"params.yaml: 'dataset.meld.csv.{split}': {csv_path} not found")
        if split not in clip_dirs:
            raise ConfigError(f"params.yaml: missing key 'dataset.meld.clips.{split}' (clip folder of the {split} CSV)")
        if media and not (root / clip_dirs[split]).is_dir():
            raise ConfigError(f"params.yaml: 'dataset.meld.clips.{split}': folder {root / clip_dirs[split]} not found")
        frame, split_failures = read_split(csv_path, split, clip_dirs[split])
        failures += split_failures
        if media:
            present = frame["media"].map(lambda clip: (root / clip).is_file())
            failures += [RowFailure(utt, f"media file not found: {root / clip}")
                         for utt, clip in zip(frame.loc[~present, "utt_id"], frame.loc[~present, "media"])]
            frame = frame[present]
        frames.append(frame)
    if not frames:
        raise ConfigError("params.yaml: 'dataset.meld.csv' names no split; allowed keys: " + ", ".join(SPLITS))
    frame = pd.concat(frames, ignore_index=True)
    return CorpusManifest(frame=frame, root=root, labels=list(LABELS), failures=failures)


def load_reference_tables(folder: str | Path) -> pd.DataFrame:
    """The three official CSVs in `folder` as one manifest frame, without needing any video.

    `media` holds the clip path the MELD.Raw layout would give; used by text-only benchmarks.
    """
    folder = Path(folder)
    frames = []
    for split in SPLITS:
        path = folder / DEFAULT_CSV[split]
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (expected the MELD CSVs {', '.join(DEFAULT_CSV.values())})")
        frame, failures = read_split(path, split, DEFAULT_CLIPS[split])
        if failures:
            warnings.warn(f"{path}: skipped {len(failures)} row(s): {failures[0].reason}", stacklevel=2)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class SplitNames:
    """A file or folder name per split (null or left out: that split is not read)."""

    train: str | None = None
    dev: str | None = None
    test: str | None = None

    def named(self) -> dict[str, str]:
        return {split: name for split in SPLITS if (name := getattr(self, split))}


@dataclass(frozen=True)
class MeldConfig:
    """`dataset.meld`: the official CSV of each split and the folder of its clips, under `dataset.root`."""

    csv: SplitNames
    clips: SplitNames


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    return frame.astype({"turn": "int64", "start": "float64", "end": "float64"})
