"""Argument checks for model hyper-parameters: a bad value fails at construction, naming the key.

Models are built from keyword arguments rather than params blocks, so each check takes one value;
the rules and their wording are `core.config`'s, and the error is its `ConfigError` (a ValueError)
with the model's name in front. The trainer reports it against the model's params block.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from core.config import ConfigError, problem


def _checked(model: str, key: str, value: Any, kind: Any, **rules: Any) -> Any:
    detail = problem(value, kind, rules)
    if detail is not None:
        raise ConfigError(f"{model}: '{key}' {detail}", key, detail)
    return value


def choice(model: str, key: str, value: Any, allowed: Collection[str]) -> str:
    """`value` when it is one of `allowed`, else an error naming the key and the allowed values."""
    return str(_checked(model, key, value, str, choices=tuple(allowed)))


def positive_int(model: str, key: str, value: Any) -> int:
    return _checked(model, key, value, int, positive=True)


def positive_float(model: str, key: str, value: Any) -> float:
    return float(_checked(model, key, value, float, positive=True))


def non_negative(model: str, key: str, value: Any) -> float:
    return float(_checked(model, key, value, float, min=0))


def number(model: str, key: str, value: Any) -> float:
    return float(_checked(model, key, value, float))


def probability(model: str, key: str, value: Any) -> float:
    """A dropout rate in [0, 1)."""
    return float(_checked(model, key, value, float, min=0, below=1))


def flag(model: str, key: str, value: Any) -> bool:
    return _checked(model, key, value, bool)


def divisible(model: str, key: str, dim: int, heads: int) -> None:
    if dim % heads:
        detail = f"({heads}) must divide the hidden size ({dim})"
        raise ConfigError(f"{model}: '{key}' {detail}", key, detail)
