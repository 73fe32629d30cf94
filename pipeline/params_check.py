"""Every block of `params.yaml` checked once, before any work: a typo or a bad value fails at once, by name.

`faces.sample_fsp: 3` would otherwise be ignored and the default used, silently, and `cut.max_seconds: 0`
would only fail once the stage runs. `check_params` parses the whole file with `core.config.parse_block`
against `BLOCKS` (the dataclass each block is declared by, found where the code that reads the block
lives) and hands the open-ended blocks to the registries that own them: each `features.<key>` to its
extractor's `Config`, each `models.<name>` to `ModelSpec` (its wiring keys, then its class's
constructor), each `refine.<name>` to `MRDConfig`. Checks that depend on the machine (is a CUDA device
there, does a file exist) stay with the stage that uses the value.

Under DVC it also checks that `dvc.yaml` still matches `params.yaml` where one follows from the other
(each model stage's feature files, the speaker stage's LipSyncNet dependency: `pipeline.dag`), so a
model whose `inputs` grew never trains against a DAG that would not rerun it when the new input changes.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.config import keys_block, parse_block
from pipeline.config import ConfigError

# Top-level key -> the class declaring the block ("module:Class", imported when checking); None: open-ended,
# checked below or by its owner.
BLOCKS: dict[str, str | type | None] = {
    "dataset": "pipeline.datasets:DatasetConfig",
    "cut": "pipeline.stages.cut:CutConfig",
    "faces": "pipeline.stages.faces:FacesConfig",
    "lipsync": "pipeline.lipsync_settings:LipSyncSettings",
    "speaker": "pipeline.stages.speaker:SpeakerConfig",
    "boundaries": "pipeline.stages.boundaries:BoundariesConfig",
    "asr_lm": "pipeline.stages.asr_lm:AsrLmConfig",
    "features": None,  # per extractor, below
    "finetune_text": "pipeline.stages.finetune_text:FinetuneConfig",
    "models": None,  # per model kind, below
    "refine": None,  # per procedure, below
    "train": "pipeline.training.config:TrainConfig",
    "run": "pipeline.runner:RunConfig",
    "video": "pipeline.video_readers:VideoConfig",
}


@functools.cache
def params_class() -> type:
    """The whole file as one block: each declared block a nested one, the open-ended ones free."""
    def declared(spec: str | type | None) -> Any:
        if spec is None:
            return Any
        if isinstance(spec, type):
            return spec
        module, name = spec.split(":")
        return getattr(importlib.import_module(module), name)

    return keys_block("Params", [(key, declared(spec)) for key, spec in BLOCKS.items()])


def _check_features(features: Any) -> None:
    from extractors.base import ExtractorConfigError
    from extractors.registry import extractor_class

    if not isinstance(features, Mapping):
        raise ConfigError(f"params.yaml: 'features' must map feature keys to extractor blocks, got {features!r}")
    for key, block in features.items():
        try:
            if not isinstance(block, Mapping) or "name" not in block:
                raise ExtractorConfigError("name", "missing: every extractor block names its extractor")
            extractor_class(block["name"])(block)
        except ExtractorConfigError as error:
            raise error.within(f"features.{key}") from error


def _check_models(params: Mapping[str, Any]) -> None:
    """Every model block, its `train:` overrides merged over `train`, and the names of its loss weights."""
    from models.registry import get_model_class
    from pipeline.training.config import ModelSpec, TrainConfig

    models = params["models"]
    if not isinstance(models, Mapping):
        raise ConfigError(f"params.yaml: 'models' must map model names to blocks, got {models!r}")
    known_somewhere = {"ce"}
    for name in models:
        spec = ModelSpec.from_params({"models": models}, name)
        known = {"ce", *getattr(get_model_class(spec.kind), "default_loss_weights", {})}
        known_somewhere |= known
        _check_loss_names(spec.loss_weights, known, f"models.{name}.loss_weights", spec.kind)
        if "train" in params:
            TrainConfig.for_model(params, name, check_device=False)
            overrides = ((models[name] or {}).get("train") or {}).get("loss_weights") or {}
            _check_loss_names(overrides, known, f"models.{name}.train.loss_weights", spec.kind)
    train = params.get("train")
    shared = (train.get("loss_weights") or {}) if isinstance(train, Mapping) else {}
    _check_loss_names(shared, known_somewhere, "train.loss_weights", "any configured model")


def _check_loss_names(weights: Mapping[str, Any], known: set[str], where: str, owner: str) -> None:
    """A misspelt loss name would silently leave that loss at weight 1: name it instead."""
    unknown = sorted(set(weights) - known)
    if unknown:
        raise ConfigError(f"params.yaml: '{where}' names {unknown[0]!r}, which is no loss of {owner}; "
                          f"its losses: {', '.join(sorted(known))}")


def _check_refinements(params: Mapping[str, Any]) -> None:
    from pipeline.training.mrd.config import MRDConfig, refinements

    for name in refinements(params):
        MRDConfig.from_params(params, name)


def check_params(params: Mapping[str, Any], dvc_yaml: Path | None = None, stage: str | None = None) -> list[str]:
    """Raise ConfigError naming the first unknown key (and the allowed ones) or bad value in `params`.

    With `dvc_yaml`, also raise when that file misses a dependency `params` implies, and return
    warnings for `stage`'s needless ones (they only cost reruns).
    """
    parse_block(params_class(), params)
    if "features" in params:
        _check_features(params["features"])
    if "models" in params:
        _check_models(params)
    if "refine" in params:
        _check_refinements(params)
    if dvc_yaml is None:
        return []
    from pipeline.dag import check

    return check(params, dvc_yaml, stage)
