"""The `train:` block and one `models.<name>` block (with its sequence options), validated once so a bad
value fails before any data is read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core.config import parse_block, setting
from core.device import device_problem
from models.registry import check_hyper_parameters, get_model_class
from pipeline.config import ConfigError, section
from pipeline.device import resolve_device
from pipeline.tables import SEQUENCE_OVERFLOW
from pipeline.training.splits import FoldOptions


def parse_loss_weights(value: Any, key: str) -> dict[str, float]:
    """A `name -> weight >= 0` mapping (null = empty), failing by the params key otherwise."""
    value = value or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"params.yaml: '{key}' must map loss names to weights, got {value!r}")
    for name, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"params.yaml: '{key}.{name}' must be a number >= 0, got {weight!r}")
    return {str(k): float(v) for k, v in value.items()}


@dataclass(frozen=True)
class SequenceOptions:
    """A model block's `sequence_inputs`, `max_sequence_length` and `sequence_overflow`, validated."""

    inputs: tuple[str, ...] = ()
    max_length: int | None = None
    overflow: str = "truncate"
    speaker_normalise: tuple[str, ...] = ()  # inputs centred per speaker within each dialogue

    @classmethod
    def from_block(
        cls, block: Mapping[str, Any], name: str, inputs: Sequence[str], requires_sequences: bool = False
    ) -> SequenceOptions:
        """Fail by key on a bad value; `requires_sequences` (a model reading only sequences) needs all inputs listed."""
        chosen = block.get("sequence_inputs") or []
        names = isinstance(chosen, list) and all(isinstance(k, str) for k in chosen)
        if not names or len(set(chosen)) != len(chosen):
            raise ConfigError(
                f"params.yaml: 'models.{name}.sequence_inputs' must be a list of distinct input keys, got {chosen!r}"
            )
        unknown = [k for k in chosen if k not in inputs]
        if unknown:
            raise ConfigError(
                f"params.yaml: 'models.{name}.sequence_inputs' names {unknown}, "
                f"which are not among its inputs {list(inputs)}"
            )
        if requires_sequences and set(chosen) != set(inputs):
            raise ConfigError(
                f"params.yaml: 'models.{name}' reads frame/token sequences only: 'sequence_inputs' must list every "
                f"input {list(inputs)}, got {chosen}"
            )
        length = block.get("max_sequence_length")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length <= 0):
            raise ConfigError(
                f"params.yaml: 'models.{name}.max_sequence_length' must be a positive integer or null, got {length!r}"
            )
        overflow = block.get("sequence_overflow", "truncate")
        if overflow not in SEQUENCE_OVERFLOW:
            raise ConfigError(
                f"params.yaml: 'models.{name}.sequence_overflow' is {overflow!r}; "
                f"allowed values: {', '.join(SEQUENCE_OVERFLOW)}"
            )
        centred = block.get("speaker_normalise") or []
        if not isinstance(centred, list) or any(k not in inputs for k in centred):
            raise ConfigError(
                f"params.yaml: 'models.{name}.speaker_normalise' must list some of its inputs {list(inputs)}, "
                f"got {centred!r}"
            )
        return cls(tuple(chosen), length, overflow, tuple(centred))

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
    threads: int | None = setting(None, positive=True, runtime=True)  # torch CPU threads; small models: 1

    def __post_init__(self) -> None:
        clip = None if self.grad_clip in (None, 0) else float(self.grad_clip)
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "lr", float(self.lr))
        object.__setattr__(self, "weight_decay", float(self.weight_decay))
        object.__setattr__(self, "grad_clip", clip)
        object.__setattr__(self, "loss_weights", {str(k): float(v) for k, v in (self.loss_weights or {}).items()})

    @classmethod
    def for_model(cls, params: Mapping[str, Any], name: str) -> TrainConfig:
        """The shared `train:` block with the model's own `models.<name>.train:` overrides on top
        (e.g. a learning rate that suits one architecture), validated under the key a user edits."""
        shared = dict(section(params, "train"))
        block = (params.get("models") or {}).get(name) or {}
        overrides = block.get("train") or {}
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"params.yaml: 'models.{name}.train' must be a mapping of train keys, got {overrides!r}")
        return cls.from_params({**shared, **overrides}, f"models.{name}.train" if overrides else "train")

    @classmethod
    def from_params(cls, train: Mapping[str, Any], prefix: str = "train") -> TrainConfig:
        """The parsed block; also fails now, not after the data is loaded, on a device this machine lacks."""
        cfg = parse_block(cls, train, prefix)
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
        kind = block.get("kind")
        try:
            get_model_class(str(kind))
        except ValueError as error:
            raise ConfigError(f"params.yaml: 'models.{name}.kind' is {kind!r}: {error}") from None
        inputs = block.get("inputs")
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) and i for i in inputs):
            raise ConfigError(
                f"params.yaml: 'models.{name}.inputs' must be a non-empty list of feature keys, got {inputs!r}"
            )
        if len(set(inputs)) != len(inputs):
            raise ConfigError(f"params.yaml: 'models.{name}.inputs' lists a feature twice: {inputs!r}")
        try:
            check_hyper_parameters(str(kind), block)
        except ValueError as error:
            raise ConfigError(f"params.yaml: 'models.{name}': {error}") from None
        loss_weights = parse_loss_weights(block.get("loss_weights"), f"models.{name}.loss_weights")
        requires_sequences = bool(getattr(get_model_class(str(kind)), "requires_sequences", False))
        return cls(
            name=str(name),
            kind=str(kind),
            inputs=tuple(inputs),
            params=dict(block),
            loss_weights=loss_weights,
            sequences=SequenceOptions.from_block(block, str(name), inputs, requires_sequences),
            folds=FoldOptions.from_block(block, str(name)),
        )
