"""A `refine.<name>` block (kind: mrd) and its curriculum block, validated by key, and the specs of its outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.config import parse_block, setting
from pipeline.config import ConfigError, section
from pipeline.training.config import ModelSpec

REFINE_BLOCK = "refine"
TEXT_SUFFIX = "_text"
CLS_LOSSES = ("ce", "balanced", "focal")
CURRICULUM_MODES = ("pool", "order", "none")
OOF_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class CurriculumConfig:
    """`refine.<name>.curriculum`: pool | order | none, linear pacing, out-of-fold categories, re-categorising."""

    mode: str = setting("pool", choices=CURRICULUM_MODES)
    r0: float = setting(0.15, above=0, max=1)
    step: int = setting(1, min=1)
    oof: str = setting("auto", choices=OOF_MODES)
    oof_folds: int = setting(5, min=2)
    oof_threshold: float = setting(0.05, min=0, max=1)
    dynamic: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "r0", float(self.r0))
        object.__setattr__(self, "oof_threshold", float(self.oof_threshold))


# The block's numbers that are stored as floats, so `alpha: 1` and `alpha: 1.0` are the same run.
_FLOATS = ("lr", "weight_decay", "temperature", "alpha", "beta", "gamma", "delta", "focal_gamma")


@dataclass(frozen=True)
class MRDConfig:
    """One `refine.<name>` block (kind: mrd), validated by key; `name` is the block's own name."""

    multimodal: str = setting(non_empty=True)
    text: str = setting(non_empty=True)
    kind: str = setting("mrd", choices=("mrd",))
    epochs: int = setting(10, min=1)
    lr: float = setting(1e-4, positive=True)
    weight_decay: float = setting(3e-5, min=0)
    temperature: float = setting(2.0, positive=True)
    alpha: float = setting(0.5, min=0)
    beta: float = setting(0.5, min=0)
    gamma: float = setting(0.5, min=0)
    delta: float = setting(0.5, min=0)
    kd_t2_scale: bool = False
    cls_loss: str = setting("ce", choices=CLS_LOSSES)
    focal_gamma: float = setting(2.5, min=0)
    backbone_aux: bool = False
    curriculum: CurriculumConfig | None = field(default_factory=CurriculumConfig)  # null: the defaults
    name: str = setting("", check=lambda value: "is the block's own name in 'refine', not a key")

    def __post_init__(self) -> None:
        for key in _FLOATS:
            object.__setattr__(self, key, float(getattr(self, key)))
        if self.curriculum is None:
            object.__setattr__(self, "curriculum", CurriculumConfig())
        if self.multimodal == self.text:
            raise ConfigError.at("text", "must name a different model from 'multimodal'")

    @property
    def text_output(self) -> str:
        return f"{self.name}{TEXT_SUFFIX}"

    @classmethod
    def from_params(cls, params: Mapping[str, Any], name: str | None) -> MRDConfig:
        blocks = refinements(params)
        if name not in blocks:
            raise ConfigError(
                f"params.yaml: '{REFINE_BLOCK}' has no block {name!r}; configured: {', '.join(blocks) or '(none)'}"
            )
        where = f"{REFINE_BLOCK}.{name}"
        cfg = dataclasses.replace(parse_block(cls, blocks[name], where), name=str(name))
        models = section(params, "models")
        for role in ("multimodal", "text"):
            target = getattr(cfg, role)
            if target not in models:
                raise ConfigError(
                    f"params.yaml: '{where}.{role}' is {target!r}; it must name a trained model: {', '.join(models)}"
                )
        for output in (cfg.name, cfg.text_output):
            if output in models:
                raise ConfigError(f"params.yaml: '{where}' writes model {output!r}, which 'models' already defines")
        return cfg

    def identity(self) -> dict[str, Any]:
        """What the refinement's result depends on, in the order and form its records have always used."""
        identity = {"name": self.name, **dataclasses.asdict(self)}
        identity.pop("kind")
        return identity


def refinements(params: Mapping[str, Any]) -> dict[str, Any]:
    """The `refine` block (refinement procedures over trained models), empty when absent."""
    blocks = params.get(REFINE_BLOCK) or {}
    if not isinstance(blocks, Mapping):
        raise ConfigError(f"params.yaml: '{REFINE_BLOCK}' must map names to refinement blocks")
    return dict(blocks)


def resolve_model_spec(params: Mapping[str, Any], name: str | None) -> ModelSpec:
    """The spec of a trained model: a `models` block, or one of a refinement's outputs.

    `<refine name>` is the refined multimodal model and `<refine name>_text` the refined text model;
    each has its input model's kind, inputs and hyper-parameters under its own name.
    """
    for key in refinements(params):
        if name in (key, f"{key}{TEXT_SUFFIX}"):
            cfg = MRDConfig.from_params(params, key)
            base = ModelSpec.from_params(params, cfg.multimodal if name == key else cfg.text)
            return dataclasses.replace(base, name=str(name))
    return ModelSpec.from_params(params, name)
