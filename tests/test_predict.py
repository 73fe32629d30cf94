"""`merc predict` on recordings nobody cut: VAD or a transcript, the real stages, a really trained model.

The module fixture builds a small project the way `dvc repro` would: three two-person dialogue
videos (real LFW faces, espeak-ng speech, H.264) as train, dev and test, the real cut, faces,
speaker and feature stages, and `train@fusion_gru` (text, audio, faces). Predictions then run on a
fourth recording none of them saw.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config import ConfigError
from pipeline.manifest import write_manifest
from pipeline.media import probe
from pipeline.predict.__main__ import main as predict_main
from pipeline.predict.run import PredictOptions, inside, predict
from pipeline.runner import PlainRunner
from pipeline.stages import get_stage
from tests.conftest import PROJECT
from tests.media_factory import RATE, render_frames, speech, write_video

FPS, WIDTH, HEIGHT = 25, 320, 180
GAP = 0.7  # seconds of silence between the two turns
LABELS = ["neutral", "joy"]
MODEL = "fusion_gru"


def dialogue_video(path: Path, texts: tuple[str, str], faces: list[int] | None = (3, 9), sound: bool = True
                   ) -> list[tuple[float, float]]:
    """Two turns (seat 0 then seat 1) separated by silence; returns each turn's [start, end) seconds."""
    faces = list(faces or [])
    lead = np.zeros(int(0.4 * RATE), np.float32)
    parts, spans, frames, position = [lead], [], [], len(lead) / RATE
    frames.append(render_frames(len(lead) / RATE, FPS, WIDTH, HEIGHT, faces, None, lead)[0])
    for seat, text in enumerate(texts):
        voice = speech(text)
        gap = np.zeros(int(GAP * RATE), np.float32)
        spans.append((position, position + len(voice) / RATE))
        for chunk, speaker in ((voice, seat), (gap, None)):
            frames.append(render_frames(len(chunk) / RATE, FPS, WIDTH, HEIGHT, faces, speaker, chunk)[0])
            parts.append(chunk)
            position += len(chunk) / RATE
    audio = np.concatenate(parts)
    write_video(path, np.concatenate(frames), FPS, audio if sound else None)
    if not sound:
        return []
    return spans


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict_project")
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["speaker"]["method"] = "mouth_motion"
    params["features"] = {k: params["features"][k] for k in ("text", "audio", "visual")}
    params["features"]["visual"]["frames"] = 4
    params["models"] = {MODEL: params["models"][MODEL]}
    params["refine"] = {}
    params["train"].update({"seeds": [0], "epochs": 2, "patience": 1})
    params["run"]["workers"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rows = []
    scripts = {"train": ("I am so happy today.", "That is fine with me."),
               "dev": ("What a lovely surprise.", "We will see about that."),
               "test": ("This is wonderful news.", "The meeting starts at noon.")}
    for split, texts in scripts.items():
        spans = dialogue_video(root / "media" / f"{split}.mp4", texts)
        for turn, ((start, end), text) in enumerate(zip(spans, texts)):
            rows.append({"utt_id": f"{split}_{turn}", "dialogue_id": split, "turn": turn, "speaker": f"p{turn}",
                         "text": text, "label": LABELS[turn], "split": split, "media": f"media/{split}.mp4",
                         "start": start, "end": end})
    with inside(root):
        write_manifest(pd.DataFrame(rows), root, LABELS, "table")
        runner = PlainRunner(1)
        for stage, arg in (("cut", None), ("faces", None), ("speaker", None), ("features", "text"),
                           ("features", "audio"), ("features", "visual"), ("train", MODEL)):
            get_stage(stage)(params, runner, arg)
    return root


@pytest.fixture(scope="module")
def new_video(tmp_path_factory) -> tuple[Path, list[tuple[float, float]]]:
    folder = tmp_path_factory.mktemp("recordings")
    path = folder / "talk.mp4"
    return path, dialogue_video(path, ("Good morning to you all.", "Thank you, it is good to be here."))


def run_predict(project: Path, video: Path, out: Path, **options) -> object:
    return predict(PredictOptions(video, out, MODEL, project=project, workers=1, **options))


def test_without_a_transcript_vad_finds_each_turn_and_the_faces_link_the_speakers(project, new_video, tmp_path):
    video, truth = new_video
    result = run_predict(project, video, tmp_path, asr="none")
    frame = result.frame
    assert len(frame) == len(truth)
    for (start, end), row in zip(truth, frame.itertuples()):
        assert abs(row.start - start) <= 0.3 and abs(row.end - end) <= 0.3, (start, end, row.start, row.end)
    assert frame.speaker.tolist() == ["S1", "S2"]  # two seats, two people
    assert (frame.track_id >= 0).all()
    probabilities = frame[[f"p_{label}" for label in LABELS]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    assert set(frame.emotion) <= set(LABELS)
    assert result.info["segments"] == "vad+none" and result.info["real_time_factor"] > 0


def test_a_transcript_gives_the_segments_and_the_text(project, new_video, tmp_path):
    video, _ = new_video
    srt = tmp_path / "talk.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:02,000\nGood morning to you all.\n\n"
                   "2\n00:00:02,900 --> 00:00:05,100\nThank you, it is good\nto be here.\n")
    result = run_predict(project, video, tmp_path / "out", transcript=srt)
    frame = result.frame
    assert frame[["start", "end"]].to_numpy().tolist() == [[0.5, 2.0], [2.9, 5.1]]
    assert frame.text.tolist() == ["Good morning to you all.", "Thank you, it is good to be here."]
    assert result.info["segments"] == "transcript:talk.srt"


def test_the_command_writes_the_table_a_timeline_per_speaker_and_an_annotated_video(project, new_video, tmp_path,
                                                                                    monkeypatch, capsys):
    video, _ = new_video
    out = tmp_path / "cli"
    monkeypatch.chdir(project)
    assert predict_main(["predict", str(video), "--model", MODEL, "--out", str(out), "--asr", "none",
                         "--workers", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 2 and {"start", "end", "speaker", "emotion", "speaker_confidence"} <= set(table.columns)
    assert json.loads((out / "predictions.json").read_text())["info"]["model"] == MODEL
    assert sorted(p.name for p in out.glob("timeline_*.png")) == ["timeline_S1.png", "timeline_S2.png"]
    annotated = probe(out / "annotated.mp4")
    source = probe(video)
    assert annotated.has_video and annotated.has_audio and annotated.frame_count == source.frame_count
    assert str(out / "annotated.mp4") in summary["outputs"]


def test_a_recording_without_speech_gives_no_utterance_and_still_writes_the_outputs(project, tmp_path):
    video = tmp_path / "silent.mp4"
    silence = np.zeros(int(3 * RATE), np.float32)
    write_video(video, render_frames(3.0, FPS, WIDTH, HEIGHT, [3, 9], None, silence)[0], FPS, silence)
    result = run_predict(project, video, tmp_path / "out", asr="none")
    assert result.frame.empty and result.info["utterances"] == 0


def test_a_recording_without_faces_is_scored_with_its_face_input_missing(project, tmp_path):
    video = tmp_path / "no_face.mp4"
    truth = dialogue_video(video, ("Hello there.", "How are you today?"), faces=None)
    result = run_predict(project, video, tmp_path / "out", asr="none")
    frame = result.frame
    assert len(frame) == len(truth)
    assert (frame.track_id == -1).all() and (frame.speaker == "?").all()
    assert frame.emotion.notna().all()


def test_a_model_whose_extractor_cannot_be_loaded_is_refused_by_name(project, new_video, tmp_path):
    video, _ = new_video
    broken = project / "artifacts" / "models" / MODEL
    target = project / "artifacts" / "models" / "broken_text"
    shutil.copytree(broken, target, dirs_exist_ok=True)
    config_path = target / "seed0" / "config.json"
    config = json.loads(config_path.read_text())
    config["features"]["text"]["metadata"]["config"]["model"] = str(tmp_path / "no_such_encoder")
    config_path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"input 'text' needs extractor 'minilm'.*cannot load"):
        predict(PredictOptions(video, tmp_path / "out", "broken_text", project=project, workers=1))


def test_an_unknown_model_names_the_trained_ones(project, new_video, tmp_path):
    with pytest.raises(ConfigError, match=rf"no trained model 'nope'.*trained models: .*{MODEL}"):
        predict(PredictOptions(new_video[0], tmp_path, "nope", project=project))


def test_a_real_voxceleb2_clip_gets_all_three_outputs(project, shared_data, tmp_path, monkeypatch, capsys):
    clip = shared_data / "clips" / "voxceleb2" / "pcavs_00015.mp4"
    out = tmp_path / "vox"
    monkeypatch.chdir(project)
    assert predict_main(["predict", str(clip), "--model", MODEL, "--out", str(out), "--workers", "1"]) == 0
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) >= 1 and table.emotion.isin(LABELS).all()
    assert (table.track_id >= 0).any()  # the person's face was found and chosen
    assert table.text.notna().any()  # PocketSphinx heard something
    assert list(out.glob("timeline_*.png"))
    assert probe(out / "annotated.mp4").frame_count == probe(clip).frame_count
