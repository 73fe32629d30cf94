"""Choosing the compute device from a params value (`auto`, `cpu`, `cuda`, `cuda:1`)."""

from __future__ import annotations

from pipeline.config import ConfigError


def resolve_device(value: str, key: str) -> str:
    import torch

    value = str(value or "auto")
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cpu":
        return "cpu"
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"params.yaml: '{key}' is {value!r} but no CUDA device is available; use auto or cpu")
        return value
    raise ConfigError(f"params.yaml: '{key}' is {value!r}; allowed values: auto, cpu, cuda, cuda:<index>")
