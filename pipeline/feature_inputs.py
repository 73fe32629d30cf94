"""What the feature stage hands its extractors: chunks of utterances and their raw inputs.

A chunk carries only small per-utterance inputs (texts, wav paths, frame spans); the heavy ones are
read where the chunk is featurised: wavs as 16 kHz mono (`read_waveform`), the active speaker's JPEG
crops from the speaker stage's table (`CropStore`, `decode_crops`), or evenly spaced full frames of
the source video (`span_indices`, `read_span`). Kept apart from `pipeline.stages.features` so
benchmarks and tests can read inputs exactly as the stage does without running it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from extractors import TextItem
from extractors.base import SAMPLE_RATE
from pipeline.video_readers import read_frames

CHUNK_UTTERANCES = 64


@dataclass(frozen=True)
class FrameSpan:
    """Where an utterance's frames live in its source video: [start_frame, end_frame) at `fps`."""

    media: str
    fps: float
    start_frame: int
    end_frame: int
    has_video: bool = True


@dataclass(frozen=True)
class Chunk:
    """One work item: utterance ids plus the small per-utterance inputs (texts, wav paths, frame spans)."""

    utt_ids: tuple[str, ...]
    texts: tuple[TextItem, ...] = ()
    audio: tuple[str, ...] = ()
    spans: tuple[FrameSpan, ...] = ()


def make_chunks(manifest: pd.DataFrame, wanted: set[str], size: int = CHUNK_UTTERANCES) -> list[list[str]]:
    """Utterance ids grouped by dialogue in turn order; long dialogues split every `size` utterances."""
    chunks: list[list[str]] = []
    ordered = manifest[manifest.utt_id.isin(wanted)].sort_values(["dialogue_id", "turn"], kind="stable")
    for _, dialogue in ordered.groupby("dialogue_id", sort=True):
        ids = dialogue.utt_id.tolist()
        chunks.extend(ids[start : start + size] for start in range(0, len(ids), size))
    return chunks


def read_waveform(path: str) -> np.ndarray:
    """A wav as mono float32 at 16 kHz (resampled when a user-supplied file differs)."""
    import soundfile as sf

    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        factor = gcd(int(rate), SAMPLE_RATE)
        samples = resample_poly(samples, SAMPLE_RATE // factor, int(rate) // factor).astype(np.float32)
    return samples


class CropStore:
    """The active speaker's JPEG crops, read once, handed out per utterance in frame order."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `dvc repro speaker` first")
        self.table = pq.read_table(path, columns=["utt_id", "frame", "jpeg"])
        frame = pd.DataFrame({"utt_id": self.table.column("utt_id").to_numpy(zero_copy_only=False),
                              "frame": self.table.column("frame").to_numpy()})
        frame["row"] = np.arange(len(frame))
        self.rows = {u: g.sort_values("frame", kind="stable").row.to_numpy() for u, g in frame.groupby("utt_id")}

    def jpegs(self, utt_id: str) -> list[tuple[int, bytes]]:
        rows = self.rows.get(utt_id)
        if rows is None or len(rows) == 0:
            return []
        taken = self.table.take(pa.array(rows))
        return list(zip(taken.column("frame").to_pylist(), taken.column("jpeg").to_pylist()))

    def fingerprint(self, utt_id: str) -> str:
        digest = hashlib.sha256()
        for frame, jpeg in self.jpegs(utt_id):
            digest.update(str(frame).encode())
            digest.update(jpeg)
        return digest.hexdigest()[:16]


def span_indices(span: FrameSpan, budget: int | None) -> list[int]:
    """Frame indices an extractor sees: `budget` evenly spaced over the span (all when fewer)."""
    count = span.end_frame - span.start_frame
    if count <= 0:
        return []
    if budget is None or count <= budget:
        return list(range(span.start_frame, span.end_frame))
    return [span.start_frame + int(i) for i in np.linspace(0, count - 1, num=budget).round().astype(int)]


def read_span(span: FrameSpan, budget: int | None, reader: str = "pyav") -> list[np.ndarray]:
    """The span's sampled full frames as RGB uint8 arrays, in time order, decoded by `reader`."""
    return [image for _, image in read_frames(span.media, span_indices(span, budget), span.fps, reader)]


def decode_crops(crops: Sequence[tuple[int, bytes]]) -> list[np.ndarray]:
    """RGB uint8 images; undecodable crops are dropped (the caller fails the utterance if none remain)."""
    import cv2

    images = []
    for _, jpeg in crops:
        image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return images
