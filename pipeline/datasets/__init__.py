"""Corpus adapters keyed by `params.dataset.name`; each turns a corpus layout into one manifest."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipeline.config import choice
from pipeline.datasets.base import CorpusManifest

ADAPTERS = {
    "demo": "pipeline.datasets.demo",
    "meld": "pipeline.datasets.meld",
    "iemocap": "pipeline.datasets.iemocap",
    "table": "pipeline.datasets.table",
}

AdapterFn = Callable[[Mapping[str, Any], Path], CorpusManifest]


def get_adapter(name: str) -> AdapterFn:
    """Each adapter module exposes `build_manifest(dataset_params, root) -> CorpusManifest`."""
    choice(name, "dataset.name", ADAPTERS)
    return importlib.import_module(ADAPTERS[name]).build_manifest
