"""`benchmarks/gpu.py` puts every stage and extractor on the device and refuses a device that is absent."""

from __future__ import annotations

import copy

import pytest

from benchmarks.gpu import device_overrides, device_problem
from benchmarks.workspace import apply_overrides


def _devices(params: dict) -> list[str]:
    found = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "device":
                    found.append(f"{path}{key}={value}")
                walk(value, f"{path}{key}.")

    walk(params, "")
    return found


def test_every_device_key_of_params_is_set(base_params):
    params = apply_overrides(copy.deepcopy(base_params), device_overrides(base_params, "cuda:1"))
    devices = _devices(params)
    assert devices and all(entry.endswith("=cuda:1") for entry in devices), devices
    assert any(entry.startswith("features.") for entry in devices)


def test_an_absent_gpu_is_named_and_the_cpu_is_always_usable():
    import torch

    assert device_problem("cpu") is None
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert "no CUDA device" in device_problem("cuda")
