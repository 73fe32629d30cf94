"""The extractor contract: what every feature extractor declares, consumes and returns.

An extractor turns a batch of per-utterance inputs into one float32 vector per utterance. It is
built from its `params.yaml` block (`features.<key>`), validates that block at construction (so a
typo fails before any media is read), loads its weights lazily once per process, and never imports
the pipeline: the stage owns files, caching and failure records; the extractor owns the numbers.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

MODALITIES = ("text", "audio", "visual")
CONSUMES = ("text", "waveform", "face_frames", "full_frames")
SAMPLE_RATE = 16_000


class ExtractorConfigError(ValueError):
    """A config field is unknown or invalid; `field` names it so callers can prefix the params path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class BadInput(ValueError):
    """One utterance's input cannot be featurised (empty text, too-short audio, no frames)."""


@dataclass(frozen=True)
class TextItem:
    """An utterance's text; `context` holds the previous (speaker, text) turns, oldest first."""

    utt_id: str
    text: str
    speaker: str = ""
    context: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class WaveformItem:
    """An utterance's audio: mono float32 samples in [-1, 1] at `sample_rate` (16 kHz in the pipeline)."""

    utt_id: str
    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE


@dataclass(frozen=True)
class FramesItem:
    """RGB uint8 images [H, W, 3] in time order: the active speaker's face crops, or full frames."""

    utt_id: str
    frames: Sequence[np.ndarray]


Item = TextItem | WaveformItem | FramesItem


class Extractor(ABC):
    """Base class: subclasses set the class attributes, `options`, `dim` and `extract`.

    `options` maps every accepted config field to its default; `modality` and `name` are always
    accepted. `runtime_options` are fields that change speed or placement but not the numbers
    (batch size, device): they are left out of `output_config()`, so changing them reuses caches.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    consumes: ClassVar[str]
    version: ClassVar[str]
    options: ClassVar[Mapping[str, Any]] = {}
    runtime_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = self._resolve(dict(config or {}))
        self.configure()

    # -- configuration -------------------------------------------------------------------------

    def _resolve(self, config: dict[str, Any]) -> dict[str, Any]:
        for field, expected in (("modality", self.modality), ("name", self.name)):
            given = config.pop(field, expected)
            if given != expected:
                raise ExtractorConfigError(field, f"is {given!r} but extractor {self.name!r} has {field} {expected!r}")
        unknown = sorted(set(config) - set(self.options))
        if unknown:
            allowed = ", ".join(["modality", "name", *self.options]) or "(none)"
            raise ExtractorConfigError(unknown[0], f"unknown option for extractor {self.name!r}; allowed: {allowed}")
        return {**self.options, **config}

    def configure(self) -> None:  # noqa: B027 (optional hook)
        """Validate `self.config` (raise ExtractorConfigError naming the field); no weights loaded here."""

    def output_config(self) -> dict[str, Any]:
        """The config fields that determine the output vectors (used for cache keys and hashes)."""
        body = {k: v for k, v in self.config.items() if k not in self.runtime_options}
        return {"modality": self.modality, "name": self.name, **body}

    @property
    def context_turns(self) -> int:
        """How many previous utterances of the dialogue a `text` extractor wants in `TextItem.context`."""
        return 0

    # -- work ------------------------------------------------------------------------------------

    def load(self) -> None:  # noqa: B027 (optional hook)
        """Load weights now (they are otherwise loaded on first use); fail with ExtractorConfigError."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of each output vector."""

    def check(self, item: Item) -> None:  # noqa: B027 (optional hook)
        """Raise BadInput when one item cannot be featurised; called before batching."""

    @abstractmethod
    def extract(self, items: Sequence[Any]) -> np.ndarray:
        """Return [len(items), dim] float32. Raise BadInput naming the item if one is unusable."""


# -- option helpers: each raises ExtractorConfigError naming the field -----------------------------


def int_option(config: Mapping[str, Any], field: str, minimum: int = 0, allow_none: bool = False) -> int | None:
    value = config[field]
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = f"an integer >= {minimum}" + (" or null" if allow_none else "")
        raise ExtractorConfigError(field, f"must be {kind}, got {value!r}")
    return value


def choice_option(config: Mapping[str, Any], field: str, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    value = config[field]
    if value not in allowed:
        raise ExtractorConfigError(field, f"is {value!r}; allowed values: {', '.join(allowed)}")
    return value


def str_option(config: Mapping[str, Any], field: str, allow_none: bool = True) -> str | None:
    value = config[field]
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        kind = "a non-empty string" + (" or null" if allow_none else "")
        raise ExtractorConfigError(field, f"must be {kind}, got {value!r}")
    return value


DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:<index>", "mps")


def device_option(config: Mapping[str, Any], field: str = "device") -> str:
    value = config[field]
    if value in ("auto", "cpu", "cuda", "mps") or (
        isinstance(value, str) and value.startswith("cuda:") and value[5:].isdigit()
    ):
        return value
    raise ExtractorConfigError(field, f"is {value!r}; allowed values: {', '.join(DEVICE_CHOICES)}")


def resolve_device(preference: str = "auto") -> str:
    """The best available torch device for `auto`, else the named one (which must exist)."""
    import torch

    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ExtractorConfigError("device", f"is {preference!r} but no CUDA device is available; use auto or cpu")
    if preference == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ExtractorConfigError("device", "is 'mps' but no Apple GPU is available; use auto or cpu")
    if preference != "auto":
        return preference
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


# -- process-wide model cache --------------------------------------------------------------------

T = TypeVar("T")
_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def cached_model(kind: str, key: Mapping[str, Any], loader: Callable[[], T]) -> T:
    """Load once per process and config: threads of one stage share the weights."""
    cache_key = kind + ":" + json.dumps(dict(key), sort_keys=True, default=str)
    with _MODELS_LOCK:
        if cache_key not in _MODELS:
            _MODELS[cache_key] = loader()
        return _MODELS[cache_key]


def clear_model_cache() -> None:
    """Drop every loaded model (tests, or a long-lived process switching configs)."""
    with _MODELS_LOCK:
        _MODELS.clear()
