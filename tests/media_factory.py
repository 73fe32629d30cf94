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
