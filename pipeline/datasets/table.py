"""Table adapter: a user's own recordings described by one CSV or Parquet table.

`dataset.table.path` is the table; a relative path is read from the corpus root (`dataset.root`),
so the table sits beside the recordings and DVC, which tracks that folder, reruns `prepare` when it
changes. `dataset.table.columns` maps each manifest field to the table's column name.
Required: media, speaker, text, label, split. Optional (absent column, or mapped to null):
- `start`/`end`: seconds or `HH:MM:SS.mmm` inside the media; without them each row is a whole file;
- `dialogue_id`: without it every media file is its own dialogue;
- `utt_id`: the table's own utterance ids; without them ids are `<dialogue_id>/<turn>`.
Turns follow start time inside a dialogue, then table order. Split names accept the usual aliases
(`val`, `validation` -> dev). The class order is the sorted set of labels seen in the train split
(all rows when there is none): a label found only in dev or test cannot be learned, so `prepare`
records those rows as failures instead of training on a class with no examples.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import setting
from pipeline.config import ConfigError
from pipeline.datasets.base import CorpusManifest, RowFailure, adapter_config
from pipeline.datasets.encoding import read_text, repair_text
from pipeline.schema import MANIFEST_COLUMNS

REQUIRED = ("media", "speaker", "text", "label", "split")
OPTIONAL = ("start", "end", "dialogue_id", "utt_id")
SPLIT_ALIASES = {"training": "train", "val": "dev", "valid": "dev", "validation": "dev", "testing": "test"}
READERS = {".csv": ",", ".tsv": "\t", ".parquet": None, ".pq": None}
_CLOCK = re.compile(r"^(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+(?:[.,]\d*)?)$")


def parse_seconds(value: Any) -> float:
    """Seconds from a number or a clock string (`75.5`, `01:15.5`, `00:01:15,500`); blank -> NaN."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _CLOCK.match(text)
    if not match:
        raise ValueError(f"{value!r} is not a time (seconds or HH:MM:SS.mmm)")
    hours = int(match["h"] or 0)
    return hours * 3600 + int(match["m"]) * 60 + float(match["s"].replace(",", "."))


def read_table(path: Path) -> pd.DataFrame:
    """CSV/TSV (any common text encoding) or Parquet, every cell kept as written."""
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ConfigError(f"params.yaml: 'dataset.table.path' is {path}; allowed file types: {', '.join(READERS)}")
    if READERS[suffix] is None:
        return pd.read_parquet(path)
    return pd.read_csv(io.StringIO(read_text(path)), sep=READERS[suffix], dtype=str, keep_default_na=False)


def build_manifest(dataset_params: Mapping[str, Any], root: Path) -> CorpusManifest:
    """One manifest row per table row; rows with unreadable times become failures."""
    cfg = adapter_config(TableConfig, dataset_params, "table")
    path_value = cfg.path
    if not path_value:
        raise ConfigError("params.yaml: 'dataset.table.path' is not set; point it at a CSV or Parquet table with "
                          "one row per utterance")
    root = Path(root)
    path = root / path_value  # an absolute path_value stays as written
    if not path.is_file():
        raise ConfigError(f"params.yaml: 'dataset.table.path': {path} not found")
    table = read_table(path).reset_index(drop=True)
    columns = _column_map(cfg.columns or {}, table, path)

    frame = pd.DataFrame(index=table.index)
    for name in ("speaker", "text", "label"):
        frame[name] = table[columns[name]].map(repair_text).str.strip()
    frame["split"] = table[columns["split"]].map(repair_text).str.strip().str.lower().replace(SPLIT_ALIASES)
    frame["media"] = table[columns["media"]].map(lambda v: _relative_media(repair_text(v).strip(), root))
    if "dialogue_id" in columns:
        given = table[columns["dialogue_id"]].map(repair_text).str.strip()
        frame["dialogue_id"] = given.where(given != "", frame["media"])
    else:
        frame["dialogue_id"] = frame["media"]

    bad_times: dict[int, str] = {}
    for name in ("start", "end"):
        if name in columns:
            frame[name] = [_seconds_or_note(v, name, index, bad_times) for index, v in table[columns[name]].items()]
        else:
            frame[name] = math.nan
    frame["row"] = range(len(frame))
    frame = frame.sort_values(["dialogue_id", "start", "row"], kind="stable", na_position="last")
    frame["turn"] = frame.groupby("dialogue_id").cumcount().astype("int64")
    if "utt_id" in columns:
        own = table[columns["utt_id"]].map(repair_text).str.strip()
        frame["utt_id"] = own.where(own != "", frame["dialogue_id"] + "/" + frame["turn"].astype(str))
    else:
        frame["utt_id"] = frame["dialogue_id"] + "/" + frame["turn"].astype(str)

    failures = [RowFailure(frame.at[index, "utt_id"], reason) for index, reason in sorted(bad_times.items())]
    frame = frame.drop(index=list(bad_times)).sort_values("row")
    frame = frame[list(MANIFEST_COLUMNS)].reset_index(drop=True).astype({"start": "float64", "end": "float64"})
    return CorpusManifest(frame=frame, root=root, labels=_labels(frame), failures=failures)


def _columns_problem(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return f"must map manifest fields to column names, got {value!r}"
    allowed = (*REQUIRED, *OPTIONAL)
    unknown = [key for key in value if key not in allowed]
    if unknown:
        return f"names {unknown[0]!r}, which is not a manifest field; allowed keys: {', '.join(allowed)}"
    return None


@dataclass(frozen=True)
class TableConfig:
    """`dataset.table`: the table (CSV, TSV or Parquet, relative to `dataset.root`) and which of its
    columns hold each manifest field (a field left out is read from the column of its own name)."""

    path: str | None = None  # `build_manifest` refuses an empty one
    columns: dict[str, str | None] | None = setting(None, check=_columns_problem)


def _column_map(value: Mapping[str, Any], table: pd.DataFrame, path: Path) -> dict[str, str]:
    """Manifest field -> table column, failing by key name when a required column is absent."""
    allowed = (*REQUIRED, *OPTIONAL)
    have = [str(c) for c in table.columns]
    mapped: dict[str, str] = {}
    for name in allowed:
        column = value.get(name, name)
        if column is not None and str(column) in have:
            mapped[name] = str(column)
        elif name in REQUIRED:
            raise ConfigError(f"params.yaml: 'dataset.table.columns.{name}' names column {column!r}, which {path} "
                              f"does not have; its columns: {', '.join(have)}")
    return mapped


def _relative_media(media: str, root: Path) -> str:
    """Absolute paths inside the root become relative; others stay as written for `prepare` to judge."""
    if media and Path(media).is_absolute():
        try:
            return Path(media).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return media
    return media


def _seconds_or_note(value: Any, name: str, index: int, notes: dict[int, str]) -> float:
    try:
        return parse_seconds(value)
    except ValueError as error:
        notes.setdefault(index, f"{name} time {error}")
        return math.nan


def _labels(frame: pd.DataFrame) -> list[str]:
    """Sorted labels of the train split, or of every row when the table has no train rows."""
    train = frame.loc[frame["split"] == "train", "label"]
    source = train if len(train) else frame["label"]
    return sorted(label for label in source.unique() if label)
