"""The media stages (cut, faces, speaker, failures) on tiny real videos, including broken ones."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipeline import paths
from pipeline.hooks import silent_hook
from pipeline.ledger import read_ledger
from pipeline.manifest import write_manifest
from pipeline.runner import PlainRunner
from pipeline.stages import cut, faces, failures, speaker
from pipeline.tables import read_frame
from tests import media_factory as mf

LABELS = ["neutral", "joy"]


def _row(utt, media, start=np.nan, end=np.nan, text="hello there", turn=0):
    return {"utt_id": utt, "dialogue_id": utt.split("/")[0], "turn": turn, "speaker": "s", "text": text,
            "label": "joy", "split": "train", "media": media, "start": start, "end": end}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A workspace with a manifest over good and broken clips; stages run inside it."""
    root = tmp_path_factory.mktemp("media_stages")
    corpus = root / "corpus"
    truth = {
        "two": (mf.talking_clip(corpus / "two.mp4", "the weather is lovely today my friend", [3, 7], 1), 1),
        "three": (mf.talking_clip(corpus / "three.mp4", "we should leave before the rain starts", [1, 4, 9], 0), 0),
        "short": (mf.talking_clip(corpus / "short.mp4", "yes", [2, 5], 0), 0),
    }
    mf.talking_clip(corpus / "noface.mp4", "nobody is here", [], None)
    mf.talking_clip(corpus / "silent.mp4", "no sound at all", [6], None, with_audio=False)
    mf.corrupt_file(corpus / "corrupt.mp4")
    rows = [
        _row("two/0", "two.mp4", 0.0, 1.2), _row("two/1", "two.mp4", 1.2, None, turn=1),
        _row("three/0", "three.mp4"), _row("short/0", "short.mp4"), _row("noface/0", "noface.mp4"),
        _row("silent/0", "silent.mp4"), _row("corrupt/0", "corrupt.mp4"),
    ]
    frame = pd.DataFrame(rows)
    frame.loc[frame.utt_id == "two/1", "end"] = np.nan
    return root, corpus, frame, truth


@pytest.fixture(scope="module")
def ran(corpus, base_params):
    """Run cut -> faces -> speaker -> failures once for the module."""
    root, corpus_dir, frame, truth = corpus
    params = json.loads(json.dumps(base_params))
    params["faces"]["detect_width"] = 320
    params["run"]["max_failure_ratio"] = 0.9
    params["speaker"]["method"] = "mouth_motion"  # training-free; LipSyncNet is trained from these outputs below
    runner = PlainRunner(workers=1, hook=silent_hook)
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    write_manifest(frame, corpus_dir, LABELS, "test")
    summaries = {stage.__name__.rsplit(".", 1)[-1]: stage.run(params, runner) for stage in (cut, faces, speaker)}
    summaries["failures"] = failures.run(params, runner)
    yield root, summaries, truth, params
    mp.undo()


def test_cut_writes_16k_mono_wavs_and_frame_ranges(ran):
    root, summaries, _, _ = ran
    cuts = read_frame(root / paths.CUTS).set_index("utt_id")
    assert set(cuts.index) == {"two/0", "two/1", "three/0", "short/0", "noface/0"}
    audio, rate = sf.read(root / cuts.at["two/0", "audio"])
    assert rate == 16000 and audio.ndim == 1
    assert abs(len(audio) / rate - 1.2) < 0.01
    # the long recording is cut by time stamps; frames index into the source at 25 fps
    assert cuts.at["two/0", "start_frame"] == 0 and cuts.at["two/0", "end_frame"] == 30
    assert cuts.at["two/1", "start_frame"] == 30 and cuts.at["two/1", "end_frame"] > 30
    assert cuts.at["two/1", "has_video"]


def test_broken_media_is_recorded_with_a_reason(ran):
    root, *_ = ran
    ledger = {f.utt_id: f.reason for f in read_ledger(root / paths.stage_ledger("cut"))}
    assert ledger["silent/0"] == "no audio stream"
    assert ledger["corrupt/0"].startswith("corrupt or unreadable media")
    merged = read_frame(root / paths.FAILURES)
    assert {"cut", "faces"} <= set(merged.stage)
    assert list(merged.columns) == ["stage", "utt_id", "reason"]


