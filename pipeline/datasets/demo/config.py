"""The `dataset.demo` block of params.yaml, checked once so bad values fail by key name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.config import ConfigError, positive
from pipeline.datasets.demo.faces import EXPRESSIONS
from pipeline.datasets.demo.text import TEMPLATES
from pipeline.datasets.demo.voice import PROSODY

KEY = "dataset.demo"
MODALITIES = ("text", "audio", "visual")
# Emotions with a text, prosody and face cue; `labels` must be drawn from these.
KNOWN_EMOTIONS = tuple(e for e in TEMPLATES if e in PROSODY and e in EXPRESSIONS)
MAX_FACE = 140  # px; faces are LFW photos upscaled ~5x
MIN_FACE = 48  # px; smaller faces are unreliable for the face detector


@dataclass(frozen=True)
class DemoConfig:
    seed: int
    dialogues: int
    turns: tuple[int, int]
    people: tuple[int, int]
    labels: tuple[str, ...]
    label_weights: tuple[float, ...]
    stay_probability: float
    cue_fidelity: dict[str, float]
    split: tuple[float, float, float]
    width: int
    height: int
    fps: float

    @property
    def face_size(self) -> int:
        """The largest face that fits: half the height, and most of a seat's width."""
        return int(min(MAX_FACE, self.height * 0.5, self.width * 0.85 / self.people[1]))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(name: str) -> str:
    return f"{KEY}.{name}"


def _int(params: Mapping[str, Any], name: str, minimum: int) -> int:
    value = _get(params, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"params.yaml: '{_key(name)}' must be an integer >= {minimum}, got {value!r}")
    return value


def _get(params: Mapping[str, Any], name: str) -> Any:
    if name not in params:
        raise ConfigError(f"params.yaml: missing key '{_key(name)}'")
    return params[name]


def _range(params: Mapping[str, Any], name: str, low: int, high: int) -> tuple[int, int]:
    value = _get(params, name)
    ok = (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and low <= value[0] <= value[1] <= high
    )
    if not ok:
        raise ConfigError(
            f"params.yaml: '{_key(name)}' must be [min, max] integers within {low}..{high}, got {value!r}"
        )
    return int(value[0]), int(value[1])


def _probability(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"params.yaml: '{key}' must be a probability in [0, 1], got {value!r}")
    return float(value)


def _weights(value: Any, key: str, length: int) -> tuple[float, ...]:
    ok = isinstance(value, Sequence) and len(value) == length
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)
    if not ok or sum(value) <= 0:
        raise ConfigError(
            f"params.yaml: '{key}' must be {length} non-negative numbers with a positive sum, got {value!r}"
        )
    return tuple(float(v) for v in value)


def parse(params: Mapping[str, Any]) -> DemoConfig:
    """Validate the `dataset.demo` mapping; raise ConfigError naming the first bad key."""
    if not isinstance(params, Mapping):
        raise ConfigError(f"params.yaml: '{KEY}' must be a mapping")
    labels = _get(params, "labels")
    if not isinstance(labels, Sequence) or isinstance(labels, str) or len(labels) < 2:
        raise ConfigError(f"params.yaml: '{_key('labels')}' must list at least two emotions, got {labels!r}")
    for label in labels:
        if label not in KNOWN_EMOTIONS:
            raise ConfigError(
                f"params.yaml: '{_key('labels')}' has {label!r}; allowed values: {', '.join(KNOWN_EMOTIONS)}"
            )
    if len(set(labels)) != len(labels):
        raise ConfigError(f"params.yaml: '{_key('labels')}' lists an emotion twice: {labels!r}")
    fidelity = _get(params, "cue_fidelity")
    if not isinstance(fidelity, Mapping):
        raise ConfigError(f"params.yaml: '{_key('cue_fidelity')}' must map {', '.join(MODALITIES)} to probabilities")
    cues = {}
    for modality in MODALITIES:
        if modality not in fidelity:
            raise ConfigError(f"params.yaml: missing key '{_key('cue_fidelity')}.{modality}'")
        cues[modality] = _probability(fidelity[modality], f"{_key('cue_fidelity')}.{modality}")
    split = _weights(_get(params, "split"), _key("split"), 3)
    if min(split) <= 0:
        raise ConfigError(
            f"params.yaml: '{_key('split')}' needs a positive train, dev and test share, got {list(split)}"
        )
    width, height = _int(params, "width", 64), _int(params, "height", 64)
    for name, value in (("width", width), ("height", height)):
        if value % 2:
            raise ConfigError(f"params.yaml: '{_key(name)}' must be even (H.264 yuv420p), got {value}")
    config = DemoConfig(
        seed=_int(params, "seed", 0),
        dialogues=_int(params, "dialogues", 3),
        turns=_range(params, "turns", 1, 200),
        people=_range(params, "people", 1, 4),
        labels=tuple(labels),
        label_weights=_weights(_get(params, "label_weights"), _key("label_weights"), len(labels)),
        stay_probability=_probability(_get(params, "stay_probability"), _key("stay_probability")),
        cue_fidelity=cues,
        split=split,
        width=width,
        height=height,
        fps=float(positive(_get(params, "fps"), _key("fps"))),
    )
    if config.face_size < MIN_FACE:
        raise ConfigError(
            f"params.yaml: '{_key('width')}' x '{_key('height')}' = {width}x{height} leaves faces of "
            f"{config.face_size} px for {config.people[1]} people; faces need at least {MIN_FACE} px"
        )
    return config
