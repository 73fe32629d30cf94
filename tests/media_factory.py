"""Tiny real media for tests: talking-face videos (real LFW face photos, espeak-ng speech, H.264 +
AAC through the ffmpeg CLI), and the broken files a real corpus contains."""

from __future__ import annotations

import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

RATE = 16000


@lru_cache(maxsize=1)
def lfw_faces() -> np.ndarray:
    from skimage import data

    return data.lfw_subset()[:100]


def speech(text: str, voice: str = "en", pitch: int = 50) -> np.ndarray:
    """espeak-ng speech at 16 kHz mono float32."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-w", str(wav), text], check=True,
                       capture_output=True)
        audio, rate = sf.read(wav, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if rate != RATE:
        from scipy.signal import resample_poly

        audio = resample_poly(audio, RATE, rate).astype(np.float32)
    return audio


def envelope(audio: np.ndarray, fps: int, frames: int) -> np.ndarray:
    hop = RATE / fps
    env = np.array([np.sqrt(np.mean(audio[int(i * hop):int((i + 1) * hop)] ** 2) + 1e-12) for i in range(frames)])
    return env / (env.max() + 1e-9)


def face_image(index: int, size: int) -> np.ndarray:
    face = (lfw_faces()[index] * 255).astype(np.uint8)
    face = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.repeat(face[..., None], 3, axis=2)


def render_frames(seconds: float, fps: int, width: int, height: int, face_ids: list[int], speaker: int | None,
                  audio: np.ndarray) -> tuple[np.ndarray, list[list[float]]]:
    """Frames with faces side by side; the speaker's mouth opens with the audio envelope."""
    frames_count = int(round(seconds * fps))
    size = min(int(height * 0.55), int(width / max(1, len(face_ids)) * 0.8)) if face_ids else 0
    env = envelope(audio, fps, frames_count)
    rng = np.random.default_rng(1)
    frames = np.full((frames_count, height, width, 3), 70, np.uint8)
    boxes = []
    for seat, face_id in enumerate(face_ids):
        x = int((seat + 0.5) * width / len(face_ids) - size / 2)
        y = int(height / 2 - size / 2)
        boxes.append([x, y, x + size, y + size])
        face = face_image(face_id, size)
        other = rng.permutation(env)
        for t in range(frames_count):
            opening = env[t] if seat == speaker else 0.15 * other[t]
            img = face.copy()
            cv2.ellipse(img, (size // 2, int(size * 0.8)), (int(size * 0.13), max(1, int(size * 0.09 * opening))),
                        0, 0, 360, (20, 20, 20), -1)
            frames[t, y:y + size, x:x + size] = img
    return frames, boxes


def write_video(path: Path, frames: np.ndarray, fps: int, audio: np.ndarray | None) -> Path:
    """H.264 video (+ AAC audio when given) through the ffmpeg CLI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["ffmpeg", "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-r", str(fps), "-i", "-"]
        if audio is not None:
            wav = Path(tmp) / "a.wav"
            sf.write(wav, audio, RATE)
            cmd += ["-i", str(wav), "-c:a", "aac", "-shortest"]
        cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)]
        subprocess.run(cmd, input=frames.tobytes(), check=True, capture_output=True)
    return path


def talking_clip(path: Path, text: str, face_ids: list[int], speaker: int | None, fps: int = 25,
                 width: int = 320, height: int = 180, with_audio: bool = True) -> list[list[float]]:
    audio = speech(text)
    seconds = len(audio) / RATE + 0.2
    audio = np.pad(audio, (0, int(0.2 * RATE)))
    frames, boxes = render_frames(seconds, fps, width, height, face_ids, speaker, audio)
    write_video(path, frames, fps, audio if with_audio else None)
    return boxes


def corrupt_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + np.random.default_rng(0).bytes(4096))
    return path


# --- synthetic audio-visual scenes for LipSyncNet (spec §8.1): mouths whose opening follows a sound envelope

SYNC_FPS = 25
ENVELOPE_RATE = 100  # envelope samples per second


def syllabic_envelope(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A smoothed random 2-6 Hz loudness process in [0, 1] at 100 Hz, with silent gaps."""
    n = int(round(seconds * ENVELOPE_RATE))
    env = np.zeros(n)
    t = rng.uniform(0, 0.15)
    while t < seconds:
        length = 1.0 / rng.uniform(2, 6)
        if rng.random() > 0.2:  # a syllable, else a gap
            start, stop = int(t * ENVELOPE_RATE), int(min(seconds, t + length) * ENVELOPE_RATE)
            width = max(stop - start, 1)
            env[start:stop] = rng.uniform(0.5, 1.0) * np.sin(np.linspace(0, np.pi, width)) ** 2
        t += length
    return np.clip(np.convolve(env, np.ones(3) / 3, mode="same"), 0, 1)


def envelope_audio(env: np.ndarray, rng: np.random.Generator, snr_db: float = 20.0) -> np.ndarray:
    """16 kHz audio: harmonics of a random f0 (100-250 Hz) shaped by the envelope, plus noise at `snr_db`."""
    n = len(env) * RATE // ENVELOPE_RATE
    t = np.arange(n) / RATE
    f0 = rng.uniform(100, 250)
    carrier = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 9))
    shaped = carrier * np.interp(t, np.arange(len(env)) / ENVELOPE_RATE, env)
    power = np.mean(shaped ** 2) + 1e-12
    noise = rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), n)
    return (0.3 * (shaped + noise) / (np.abs(shaped).max() + 1e-9)).astype(np.float32)


