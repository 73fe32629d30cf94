"""The embedded demo corpus: determinism, manifest contract, decodable media, detectable faces,
a speaker whose mouth moves with the audio, and configuration errors that name their key."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from pipeline.config import ConfigError
from pipeline.datasets import demo
from pipeline.datasets.demo.__main__ import main as render_command
from pipeline.datasets.demo.config import parse
from pipeline.datasets.demo.faces import LANDMARKS, AnimatedFace
from pipeline.datasets.demo.plan import plan_corpus, split_sizes
from pipeline.datasets.demo.video import ffmpeg_available
from pipeline.datasets.demo.voice import espeak_available
from pipeline.schema import MANIFEST_COLUMNS, MANIFEST_TRUTH_COLUMNS, SPLITS
from pipeline.tables import read_metadata

TINY = {
    "seed": 3,
    "dialogues": 3,
    "turns": [2, 3],
    "people": [2, 3],
    "labels": ["neutral", "joy", "sadness", "anger"],
    "label_weights": [0.4, 0.2, 0.2, 0.2],
    "stay_probability": 0.5,
    "cue_fidelity": {"text": 0.65, "audio": 0.65, "visual": 0.65},
    "split": [0.6, 0.2, 0.2],
    "width": 320,
    "height": 180,
    "fps": 25,
}

needs_tools = pytest.mark.skipif(
    not (espeak_available() and ffmpeg_available()), reason="rendering needs espeak-ng and ffmpeg on PATH"
)


def tiny(**changes) -> dict:
    params = copy.deepcopy(TINY)
    params.update(changes)
    return params


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if not (espeak_available() and ffmpeg_available()):
        pytest.skip("rendering needs espeak-ng and ffmpeg on PATH")
    root = tmp_path_factory.mktemp("demo") / "corpus"
    demo.render(TINY, root)
    return root


@pytest.fixture(scope="module")
def annotations(corpus) -> pd.DataFrame:
    return pd.read_parquet(corpus / demo.ANNOTATIONS)


def decode(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """All frames (grey, float) and the mono audio of a video, plus stream facts."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        facts = {
            "fps": float(video.average_rate),
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "audio_streams": len(container.streams.audio),
        }
        frames = np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)]).astype(np.float32)
    with av.open(str(path)) as container:
        facts["sample_rate"] = container.streams.audio[0].rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return frames, audio, facts


def rgb_frame(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise IndexError(index)


def rms(audio: np.ndarray, start: float, end: float) -> float:
    return float(np.sqrt(np.mean(audio[int(start * 16000) : int(end * 16000)] ** 2)))


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --- manifest contract -------------------------------------------------------------------------


def test_manifest_columns_ids_and_labels(corpus, annotations):
    manifest = demo.build_manifest({"demo": TINY}, corpus)
    assert list(manifest.frame.columns) == list(MANIFEST_COLUMNS) + list(MANIFEST_TRUTH_COLUMNS)
    assert manifest.labels == TINY["labels"]
    assert manifest.failures == []
    frame = manifest.frame
    assert len(frame) == len(annotations) and 6 <= len(frame) <= 9
    assert frame["utt_id"].is_unique
    for row in frame.itertuples():
        assert re.fullmatch(r"demo_d\d{3}/\d{2}", row.utt_id)
        assert row.utt_id == f"{row.dialogue_id}/{row.turn:02d}"
        assert row.media == f"videos/{row.dialogue_id}.mp4" and (corpus / row.media).is_file()
        boxes = json.loads(row.true_boxes)
        assert 2 <= len(boxes) <= 3 and 0 <= row.true_speaker < len(boxes)
        assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)  # seats left to right
        assert all(0 <= x1 < x2 <= TINY["width"] and 0 <= y1 < y2 <= TINY["height"] for x1, y1, x2, y2 in boxes)
        assert row.text.strip() and row.end > row.start >= 0.3
    assert set(frame["label"]) == set(TINY["labels"])  # every label appears


