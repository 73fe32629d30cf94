"""A trained model as `merc predict` uses it: its seeds, inputs, labels and the extractors of its features.

Everything comes from `artifacts/models/<name>/seed<k>/config.json`, which records, per input, the
metadata of the feature file it trained on: the extractor block and the hash of its identity (config
plus full-content hashes of its weights). `feature_blocks` rebuilds each extractor from that block
and refuses, naming the input and the reason, when this machine cannot load it or when what it would
load is not what the model was trained on, so a new video's features are made exactly as the
training features were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extractors import ExtractorConfigError, build_extractor
from pipeline.cache import stable_hash
from pipeline.config import ConfigError
from pipeline.extractor_identity import extractor_identity
from pipeline.training.config import ModelSpec
from pipeline.training.model_checkpoints import read_checkpoint_config


@dataclass(frozen=True)
class TrainedModel:
    name: str
    folder: Path
    seeds: tuple[Path, ...]  # seed folders, each a complete checkpoint
    config: dict[str, Any]  # the first seed's checkpoint config (inputs, labels, stats, feature metadata)

    @property
    def inputs(self) -> list[str]:
        return list(self.config["inputs"])

    @property
    def labels(self) -> list[str]:
        return list(self.config["labels"])

    def spec(self) -> ModelSpec:
        """The model block it was trained with (sequence inputs and the like come from it)."""
        return ModelSpec.from_params({"models": {self.name: self.config["model_params"]}}, self.name)


def load_trained(models_dir: Path, name: str) -> TrainedModel:
    """The model's seed folders and config, or ConfigError saying what to train."""
    folder = Path(models_dir) / name
    seeds = tuple(sorted(p for p in folder.glob("seed*") if (p / "config.json").is_file()))
    if not seeds:
        known = sorted(p.name for p in Path(models_dir).glob("*") if any(p.glob("seed*/config.json")))
        raise ConfigError(f"--model: no trained model {name!r} in {models_dir} (train it with "
                          f"`dvc repro train@{name}`); trained models: {', '.join(known) or 'none'}")
    return TrainedModel(name, folder, seeds, read_checkpoint_config(seeds[0]))


def feature_blocks(model: TrainedModel) -> dict[str, dict[str, Any]]:
    """`features.<key>` block per input, rebuilt from the training features' metadata and checked."""
    blocks: dict[str, dict[str, Any]] = {}
    for key in model.inputs:
        metadata = (model.config.get("features") or {}).get(key, {}).get("metadata") or {}
        block = metadata.get("config")
        if not block:
            raise ConfigError(f"--model {model.name}: its checkpoint records no extractor for input {key!r} "
                              "(trained before extractor configs were recorded); retrain it")
        try:
            extractor = build_extractor(dict(block))
            extractor.load()
        except (ExtractorConfigError, OSError, ImportError, ValueError) as error:
            raise ConfigError(f"--model {model.name}: input {key!r} needs extractor {block.get('name')!r} "
                              f"({_source(block)}), which this machine cannot load: {error}") from None
        expected = metadata.get("config_hash")
        if expected and stable_hash(extractor_identity(extractor)) != expected:
            raise ConfigError(f"--model {model.name}: input {key!r} was made by extractor {block.get('name')!r} "
                              f"({_source(block)}), but what loads here differs from it (other weights or code "
                              "settings); its features would not match the training features")
        blocks[key] = dict(block)
    return blocks


def _source(block: dict[str, Any]) -> str:
    source = block.get("model")
    return f"model {source}" if source else "its bundled model"
