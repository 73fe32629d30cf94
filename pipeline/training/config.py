"""The `train:` block and one `models.<name>` block (with its sequence options), validated once so a bad
value fails before any data is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core.config import parse_block, setting
from core.device import device_problem
from models.registry import NON_HYPER_KEYS, check_hyper_parameters, get_model_class
from pipeline.config import ConfigError, section
from pipeline.device import resolve_device
from pipeline.tables import SEQUENCE_OVERFLOW
from pipeline.training.optimisers import OPTIMISERS
from pipeline.training.splits import FOLD_KINDS, FoldOptions


def _distinct_keys_problem(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(k, str) and k for k in value) and len(set(value)) == len(value):
        return None
    return f"must be a list of distinct feature keys, got {value!r}"


def _kind_problem(value: Any) -> str | None:
    try:
        get_model_class(str(value))
    except ValueError as error:
        return f"is {value!r}: {error}"
    return None


@dataclass(frozen=True)
class ModelWiring:
    """The keys of a `models.<name>` block that wire a model into the pipeline (`NON_HYPER_KEYS`):
    its kind, the feature keys it reads and how, its loss weights, training overrides and evaluation
    folds. The block's other keys are the network's hyper-parameters, checked by its class."""

    kind: str = setting(check=_kind_problem)
    inputs: list[str] = setting(check=lambda value: _distinct_keys_problem(value) or (
        None if value else "must name at least one feature key"))
    loss_weights: dict[str, float] | None = setting(None, min=0)  # override `train.loss_weights` for this model
    train: dict[str, Any] | None = None  # per-model `train` overrides, parsed by TrainConfig.for_model
    sequence_inputs: list[str] | None = setting(None, check=lambda value: _distinct_keys_problem(value or []))
    max_sequence_length: int | None = setting(None, positive=True)
    sequence_overflow: str = setting("truncate", choices=SEQUENCE_OVERFLOW)
    speaker_normalise: list[str] | None = None  # inputs centred per speaker within each dialogue
    folds: str | None = setting(None, choices=FOLD_KINDS)  # null: the manifest's split
    fold_dev_fraction: float = setting(0.1, above=0, below=1)

    def __post_init__(self) -> None:
        for key in ("sequence_inputs", "speaker_normalise"):
            unknown = [k for k in getattr(self, key) or [] if k not in self.inputs]
            if unknown:
                raise ConfigError.at(key, f"names {unknown}, which are not among its inputs {self.inputs}")

    @classmethod
    def parse(cls, block: Mapping[str, Any], name: str) -> ModelWiring:
        wiring = {key: value for key, value in block.items() if key in NON_HYPER_KEYS}
        return parse_block(cls, wiring, f"models.{name}")


@dataclass(frozen=True)
class SequenceOptions:
    """How a model's inputs are loaded: which as frame/token sequences, capped how, centred per speaker."""

    inputs: tuple[str, ...] = ()
    max_length: int | None = None
    overflow: str = "truncate"
    speaker_normalise: tuple[str, ...] = ()  # inputs centred per speaker within each dialogue

    @classmethod
    def of(cls, wiring: ModelWiring) -> SequenceOptions:
        return cls(tuple(wiring.sequence_inputs or ()), wiring.max_sequence_length, wiring.sequence_overflow,
                   tuple(wiring.speaker_normalise or ()))

    def loader_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `load_dialogue_data` for these options."""
        return {
            "sequence_inputs": self.inputs,
            "max_sequence_length": self.max_length,
            "sequence_overflow": self.overflow,
            "speaker_normalise": self.speaker_normalise,
        }


def _seeds_problem(value: Any) -> str | None:
    seeds = isinstance(value, list) and value and all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    if not seeds:
        return f"must be a non-empty list of integers >= 0, got {value!r}"
    if len(set(value)) != len(value):
        return f"lists a seed twice: {value!r}"
    return None


def _grad_clip_problem(value: Any) -> str | None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if value is None or number and value >= 0:
        return None
    return f"must be a number > 0 (0 or null: no clipping), got {value!r}"


# Keys added after the first release: at their default they stay out of `cache_identity`, so old caches stay valid.
LATER_KEY_DEFAULTS: dict[str, Any] = {"optimizer": "adamw", "momentum": 0.9, "lr_groups": {}, "warmup_steps": 0,
                                      "batch_utterances": None}


@dataclass(frozen=True)
class TrainConfig:
    """The shared `train:` block, validated once so a bad value fails before any data is read.

    Numbers are kept as floats and `seeds` as a tuple after parsing, so a block written with `lr: 1`
    and one with `lr: 1.0` train (and cache) the same run.
    """

    seeds: tuple[int, ...] = setting(check=_seeds_problem)
    epochs: int = setting(positive=True)
    patience: int = setting(positive=True)
    batch_dialogues: int = setting(positive=True)
    lr: float = setting(positive=True)
    weight_decay: float = setting(min=0)
    grad_clip: float | None = setting(None, check=_grad_clip_problem)  # 0 or null: no clipping
    device: str = setting("auto", check=device_problem)
    amp: bool = False
    loss_weights: dict[str, float] | None = setting(factory=dict, min=0)
    optimizer: str = setting("adamw", choices=OPTIMISERS, omit_default=True)  # see pipeline/training/optimisers.py
    momentum: float = setting(0.9, min=0, omit_default=True)  # sgd only
    lr_groups: dict[str, float] = setting(factory=dict, positive=True, omit_default=True)  # parameter prefix -> lr
    warmup_steps: int = setting(0, min=0, omit_default=True)  # linear warm-up over this many optimiser steps
    # train on shuffled batches of this many utterances instead of whole dialogues (utterance-level models only)
    batch_utterances: int | None = setting(None, positive=True, omit_default=True)
    threads: int | None = setting(None, positive=True, runtime=True)  # torch CPU threads; small models: 1

    def __post_init__(self) -> None:
        clip = None if self.grad_clip in (None, 0) else float(self.grad_clip)
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        object.__setattr__(self, "grad_clip", clip)
        object.__setattr__(self, "loss_weights", {str(k): float(v) for k, v in (self.loss_weights or {}).items()})
        object.__setattr__(self, "momentum", float(self.momentum))
        object.__setattr__(self, "lr_groups", {str(k): float(v) for k, v in (self.lr_groups or {}).items()})

    @classmethod
    def for_model(cls, params: Mapping[str, Any], name: str, check_device: bool = True) -> TrainConfig:
        """The shared `train:` block with the model's own `models.<name>.train:` overrides on top
        (e.g. a learning rate that suits one architecture), validated under the key a user edits."""
        shared = dict(section(params, "train"))
        block = (params.get("models") or {}).get(name) or {}
        overrides = block.get("train") or {}
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"params.yaml: 'models.{name}.train' must be a mapping of train keys, got {overrides!r}")
        where = f"models.{name}.train" if overrides else "train"
        cfg = cls.from_params({**shared, **overrides}, where, check_device)
        if cfg.batch_utterances is not None and block.get("kind") is not None:
            model_class = get_model_class(str(block["kind"]))
            if not getattr(model_class, "utterance_level", False):
                raise ConfigError.at(
                    f"{where}.batch_utterances",
                    f"is {cfg.batch_utterances}, but models.{name} (kind {block['kind']}) reads dialogue context: "
                    "utterance batches would cut it; leave batch_utterances null (whole dialogues) for this model")
        return cfg

    @classmethod
    def from_params(cls, train: Mapping[str, Any], prefix: str = "train", check_device: bool = True
                    ) -> TrainConfig:
        """The parsed block; also fails now, not after the data is loaded, on a device this machine lacks
        (unless `check_device` is off: the start-of-stage check of every block runs on any machine)."""
        cfg = parse_block(cls, train, prefix)
        if check_device:
            resolve_device(cfg.device, f"{prefix}.device")
        return cfg

    def apply_threads(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)

    def cache_identity(self) -> dict[str, Any]:
        """What a seed's result depends on (the seed list itself does not: adding a seed trains one)."""
        identity = asdict(self)
        identity.pop("seeds")
        identity.pop("threads")
        for key, default in LATER_KEY_DEFAULTS.items():
            if identity[key] == default:
                identity.pop(key)
        return identity