def test_speakers_are_stable_per_seat_and_utterances_follow_with_short_silences(annotations):
    seats = annotations.groupby(["dialogue_id", "true_speaker"])["speaker"].nunique()
    assert (seats == 1).all()
    names = annotations.groupby("speaker")[["dialogue_id", "true_speaker"]].nunique()
    assert (names == 1).all().all()
    for _, dialogue in annotations.groupby("dialogue_id"):
        dialogue = dialogue.sort_values("turn")
        assert list(dialogue["turn"]) == list(range(len(dialogue)))
        gaps = dialogue["start"].to_numpy()[1:] - dialogue["end"].to_numpy()[:-1]
        assert np.all(gaps >= 0.2 - 1e-6) and np.all(gaps <= 0.6 + 1e-6)


def test_splits_are_by_dialogue_and_none_is_empty(annotations):
    per_dialogue = annotations.groupby("dialogue_id")["split"].nunique()
    assert (per_dialogue == 1).all()
    assert set(annotations["split"]) == set(SPLITS)
    assert split_sizes(3, (0.6, 0.2, 0.2)) == (1, 1, 1)
    assert split_sizes(30, (0.6, 0.2, 0.2)) == (18, 6, 6)


def test_corpus_has_readme_and_metadata(corpus):
    text = (corpus / "README.txt").read_text()
    assert "demo corpus" in text and "seed: 3" in text
    meta = read_metadata(corpus / demo.ANNOTATIONS)
    assert meta["labels"] == TINY["labels"] and meta["params"]["seed"] == 3


# --- determinism ---------------------------------------------------------------------------------


@needs_tools
def test_same_params_render_the_same_corpus(corpus, annotations, tmp_path):
    again = tmp_path / "again"
    demo.render(TINY, again)
    pd.testing.assert_frame_equal(annotations, pd.read_parquet(again / demo.ANNOTATIONS))
    for media in annotations["media"].unique():
        _, first, _ = decode(corpus / media)
        _, second, _ = decode(again / media)
        assert first.shape == second.shape and np.array_equal(first, second)


def test_seed_changes_the_plan():
    texts = [t.text for p in plan_corpus(parse(TINY)) for t in p.turns]
    other = [t.text for p in plan_corpus(parse(tiny(seed=4))) for t in p.turns]
    assert texts == [t.text for p in plan_corpus(parse(TINY)) for t in p.turns]
    assert texts != other


# --- media -----------------------------------------------------------------------------------------


def test_videos_decode_with_expected_rate_size_duration_and_audio(corpus, annotations):
    for media, rows in annotations.groupby("media"):
        frames, audio, facts = decode(corpus / media)
        assert facts["fps"] == pytest.approx(TINY["fps"])
        assert (facts["width"], facts["height"]) == (TINY["width"], TINY["height"])
        assert facts["audio_streams"] == 1 and facts["sample_rate"] == 16000
        duration = len(frames) / TINY["fps"]
        assert rows["end"].max() + 0.3 <= duration <= rows["end"].max() + 0.5
        assert abs(len(audio) / 16000 - duration) < 0.1
        # speech sits where the annotations say: loud inside utterances, near-silent in the lead-in
        silence = rms(audio, 0.0, 0.25)
        assert silence < 0.01
        for row in rows.itertuples():
            assert rms(audio, row.start, row.end) > 10 * silence


def test_mtcnn_finds_one_face_per_seat_near_the_recorded_boxes(corpus, annotations):
    from facenet_pytorch import MTCNN

    detector = MTCNN(keep_all=True, device="cpu")
    for row in annotations.groupby("dialogue_id").head(1).itertuples():
        frame = rgb_frame(corpus / row.media, int((row.start + row.end) / 2 * TINY["fps"]))
        boxes, probs = detector.detect(frame)
        assert boxes is not None
        boxes, probs = boxes.astype(np.float32), probs.astype(np.float32)
        truth = json.loads(row.true_boxes)
        assert len(boxes) == len(truth)
        for seat in truth:
            best = int(np.argmax([iou(seat, box) for box in boxes]))
            assert iou(seat, boxes[best]) > 0.45 and probs[best] > 0.97