def frame_openings(env: np.ndarray, frames: int) -> np.ndarray:
    """The envelope averaged over each 40 ms video frame (4 envelope samples)."""
    step = ENVELOPE_RATE // SYNC_FPS
    padded = np.pad(env, (0, max(0, frames * step - len(env))))
    return padded[: frames * step].reshape(frames, step).mean(axis=1)


def mouth_frames(openings: np.ndarray, rng: np.random.Generator, height: int = 32, width: int = 48) -> np.ndarray:
    """Grey lower-face crops (uint8 [T, h, w]): textured skin and a dark mouth ellipse of height h0 + h1 * opening.

    Each face gets its own skin tone, texture and mouth size; every frame gets +-1 px jitter and a
    slow brightness drift, so pixels alone never identify the speaker.
    """
    base = rng.uniform(110, 190)
    yy, xx = np.mgrid[0:height, 0:width]
    skin = base + rng.uniform(-25, 25) * (yy / height) + rng.normal(0, 6, (height, width))
    skin = cv2.GaussianBlur(skin.astype(np.float32), (0, 0), 1.2)
    half_width = width * rng.uniform(0.18, 0.26)
    h0, h1 = height * 0.04, height * rng.uniform(0.22, 0.3)
    drift = np.cumsum(rng.normal(0, 1.0, len(openings)))
    out = np.empty((len(openings), height, width), np.uint8)
    for k, opening in enumerate(openings):
        img = skin + drift[k]
        dx, dy = rng.integers(-1, 2, size=2)
        centre = (int(width / 2 + dx), int(height * 0.45 + dy))
        axes = (int(round(half_width)), max(1, int(round(h0 + h1 * opening))))
        img = cv2.ellipse(img.copy(), centre, axes, 0, 0, 360, float(base * 0.25), -1)
        out[k] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def sync_scene(seconds: float, rng: np.random.Generator, distractors: list[str]) -> dict:
    """One speaker's audio, their in-sync mouths, and distractor mouths of the given kinds.

    Kinds: `static` (mouth still at the speaker's mean opening), `independent` (driven by an
    independent envelope with the same statistics), `shifted` (the true envelope moved 5-15 frames).
    """
    env = syllabic_envelope(seconds, rng)
    frames = int(round(seconds * SYNC_FPS))
    openings = frame_openings(env, frames)
    faces = [mouth_frames(openings, rng)]
    for kind in distractors:
        if kind == "static":
            other = np.full(frames, openings.mean())
        elif kind == "independent":
            other = frame_openings(syllabic_envelope(seconds, rng), frames)
        elif kind == "shifted":
            shift = int(rng.integers(5, 16)) * int(rng.choice([-1, 1]))
            other = np.roll(openings, shift)
        else:
            raise ValueError(kind)
        faces.append(mouth_frames(other, rng))
    return {"audio": envelope_audio(env, rng), "faces": faces, "openings": openings}
