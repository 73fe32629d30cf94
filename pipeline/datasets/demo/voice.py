"""Speech for the demo corpus: espeak-ng voices with emotion-dependent prosody, at 16 kHz mono.

Each person has a voice and a base pitch/rate/loudness; the emotion an utterance's audio shows
shifts them (joy: higher and faster, sadness: lower, slower and quieter, anger: louder and faster),
with per-utterance jitter so prosody is a noisy cue rather than a lookup.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000

# espeak-ng voice + variant names; people in a dialogue get different ones.
VOICES = (
    "en+m3", "en+f2", "en-us+m1", "en+f4", "en-gb+m2", "en-us+f3", "en+m7", "en-gb-x-rp+f1",
    "en-us+m4", "en+f5", "en-gb-scotland+m5", "en-029+f3",
)


@dataclass(frozen=True)
class Prosody:
    pitch: float  # added to the espeak pitch (0-99 scale)
    rate: float  # multiplies words per minute
    loudness: float  # multiplies espeak amplitude


PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(0.0, 1.0, 1.0),
    "joy": Prosody(16.0, 1.15, 1.15),
    "sadness": Prosody(-14.0, 0.75, 0.6),
    "anger": Prosody(4.0, 1.15, 1.5),
    "surprise": Prosody(22.0, 1.05, 1.25),
    "fear": Prosody(10.0, 1.25, 0.75),
    "disgust": Prosody(-8.0, 0.85, 1.05),
}


@dataclass(frozen=True)
class Voice:
    name: str  # espeak-ng voice, e.g. "en+f2"
    pitch: float  # base pitch, espeak 0-99
    rate: float  # base words per minute
    amplitude: float  # base espeak amplitude (0-200)


@dataclass(frozen=True)
class Delivery:
    """The espeak settings of one utterance: a voice shifted by an emotion and jitter."""

    voice: str
    pitch: int
    rate: int
    amplitude: int


def delivery(voice: Voice, emotion: str, rng: np.random.Generator) -> Delivery:
    shift = PROSODY[emotion]
    pitch = voice.pitch + shift.pitch + rng.normal(0.0, 4.0)
    rate = voice.rate * shift.rate * (1.0 + rng.normal(0.0, 0.05))
    amplitude = voice.amplitude * shift.loudness * (1.0 + rng.normal(0.0, 0.08))
    return Delivery(
        voice=voice.name,
        pitch=int(np.clip(round(pitch), 0, 99)),
        rate=int(np.clip(round(rate), 80, 400)),
        amplitude=int(np.clip(round(amplitude), 10, 160)),
    )


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize(text: str, how: Delivery) -> np.ndarray:
    """Speak `text` with espeak-ng; float32 mono at 16 kHz, leading/trailing silence trimmed."""
    with tempfile.TemporaryDirectory(prefix="demo_tts_") as tmp:
        wav = Path(tmp) / "utt.wav"
        cmd = [
            "espeak-ng", "-v", how.voice, "-p", str(how.pitch), "-s", str(how.rate),
            "-a", str(how.amplitude), "-w", str(wav), "--", text,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not wav.exists():
            raise RuntimeError(f"espeak-ng failed ({done.returncode}): {done.stderr.strip()[:300]}")
        samples, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    return trim_silence(resample(mono, rate, SAMPLE_RATE))


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    if rate == target:
        return samples.astype(np.float32)
    g = gcd(rate, target)
    return resample_poly(samples, target // g, rate // g).astype(np.float32)


def trim_silence(samples: np.ndarray, threshold_db: float = -40.0, margin_s: float = 0.02) -> np.ndarray:
    """Cut silence at both ends (relative to the peak) so `start`/`end` bound the speech."""
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak <= 0.0:
        return samples
    loud = np.flatnonzero(np.abs(samples) > peak * 10 ** (threshold_db / 20))
    margin = int(margin_s * SAMPLE_RATE)
    return samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin].copy()


def frame_envelope(samples: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """RMS of the audio under each video frame; frame k covers samples [k/fps, (k+1)/fps) seconds."""
    edges = np.round(np.arange(n_frames + 1) * (SAMPLE_RATE / fps)).astype(np.int64)
    edges = np.clip(edges, 0, samples.size)
    energy = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    counts = np.maximum(edges[1:] - edges[:-1], 1)
    return np.sqrt(np.maximum(energy[edges[1:]] - energy[edges[:-1]], 0.0) / counts).astype(np.float32)


def mouth_opening(envelope: np.ndarray) -> np.ndarray:
    """Map an RMS envelope to a mouth opening in [0, 1]: closed in pauses, wide on loud vowels.

    The envelope is scaled by its own 90th percentile (so quiet and loud speakers both open their
    mouth) and its lowest fifth is cut, so the mouth also closes between syllables.
    """
    if envelope.size == 0 or float(envelope.max()) <= 0.0:
        return np.zeros_like(envelope)
    ref = float(np.percentile(envelope[envelope > 0], 90))
    level = np.clip(envelope / max(ref, 1e-6), 0.0, 1.0)
    opening = np.clip((level - 0.2) / 0.8, 0.0, 1.0)
    if opening.size >= 3:  # a jaw is not instantaneous
        opening = np.convolve(np.pad(opening, 1, mode="edge"), [0.2, 0.6, 0.2], mode="valid")
    return opening.astype(np.float32)
