"""Writing one H.264 + AAC mp4 with the ffmpeg CLI from raw RGB frames and a waveform."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def _rate(fps: float) -> str:
    return str(int(fps)) if float(fps).is_integer() else repr(float(fps))


def encode_mp4(
    frames: Iterable[np.ndarray],
    audio: np.ndarray,
    sample_rate: int,
    path: Path,
    width: int,
    height: int,
    fps: float,
) -> Path:
    """Pipe `frames` (uint8 HxWx3 RGB) to ffmpeg with `audio` (float mono) muxed beside them."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".encode-", dir=path.parent) as tmp:
        wav = Path(tmp) / "audio.wav"
        sf.write(str(wav), np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")
        log = Path(tmp) / "ffmpeg.log"
        cmd = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", _rate(fps), "-i", "pipe:0",
            "-i", str(wav),
            "-map", "0:v:0", "-map", "1:a:0",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
            "-g", str(max(1, int(round(2 * fps)))),  # a key frame every 2 s keeps frame seeking cheap
            "-c:a", "aac", "-b:a", "64k",
            "-movflags", "+faststart",
            str(path),
        ]
        with log.open("wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            try:
                for frame in frames:
                    if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                        raise ValueError(f"frame {frame.shape} {frame.dtype}; expected ({height}, {width}, 3) uint8")
                    proc.stdin.write(np.ascontiguousarray(frame).data)
                proc.stdin.close()
                code = proc.wait()
            except BrokenPipeError:
                code = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if code != 0:
            message = log.read_text(errors="replace").strip()[-800:]
            raise RuntimeError(f"ffmpeg could not write {path.name} (exit {code}): {message}")
    return path
