"""The `boundaries` stage: which pauses of a recording end an utterance, learned from a corpus's cuts.

A small demo corpus (espeak-ng voices, whose commas pause as long as the gaps between turns) is
rendered and prepared like `dvc repro` does; the stage fits on its train dialogues, chooses on dev,
and the model it writes must find more held-out utterances than plain voice-activity detection.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ConfigError
from pipeline.datasets import demo
from pipeline.datasets.demo.video import ffmpeg_available
from pipeline.datasets.demo.voice import espeak_available
from pipeline.manifest import read_manifest, write_manifest
from pipeline.media import read_audio
from pipeline.predict.boundaries import MODEL_PATH, BoundaryModel, matched, pause_labels, utterance_segments
from pipeline.predict.pauses import FEATURES, pause_features
from pipeline.predict.run import inside, pause_model
from pipeline.predict.segments import SAMPLE_RATE, Segment, join, speech_segments
from pipeline.runner import PlainRunner
from pipeline.stages import get_stage

needs_tools = pytest.mark.skipif(not (espeak_available() and ffmpeg_available()),
                                 reason="rendering needs espeak-ng and ffmpeg on PATH")
CORPUS = {"seed": 11, "dialogues": 15, "turns": [6, 8], "people": [2, 3],
          "labels": ["neutral", "joy", "sadness", "anger"],
          "label_weights": [0.25, 0.25, 0.25, 0.25], "stay_probability": 0.5,
          "cue_fidelity": {"text": 0.65, "audio": 0.65, "visual": 0.65}, "split": [0.6, 0.2, 0.2],
          "width": 320, "height": 180, "fps": 10}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, base_params) -> tuple[Path, dict]:
    """A prepared demo corpus with the boundaries stage run on it."""
    if not (espeak_available() and ffmpeg_available()):
        pytest.skip("rendering needs espeak-ng and ffmpeg on PATH")
    root = tmp_path_factory.mktemp("boundaries")
    params = json.loads(json.dumps(base_params))
    params["dataset"] = {**params["dataset"], "root": str(root / "corpus"), "demo": CORPUS}
    demo.render(CORPUS, root / "corpus")
    with inside(root):
        get_stage("prepare")(params, PlainRunner(1), None)
        summary = get_stage("boundaries")(params, PlainRunner(1), None)
    return root, summary


@needs_tools
def test_the_learned_pauses_find_more_held_out_utterances_than_plain_vad(workspace):
    root, summary = workspace
    metrics = json.loads((root / "metrics" / "boundaries.json").read_text())
    assert summary["learned"] and metrics["learned"]
    assert metrics["matched"] > metrics["plain_vad_matched"]  # dev, where the choice was made
    model = BoundaryModel.load(root / MODEL_PATH)
    assert model is not None and model.vad.min_silence in (0.08, 0.12, 0.16)
    with inside(root):
        manifest = read_manifest()
    test = manifest.frame[manifest.frame.split == "test"]
    found = {"pauses": 0, "vad": 0}
    for media, rows in test.groupby("media"):
        samples = read_audio(manifest.media_path(media), SAMPLE_RATE)
        truth = [Segment(a, b) for a, b in zip(rows.start, rows.end)]
        found["pauses"] += sum(m is not None for m in matched(truth, utterance_segments(samples, model), 0.3))
        found["vad"] += sum(m is not None for m in matched(truth, speech_segments(samples, model.vad), 0.3))
    assert found["pauses"] > found["vad"], found  # test dialogues: never seen by the fit or the choice
    assert found["pauses"] >= 0.8 * len(test), (found, len(test))


@needs_tools
def test_predict_reads_the_project_model_unless_told_to_use_vad(workspace):
    root, _ = workspace
    assert isinstance(pause_model(root, "auto"), BoundaryModel)
    assert pause_model(root, "vad") is None
    assert pause_model(root / "elsewhere", "auto") is None  # no stage output: plain VAD, with a warning
    with pytest.raises(ConfigError, match="--boundaries.*auto, vad"):
        pause_model(root, "sometimes")


def test_a_corpus_of_pre_cut_clips_learns_nothing_and_says_why(tmp_path, base_params):
    rows = [{"utt_id": f"u{i}", "dialogue_id": f"d{i}", "turn": 0, "speaker": "A", "text": "hi", "label": "joy",
             "split": split, "media": f"clip{i}.mp4", "start": None, "end": None}
            for i, split in enumerate(["train", "dev", "test"])]
    with inside(tmp_path):
        write_manifest(pd.DataFrame(rows), tmp_path, ["joy"], "table")
        summary = get_stage("boundaries")(base_params, PlainRunner(1), None)
        assert not summary["learned"] and "pre-cut" in summary["reason"]
        assert pause_model(tmp_path, "auto") is None


def test_unknown_and_bad_settings_fail_naming_the_key(tmp_path, base_params):
    for block, key in (({"min_silences": [0.1]}, "boundaries.min_silences"),
                       ({"vad_threshold": 1.5}, "boundaries.vad_threshold"),
                       ({"min_silence": []}, "boundaries.min_silence")):
        params = {**base_params, "boundaries": block}
        with inside(tmp_path), pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            get_stage("boundaries")(params, PlainRunner(1), None)


def test_pauses_inside_an_utterance_are_labelled_and_joined():
    spans = [Segment(0.0, 1.0), Segment(1.3, 2.0), Segment(2.5, 3.0)]
    truth = [Segment(0.0, 2.0), Segment(2.5, 3.0)]
    labels = pause_labels(spans, truth)
    assert labels.tolist() == [1, 0]
    assert join(spans, labels.astype(bool)) == truth
    assert matched(truth, [Segment(0.1, 1.8), Segment(2.4, 3.4)], 0.3) == [0, None]


def test_pause_features_hear_a_change_of_voice_but_not_a_breath():
    """Two tones an octave apart read as a pitch jump; the same tone on both sides does not."""
    t = np.arange(int(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
    low, high = 0.3 * np.sin(2 * np.pi * 120 * t), 0.3 * np.sin(2 * np.pi * 240 * t)
    silence = np.zeros(int(0.3 * SAMPLE_RATE))
    spans = [Segment(0.0, 0.8), Segment(1.1, 1.9)]
    same = pause_features(np.concatenate([low, silence, low]).astype(np.float32), spans)
    change = pause_features(np.concatenate([low, silence, high]).astype(np.float32), spans)
    pitch = FEATURES.index("pitch_jump")
    assert same.shape == (1, len(FEATURES))
    assert same[0, pitch] < 0.5 and abs(change[0, pitch] - 12.0) < 0.5  # an octave is 12 semitones
    assert abs(same[0, FEATURES.index("gap")] - 0.3) < 1e-6
