"""The `dataset.demo` block of params.yaml, checked once so bad values fail by key name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.config import ConfigError, parse_block, setting
from pipeline.datasets.demo.faces import EXPRESSIONS
from pipeline.datasets.demo.text import TEMPLATES
from pipeline.datasets.demo.voice import PROSODY

KEY = "dataset.demo"
MODALITIES = ("text", "audio", "visual")
# Emotions with a text, prosody and face cue; `labels` must be drawn from these.
KNOWN_EMOTIONS = tuple(e for e in TEMPLATES if e in PROSODY and e in EXPRESSIONS)
MAX_FACE = 140  # px; faces are LFW photos upscaled ~5x
MIN_FACE = 48  # px; smaller faces are unreliable for the face detector


def _range_problem(low: int, high: int) -> Any:
    def problem(value: Any) -> str | None:
        ok = (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
              and low <= value[0] <= value[1] <= high)
        return None if ok else f"must be [min, max] integers within {low}..{high}, got {value!r}"
    return problem


def _weights_problem(value: Any) -> str | None:
    ok = isinstance(value, Sequence) and not isinstance(value, str)
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)
    if not ok or sum(value) <= 0:
        return f"must be non-negative numbers with a positive sum, got {value!r}"
    return None


def _labels_problem(value: Any) -> str | None:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) < 2:
        return f"must list at least two emotions, got {value!r}"
    for label in value:
        if label not in KNOWN_EMOTIONS:
            return f"has {label!r}; allowed values: {', '.join(KNOWN_EMOTIONS)}"
    if len(set(value)) != len(value):
        return f"lists an emotion twice: {value!r}"
    return None


@dataclass(frozen=True)
class CueFidelity:
    """The probability that each modality shows the utterance's own label (else another label's cue)."""

    text: float = setting(min=0, max=1)
    audio: float = setting(min=0, max=1)
    visual: float = setting(min=0, max=1)

    def __post_init__(self) -> None:
        for modality in MODALITIES:
            object.__setattr__(self, modality, float(getattr(self, modality)))

    def of(self, modality: str) -> float:
        return float(getattr(self, modality))


@dataclass(frozen=True)
class DemoConfig:
    """Every key of `dataset.demo` (all required): what the generator renders, and how hard it is."""

    seed: int = setting(min=0)
    dialogues: int = setting(min=3)
    turns: tuple[int, int] = setting(check=_range_problem(1, 200))
    people: tuple[int, int] = setting(check=_range_problem(1, 4))
    labels: tuple[str, ...] = setting(check=_labels_problem)
    label_weights: tuple[float, ...] = setting(check=_weights_problem)  # one per label
    stay_probability: float = setting(min=0, max=1)
    cue_fidelity: CueFidelity
    split: tuple[float, float, float] = setting(check=_weights_problem)  # train, dev, test shares
    width: int = setting(min=64)
    height: int = setting(min=64)
    fps: float = setting(positive=True)

    def __post_init__(self) -> None:
        def keep(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        keep("turns", (int(self.turns[0]), int(self.turns[1])))
        keep("people", (int(self.people[0]), int(self.people[1])))
        keep("labels", tuple(self.labels))
        keep("label_weights", tuple(float(v) for v in self.label_weights))
        keep("stay_probability", float(self.stay_probability))
        keep("split", tuple(float(v) for v in self.split))
        keep("fps", float(self.fps))
        if len(self.label_weights) != len(self.labels):
            raise ConfigError.at("label_weights", f"must give {len(self.labels)} weights, one per label, "
                                 f"got {list(self.label_weights)}")
        if len(self.split) != 3 or min(self.split) <= 0:
            raise ConfigError.at("split", f"needs a positive train, dev and test share, got {list(self.split)}")
        for name in ("width", "height"):
            if getattr(self, name) % 2:
                raise ConfigError.at(name, f"must be even (H.264 yuv420p), got {getattr(self, name)}")
        if self.face_size < MIN_FACE:
            raise ConfigError.at("width", f"x height = {self.width}x{self.height} leaves faces of {self.face_size} px "
                                 f"for {self.people[1]} people; faces need at least {MIN_FACE} px")

    @property
    def face_size(self) -> int:
        """The largest face that fits: half the height, and most of a seat's width."""
        return int(min(MAX_FACE, self.height * 0.5, self.width * 0.85 / self.people[1]))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse(params: Any) -> DemoConfig:
    """Validate the `dataset.demo` mapping; raise ConfigError naming the first bad key."""
    return parse_block(DemoConfig, params, KEY)
