"""Train every seed of a model, or restore it: finished seeds are cached by content.

Finished seeds live in `.cache/train/<key>/seed<k>/`, keyed by the full content hashes of the
manifest and input feature files, the model and train params and the code fingerprint of this
module, the model's module and every project module they import (the trainer and the training loop
among them), so DVC rerunning a text-only model after an audio swap restores its checkpoints instead
of retraining, and any edit to the code a model is trained with retrains it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.registry import get_model_class
from pipeline import paths
from pipeline.cache import stable_hash
from pipeline.code_fingerprint import code_fingerprint
from pipeline.file_hash import file_hash
from pipeline.training.config import ModelSpec, TrainConfig
from pipeline.training.data import DialogueData, load_dialogue_data
from pipeline.training.model_checkpoints import load_seed_result, save_seed
from pipeline.training.splits import Fold
from pipeline.training.trainer import EpochCallback, SeedResult, fit_seed


def code_version(kind: str) -> str:
    """Fingerprint of the code a trained model depends on: this module and the model's module (the
    registry imports it by name), with every project module either imports."""
    return code_fingerprint(__name__, get_model_class(kind).__module__)


def feature_fingerprints(inputs: Sequence[str]) -> dict[str, str]:
    """Full content hash of each input feature file."""
    return {key: file_hash(paths.features_path(key)) for key in inputs}


def cache_key(spec: ModelSpec, cfg: TrainConfig, fingerprints: Mapping[str, str], fold: Fold | None = None) -> str:
    """Content key of a model's training run: manifest, its own input files, params and code (and fold)."""
    identity = {
        "manifest": file_hash(paths.MANIFEST),
        "features": dict(fingerprints),
        "model": {"name": spec.name, **spec.params},
        "train": cfg.cache_identity(),
        "code": code_version(spec.kind),
    }
    if fold is not None:
        identity["fold"] = fold.identity()
    return stable_hash(identity, 24)


@dataclass
class TrainOutcome:
    spec: ModelSpec
    data: DialogueData
    results: list[SeedResult]
    cache_dir: Path | None


def checkpoint_config(spec: ModelSpec, cfg: TrainConfig, data: DialogueData, fingerprints: Mapping[str, str]) -> dict:
    """Everything needed to rebuild, check and explain a checkpoint, next to its weights."""
    return {
        "model": spec.name,
        "kind": spec.kind,
        "model_params": spec.params,
        "inputs": list(spec.inputs),
        "input_dims": data.input_dims,
        "labels": data.labels,
        "feature_stats": {k: s.to_json() for k, s in data.stats.items()},
        "features": {
            k: {"fingerprint": fingerprints[k], "metadata": data.feature_meta.get(k, {})} for k in spec.inputs
        },
        "train": cfg.cache_identity(),
        "code_version": code_version(spec.kind),
        "selection": "best epoch by dev weighted F1",
    }


def train_model(
    spec: ModelSpec,
    cfg: TrainConfig,
    on_epoch: EpochCallback | None = None,
    on_seed: Callable[[SeedResult], None] | None = None,
    use_cache: bool = True,
    cache_root: Path | None = None,
    out_dir: Path | None = None,
    fold: Fold | None = None,
) -> TrainOutcome:
    """Train (or restore from the content cache) every seed and write `artifacts/models/<name>/seed<k>/`.

    A restored seed replays its stored learning curve through `on_epoch`, so logs look the same
    whether a seed was trained now or before. With a `fold`, its splits replace the manifest's.
    """
    fingerprints = feature_fingerprints(spec.inputs)
    split_of = fold.split_of if fold is not None else None
    data = load_dialogue_data(spec.inputs, split_of=split_of, **spec.sequences.loader_kwargs())
    config = checkpoint_config(spec, cfg, data, fingerprints)
    if fold is not None:
        config["fold"] = fold.identity()
    key = cache_key(spec, cfg, fingerprints, fold)
    cache_dir = (cache_root or paths.CACHE_DIR / "train") / key if use_cache else None
    out_dir = out_dir or paths.MODELS_DIR / spec.name
    shutil.rmtree(out_dir, ignore_errors=True)
    results = []
    for seed in cfg.seeds:
        seed_dir = out_dir / f"seed{seed}"
        cached = load_seed_result(cache_dir / f"seed{seed}") if cache_dir is not None else None
        if cached is not None:
            if on_epoch is not None:
                for record in cached.history:
                    on_epoch(seed, record)
            shutil.copytree(cache_dir / f"seed{seed}", seed_dir)
            result = cached
        else:
            result = fit_seed(spec, data, cfg, seed, on_epoch)
            if cache_dir is not None:
                save_seed(cache_dir / f"seed{seed}", result, config)
            save_seed(seed_dir, result, config)
            result.state = {}  # written; do not hold every seed's weights in memory
        results.append(result)
        if on_seed is not None:
            on_seed(result)
    return TrainOutcome(spec, data, results, cache_dir)
