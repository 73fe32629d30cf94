"""Corpus adapters keyed by `params.dataset.name`; each turns a corpus layout into one manifest."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import setting
from pipeline.config import choice
from pipeline.datasets.base import CorpusManifest
from pipeline.datasets.demo.config import DemoConfig
from pipeline.datasets.iemocap import IemocapConfig
from pipeline.datasets.meld import MeldConfig
from pipeline.datasets.table import TableConfig

ADAPTERS = {
    "demo": "pipeline.datasets.demo",
    "meld": "pipeline.datasets.meld",
    "iemocap": "pipeline.datasets.iemocap",
    "table": "pipeline.datasets.table",
}


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """The `dataset` block: which adapter reads the corpus, where it lives, and each adapter's options."""

    name: str = setting(choices=tuple(ADAPTERS))
    root: str | None = setting()  # `prepare` refuses an empty one
    media: bool = True  # false: a text-only run (transcripts without recordings)
    demo: DemoConfig | None = None  # each adapter's block, declared beside the adapter that reads it
    meld: MeldConfig | None = None
    iemocap: IemocapConfig | None = None
    table: TableConfig | None = None


AdapterFn = Callable[[Mapping[str, Any], Path], CorpusManifest]


def get_adapter(name: str) -> AdapterFn:
    """Each adapter module exposes `build_manifest(dataset_params, root) -> CorpusManifest`."""
    choice(name, "dataset.name", ADAPTERS)
    return importlib.import_module(ADAPTERS[name]).build_manifest
