"""OpenSMILE acoustic features (eGeMAPS, ComParE, Interspeech challenge sets), no weights needed.

`level: functionals` gives the feature set's own utterance-level statistics (eGeMAPSv02: 88-d);
`level: lld` pools the frame-level low-level descriptors to mean and std per descriptor, for sets
whose functionals are too large or when a simpler summary is wanted; with `sequence: true` the
descriptor frames themselves (10 ms hop, capped by `max_sequence`) are kept as the `sequence`
column. IS10 functionals are the 1582-d paralinguistic vector the IEMOCAP feature files carry.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.config import ConfigError, setting
from extractors.base import BadInput, Extractor, WaveformItem, cached_model, cap_sequence, check_waveform

FEATURE_SETS = ("eGeMAPSv02", "ComParE_2016", "IS09", "IS10")
LEVELS = ("functionals", "lld")

# OpenSMILE warns and fills NaN for too-short audio; `_one` turns that into a per-utterance BadInput.
# A narrow module-level filter (not `catch_warnings`, which is not thread-safe).
warnings.filterwarnings("ignore", message="Segment too short", category=UserWarning)


@dataclass(frozen=True)
class OpenSmileConfig:
    feature_set: str = setting("eGeMAPSv02", choices=FEATURE_SETS)
    level: str = setting("functionals", choices=LEVELS)
    sequence: bool = setting(False, omit_default=True)
    max_sequence: int = setting(1000, min=1, omit_default=True)

    def __post_init__(self) -> None:
        if self.sequence and self.level != "lld":
            raise ConfigError.at("sequence", "needs level: lld (functionals are one vector per utterance)")


class OpenSmileExtractor(Extractor):
    name = "opensmile"
    modality = "audio"
    consumes = "waveform"
    Config = OpenSmileConfig

    def _smile(self) -> Any:
        """One configured `opensmile.Smile` per process; each call runs its own SMILE instance."""
        feature_set, level = self.settings.feature_set, self.settings.level

        def load() -> Any:
            import opensmile

            return opensmile.Smile(
                feature_set=opensmile.FeatureSet[feature_set],
                feature_level=(
                    opensmile.FeatureLevel.Functionals if level == "functionals"
                    else opensmile.FeatureLevel.LowLevelDescriptors
                ),
            )

        return cached_model("opensmile", {"feature_set": feature_set, "level": level}, load)

    def load(self) -> None:
        self._smile()

    @property
    def dim(self) -> int:
        names = len(self._smile().feature_names)
        return names if self.settings.level == "functionals" else 2 * names

    @property
    def sequence_dim(self) -> int:
        return len(self._smile().feature_names)

    def check(self, item: WaveformItem) -> None:
        check_waveform(item)

    def extract(self, items: Sequence[WaveformItem]) -> np.ndarray:
        return self.extract_with_sequences(items)[0]

    def extract_with_sequences(self, items: Sequence[WaveformItem]) -> tuple[np.ndarray, list[np.ndarray] | None]:
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        sequences = []
        for row, item in enumerate(items):
            self.check(item)
            out[row], frames = self._one(item)
            sequences.append(cap_sequence(frames, int(self.settings.max_sequence)))
        return out, (sequences if self.wants_sequence else None)

    def _one(self, item: WaveformItem) -> tuple[np.ndarray, np.ndarray]:
        """The utterance vector and the finite descriptor frames it came from."""
        # OpenSMILE converts to int16 internally: clip so loud peaks saturate instead of wrapping.
        signal = np.clip(np.asarray(item.samples, dtype=np.float32), -1.0, 32767 / 32768)
        frames = self._smile().process_signal(signal, item.sample_rate).to_numpy(dtype=np.float32)
        seconds = signal.size / item.sample_rate
        if frames.size == 0 or not np.isfinite(frames).all(axis=1).any():
            raise BadInput(
                f"{item.utt_id}: audio too short for OpenSMILE {self.settings.feature_set} ({seconds:.3f} s)"
            )
        frames = frames[np.isfinite(frames).all(axis=1)]
        if self.settings.level == "functionals":
            vector = frames[0]
        else:
            vector = np.concatenate([frames.mean(axis=0), frames.std(axis=0)])
        if not np.isfinite(vector).all():
            raise BadInput(f"OpenSMILE returned non-finite values ({seconds:.3f} s of audio)")
        return vector, frames
