"""Utterances of a recording nobody cut: time spans, optionally with text, from a transcript or from speech.

A `Segment` is one utterance to be: `[start, end)` seconds in the recording and its text when known.
A transcript (`transcript.py`) gives both; otherwise voice-activity detection gives the spans
(`speech_segments`) and a recogniser (`asr.py`) the text. Spans are merged across pauses shorter than
`merge_gap` (a breath inside a sentence is not a turn) and split past `max_seconds` (the cut stage's
limit), so each one is a plausible utterance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str | None = None  # None: not known (no transcript, no recogniser)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class VadSettings:
    """Silero VAD knobs. Defaults chosen on the demo corpus's dev dialogues (`benchmarks/predict.py`)."""

    threshold: float = 0.5  # speech probability above which a 32 ms window is speech
    min_speech: float = 0.25  # seconds: shorter bursts are dropped (clicks, coughs)
    min_silence: float = 0.15  # seconds of silence that end a speech span
    pad: float = 0.03  # seconds added at both ends of a span
    merge_gap: float = 0.0  # spans closer than this are one utterance
    max_seconds: float = 30.0  # longer spans are split evenly


def speech_segments(samples: np.ndarray, settings: VadSettings = VadSettings()) -> list[Segment]:
    """Utterance spans of 16 kHz mono `samples`: voice activity, close spans merged, long ones split."""
    return split_long(merge_close(vad_spans(samples, settings), settings.merge_gap), settings.max_seconds)


def vad_spans(samples: np.ndarray, settings: VadSettings = VadSettings()) -> list[Segment]:
    """Speech spans as silero-vad finds them (its model ships inside the package), nothing merged."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    if samples.size == 0:
        return []
    model = _silero(load_silero_vad)
    spans = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), model, sampling_rate=SAMPLE_RATE,
        threshold=settings.threshold, min_speech_duration_ms=int(settings.min_speech * 1000),
        min_silence_duration_ms=int(settings.min_silence * 1000), speech_pad_ms=int(settings.pad * 1000),
        return_seconds=False,
    )
    return [Segment(span["start"] / SAMPLE_RATE, span["end"] / SAMPLE_RATE) for span in spans]


def merge_close(segments: Sequence[Segment], gap: float) -> list[Segment]:
    """Join neighbours separated by less than `gap` seconds (texts joined with a space)."""
    ordered = sorted(segments, key=lambda s: s.start)
    close = np.array([b.start - a.end < gap for a, b in zip(ordered[:-1], ordered[1:])], dtype=bool)
    return join(ordered, close)


def join(spans: Sequence[Segment], bridge: np.ndarray) -> list[Segment]:
    """Spans with every bridged pause (`bridge[i]`: between spans i and i + 1) closed, texts joined."""
    joined: list[Segment] = []
    for index, span in enumerate(spans):
        if joined and bridge[index - 1]:
            last = joined[-1]
            text = " ".join(t for t in (last.text, span.text) if t) or None
            joined[-1] = Segment(last.start, max(last.end, span.end), text)
        else:
            joined.append(span)
    return joined


def split_long(segments: Sequence[Segment], max_seconds: float) -> list[Segment]:
    """Spans longer than `max_seconds` split into equal parts (text, if any, stays with the first)."""
    out: list[Segment] = []
    for segment in segments:
        parts = int(np.ceil(segment.duration / max_seconds)) if segment.duration > max_seconds else 1
        step = segment.duration / parts
        for index in range(parts):
            start = segment.start + index * step
            out.append(replace(segment, start=start, end=min(segment.end, start + step),
                               text=segment.text if index == 0 else None))
    return out


_MODEL: dict[str, object] = {}


def _silero(load: object) -> object:
    """One silero model per process (loading it takes 30 ms, but tests call this many times)."""
    if "silero" not in _MODEL:
        _MODEL["silero"] = load()  # type: ignore[operator]
    return _MODEL["silero"]
