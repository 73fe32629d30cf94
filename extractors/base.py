"""The extractor contract: what every feature extractor declares, consumes and returns.

An extractor turns a batch of per-utterance inputs into one float32 vector per utterance. It is
built from its `params.yaml` block (`features.<key>`), validates that block at construction (so a
typo fails before any media is read), loads its weights lazily once per process, and never imports
the pipeline: the stage owns files, caching and failure records; the extractor owns the numbers.
"""

from __future__ import annotations

import json
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from core.device import DeviceError, check_device
from core.device import resolve_device as resolve

MODALITIES = ("text", "audio", "visual")
CONSUMES = ("text", "waveform", "face_frames", "full_frames")
SAMPLE_RATE = 16_000
DTYPES = ("float32", "float16", "bfloat16")


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
    """An utterance's text; `context` holds the previous (speaker, text) turns, oldest first, and
    `future` the following ones, nearest first (only extractors with `future_turns` ask for them)."""

    utt_id: str
    text: str
    speaker: str = ""
    context: tuple[tuple[str, str], ...] = ()
    future: tuple[tuple[str, str], ...] = ()


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
    `implicit_defaults` are options added after an extractor's first release: left out of
    `output_config()` while they hold their default, so existing caches and hashes stay valid.

    Extractors that can also return frame- or token-level features accept `sequence: true` and
    override `extract_with_sequences`; the stage then stores a `sequence` column ([T, D] per
    utterance, T capped by `max_sequence`).
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    consumes: ClassVar[str]
    options: ClassVar[Mapping[str, Any]] = {}
    runtime_options: ClassVar[tuple[str, ...]] = ()
    implicit_defaults: ClassVar[tuple[str, ...]] = ()

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
        body = {
            k: v for k, v in self.config.items()
            if k not in self.runtime_options and not (k in self.implicit_defaults and v == self.options.get(k))
        }
        return {"modality": self.modality, "name": self.name, **body}

    def weight_paths(self) -> dict[str, Path]:
        """Local files or folders the weights are read from, by name. Whoever caches this extractor's
        outputs hashes their full content with them, so weights retrained in place are not mistaken
        for the old ones (hub ids name immutable snapshots and need none)."""
        return {}

    @property
    def context_turns(self) -> int:
        """How many previous utterances of the dialogue a `text` extractor wants in `TextItem.context`."""
        return 0

    @property
    def future_turns(self) -> int:
        """How many following utterances a `text` extractor wants in `TextItem.future`."""
        return 0

    @property
    def frame_budget(self) -> int | None:
        """How many frames a visual extractor samples per utterance (None: all it is given); the stage
        decodes only that many when it reads full frames from the source video."""
        return None

    @property
    def wants_sequence(self) -> bool:
        """True when the block says `sequence: true` (the stage then stores the `sequence` column)."""
        return bool(self.config.get("sequence", False))

    # -- work ------------------------------------------------------------------------------------

    def load(self) -> None:  # noqa: B027 (optional hook)
        """Load weights now (they are otherwise loaded on first use); fail with ExtractorConfigError."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of each output vector."""

    def check(self, item: Item) -> None:  # noqa: B027 (optional hook)
        """Raise BadInput when one item cannot be featurised; called before batching."""

    @property
    def sequence_dim(self) -> int:
        """Width of each row of the `sequence` column (the vector dim unless an extractor differs)."""
        return self.dim

    @abstractmethod
    def extract(self, items: Sequence[Any]) -> np.ndarray:
        """Return [len(items), dim] float32. Raise BadInput naming the item if one is unusable."""

    def extract_with_sequences(self, items: Sequence[Any]) -> tuple[np.ndarray, list[np.ndarray] | None]:
        """Vectors plus, for extractors configured with `sequence: true`, one [T, D] array per item."""
        return self.extract(items), None


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


def bool_option(config: Mapping[str, Any], field: str) -> bool:
    value = config[field]
    if not isinstance(value, bool):
        raise ExtractorConfigError(field, f"must be true or false, got {value!r}")
    return value


