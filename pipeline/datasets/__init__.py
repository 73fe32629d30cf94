"""Corpus adapters keyed by `params.dataset.name`; each turns a corpus layout into one manifest."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import keys_block, setting
from pipeline.config import choice
from pipeline.datasets.base import CorpusManifest

ADAPTERS = {
    "demo": "pipeline.datasets.demo",
    "meld": "pipeline.datasets.meld",
    "iemocap": "pipeline.datasets.iemocap",
    "table": "pipeline.datasets.table",
}

# Each adapter checks the values of its own block when it reads it.
DemoKeys = keys_block("DemoKeys", ["seed", "dialogues", "turns", "people", "labels", "label_weights",
                                   "stay_probability",
                                   ("cue_fidelity", keys_block("CueFidelityKeys", ["text", "audio", "visual"])),
                                   "split", "width", "height", "fps"])
MeldKeys = keys_block("MeldKeys", ["csv", "clips"])  # split names: checked by the MELD adapter
IemocapKeys = keys_block("IemocapKeys", ["labels", "dev_dialogues", "dev_seed", "layout"])
TableKeys = keys_block("TableKeys", ["path", "columns"])  # manifest fields: checked by the table adapter


@dataclass(frozen=True, kw_only=True)
class DatasetConfig:
    """The `dataset` block: which adapter reads the corpus, where it lives, and each adapter's options."""

    name: str = setting(choices=tuple(ADAPTERS))
    root: str | None = setting()  # `prepare` refuses an empty one
    media: bool = True  # false: a text-only run (transcripts without recordings)
    demo: DemoKeys | None = None
    meld: MeldKeys | None = None
    iemocap: IemocapKeys | None = None
    table: TableKeys | None = None


AdapterFn = Callable[[Mapping[str, Any], Path], CorpusManifest]


def get_adapter(name: str) -> AdapterFn:
    """Each adapter module exposes `build_manifest(dataset_params, root) -> CorpusManifest`."""
    choice(name, "dataset.name", ADAPTERS)
    return importlib.import_module(ADAPTERS[name]).build_manifest
