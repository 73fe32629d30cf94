"""One device resolver (`core.device`) for stages, training and extractors; errors name the key that holds it."""

from __future__ import annotations

import pytest
import torch

from core.device import DeviceError, check_device, resolve_device
from extractors.base import ExtractorConfigError, device_problem
from extractors.base import resolve_device as extractor_device
from pipeline.config import ConfigError
from pipeline.device import resolve_device as params_device


@pytest.fixture
def machine(monkeypatch):
    """Pretend the machine has the given accelerators."""

    def have(cuda: bool = False, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return have


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_every_device_name_passes_the_spelling_check(value):
    assert check_device(value) == value


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "cuda1", "", None, 0])
def test_other_values_are_refused_naming_the_choices(value):
    with pytest.raises(DeviceError, match=r"allowed values: auto, cpu, cuda, cuda:<index>, mps"):
        check_device(value)


def test_auto_takes_cuda_then_mps_where_allowed_then_the_cpu(machine):
    machine(cuda=True, mps=True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    machine(cuda=False, mps=True)
    assert resolve_device("auto") == "cpu" and resolve_device("auto", auto_mps=True) == "mps"
    assert resolve_device("mps") == "mps" and resolve_device(None) == "cpu"
    machine()
    assert resolve_device("auto", auto_mps=True) == "cpu" and resolve_device("cpu") == "cpu"


def test_a_missing_device_is_an_error_not_a_fallback(machine):
    machine()
    with pytest.raises(DeviceError, match="'cuda:0' but no CUDA device is available"):
        resolve_device("cuda:0")
    with pytest.raises(DeviceError, match="no Apple GPU"):
        resolve_device("mps", auto_mps=True)


def test_the_pipeline_and_the_extractors_name_their_key(machine):
    machine()
    with pytest.raises(ConfigError, match=r"params.yaml: 'faces.device' is 'cuda' but no CUDA device"):
        params_device("cuda", "faces.device")
    with pytest.raises(ConfigError, match=r"params.yaml: 'train.device' is 'tpu'; allowed values"):
        params_device("tpu", "train.device")
    with pytest.raises(ExtractorConfigError, match=r"^device: is 'cuda' but no CUDA device") as caught:
        extractor_device("cuda")
    assert caught.value.field == "device"
    assert device_problem("gpu").startswith("is 'gpu'; allowed values") and device_problem("cuda:1") is None
    machine(mps=True)
    assert extractor_device("auto") == "mps" and params_device("auto", "train.device") == "cpu"
