"""`benchmarks/predict.py`'s two readings of a found utterance: both ends within 0.3 s, or most overlap."""

from __future__ import annotations

import pandas as pd

from benchmarks.predict import TOLERANCE, by_overlap, found
from pipeline.predict.boundaries import matched
from pipeline.predict.segments import Segment


def test_an_utterance_is_matched_only_by_a_segment_close_at_both_ends():
    truth = [Segment(1.0, 3.0), Segment(4.0, 6.0), Segment(8.0, 9.0)]
    segments = [Segment(1.2, 2.8), Segment(4.0, 6.5), Segment(7.9, 9.25)]
    assert matched(truth, segments, TOLERANCE) == [0, None, 2]
    assert matched(truth, [], TOLERANCE) == [None, None, None]
    assert found(truth, segments) == 2


def test_by_overlap_each_utterance_takes_the_segment_covering_most_of_it():
    truth = [Segment(1.0, 3.0), Segment(4.0, 6.0), Segment(10.0, 11.0)]
    frame = pd.DataFrame({"start": [0.5, 3.5, 5.5], "end": [3.5, 5.2, 9.0], "emotion": ["joy", "anger", "sadness"]})
    assert by_overlap(truth, frame) == ["joy", "anger", None]  # 4-6: 1.2 s with anger, 0.5 s with sadness
    assert by_overlap(truth, frame.iloc[:0]) == [None, None, None]