def test_speaker_mouth_moves_with_the_audio_and_listeners_do_not(corpus, annotations):
    fps = TINY["fps"]
    speaker_corr, listener_corr, speaker_motion, listener_motion, wins = [], [], [], [], []
    for media, rows in annotations.groupby("media"):
        frames, audio, _ = decode(corpus / media)
        hop = int(16000 / fps)
        envelope = np.sqrt(np.mean(audio[: len(audio) // hop * hop].reshape(-1, hop) ** 2, axis=1))
        darkness = []
        for (x1, y1, x2, _), face in zip(json.loads(rows["true_boxes"].iloc[0]), json.loads(rows["faces"].iloc[0])):
            side = x2 - x1
            mx, my = (np.asarray(LANDMARKS[face]).reshape(5, 2)[3:].mean(axis=0) * side + [x1, y1]).astype(int)
            half = int(0.15 * side)
            darkness.append(255.0 - frames[:, my - half // 2 : my + half, mx - half : mx + half].mean(axis=(1, 2)))
        for row in rows.itertuples():
            f0, f1 = int(row.start * fps), int(np.ceil(row.end * fps))
            corr = [np.corrcoef(d[f0:f1], envelope[f0:f1])[0, 1] for d in darkness]
            motion = [np.abs(np.diff(d[f0:f1])).mean() for d in darkness]
            others = [seat for seat in range(len(darkness)) if seat != row.true_speaker]
            speaker_corr.append(corr[row.true_speaker])
            listener_corr.extend(corr[s] for s in others)
            speaker_motion.append(motion[row.true_speaker])
            listener_motion.extend(motion[s] for s in others)
            wins.append(corr[row.true_speaker] > max(corr[s] for s in others))
    assert np.mean(wins) >= 0.75
    assert np.mean(speaker_corr) > 0.6 and np.mean(listener_corr) < 0.3
    assert np.mean(speaker_motion) > np.mean(listener_motion)
    assert max(listener_motion) > 0  # listeners are not frozen: motion alone is not the cue


def test_expressions_change_the_face_in_the_intended_direction():
    face = AnimatedFace(next(iter(LANDMARKS)), 120, (1.0, 0.85, 0.72))
    neutral = face.render()
    skin = (slice(40, 80), slice(30, 90))

    def red_blue(img):
        return img[skin][..., 0].mean() / img[skin][..., 2].mean()

    assert red_blue(face.render("anger", 1.0)) > red_blue(neutral) * 1.1
    assert red_blue(face.render("sadness", 1.0)) < red_blue(neutral) * 0.9
    assert face.render("joy", 1.0)[skin].mean() > neutral[skin].mean()
    mx, my = (np.asarray(LANDMARKS[face.index]).reshape(5, 2)[3:].mean(axis=0) * 120).astype(int)
    mouth = (slice(my - 4, my + 10), slice(mx - 10, mx + 10))
    assert face.render(opening=1.0)[mouth].mean() < neutral[mouth].mean() - 0.05


# --- planning -------------------------------------------------------------------------------------


def test_cue_fidelity_controls_each_modality_independently():
    fidelity = {"text": 1.0, "audio": 0.0, "visual": 1.0}
    plans = plan_corpus(parse(tiny(dialogues=12, turns=[4, 6], cue_fidelity=fidelity)))
    turns = [t for p in plans for t in p.turns]
    assert all(t.cues["text"] == t.label and t.cues["visual"] == t.label for t in turns)
    assert all(t.cues["audio"] != t.label for t in turns)


def test_stay_probability_one_keeps_each_speakers_emotion():
    plans = plan_corpus(parse(tiny(dialogues=8, turns=[6, 8], stay_probability=1.0)))
    for plan in plans:
        by_speaker: dict[int, set[str]] = {}
        for turn in plan.turns:
            by_speaker.setdefault(turn.speaker, set()).add(turn.label)
        assert all(len(labels) == 1 for labels in by_speaker.values())


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"labels": ["neutral", "boredom"], "label_weights": [1, 1]}, "dataset.demo.labels"),
        ({"label_weights": [1, 1]}, "dataset.demo.label_weights"),
        ({"width": 321}, "dataset.demo.width"),
        ({"dialogues": 2}, "dataset.demo.dialogues"),
        ({"cue_fidelity": {"text": 1.5, "audio": 0.5, "visual": 0.5}}, "dataset.demo.cue_fidelity.text"),
        ({"split": [0.8, 0.2, 0.0]}, "dataset.demo.split"),
        ({"people": [3, 2]}, "dataset.demo.people"),
        ({"width": 96, "height": 64}, "dataset.demo.width"),
    ],
)
def test_bad_params_raise_config_error_naming_the_key(change, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        parse(tiny(**change))


def test_unknown_label_error_lists_allowed_values():
    with pytest.raises(ConfigError, match="allowed values: neutral, joy, sadness, anger"):
        parse(tiny(labels=["neutral", "boredom"], label_weights=[1, 1]))


def test_missing_key_is_named():
    params = tiny()
    del params["seed"]
    with pytest.raises(ConfigError, match="dataset.demo.seed"):
        parse(params)


def test_build_manifest_without_a_corpus_names_dataset_root(tmp_path):
    with pytest.raises(ConfigError, match="dataset.root"):
        demo.build_manifest({"demo": TINY}, tmp_path / "nothing")


def test_build_manifest_refuses_a_corpus_rendered_from_other_params(corpus):
    with pytest.raises(ConfigError, match=r"dataset.demo.*seed"):
        demo.build_manifest({"demo": tiny(seed=99)}, corpus)


def test_missing_video_becomes_failures_not_a_crash(corpus, annotations, tmp_path):
    copy_root = tmp_path / "copy"
    shutil.copytree(corpus, copy_root)
    lost = annotations["media"].iloc[0]
    (copy_root / lost).unlink()
    manifest = demo.build_manifest({"demo": TINY}, copy_root)
    lost_ids = set(annotations.loc[annotations["media"] == lost, "utt_id"])
    assert {f.utt_id for f in manifest.failures} == lost_ids
    assert all("missing" in f.reason for f in manifest.failures)
    assert len(manifest.frame) == len(annotations) - len(lost_ids)


# --- atomic writes and the command line ---------------------------------------------------------


@needs_tools
def test_failed_render_keeps_the_previous_corpus_and_leaves_no_debris(corpus, tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    shutil.copytree(corpus, root)
    before = (root / demo.ANNOTATIONS).read_bytes()
    real = demo.render_dialogue

    def failing(plan, *args, **kwargs):
        if plan.index == 1:
            raise RuntimeError("disk full")
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(demo, "render_dialogue", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        demo.render(tiny(seed=5), root)
    assert (root / demo.ANNOTATIONS).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]


@needs_tools
def test_command_line_renders_from_params_and_skips_when_current(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    root = tmp_path / "out"
    dataset = {"name": "demo", "root": str(root), "demo": tiny(dialogues=3, turns=[1, 1])}
    params.write_text(json.dumps({"dataset": dataset}))
    assert render_command(["--params", str(params)]) == 0
    frame = pd.read_parquet(root / demo.ANNOTATIONS)
    assert len(frame) == 3 and frame["dialogue_id"].nunique() == 3
    assert render_command(["--params", str(params)]) == 0
    assert "up to date" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"dataset": {"root": str(root), "demo": tiny(width=33)}}))
    assert render_command(["--params", str(bad)]) == 2
    assert "dataset.demo.width" in capsys.readouterr().err


def test_render_refuses_to_replace_a_folder_that_is_not_a_corpus(tmp_path):
    keep = tmp_path / "project"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="dataset.root"):
        demo.render(TINY, keep)
    assert (keep / "notes.txt").read_text() == "mine"
