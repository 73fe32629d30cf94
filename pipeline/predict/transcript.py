"""A user's transcript of a recording: SRT, WebVTT, or a CSV/TSV/Parquet table of utterances.

When a transcript is given its segments and text win over voice-activity detection and speech
recognition. A table needs `start` and `end` (seconds, or `HH:MM:SS.mmm`) and `text`; a `speaker`
column, when there, names each utterance's speaker.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from pipeline.config import ConfigError
from pipeline.datasets.encoding import read_text
from pipeline.datasets.table import parse_seconds, read_table
from pipeline.predict.segments import Segment

CUE_TIME = re.compile(r"(?P<start>\d*:?\d+:\d+[.,]\d+)\s*-->\s*(?P<end>\d*:?\d+:\d+[.,]\d+)")
TAG = re.compile(r"<[^>]+>")
FORMATS = (".srt", ".vtt", ".csv", ".tsv", ".parquet")


def read_transcript(path: str | Path) -> tuple[list[Segment], list[str | None]]:
    """Segments in time order and, per segment, the speaker the transcript names (None when it names none)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--transcript: {path} not found")
    suffix = path.suffix.lower()
    if suffix in (".srt", ".vtt"):
        segments = _cues(read_text(path))
        speakers: list[str | None] = [None] * len(segments)
    elif suffix in FORMATS:
        segments, speakers = _table(path)
    else:
        raise ConfigError(f"--transcript: {path} is not a transcript; allowed file types: {', '.join(FORMATS)}")
    if not segments:
        raise ConfigError(f"--transcript: {path} holds no timed utterance")
    order = sorted(range(len(segments)), key=lambda i: segments[i].start)
    return [segments[i] for i in order], [speakers[i] for i in order]


def _cues(text: str) -> list[Segment]:
    """SRT and WebVTT cues: a `start --> end` line followed by text lines, up to a blank line."""
    segments: list[Segment] = []
    lines = text.replace("\r\n", "\n").split("\n")
    index = 0
    while index < len(lines):
        match = CUE_TIME.search(lines[index])
        index += 1
        if not match:
            continue
        words = []
        while index < len(lines) and lines[index].strip():
            words.append(TAG.sub("", lines[index]).strip())
            index += 1
        start, end = parse_seconds(match["start"]), parse_seconds(match["end"])
        if end > start:
            segments.append(Segment(start, end, " ".join(w for w in words if w) or None))
    return segments


def _table(path: Path) -> tuple[list[Segment], list[str | None]]:
    frame = read_table(path)
    missing = [c for c in ("start", "end", "text") if c not in frame.columns]
    if missing:
        raise ConfigError(f"--transcript: {path} has no column(s) {', '.join(missing)}; "
                          "a transcript table needs start, end and text (speaker optional)")
    segments, speakers = [], []
    for row in frame.itertuples(index=False):
        try:
            start, end = parse_seconds(row.start), parse_seconds(row.end)
        except ValueError as error:
            raise ConfigError(f"--transcript: {path}: {error}") from None
        if end > start:
            text = str(row.text).strip() if not pd.isna(row.text) else ""
            segments.append(Segment(start, end, text or None))
            speaker = getattr(row, "speaker", None)
            speakers.append(None if speaker is None or pd.isna(speaker) or not str(speaker).strip()
                            else str(speaker).strip())
    return segments, speakers
