"""Stage registry: `python -m pipeline <stage> [arg]` runs `STAGES[stage]`.

Each stage module exposes `run(params, runner, arg) -> dict` (a JSON-able summary). Modules are
imported lazily so `python -m pipeline cut` does not pay for torch or transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pipeline.config import ConfigError

STAGE_MODULES = {
    "prepare": "pipeline.stages.prepare",
    "cut": "pipeline.stages.cut",
    "faces": "pipeline.stages.faces",
    "speaker": "pipeline.stages.speaker",
    "lipsync_train": "pipeline.stages.lipsync_train",
    "features": "pipeline.stages.features",
    "finetune_text": "pipeline.stages.finetune_text",
    "train": "pipeline.stages.train",
    "evaluate": "pipeline.stages.evaluate",
    "refine": "pipeline.stages.refine",
    "failures": "pipeline.stages.failures",
}

StageFn = Callable[..., dict[str, Any]]


def get_stage(name: str) -> StageFn:
    if name not in STAGE_MODULES:
        raise ConfigError(f"unknown stage {name!r}; allowed: {', '.join(STAGE_MODULES)}")
    return importlib.import_module(STAGE_MODULES[name]).run
