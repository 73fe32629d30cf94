"""Column contracts of the tables stages exchange, in one place. Every table joins on `utt_id`.

The tables a stage writes with pyarrow are declared here as the `pa.schema` the writer uses
(`CUTS_SCHEMA`, ...), so what is written and what a reader expects cannot drift apart; the
manifest, written from pandas by the corpus adapters, is a tuple of column names. `require_columns`
lets a stage check its input at the door and fail with a message that names the missing column
instead of a KeyError deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import pyarrow as pa

SPLITS = ("train", "dev", "test")

# data/manifest.parquet — one row per utterance. `media` is relative to the corpus root (stored in
# the file metadata as `root`); `start`/`end` are seconds inside the media, NaN meaning the whole
# file (pre-cut clips). Metadata also holds `dataset` and `labels` (class order).
MANIFEST_COLUMNS = ("utt_id", "dialogue_id", "turn", "speaker", "text", "label", "split", "media", "start", "end")
# Optional ground truth some corpora (the demo) provide so later stages can be scored:
# `true_speaker` = index into `true_boxes` (JSON list of [x1, y1, x2, y2] in source pixels).
MANIFEST_TRUTH_COLUMNS = ("true_speaker", "true_boxes")
# Optional corpus facts an adapter writes so that its rules stay in the adapter: `session` (recording
# session of the dialogue, e.g. IEMOCAP `Ses01`; read by `folds: session`) and `seat_hint` (`left` or
# `right`: the speaker's half of a shared frame; read by `speaker.method: gender_side`).
MANIFEST_OPTIONAL_COLUMNS = ("session", "seat_hint")

# data/cuts.parquet — one row per utterance that has usable media. Frames are indices into the
# source video (no re-encode): [start_frame, end_frame). `audio` is the 16 kHz mono wav path.
CUTS_SCHEMA = pa.schema([
    ("utt_id", pa.string()),
    ("media", pa.string()),
    ("audio", pa.string()),
    ("fps", pa.float64()),
    ("start_frame", pa.int64()),
    ("end_frame", pa.int64()),
    ("start", pa.float64()),
    ("duration", pa.float64()),
    ("width", pa.int64()),
    ("height", pa.int64()),
    ("has_video", pa.bool_()),
])

# data/faces.parquet — one row per (utterance, track, sampled frame); boxes in source pixels.
FACES_SCHEMA = pa.schema([
    ("utt_id", pa.string()),
    ("track_id", pa.int64()),
    ("frame", pa.int64()),
    ("x1", pa.float64()),
    ("y1", pa.float64()),
    ("x2", pa.float64()),
    ("y2", pa.float64()),
    ("score", pa.float64()),
    ("interpolated", pa.bool_()),
])

# data/speaker.parquet — the chosen face track per utterance and why (`scores`: JSON, track id -> score).
SPEAKER_SCHEMA = pa.schema([
    ("utt_id", pa.string()),
    ("track_id", pa.int64()),
    ("reason", pa.string()),
    ("confidence", pa.float64()),
    ("scores", pa.string()),
    ("method", pa.string()),
])
SPEAKER_REASONS = ("no_face", "single_face", "scored", "low_confidence")

# data/speaker_tracks/crops.parquet — JPEG face crops of the chosen track, in frame order.
CROPS_SCHEMA = pa.schema([("utt_id", pa.string()), ("frame", pa.int64()), ("jpeg", pa.binary())])


def require_columns(frame: pd.DataFrame, columns: Iterable[str], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}: missing column(s) {', '.join(missing)}; has {', '.join(frame.columns)}")