def test_faces_tracks_every_visible_face(ran):
    root, *_ = ran
    tracks = read_frame(root / paths.FACES)
    counts = tracks.groupby("utt_id").track_id.nunique().to_dict()
    assert counts["two/0"] == 2 and counts["three/0"] == 3
    assert counts["short/0"] == 2, "a sub-second clip still gets its tracks"
    assert (tracks.score[~tracks.interpolated] > 0.9).all()
    faces_ledger = {f.utt_id: f.reason for f in read_ledger(root / paths.stage_ledger("faces"))}
    assert faces_ledger["noface/0"].startswith("no face detected")


def test_speaker_picks_the_face_whose_mouth_follows_the_audio(ran):
    root, summaries, truth, _ = ran
    choices = read_frame(root / paths.SPEAKER).set_index("utt_id")
    tracks = read_frame(root / paths.FACES)
    for utt, clip in [("two/0", "two"), ("three/0", "three")]:
        boxes, true_seat = truth[clip]
        chosen = tracks[(tracks.utt_id == utt) & (tracks.track_id == choices.at[utt, "track_id"])]
        centre_x = ((chosen.x1 + chosen.x2) / 2).mean()
        seat = int(np.argmin([abs(centre_x - (b[0] + b[2]) / 2) for b in boxes]))
        assert seat == true_seat, f"{utt}: chose seat {seat}, speaker is {true_seat}"
        assert choices.at[utt, "reason"] in ("scored", "low_confidence")
        assert len(json.loads(choices.at[utt, "scores"])) == tracks[tracks.utt_id == utt].track_id.nunique()
    assert "noface/0" not in choices.index or choices.at["noface/0", "reason"] == "no_face"


