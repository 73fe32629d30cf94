"""Every key of `params.yaml` checked once, before any work: a typo fails at once, by name.

`faces.sample_fsp: 3` would otherwise be ignored and the default used, silently. `check_params`
walks the whole file against `ALLOWED` (the keys each block accepts) and hands the open-ended
blocks to the registries that own them: each `features.<key>` to its extractor's options, each
`models.<name>` to its model class's constructor (plus the wiring keys every model shares), the
`lipsync.model` overrides to `LipSyncConfig`. Values are still checked by the stage that reads
them; this layer guarantees that no key is silently unread.

Under DVC it also checks that `dvc.yaml` still matches `params.yaml` where one follows from the other
(each model stage's feature files, the speaker stage's LipSyncNet dependency: `pipeline.dag`), so a
model whose `inputs` grew never trains against a DAG that would not rerun it when the new input changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError

ANY = None  # a sub-block whose keys another layer validates (or free-form by design)

ALLOWED: dict[str, Any] = {
    "dataset": {
        "name": ..., "root": ..., "media": ...,
        "demo": {"seed": ..., "dialogues": ..., "turns": ..., "people": ..., "labels": ..., "label_weights": ...,
                 "stay_probability": ..., "cue_fidelity": {"text": ..., "audio": ..., "visual": ...},
                 "split": ..., "width": ..., "height": ..., "fps": ...},
        "meld": {"csv": ANY, "clips": ANY},  # split names: checked by the MELD adapter
        "iemocap": {"labels": ..., "dev_dialogues": ..., "dev_seed": ..., "layout": ...},
        "table": {"path": ..., "columns": ANY},  # manifest fields: checked by the table adapter
    },
    "cut": {"sample_rate": ..., "max_seconds": ..., "min_seconds": ...},
    "faces": {"device": ..., "sample_fps": ..., "batch_size": ..., "min_face_size": ..., "threshold": ...,
              "iou_threshold": ..., "max_gap": ..., "min_track_samples": ..., "detect_width": ...},
    "lipsync": {"device": ..., "seed": ..., "splits": ..., "dev_fraction": ..., "max_utterances": ...,
                "min_coverage": ..., "bootstrap_margin": ..., "rounds": ..., "denoise_fraction": ...,
                "relabel_margin": ..., "steps": ..., "batch_size": ..., "lr": ..., "weight_decay": ...,
                "margin": ..., "alpha": ..., "multiway_weight": ..., "min_shift": ..., "max_shift": ...,
                "foreign": ..., "augment": {"flip": ..., "shift": ..., "scale": ..., "noise": ..., "reverse": ...},
                "score": ..., "max_offset": ..., "search_offset": ..., "model": ANY},
    "speaker": {"method": ..., "crop_size": ..., "max_crops": ..., "low_confidence": ..., "checkpoint": ...},
    "features": ANY,  # per extractor, below
    "finetune_text": {"encoder": ANY, "epochs": ..., "lr": ..., "weight_decay": ..., "warmup": ...,
                      "batch_size": ..., "grad_clip": ..., "seed": ..., "device": ...},
    "models": ANY,  # per model kind, below
    "refine": ANY,  # per procedure: checked by its spec (pipeline.training.mrd)
    "train": {"seeds": ..., "epochs": ..., "patience": ..., "batch_dialogues": ..., "lr": ..., "weight_decay": ...,
              "grad_clip": ..., "device": ..., "amp": ..., "threads": ..., "loss_weights": ANY},
    "run": {"workers": ..., "max_failure_ratio": ...},
}


def _walk(block: Any, allowed: Any, where: str) -> None:
    if allowed is ANY or allowed is ...:
        return
    if not isinstance(block, Mapping):
        raise ConfigError(f"params.yaml: '{where}' must be a mapping with keys {', '.join(allowed)}; got {block!r}")
    for key, value in block.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in allowed:
            raise ConfigError(f"params.yaml: unknown key '{path}'; allowed keys"
                              f"{' in ' + repr(where) if where else ''}: {', '.join(allowed)}")
        _walk(value, allowed[key], path)


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
            raise ConfigError(f"params.yaml: 'features.{key}.{error.field}' {error.message}") from error


def _check_models(models: Any) -> None:
    from models.registry import check_hyper_parameters

    if not isinstance(models, Mapping):
        raise ConfigError(f"params.yaml: 'models' must map model names to blocks, got {models!r}")
    for name, block in models.items():
        if not isinstance(block, Mapping) or "kind" not in block:
            raise ConfigError(f"params.yaml: 'models.{name}.kind' is missing: every model block names its kind")
        try:
            check_hyper_parameters(block["kind"], block)
        except ValueError as error:
            raise ConfigError(f"params.yaml: 'models.{name}': {error}") from error


def _check_lipsync_model(lipsync: Any) -> None:
    from models.lipsyncnet import LipSyncConfig

    overrides = (lipsync or {}).get("model") or {}
    try:
        LipSyncConfig.from_dict(dict(overrides))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"params.yaml: 'lipsync.model': {error}") from error


def check_params(params: Mapping[str, Any], dvc_yaml: Path | None = None, stage: str | None = None) -> list[str]:
    """Raise ConfigError naming the first unknown key (and the allowed ones) anywhere in `params`.

    With `dvc_yaml`, also raise when that file misses a dependency `params` implies, and return
    warnings for `stage`'s needless ones (they only cost reruns).
    """
    _walk(params, ALLOWED, "")
    if "features" in params:
        _check_features(params["features"])
    if "models" in params:
        _check_models(params["models"])
    if "lipsync" in params:
        _check_lipsync_model(params["lipsync"])
    if dvc_yaml is None:
        return []
    from pipeline.dag import check

    return check(params, dvc_yaml, stage)
