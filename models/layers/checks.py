"""Argument checks for model hyper-parameters: a bad value fails at construction, naming the key.

Models cannot import the pipeline's ConfigError, so these raise ValueError; the trainer reports it
against the model's params block.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def choice(model: str, key: str, value: Any, allowed: Collection[str]) -> str:
    """`value` when it is one of `allowed`, else a ValueError naming the key and the allowed values."""
    if value not in allowed:
        raise ValueError(f"{model}: '{key}' is {value!r}; allowed values: {', '.join(map(str, allowed))}")
    return str(value)


def positive_int(model: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{model}: '{key}' must be a positive integer, got {value!r}")
    return value


def positive_float(model: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{model}: '{key}' must be a positive number, got {value!r}")
    return float(value)


def number(model: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{model}: '{key}' must be a number, got {value!r}")
    return float(value)


def probability(model: str, key: str, value: Any) -> float:
    """A dropout rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{model}: '{key}' must be a number in [0, 1), got {value!r}")
    return float(value)


def flag(model: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{model}: '{key}' must be true or false, got {value!r}")
    return value


def divisible(model: str, key: str, dim: int, heads: int) -> None:
    if dim % heads:
        raise ValueError(f"{model}: '{key}' ({heads}) must divide the hidden size ({dim})")