def test_speaker_crops_are_stored_for_the_visual_extractors(ran):
    root, _, _, params = ran
    crops = read_frame(root / paths.SPEAKER_TRACKS / "crops.parquet")
    import cv2

    image = cv2.imdecode(np.frombuffer(crops.jpeg.iloc[0], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (params["speaker"]["crop_size"], params["speaker"]["crop_size"], 3)
    per_utt = crops.groupby("utt_id").size()
    assert per_utt.max() <= params["speaker"]["max_crops"] and "two/0" in per_utt.index


def test_rerun_reads_finished_items_from_the_part_cache(ran, monkeypatch):
    root, summaries, _, params = ran
    before = read_frame(root / paths.FACES)

    def explode(*args, **kwargs):
        raise AssertionError("a cached media file was decoded again")

    monkeypatch.setattr(faces, "_faces_for_media", explode)
    faces.run(params, PlainRunner(workers=1, hook=silent_hook))
    pd.testing.assert_frame_equal(before, read_frame(root / paths.FACES))


@pytest.mark.parametrize("method", ["first_face", "largest_face"])
def test_baseline_scorers_are_selectable(ran, method):
    root, _, _, params = ran
    params = json.loads(json.dumps(params))
    params["speaker"]["method"] = method
    summary = speaker.run(params, PlainRunner(workers=1, hook=silent_hook))
    assert summary["method"] == method
    assert read_frame(root / paths.SPEAKER).method.eq(method).all()


def test_gender_side_follows_the_seat_hint_the_corpus_adapter_wrote(ran, corpus):
    root, _, _, params = ran
    _, corpus_dir, frame, _ = corpus
    params = json.loads(json.dumps(params))
    params["speaker"]["method"] = "gender_side"
    seats = {"two/0": "left", "two/1": "right", "three/0": "right"}
    try:
        write_manifest(frame.assign(seat_hint=frame.utt_id.map(seats).fillna("")), corpus_dir, LABELS, "test")
        speaker.run(params, PlainRunner(workers=1, hook=silent_hook))
    finally:
        write_manifest(frame, corpus_dir, LABELS, "test")
    chosen = read_frame(root / paths.SPEAKER).set_index("utt_id")
    tracks, widths = read_frame(root / paths.FACES), read_frame(root / paths.CUTS).set_index("utt_id").width
    for utt, seat in seats.items():
        track = tracks[(tracks.utt_id == utt) & (tracks.track_id == chosen.loc[utt, "track_id"])]
        assert chosen.loc[utt, "reason"] == "scored"
        assert (((track.x1 + track.x2) / 2).mean() / widths[utt] < 0.5) == (seat == "left")


@pytest.fixture(scope="module")
def lipsync_trained(ran):
    """A few LipSyncNet training steps on the fixture corpus through the real stage."""
    from pipeline.stages import lipsync_train

    root, _, _, params = ran
    params = json.loads(json.dumps(params))
    params["lipsync"] = {**(params.get("lipsync") or {}), "device": "cpu", "steps": 30, "batch_size": 16,
                         "bootstrap_margin": 0.0, "dev_fraction": 0.3, "rounds": 2, "max_offset": 1}
    summary = lipsync_train.run(params, PlainRunner(workers=1, hook=silent_hook))
    return root, params, summary


def test_lipsync_train_writes_a_safetensors_checkpoint_and_metrics(lipsync_trained):
    root, _, summary = lipsync_trained
    assert (root / paths.LIPSYNC_DIR / "model.safetensors").is_file()
    config = json.loads((root / paths.LIPSYNC_DIR / "config.json").read_text())
    assert config["architecture"] == "lipsyncnet" and config["config"]["embed_dim"] == 256
    metrics = json.loads((root / paths.LIPSYNC_METRICS).read_text())
    assert metrics["dialogues"]["dev"] >= 1 and metrics["dialogues"]["train"] >= 1
    assert metrics["positives"]["mouth_motion"] >= 1, "multi-face scenes give positives through the baseline"
    assert metrics["rounds"] == 2 and 0.0 <= metrics["train_sync_accuracy"] <= 1.0
    assert summary["positives"] == metrics["positives"]
    assert (root / paths.stage_ledger("lipsync_train")).is_file(), "the stage writes its (empty) failure ledger"


def test_speaker_with_lipsyncnet_decodes_each_video_once_and_scores_every_track(lipsync_trained, monkeypatch):
    root, params, _ = lipsync_trained
    params = json.loads(json.dumps(params))
    params["speaker"]["method"] = "lipsyncnet"
    calls: list[str] = []
    from pipeline import clips as clip_module

    real = clip_module.read_frames

    def counting(path, wanted, fps, reader="pyav"):
        calls.append(str(path))
        return real(path, wanted, fps, reader)

    monkeypatch.setattr(clip_module, "read_frames", counting)
    summary = speaker.run(params, PlainRunner(workers=1, hook=silent_hook))
    assert summary["method"] == "lipsyncnet"
    assert sorted(calls) == sorted(set(calls)), "a media file was decoded more than once"
    assert sum(c.endswith("two.mp4") for c in calls) == 1  # two utterances, one pass
    choices = read_frame(root / paths.SPEAKER).set_index("utt_id")
    tracks = read_frame(root / paths.FACES)
    for utt in ("two/0", "two/1", "three/0", "short/0"):
        scores = json.loads(choices.at[utt, "scores"])
        assert set(map(int, scores)) == set(tracks[tracks.utt_id == utt].track_id)
        assert all(-2.0 <= v <= 2.0 for v in scores.values())  # sync scores: dips of unit-vector distances
        assert choices.at[utt, "reason"] in ("scored", "low_confidence")
    assert choices.method.eq("lipsyncnet").all()
    assert set(choices.columns) == {"track_id", "reason", "confidence", "scores", "method"}
    crops = read_frame(root / paths.SPEAKER_TRACKS / "crops.parquet")
    assert list(crops.columns) == ["utt_id", "frame", "jpeg"] and "short/0" in set(crops.utt_id)


def test_inspection_sheet_shows_every_track(lipsync_trained, tmp_path):
    from pipeline import inspect_speaker

    root, params, _ = lipsync_trained
    speaker.run({**params, "speaker": {**params["speaker"], "method": "lipsyncnet"}},
                PlainRunner(workers=1, hook=silent_hook))
    assert inspect_speaker.main(["three/0", "nope/0", "--out", str(tmp_path), "--frames", "4"]) == 1
    import cv2

    sheet = cv2.imread(str(tmp_path / "three__0.png"))
    assert sheet is not None and sheet.shape[1] == 4 * inspect_speaker.TILE_WIDTH
    assert sheet.shape[0] > 3 * 56  # frames, three crop strips and the caption
