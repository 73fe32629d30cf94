"""The video decoders a stage can read frames with: PyAV (default), decord, torchcodec.

Every reader has the contract of `pipeline.media.iter_frames`: yield `(frame_index, upright RGB uint8
array)` for the wanted indices that exist, in order, and raise `MediaError` for a file it cannot
decode. `video.reader` in params.yaml picks one; `benchmarks/video_readers.py` times them on the
stages' access patterns and checks that they return the same pixels as PyAV.

PyAV locates frames by presentation time; decord and torchcodec by decode order. The two agree on
constant-frame-rate files (every corpus here); on a file with dropped or variable-rate frames only
PyAV skips what is missing instead of handing over a neighbour. All three turn frames upright by the
display rotation phones write (tests/test_video_readers.py checks it). torchcodec cannot decode the
last frames of MPEG-PS files (GRID clips: it fails from about frame 67 of 75): it then yields the
frames before the first one it cannot decode, and nothing after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import parse_block, setting
from pipeline.media import MediaError, iter_frames

BATCH = 32  # frames decoded per call: dense reads of long recordings never hold the whole file

FrameReader = Callable[[Path, list[int], float], Iterator[tuple[int, np.ndarray]]]


def _batches(targets: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(targets), BATCH):
        yield targets[start:start + BATCH]


def _decord(path: Path, targets: list[int], fps: float) -> Iterator[tuple[int, np.ndarray]]:
    import decord

    try:
        video = decord.VideoReader(str(path), ctx=decord.cpu(0))
        targets = [t for t in targets if t < len(video)]
        for batch in _batches(targets):
            frames = video.get_batch(batch).asnumpy()
            yield from zip(batch, frames)
    except RuntimeError as error:  # decord.DECORDError is one
        raise MediaError(f"video could not be decoded (decord: {error})") from error


def _torchcodec(path: Path, targets: list[int], fps: float) -> Iterator[tuple[int, np.ndarray]]:
    from torchcodec.decoders import VideoDecoder

    def open_decoder() -> VideoDecoder:
        try:
            return VideoDecoder(str(path), dimension_order="NHWC", seek_mode="exact")
        except (RuntimeError, ValueError) as error:
            raise MediaError(f"video could not be decoded (torchcodec: {error})") from error

    decoder = open_decoder()
    count = decoder.metadata.num_frames
    targets = [t for t in targets if count is None or t < count]
    for batch in _batches(targets):
        try:
            frames = decoder.get_frames_at(batch).data.numpy()
        except RuntimeError:
            # MPEG-PS files index frames at their end that cannot be decoded: a fresh decoder takes the
            # batch one frame at a time and stops at the first that fails
            decoder = open_decoder()
            for index in batch:
                try:
                    image = decoder.get_frames_at([index]).data.numpy()[0]
                except RuntimeError:
                    return
                yield index, image
            continue
        yield from zip(batch, frames)


READERS: dict[str, FrameReader] = {"pyav": iter_frames, "decord": _decord, "torchcodec": _torchcodec}
READER_NAMES = tuple(READERS)


def read_frames(path: str | Path, wanted: Iterable[int], fps: float, reader: str = "pyav"
                ) -> Iterator[tuple[int, np.ndarray]]:
    """Frames at the wanted indices with the named reader (see the module docstring)."""
    targets = sorted({int(i) for i in wanted})
    if not targets:
        return iter(())
    return READERS[reader](Path(path), targets, fps)


@dataclass(frozen=True, kw_only=True)
class VideoConfig:
    """The `video` block. DVC tracks it for every stage that decodes frames: the readers agree pixel for
    pixel on H.264, but not on every codec (MPEG-1 colour conversion differs by a few levels)."""

    reader: str = setting("pyav", choices=READER_NAMES)


def video_reader(params: Mapping[str, Any]) -> str:
    """The reader named by `params.video` (PyAV when the block is absent)."""
    return parse_block(VideoConfig, params.get("video") or {}, "video").reader
