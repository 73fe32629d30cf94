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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from core.config import ConfigError, as_block, parse_block, recorded, setting
from core.device import DeviceError, device_problem
from core.device import resolve_device as resolve

MODALITIES = ("text", "audio", "visual")
CONSUMES = ("text", "waveform", "face_frames", "full_frames")
SAMPLE_RATE = 16_000
DTYPES = ("float32", "float16", "bfloat16")


class ExtractorConfigError(ConfigError):
    """A config field is unknown or invalid; `field` names it so callers can report it under the
    block's params path (`error.within("features.<key>")`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field, message)
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (ExtractorConfigError, (self.field, self.message))


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


@dataclass(frozen=True)
class NoSettings:
    """The settings of an extractor that has none."""


class Extractor(ABC):
    """Base class: subclasses set the class attributes, `Config`, `dim` and `extract`.

    `Config` is a dataclass declaring every accepted field of the params block with its default and
    rules (`core.config.setting`); `modality` and `name` are always accepted. Fields marked `runtime`
    change speed or placement but not the numbers (batch size, device): they are left out of
    `output_config()`, so changing them reuses caches. Fields marked `omit_default` were added after
    an extractor's first release: left out of `output_config()` while they hold their default, so
    existing caches and hashes stay valid.

    Extractors that can also return frame- or token-level features accept `sequence: true` and
    override `extract_with_sequences`; the stage then stores a `sequence` column ([T, D] per
    utterance, T capped by `max_sequence`).
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    consumes: ClassVar[str]
    Config: ClassVar[type] = NoSettings

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        block = dict(config or {})
        for field, expected in (("modality", self.modality), ("name", self.name)):
            given = block.pop(field, expected)
            if given != expected:
                raise ExtractorConfigError(field, f"is {given!r} but extractor {self.name!r} has {field} {expected!r}")
        try:
            self.settings: Any = parse_block(self.Config, block)
        except ConfigError as error:
            field = str(error.key)
            if error.allowed is not None:
                allowed = ", ".join(["modality", "name", *error.allowed])
                raise ExtractorConfigError(field, f"unknown option for extractor {self.name!r}; allowed: {allowed}") \
                    from None
            raise ExtractorConfigError(field, str(error.detail)) from None

    # -- configuration -------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """Every setting, defaults filled in (the feature file records it)."""
        return as_block(self.settings)

    def output_config(self) -> dict[str, Any]:
        """The config fields that determine the output vectors (used for cache keys and hashes)."""
        return {"modality": self.modality, "name": self.name, **recorded(self.settings)}

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
        return bool(getattr(self.settings, "sequence", False))

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


# -- settings every extractor family shares ---------------------------------------------------------

VISUAL_INPUTS = {"face": "face_frames", "full_frame": "full_frames"}  # `input:` -> what is consumed


def device_setting() -> Any:
    """`device:` (default auto): placement only, so never part of `output_config()`."""
    return setting("auto", check=device_problem, runtime=True)


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
