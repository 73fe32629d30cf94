"""Training material for LipSyncNet: mouth-crop series on the audio's 25 fps timeline, and pair sampling.

A face track becomes a `TrackSeries`: grey lower-face crops resampled to the model's frame rate and
placed on the utterance audio's timeline, so window t of the mouths pairs with mel frames 4t..4t+19.
`PairSampler` draws (mouth window, in-sync audio, out-of-sync audio) triples from series believed to
show the speaker. Negatives are the same track's audio shifted by several frames (teaches timing,
not identity) and, less often, audio from another utterance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from core.config import setting


def timeline(times: np.ndarray, fps: float) -> tuple[int, np.ndarray]:
    """Map a track's frame times (seconds from the audio start) onto the audio's `fps` timeline.

    Returns the first timeline index and, per timeline index from there on, the position in `times`
    of the nearest source frame (nearest-frame resampling, like `ffmpeg -r 25`). A track shorter
    than one timeline step still gets one entry.
    """
    times = np.asarray(times, dtype=np.float64)
    first = max(0, int(math.ceil(times[0] * fps - 1e-6)))
    last = max(first, int(math.floor(times[-1] * fps + 1e-6)))
    wanted = np.arange(first, last + 1) / fps
    if len(times) == 1:
        return first, np.zeros(len(wanted), dtype=int)
    right = np.clip(np.searchsorted(times, wanted), 1, len(times) - 1)
    left = right - 1
    nearest = np.where(np.abs(times[left] - wanted) <= np.abs(times[right] - wanted), left, right)
    return first, nearest.astype(int)


@dataclass
class TrackSeries:
    """One face track's mouths on the audio timeline: `mouths[i]` is at timeline index `start + i`."""

    utt_id: str
    dialogue_id: str
    track_id: int
    start: int
    mouths: np.ndarray  # [T, h, w] uint8


