"""Choosing the torch device from a config value: `auto`, `cpu`, `cuda`, `cuda:<n>` or `mps`.

The one resolver of the project. The pipeline (`pipeline.device`) and the extractors
(`extractors.base`) call it and only turn a `DeviceError` into their own configuration error,
which names the key. `auto` takes CUDA when present, then Apple MPS where the caller allows it
(`auto_mps`: the Hugging Face extractors run there; the face detector and the trainers are used on
CUDA and CPU only), else the CPU. Naming a device this machine lacks is an error, never a silent
fallback.
"""

from __future__ import annotations

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:<index>", "mps")


class DeviceError(ValueError):
    """A device value is not allowed or not available; `reason` reads after the key that holds it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_device(value: object) -> str:
    """`value` if it names a device (no torch import: cheap enough for config validation)."""
    if value in ("auto", "cpu", "cuda", "mps") or (
        isinstance(value, str) and value.startswith("cuda:") and value[5:].isdigit()
    ):
        return str(value)
    raise DeviceError(f"is {value!r}; allowed values: {', '.join(DEVICE_CHOICES)}")


def device_problem(value: object) -> str | None:
    """What is wrong with `value` as a device name (None when it names one): a `setting(check=...)`."""
    try:
        check_device(value)
    except DeviceError as error:
        return error.reason
    return None


def resolve_device(value: object = "auto", *, auto_mps: bool = False) -> str:
    """The torch device for `value` (empty means `auto`); raises DeviceError for a missing one."""
    import torch

    value = check_device(value or "auto")
    mps = getattr(torch.backends, "mps", None)
    mps_available = bool(mps is not None and mps.is_available())
    if value.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"is {value!r} but no CUDA device is available; use auto or cpu")
    if value == "mps" and not mps_available:
        raise DeviceError("is 'mps' but no Apple GPU is available; use auto or cpu")
    if value != "auto":
        return value
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if auto_mps and mps_available else "cpu"
