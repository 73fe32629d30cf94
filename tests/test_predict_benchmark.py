"""`benchmarks/predict.py` counts an utterance as found only when both of its ends are within 0.3 s."""

from __future__ import annotations

import pandas as pd

from benchmarks.predict import matches
from pipeline.predict.segments import Segment


def test_an_utterance_is_matched_only_by_a_segment_close_at_both_ends():
    truth = pd.DataFrame({"start": [1.0, 4.0, 8.0], "end": [3.0, 6.0, 9.0]})
    segments = [Segment(1.2, 2.8), Segment(4.0, 6.5), Segment(7.9, 9.25)]
    assert matches(truth, segments) == [0, None, 2]
    assert matches(truth, []) == [None, None, None]
