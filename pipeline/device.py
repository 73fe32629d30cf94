"""The compute device for a params value (`auto`, `cpu`, `cuda`, `cuda:1`, `mps`), failing by params key.

`core.device` resolves; this only names the `params.yaml` key in the error.
"""

from __future__ import annotations

from core.device import DeviceError
from core.device import resolve_device as resolve
from pipeline.config import ConfigError


def resolve_device(value: str, key: str) -> str:
    try:
        return resolve(value)
    except DeviceError as error:
        raise ConfigError(f"params.yaml: '{key}' {error.reason}") from error
