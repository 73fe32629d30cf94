"""A trained dialogue model's seed folder, `artifacts/models/<model>/seed<k>/`, in the one checkpoint format.

`model.safetensors` (the dev-selected weights), `config.json` (kind, params, inputs, label order,
feature standardisation and fingerprints, so `load_checkpoint` rebuilds the model with nothing else)
and `history.json` (the learning curve). Folders written by earlier versions have the same layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from models.registry import build_model
from pipeline.checkpoints import load_module, read_config, read_document, save_checkpoint, weights_path
from pipeline.training.data import FeatureStats
from pipeline.training.trainer import SeedResult

HINT = "train the model first (dvc repro train@<model>)"


def save_seed(directory: str | Path, result: SeedResult, config: Mapping[str, Any]) -> None:
    """Write a seed's weights, its config (with the seed's summary) and its learning curve, atomically."""
    save_checkpoint(directory, {"model": result.state}, {**config, "seed": result.seed, **result.summary()},
                    documents={"history": result.history})


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    return read_config(directory, HINT)


def _build(config: Mapping[str, Any]) -> nn.Module:
    input_dims = {key: int(config["input_dims"][key]) for key in config["inputs"]}  # inputs fix the fusion order
    return build_model(config["kind"], config["model_params"], input_dims, len(config["labels"]))


def load_checkpoint(directory: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained model from its folder: the config names kind, params and input dims."""
    return load_module(directory, _build, device, HINT)


def feature_stats(config: Mapping[str, Any]) -> dict[str, FeatureStats]:
    """The train-split standardisation stored in a checkpoint config."""
    return {key: FeatureStats.from_json(value) for key, value in config["feature_stats"].items()}


def load_seed_result(directory: Path) -> SeedResult | None:
    """A finished seed's summary and curve (weights stay on disk), or None when the folder is incomplete."""
    try:
        config = read_checkpoint_config(directory)
        history = read_document(directory, "history")
        if not weights_path(directory).exists():
            return None
    except (OSError, ValueError):
        return None
    return SeedResult(
        config["seed"], config["best_epoch"], config["epochs_run"], config["dev"], history, {}, cached=True
    )