def float_option(config: Mapping[str, Any], field: str, minimum: float = 0.0, allow_none: bool = False) -> float | None:
    value = config[field]
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= minimum:
        kind = f"a number > {minimum}" + (" or null" if allow_none else "")
        raise ExtractorConfigError(field, f"must be {kind}, got {value!r}")
    return float(value)


def int_list_option(config: Mapping[str, Any], field: str) -> list[int]:
    """An integer or a non-empty list of integers, returned as a list."""
    value = config[field]
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ExtractorConfigError(field, f"must be an integer or a non-empty list of integers, got {value!r}")
    return list(values)


def dtype_option(config: Mapping[str, Any], field: str = "dtype") -> str:
    return choice_option(config, field, DTYPES)


def sequence_options(config: Mapping[str, Any]) -> None:
    """Validate the shared `sequence` / `max_sequence` pair."""
    bool_option(config, "sequence")
    int_option(config, "max_sequence", minimum=1)


VISUAL_INPUTS = {"face": "face_frames", "full_frame": "full_frames"}


def visual_input_option(config: Mapping[str, Any], field: str = "input") -> str:
    """`face` (the active speaker's crops) or `full_frame` (whole frames, for corpora without usable
    faces); returns what the extractor then consumes."""
    return VISUAL_INPUTS[choice_option(config, field, VISUAL_INPUTS)]


def check_waveform(item: WaveformItem) -> np.ndarray:
    """Raise BadInput unless the item holds a non-empty, finite mono signal; returns it as an array."""
    samples = np.asarray(item.samples)
    if samples.ndim != 1:
        raise BadInput(f"expected a mono signal, got shape {samples.shape}")
    if samples.size == 0:
        raise BadInput("empty audio signal")
    if not np.isfinite(samples).all():
        raise BadInput("audio contains NaN or infinite samples")
    return samples


def check_frames(item: FramesItem) -> None:
    """Raise BadInput unless the item holds at least one RGB uint8 [H, W, 3] image."""
    if len(item.frames) == 0:
        raise BadInput("no frames")
    for frame in item.frames:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or min(frame.shape[:2]) == 0:
            raise BadInput(f"expected RGB uint8 [H, W, 3] frames, got {frame.dtype} {frame.shape}")


def device_option(config: Mapping[str, Any], field: str = "device") -> str:
    """A `device` option's spelling (`core.device` decides; this names the field in the error)."""
    try:
        return check_device(config[field])
    except DeviceError as error:
        raise ExtractorConfigError(field, error.reason) from error


def resolve_device(preference: str = "auto") -> str:
    """The torch device for an extractor: `auto` takes CUDA, then Apple MPS, then the CPU."""
    try:
        return resolve(preference, auto_mps=True)
    except DeviceError as error:
        raise ExtractorConfigError("device", error.reason) from error


def torch_dtype(name: str, device: str) -> Any:
    """The torch dtype for a `dtype` option; half precision only where the device runs it fast."""
    import torch

    if name != "float32" and not device.startswith("cuda"):
        warnings.warn(f"dtype {name} is only used on CUDA; computing in float32 on {device}", stacklevel=2)
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


# -- batching and sequences ----------------------------------------------------------------------


def length_batches(lengths: Sequence[int], batch_size: int, budget: int | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, so padding stays small).

    A batch holds at most `batch_size` items and, when `budget` is given, at most `budget` padded
    elements (longest length x count); an item longer than the budget forms a batch of its own.
    The grouping depends only on the lengths, so the same inputs always give the same batches.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[index]  # sorted ascending: the newcomer is the longest so far
        fits = len(current) < batch_size and (budget is None or longest * (len(current) + 1) <= budget)
        if current and not fits:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def cap_sequence(sequence: np.ndarray, max_length: int) -> np.ndarray:
    """[T, D] float32 with T <= max_length: longer sequences are average-pooled over equal time
    spans, so the whole utterance stays covered (truncation would drop its end)."""
    sequence = np.asarray(sequence, dtype=np.float32)
    if len(sequence) <= max_length:
        return sequence
    edges = np.linspace(0, len(sequence), num=max_length + 1).round().astype(int)
    return np.stack([sequence[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])]).astype(np.float32)


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
