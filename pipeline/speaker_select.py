"""Choosing the active speaker among an utterance's face tracks.

A scorer rates each track against the utterance audio; the stage picks the best and keeps the
margin over the runner-up as a confidence. Scorers are registered by the name used in
`params.speaker.method`, so LipSyncNet and simple baselines are interchangeable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from pipeline.config import choice


@dataclass
class TrackClip:
    """One face track over every frame of the utterance (boxes interpolated between samples)."""

    track_id: int
    frames: np.ndarray  # frame indices, ascending
    boxes: np.ndarray  # [T, 4] source pixels
    mouths: np.ndarray | None  # [T, h, w] float32 grey mouth regions, when the scorer needs them

    @property
    def mean_area(self) -> float:
        return float(np.mean((self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])))


class TrackScorer(Protocol):
    needs_mouths: bool

    def score(self, clips: list[TrackClip], audio: np.ndarray, sample_rate: int, fps: float) -> dict[int, float]:
        """Higher = more likely the speaker."""
        ...


MOUTH_SIZE = (16, 8)  # width, height of the grey mouth patch the motion scorer compares


def mouth_patch(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The lower-centre part of a face box, grey, at a fixed size."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left, right = int(max(0, x1 + 0.25 * w)), int(min(frame.shape[1], x2 - 0.25 * w))
    top, bottom = int(max(0, y1 + 0.62 * h)), int(min(frame.shape[0], y1 + 0.95 * h))
    if right - left < 2 or bottom - top < 2:
        return np.zeros(MOUTH_SIZE[::-1], dtype=np.float32)
    grey = cv2.cvtColor(frame[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, MOUTH_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def audio_envelope(audio: np.ndarray, sample_rate: int, fps: float, frames: int) -> np.ndarray:
    """RMS of the audio in one video frame's window, per frame of the utterance."""
    hop = sample_rate / fps
    env = np.zeros(frames, dtype=np.float64)
    for t in range(frames):
        chunk = audio[int(t * hop) : int((t + 1) * hop)]
        env[t] = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) if len(chunk) else 0.0
    return env


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


class MouthMotionScorer:
    """Correlation between mouth-region motion and the change of the audio envelope.

    A speaker's mouth moves when the loudness changes; a listener's does not, or not in time. The
    best of a few small lags absorbs audio/video offsets of up to `max_lag` frames.
    """

    needs_mouths = True

    def __init__(self, max_lag: int = 2) -> None:
        self.max_lag = max_lag

    def score(self, clips: list[TrackClip], audio: np.ndarray, sample_rate: int, fps: float) -> dict[int, float]:
        scores = {}
        for clip in clips:
            mouths = clip.mouths
            if mouths is None or len(mouths) < 4:
                scores[clip.track_id] = 0.0
                continue
            relative = clip.frames - clip.frames[0]
            env = audio_envelope(audio, sample_rate, fps, int(relative[-1]) + 1)[relative]
            motion = np.abs(np.diff(mouths, axis=0)).mean(axis=(1, 2))
            change = np.abs(np.diff(env))
            best = -1.0
            for lag in range(-self.max_lag, self.max_lag + 1):
                if lag >= 0:
                    a, b = motion[lag:], change[: len(change) - lag]
                else:
                    a, b = motion[:lag], change[-lag:]
                best = max(best, _pearson(a, b))
            scores[clip.track_id] = best
        return scores


class FirstFaceScorer:
    """The first track found (earliest, then leftmost): what a pipeline without speaker choice does."""

    needs_mouths = False

    def score(self, clips: list[TrackClip], audio: np.ndarray, sample_rate: int, fps: float) -> dict[int, float]:
        ordered = sorted(clips, key=lambda c: (c.frames[0], c.boxes[:, 0].mean()))
        return {clip.track_id: float(len(ordered) - rank) for rank, clip in enumerate(ordered)}


class LargestFaceScorer:
    """The largest face on average: the usual heuristic for close-up shots."""

    needs_mouths = False

    def score(self, clips: list[TrackClip], audio: np.ndarray, sample_rate: int, fps: float) -> dict[int, float]:
        total = sum(c.mean_area for c in clips) or 1.0
        return {clip.track_id: clip.mean_area / total for clip in clips}


SCORERS: dict[str, Callable[[Mapping[str, Any]], TrackScorer]] = {
    "mouth_motion": lambda cfg: MouthMotionScorer(),
    "first_face": lambda cfg: FirstFaceScorer(),
    "largest_face": lambda cfg: LargestFaceScorer(),
}


def build_scorer(cfg: Mapping[str, Any]) -> TrackScorer:
    method = choice(cfg.get("method"), "speaker.method", SCORERS)
    return SCORERS[method](cfg)


@dataclass
class Choice:
    track_id: int
    reason: str
    confidence: float
    scores: dict[int, float]


def choose(clips: list[TrackClip], scorer: TrackScorer, audio: np.ndarray, sample_rate: int, fps: float,
           low_confidence: float) -> Choice:
    """Pick the best-scoring track; the margin over the runner-up is the confidence."""
    if not clips:
        return Choice(-1, "no_face", 0.0, {})
    if len(clips) == 1:
        return Choice(clips[0].track_id, "single_face", 1.0, {clips[0].track_id: 1.0})
    scores = scorer.score(clips, audio, sample_rate, fps)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    margin = float(ranked[0][1] - ranked[1][1])
    reason = "scored" if margin >= low_confidence else "low_confidence"
    return Choice(int(ranked[0][0]), reason, margin, scores)