def split_by_dialogue(dialogues: Sequence[str], dev_fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """Seeded train/dev split of dialogue ids; a non-zero `dev_fraction` gives dev at least one of two or more."""
    unique = sorted(set(dialogues))
    rng = np.random.default_rng(seed)
    order = [unique[i] for i in rng.permutation(len(unique))]
    n_dev = int(round(len(unique) * dev_fraction))
    if dev_fraction > 0 and len(unique) >= 2:
        n_dev = min(max(1, n_dev), len(unique) - 1)
    elif len(unique) < 2:
        n_dev = 0
    return set(order[n_dev:]), set(order[:n_dev])


@dataclass
class Augment:
    """Label-preserving changes to a mouth window: what differs between faces, never between times."""

    flip: float = setting(0.5, min=0, max=1)  # probability of a horizontal mirror
    shift: float = setting(0.08, min=0)  # translation, fraction of the crop side
    scale: float = setting(0.1, min=0, below=1)  # zoom in or out by up to this fraction
    noise: float = setting(0.03, min=0)  # pixel noise std (crops in [0, 1])
    reverse: float = setting(0.0, min=0, max=1)  # probability of playing mouths and audio backwards together

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            setattr(self, spec.name, float(getattr(self, spec.name)))

    def apply(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[T, h, w] float32 in [0, 1] -> the same window, one random transform for all frames."""
        t, h, w = window.shape
        if rng.random() < self.flip:
            window = window[:, :, ::-1]
        if self.shift or self.scale:
            zoom = 1.0 + rng.uniform(-self.scale, self.scale)
            dx, dy = rng.uniform(-self.shift, self.shift, size=2) * (w, h)
            matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, zoom)
            matrix[:, 2] += (dx, dy)
            window = np.stack([cv2.warpAffine(np.ascontiguousarray(f), matrix, (w, h),
                                              borderMode=cv2.BORDER_REPLICATE) for f in window])
        if self.noise:
            window = window + rng.normal(0, self.noise, size=window.shape).astype(np.float32)
        return np.ascontiguousarray(window, dtype=np.float32)


@dataclass
class PairBatch:
    video: np.ndarray  # [B, 1, T, h, w] float32
    audio_pos: np.ndarray  # [B, 1, n_mels, 4T]
    audio_neg: np.ndarray  # [B, 1, n_mels, 4T]
    shifts: np.ndarray  # [B] frames the negative's audio is shifted by; 0 = audio of another utterance


class PairSampler:
    """Draws (mouth window, in-sync audio, out-of-sync audio) triples from positive series.

    `min_shift`/`max_shift` bound the hard negatives' offset in video frames (0.2-0.6 s by default,
    far enough that a 0.2 s window of speech no longer lines up); `foreign` is the share of easy
    negatives taken from another utterance's audio.
    """

    def __init__(self, series: Sequence[TrackSeries], mels: dict[str, np.ndarray], window: int,
                 mels_per_frame: int, min_shift: int = 5, max_shift: int = 15, foreign: float = 0.25,
                 augment: Augment | None = None, seed: int = 0) -> None:
        self.window, self.step = window, mels_per_frame
        self.length = window * mels_per_frame
        self.min_shift, self.max_shift, self.foreign = min_shift, max_shift, foreign
        self.augment = augment
        self.mels = mels
        self.rng = np.random.default_rng(seed)
        # every (series, start) whose video window and audio window both fit
        self.series = [s for s in series if s.utt_id in mels]
        self.anchors: list[tuple[int, int]] = []
        for index, s in enumerate(self.series):
            last_audio = (len(mels[s.utt_id]) - self.length) // self.step
            for t in range(len(s.mouths) - window + 1):
                if s.start + t <= last_audio:
                    self.anchors.append((index, t))
        self.utterances = sorted({s.utt_id for s in self.series})

    def __len__(self) -> int:
        return len(self.anchors)

    def _audio(self, utt_id: str, position: int) -> np.ndarray:
        mel = self.mels[utt_id]
        start = position * self.step
        return mel[start:start + self.length].T

    def _negative(self, s: TrackSeries, position: int) -> tuple[np.ndarray, int]:
        last = (len(self.mels[s.utt_id]) - self.length) // self.step
        if self.rng.random() >= self.foreign:
            shifts = [d for d in range(self.min_shift, self.max_shift + 1) for d in (d, -d)
                      if 0 <= position + d <= last]
            if shifts:
                shift = int(self.rng.choice(shifts))
                return self._audio(s.utt_id, position + shift), shift
        others = [u for u in self.utterances if u != s.utt_id] or self.utterances
        other = others[int(self.rng.integers(len(others)))]
        other_last = max(0, (len(self.mels[other]) - self.length) // self.step)
        return self._audio(other, int(self.rng.integers(other_last + 1))), 0

    def sample(self, batch: int) -> PairBatch:
        if not self.anchors:
            raise ValueError("no positive windows to sample from")
        picks = self.rng.integers(len(self.anchors), size=batch)
        video, pos, neg, shifts = [], [], [], []
        for pick in picks:
            index, t = self.anchors[int(pick)]
            s = self.series[index]
            window = s.mouths[t:t + self.window].astype(np.float32) / 255.0
            audio_pos = self._audio(s.utt_id, s.start + t)
            audio_neg, shift = self._negative(s, s.start + t)
            if self.augment is not None:
                window = self.augment.apply(window, self.rng)
                if self.rng.random() < self.augment.reverse:
                    window, audio_pos, audio_neg = window[::-1], audio_pos[:, ::-1], audio_neg[:, ::-1]
            video.append(np.ascontiguousarray(window))
            pos.append(np.ascontiguousarray(audio_pos))
            neg.append(np.ascontiguousarray(audio_neg))
            shifts.append(shift)
        return PairBatch(np.stack(video)[:, None], np.stack(pos)[:, None], np.stack(neg)[:, None],
                         np.asarray(shifts))
