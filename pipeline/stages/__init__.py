"""Stage registry: `python -m pipeline <stage> [arg]` runs `pipeline/stages/<stage>.py`'s `run`.

Every module in this folder is a stage named after its file, exposing `run(params, runner, arg) -> dict`
(a JSON-able summary): adding a stage is one file here plus its entry in `dvc.yaml`. Modules are
imported lazily so `python -m pipeline cut` does not pay for torch or transformers.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from pipeline.config import ConfigError

STAGE_MODULES = {info.name: f"{__name__}.{info.name}" for info in sorted(
    pkgutil.iter_modules(__path__), key=lambda info: info.name) if not info.name.startswith("_")}

StageFn = Callable[..., dict[str, Any]]


def get_stage(name: str) -> StageFn:
    if name not in STAGE_MODULES:
        raise ConfigError(f"unknown stage {name!r}; allowed: {', '.join(STAGE_MODULES)}")
    return importlib.import_module(STAGE_MODULES[name]).run
