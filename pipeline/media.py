"""Decoding media with PyAV: audio as 16 kHz mono float32, video frames by index, stream facts.

PyAV ships its own FFmpeg, reads audio and video from one container, and does not depend on torch,
so every stage decodes through this one module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


class MediaError(RuntimeError):
    """The file cannot be used; the message is the reason written to the failure ledger."""


@dataclass(frozen=True)
class MediaInfo:
    has_audio: bool
    has_video: bool
    fps: float
    width: int
    height: int
    duration: float  # seconds (container duration, else the longest stream)
    frame_count: int


def probe(path: str | Path) -> MediaInfo:
    path = Path(path)
    if not path.exists():
        raise MediaError(f"media file not found: {path}")
    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            duration = float(container.duration / av.time_base) if container.duration else 0.0
            fps = float(video.average_rate or video.guessed_rate or 0) if video else 0.0
            if video is not None and not duration and video.duration and video.time_base:
                duration = float(video.duration * video.time_base)
            frames = int(video.frames) if video is not None and video.frames else int(round(duration * fps))
            width = int(video.codec_context.width) if video else 0
            height = int(video.codec_context.height) if video else 0
            if video is not None and _first_frame_rotation(container, video) in (90, 270):
                width, height = height, width  # the size frames have once turned upright, as they are read
            return MediaInfo(
                has_audio=audio is not None,
                has_video=video is not None,
                fps=fps,
                width=width,
                height=height,
                duration=duration,
                frame_count=frames,
            )
    except av.error.FFmpegError as error:
        raise MediaError(f"corrupt or unreadable media ({type(error).__name__}: {error})") from error


def _first_frame_rotation(container: av.container.InputContainer, video: av.video.stream.VideoStream) -> int:
    """Display rotation in degrees (0, 90, 180, 270) of the first frame; 0 when none can be decoded."""
    try:
        for frame in container.decode(video):
            return int(frame.rotation or 0) % 360
    except av.error.FFmpegError:
        return 0
    return 0


def upright(frame: av.VideoFrame) -> np.ndarray:
    """The frame as RGB, turned the way a player shows it (phones store portrait video sideways and
    tag it with a display rotation; the raw pixels would hold faces lying on their side)."""
    image = frame.to_ndarray(format="rgb24")
    turns = (int(frame.rotation or 0) % 360) // 90
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


def read_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """The whole first audio stream, resampled to mono float32 at `sample_rate`."""
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError("no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as error:
        raise MediaError(f"audio could not be decoded ({type(error).__name__}: {error})") from error
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def iter_frames(path: str | Path, wanted: Iterable[int], fps: float) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame_index, RGB uint8 array) for the wanted indices, decoding the file once in order.

    Frames are located by presentation time, so no re-encode and no per-frame seek is needed; the
    first wanted frame is reached with one keyframe seek. Byte-based seeking (MPEG-PS, some AVI) can
    land past the target; the file is then decoded from its start instead of losing frames.
    """
    targets = sorted(set(int(i) for i in wanted))
    if not targets:
        return
    try:
        if targets[0] > 0:
            try:
                yield from _scan(path, targets, fps, seek=True)
                return
            except _Overshot:
                pass
        yield from _scan(path, targets, fps, seek=False)
    except av.error.FFmpegError as error:
        raise MediaError(f"video could not be decoded ({type(error).__name__}: {error})") from error


class _Overshot(Exception):
    """A seek landed after the first wanted frame (raised before anything was yielded)."""


def _scan(path: str | Path, targets: list[int], fps: float, seek: bool) -> Iterator[tuple[int, np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.time_base
        seek = seek and bool(base)
        if seek:
            container.seek(int(max(0.0, (targets[0] - 1) / fps) / base), stream=stream, backward=True,
                           any_frame=False)
        cursor = 0
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            index = int(math.floor(float(frame.pts * base) * fps + 0.5))
            if seek and index > targets[0]:
                raise _Overshot
            seek = False
            while cursor < len(targets) and targets[cursor] < index:
                cursor += 1  # frame missing from the stream (dropped)
            if cursor >= len(targets):
                break
            if targets[cursor] == index:
                yield index, upright(frame)
                cursor += 1


def write_float_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """32-bit float WAV with nothing but fmt and data: the same samples always give the same bytes.

    libsndfile adds a PEAK chunk holding the time of writing to float files, so two cuts of one
    utterance would differ byte for byte and a resumed run could not be checked against a clean one.
    """
    from scipy.io import wavfile

    wavfile.write(str(path), int(sample_rate), np.asarray(samples, dtype=np.float32))
