"""A `refine.<name>` block (kind: mrd) and its curriculum block, validated by key, and the specs of its outputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import ConfigError, section
from pipeline.training.config import ModelSpec

REFINE_BLOCK = "refine"
TEXT_SUFFIX = "_text"
CLS_LOSSES = ("ce", "balanced", "focal")
CURRICULUM_MODES = ("pool", "order", "none")
OOF_MODES = ("auto", "always", "never")


def _number(block: Mapping[str, Any], key: str, where: str, default: float, minimum: float = 0.0) -> float:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"params.yaml: '{where}.{key}' must be a number >= {minimum}, got {value!r}")
    return float(value)


def _whole(block: Mapping[str, Any], key: str, where: str, default: int, minimum: int = 1) -> int:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"params.yaml: '{where}.{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _option(block: Mapping[str, Any], key: str, where: str, default: str, allowed: Sequence[str]) -> str:
    value = block.get(key, default)
    if value not in allowed:
        raise ConfigError(f"params.yaml: '{where}.{key}' is {value!r}; allowed values: {', '.join(allowed)}")
    return str(value)


def _flag(block: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = block.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"params.yaml: '{where}.{key}' must be true or false, got {value!r}")
    return value


def _known_keys(block: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
    unknown = sorted(set(block) - set(allowed))
    if unknown:
        raise ConfigError(
            f"params.yaml: '{where}' has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )


@dataclass(frozen=True)
class CurriculumConfig:
    """`refine.<name>.curriculum`: pool | order | none, linear pacing, out-of-fold categories, re-categorising."""

    mode: str = "pool"
    r0: float = 0.15
    step: int = 1
    oof: str = "auto"
    oof_folds: int = 5
    oof_threshold: float = 0.05
    dynamic: bool = False

    KEYS = ("mode", "r0", "step", "oof", "oof_folds", "oof_threshold", "dynamic")

    @classmethod
    def from_block(cls, block: Any, where: str) -> CurriculumConfig:
        block = {} if block is None else block
        if not isinstance(block, Mapping):
            raise ConfigError(f"params.yaml: '{where}' must be a mapping, got {block!r}")
        _known_keys(block, where, cls.KEYS)
        r0 = _number(block, "r0", where, 0.15)
        if not 0 < r0 <= 1:
            raise ConfigError(f"params.yaml: '{where}.r0' must be in (0, 1], got {r0!r}")
        threshold = _number(block, "oof_threshold", where, 0.05)
        if threshold > 1:
            raise ConfigError(f"params.yaml: '{where}.oof_threshold' must be in [0, 1], got {threshold!r}")
        return cls(
            mode=_option(block, "mode", where, "pool", CURRICULUM_MODES),
            r0=r0,
            step=_whole(block, "step", where, 1),
            oof=_option(block, "oof", where, "auto", OOF_MODES),
            oof_folds=_whole(block, "oof_folds", where, 5, minimum=2),
            oof_threshold=threshold,
            dynamic=_flag(block, "dynamic", where, False),
        )


@dataclass(frozen=True)
class MRDConfig:
    """One `refine.<name>` block (kind: mrd), validated by key."""

    name: str
    multimodal: str
    text: str
    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 3e-5
    temperature: float = 2.0
    alpha: float = 0.5
    beta: float = 0.5
    gamma: float = 0.5
    delta: float = 0.5
    kd_t2_scale: bool = False
    cls_loss: str = "ce"
    focal_gamma: float = 2.5
    backbone_aux: bool = False
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)

    KEYS = (
        "kind", "multimodal", "text", "epochs", "lr", "weight_decay", "temperature", "alpha", "beta", "gamma",
        "delta", "kd_t2_scale", "cls_loss", "focal_gamma", "backbone_aux", "curriculum",
    )  # fmt: skip

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
        block = blocks[name]
        if not isinstance(block, Mapping):
            raise ConfigError(f"params.yaml: '{where}' must be a mapping")
        _known_keys(block, where, cls.KEYS)
        _option(block, "kind", where, "mrd", ("mrd",))
        models = section(params, "models")
        for role in ("multimodal", "text"):
            target = block.get(role)
            if target not in models:
                raise ConfigError(
                    f"params.yaml: '{where}.{role}' is {target!r}; it must name a trained model: {', '.join(models)}"
                )
        if block["multimodal"] == block["text"]:
            raise ConfigError(f"params.yaml: '{where}': multimodal and text must be two different models")
        for output in (name, f"{name}{TEXT_SUFFIX}"):
            if output in models:
                raise ConfigError(f"params.yaml: '{where}' writes model {output!r}, which 'models' already defines")
        temperature = _number(block, "temperature", where, 2.0)
        if temperature <= 0:
            raise ConfigError(f"params.yaml: '{where}.temperature' must be > 0, got {temperature!r}")
        lr = _number(block, "lr", where, 1e-4)
        if lr <= 0:
            raise ConfigError(f"params.yaml: '{where}.lr' must be > 0, got {lr!r}")
        return cls(
            name=str(name),
            multimodal=str(block["multimodal"]),
            text=str(block["text"]),
            epochs=_whole(block, "epochs", where, 10),
            lr=lr,
            weight_decay=_number(block, "weight_decay", where, 3e-5),
            temperature=temperature,
            alpha=_number(block, "alpha", where, 0.5),
            beta=_number(block, "beta", where, 0.5),
            gamma=_number(block, "gamma", where, 0.5),
            delta=_number(block, "delta", where, 0.5),
            kd_t2_scale=_flag(block, "kd_t2_scale", where, False),
            cls_loss=_option(block, "cls_loss", where, "ce", CLS_LOSSES),
            focal_gamma=_number(block, "focal_gamma", where, 2.5),
            backbone_aux=_flag(block, "backbone_aux", where, False),
            curriculum=CurriculumConfig.from_block(block.get("curriculum"), f"{where}.curriculum"),
        )

    def identity(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