@dataclass(frozen=True)
class ModelSpec:
    """One `models.<name>` block: registry kind, input feature keys, and the whole block.

    `loss_weights` (the block's optional `loss_weights`) override `train.loss_weights` for this model.
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    params: dict[str, Any]
    loss_weights: dict[str, float] = field(default_factory=dict)
    sequences: SequenceOptions = field(default_factory=SequenceOptions)  # inputs read as frame/token sequences
    folds: FoldOptions | None = None  # None: the manifest's split; else e.g. leave-one-session-out

    @classmethod
    def from_params(cls, params: Mapping[str, Any], name: str | None) -> ModelSpec:
        configured = section(params, "models")
        if not isinstance(configured, Mapping) or not configured:
            raise ConfigError("params.yaml: 'models' must map model names to their blocks")
        if name not in configured:
            raise ConfigError(
                f"params.yaml: 'models' has no model {name!r}; configured models: {', '.join(map(str, configured))}"
            )
        block = configured[name]
        if not isinstance(block, Mapping):
            raise ConfigError(f"params.yaml: 'models.{name}' must be a mapping")
        wiring = ModelWiring.parse(block, str(name))
        try:
            check_hyper_parameters(wiring.kind, block)
        except ValueError as error:
            raise ConfigError(f"params.yaml: 'models.{name}': {error}") from None
        sequences = SequenceOptions.of(wiring)
        if getattr(get_model_class(wiring.kind), "requires_sequences", False) and \
                set(sequences.inputs) != set(wiring.inputs):
            raise ConfigError(
                f"params.yaml: 'models.{name}' reads frame/token sequences only: 'sequence_inputs' must list every "
                f"input {wiring.inputs}, got {list(sequences.inputs)}"
            )
        folds = None if wiring.folds is None else FoldOptions(wiring.folds, float(wiring.fold_dev_fraction))
        return cls(
            name=str(name),
            kind=wiring.kind,
            inputs=tuple(wiring.inputs),
            params=dict(block),
            loss_weights={str(k): float(v) for k, v in (wiring.loss_weights or {}).items()},
            sequences=sequences,
            folds=folds,
        )
