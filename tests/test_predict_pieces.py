"""The parts `merc predict` builds utterances from: transcripts, speech segments, recognisers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ConfigError
from pipeline.datasets.demo.voice import trim_silence
from pipeline.predict.asr import recogniser
from pipeline.predict.segments import Segment, VadSettings, merge_close, speech_segments, split_long
from pipeline.predict.transcript import read_transcript
from tests.media_factory import RATE, speech


def test_webvtt_cues_with_tags_and_hours(tmp_path):
    vtt = tmp_path / "a.vtt"
    vtt.write_text("WEBVTT\n\nintro\n01:00:01.000 --> 01:00:02.500 align:start\n<v Ann>Hello</v> there\n\n"
                   "00:00:00.250 --> 00:00:01.000\nFirst\n")
    segments, speakers = read_transcript(vtt)
    assert segments == [Segment(0.25, 1.0, "First"), Segment(3601.0, 3602.5, "Hello there")]
    assert speakers == [None, None]


def test_a_table_transcript_keeps_its_speakers_and_rejects_a_bad_time(tmp_path):
    table = tmp_path / "t.csv"
    pd.DataFrame({"start": ["0.5", "00:00:02.0"], "end": [1.5, 3.0], "text": ["a", "b"],
                  "speaker": ["Ann", ""]}).to_csv(table, index=False)
    segments, speakers = read_transcript(table)
    assert [(s.start, s.end, s.text) for s in segments] == [(0.5, 1.5, "a"), (2.0, 3.0, "b")]
    assert speakers == ["Ann", None]
    pd.DataFrame({"start": ["soon"], "end": [1], "text": ["x"]}).to_csv(table, index=False)
    with pytest.raises(ConfigError, match="'soon' is not a time"):
        read_transcript(table)
    pd.DataFrame({"begin": [0], "end": [1], "text": ["x"]}).to_csv(table, index=False)
    with pytest.raises(ConfigError, match="no column.*start"):
        read_transcript(table)
    with pytest.raises(ConfigError, match="allowed file types"):
        read_transcript(tmp_path / "t.csv.txt") if (tmp_path / "t.csv.txt").write_text("x") else None


def test_close_spans_merge_and_long_ones_split():
    merged = merge_close([Segment(0, 1, "a"), Segment(1.1, 2, "b"), Segment(3, 4)], gap=0.2)
    assert merged == [Segment(0, 2, "a b"), Segment(3, 4)]
    parts = split_long([Segment(0, 65, "t")], max_seconds=30)
    assert [(round(p.start, 3), round(p.end, 3), p.text) for p in parts] == [
        (0.0, 21.667, "t"), (21.667, 43.333, None), (43.333, 65.0, None)]


def test_vad_finds_speech_between_silences_and_nothing_in_silence():
    voice = trim_silence(speech("The weather is lovely today"))  # espeak-ng pads its speech with silence
    samples = np.concatenate([np.zeros(RATE, np.float32), voice, np.zeros(RATE, np.float32)])
    segments = speech_segments(samples, VadSettings())
    assert len(segments) == 1
    assert abs(segments[0].start - 1.0) < 0.2 and abs(segments[0].end - (1.0 + len(voice) / RATE)) < 0.2
    assert speech_segments(np.zeros(3 * RATE, np.float32)) == []
    assert speech_segments(np.zeros(0, np.float32)) == []


def test_recognisers():
    assert recogniser("none").transcribe(np.zeros(RATE, np.float32)) is None
    sphinx = recogniser("auto")
    assert sphinx.name == "pocketsphinx"
    text = sphinx.transcribe(speech("hello how are you"))
    assert text and any(word in text.split() for word in ("hello", "how", "are", "you"))
    with pytest.raises(ConfigError, match="--asr is 'google'; allowed values: auto, whisper"):
        recogniser("google")
    with pytest.raises(ConfigError, match="needs --asr-model"):
        recogniser("whisper")
