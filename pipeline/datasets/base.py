"""What every corpus adapter returns: the utterance manifest, its root, the class order, and the
rows it had to drop (with reasons) so nothing disappears silently."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pandas as pd

from core.config import parse_block
from pipeline.config import ConfigError

T = TypeVar("T")


class RowFailure(NamedTuple):
    """An utterance the adapter could not turn into a manifest row, and why; `prepare` ledgers it."""

    utt_id: str
    reason: str


@dataclass
class CorpusManifest:
    frame: pd.DataFrame  # columns pipeline.schema.MANIFEST_COLUMNS (+ optional truth columns)
    root: Path  # media paths in `frame.media` are relative to this folder
    labels: list[str]  # class order: index i of a model's logits is labels[i]
    failures: list[RowFailure] = field(default_factory=list)
    # rows left out on purpose, not failures (e.g. IEMOCAP labels outside the class set): reason -> count
    excluded: dict[str, int] = field(default_factory=dict)


def adapter_config(cls: type[T], dataset_params: Mapping[str, Any], name: str) -> T:
    """`dataset.<name>` parsed by its adapter's config class (a missing block: its required keys are named)."""
    return parse_block(cls, dataset_params.get(name) or {}, f"dataset.{name}")


def uses_media(dataset_params: Mapping[str, Any]) -> bool:
    """`dataset.media` (default true). False declares a text-only run, e.g. transcripts without their
    recordings: media paths are kept as written but never checked, and only text features can be made."""
    value = dataset_params.get("media", True)
    if not isinstance(value, bool):
        raise ConfigError(f"params.yaml: 'dataset.media' must be true or false, got {value!r}")
    return value
