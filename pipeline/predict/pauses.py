"""What the speech on either side of a pause sounds like: the cues that tell a breath from a turn.

A silence alone does not say whether a speaker paused inside an utterance or a turn ended: pauses
after a comma run as long as the gaps between turns. The speech around the pause does: inside one
utterance the voice keeps its pitch level, loudness and timbre, and before a comma the pitch stays
up; a new utterance (even by the same person) starts at a new level, and an utterance ends on a
falling pitch. `pause_features` measures those cues for every pause between consecutive speech
spans, from the audio alone (numpy, no model).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.predict.segments import SAMPLE_RATE, Segment

FEATURES = ("gap", "pitch_jump", "level_jump", "timbre_jump", "final_slope", "left_seconds", "right_seconds")
WINDOW = 1.0  # seconds of speech read on each side of a pause
FRAME = 640  # 40 ms analysis frames at 16 kHz
HOP = 160  # 10 ms
MIN_LAG, MAX_LAG = SAMPLE_RATE // 400, SAMPLE_RATE // 60  # pitch between 60 and 400 Hz
VOICED = 0.45  # normalised autocorrelation peak above which a frame is voiced
BANDS = 24  # log band energies for the timbre distance


def pause_features(samples: np.ndarray, spans: Sequence[Segment]) -> np.ndarray:
    """[len(spans) - 1, len(FEATURES)]: one row per pause between consecutive `spans` (sorted by start)."""
    rows = []
    for left, right in zip(spans[:-1], spans[1:]):
        before = _frames(_clip(samples, max(left.start, left.end - WINDOW), left.end))
        after = _frames(_clip(samples, right.start, min(right.end, right.start + WINDOW)))
        pitch_before, pitch_after = _pitch(before), _pitch(after)
        rows.append([
            right.start - left.end,
            _median_gap(pitch_before, pitch_after),
            abs(_level(before) - _level(after)),
            float(np.linalg.norm(_bands(before) - _bands(after)) / np.sqrt(BANDS)),
            _final_slope(pitch_before),
            left.duration,
            right.duration,
        ])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURES))


def _clip(samples: np.ndarray, start: float, end: float) -> np.ndarray:
    return samples[max(0, int(start * SAMPLE_RATE)): max(0, int(end * SAMPLE_RATE))]


def _frames(samples: np.ndarray) -> np.ndarray:
    """Windowed 40 ms frames at a 10 ms hop (float64), made once per side and read by every cue."""
    samples = samples.astype(np.float64)
    if samples.size < FRAME:
        samples = np.pad(samples, (0, FRAME - samples.size))
    count = 1 + (samples.size - FRAME) // HOP
    index = np.arange(FRAME)[None, :] + HOP * np.arange(count)[:, None]
    return samples[index] * np.hanning(FRAME)[None, :]


def _pitch(frames: np.ndarray) -> np.ndarray:
    """Semitones (re 100 Hz) of the voiced 10 ms frames, in time order (autocorrelation peak picking)."""
    frames = frames - frames.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(frames, n=2 * FRAME, axis=1)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, : MAX_LAG + 1]
    energy = autocorrelation[:, 0]
    loud = energy > 1e-3 * max(float(energy.max(initial=0.0)), 1e-12)
    normalised = autocorrelation[:, MIN_LAG:] / np.maximum(energy[:, None], 1e-12)
    lag = MIN_LAG + normalised.argmax(axis=1)
    voiced = loud & (normalised.max(axis=1) > VOICED)
    return 12.0 * np.log2(SAMPLE_RATE / lag[voiced] / 100.0)


def _median_gap(before: np.ndarray, after: np.ndarray) -> float:
    """|median pitch before - after| in semitones; 0 when either side has no voiced frame."""
    if before.size == 0 or after.size == 0:
        return 0.0
    return float(abs(np.median(before) - np.median(after)))


def _final_slope(pitch: np.ndarray, frames: int = 25) -> float:
    """Semitones per second over the last `frames` voiced frames before the pause (falling: negative)."""
    tail = pitch[-frames:]
    if tail.size < 3:
        return 0.0
    seconds = np.arange(tail.size) * HOP / SAMPLE_RATE
    return float(np.polyfit(seconds, tail, 1)[0])


def _level(frames: np.ndarray) -> float:
    """Loudness in dB of the speech (frames within 30 dB of the loudest)."""
    power = (frames ** 2).mean(axis=1) + 1e-12
    db = 10.0 * np.log10(power)
    return float(db[db > db.max() - 30.0].mean())


def _bands(frames: np.ndarray) -> np.ndarray:
    """Mean log energy in BANDS log-spaced bands (80 Hz-7 kHz) over the loud frames, level removed."""
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    frequencies = np.fft.rfftfreq(FRAME, 1.0 / SAMPLE_RATE)
    edges = np.geomspace(80.0, 7000.0, BANDS + 1)
    band = np.stack([power[:, (frequencies >= lo) & (frequencies < hi)].sum(axis=1)
                     for lo, hi in zip(edges[:-1], edges[1:])], axis=1)
    logs = np.log10(band + 1e-10)
    total = logs.max(axis=1)
    loud = total > total.max() - 3.0
    mean = logs[loud].mean(axis=0)
    return 10.0 * (mean - mean.mean())
