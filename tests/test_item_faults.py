"""One bad item never stops a stage: tiny frames, and an exception injected into one item of each stage.

A small real workspace (two talking clips and a 2 x 2-pixel video) goes through the real `cut`,
`faces`, `speaker`, `features@audio` and `lipsync_train` stages. For each per-item stage an
exception is injected into the work of one media file or chunk: the stage must finish, name that
item's utterances in its ledger with the exception, write the traceback beside the ledger, keep the
other utterances, and not cache the failure (the next run, without the fault, computes the item).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline import paths
from pipeline.face_detect import FaceDetector
from pipeline.hooks import silent_hook
from pipeline.ledger import read_ledger
from pipeline.manifest import write_manifest
from pipeline.runner import PlainRunner
from pipeline.stages import cut, faces, features, lipsync_train, speaker
from pipeline.tables import read_frame
from tests import media_factory as mf

LABELS = ["neutral", "joy"]


def _row(utt, media):
    return {"utt_id": utt, "dialogue_id": utt.split("/")[0], "turn": 0, "speaker": "s", "text": "hello there",
            "label": "joy", "split": "train", "media": media, "start": np.nan, "end": np.nan}


def _runner() -> PlainRunner:
    return PlainRunner(workers=1, hook=silent_hook)


def _ledger(stage: str) -> dict[str, str]:
    return {f.utt_id: f.reason for f in read_ledger(paths.stage_ledger(stage))}


def test_frames_smaller_than_the_minimum_face_are_faceless_not_a_crash():
    detector = FaceDetector("cpu", 0.9, 40, 480)
    found = detector.detect([np.zeros((2, 2, 3), np.uint8)] * 3)
    assert [len(boxes) for boxes, _ in found] == [0, 0, 0]
    assert len(detector.detect([np.zeros((39, 300, 3), np.uint8)])[0][0]) == 0  # one side below the minimum


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, base_params):
    root = tmp_path_factory.mktemp("item_faults")
    corpus = root / "corpus"
    mf.talking_clip(corpus / "two.mp4", "the weather is lovely today my friend", [3, 7], 1)
    mf.talking_clip(corpus / "one.mp4", "we should leave before the rain starts", [4], 0)
    mf.write_video(corpus / "tiny.mp4", np.full((25, 2, 2, 3), 128, np.uint8), 25, mf.speech("tiny"))
    frame = pd.DataFrame([_row("two/0", "two.mp4"), _row("one/0", "one.mp4"), _row("tiny/0", "tiny.mp4")])
    params = json.loads(json.dumps(base_params))
    params["faces"]["detect_width"] = 320
    params["run"]["max_failure_ratio"] = 0.9
    params["speaker"]["method"] = "mouth_motion"
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    write_manifest(frame, corpus, LABELS, "test")
    cut.run(params, _runner())
    yield root, params
    mp.undo()


def test_a_tiny_video_is_recorded_as_faceless_and_the_others_get_faces(workspace):
    root, params = workspace
    summary = faces.run(params, _runner())
    found = read_frame(paths.FACES)
    assert set(found.utt_id) == {"two/0", "one/0"}
    assert "no face detected" in _ledger("faces")["tiny/0"]
    assert summary["with_faces"] == 2


def _explode_for(media_name: str, real):
    def fn(media, *args, **kwargs):
        if str(media).endswith(media_name):
            raise RuntimeError("injected fault")
        return real(media, *args, **kwargs)
    return fn


def _check_isolated(stage: str, bad_utts: set[str]) -> None:
    ledger = _ledger(stage)
    for utt in bad_utts:
        assert "RuntimeError: injected fault" in ledger[utt], ledger
    log = paths.stage_ledger(stage).with_suffix(".log").read_text()
    assert "injected fault" in log and "Traceback" in log


@pytest.mark.parametrize("stage", ["cut", "faces", "speaker"])
def test_an_exception_in_one_media_file_costs_only_its_utterances(workspace, monkeypatch, stage):
    root, params = workspace
    faces.run(params, _runner())
    speaker.run(params, _runner())
    module, attr, output = {"cut": (cut, "_cut_media", paths.CUTS), "faces": (faces, "_faces_for_media", paths.FACES),
                            "speaker": (speaker, "speaker_for_media", paths.SPEAKER)}[stage]
    healthy = read_frame(output)
    for part in (paths.CACHE_DIR / stage).glob("*.parquet"):  # every item recomputed, the fault included
        part.unlink()
    with monkeypatch.context() as patch:
        patch.setattr(module, attr, _explode_for("two.mp4", getattr(module, attr)))
        module.run(params, _runner())
    _check_isolated(stage, {"two/0"})
    hurt = read_frame(output)
    assert "two/0" not in set(hurt.utt_id) and set(hurt.utt_id) == set(healthy.utt_id) - {"two/0"}
    module.run(params, _runner())  # the fault is gone: the item is computed again, not restored as failed
    pd.testing.assert_frame_equal(read_frame(output).reset_index(drop=True), healthy.reset_index(drop=True))
    assert "two/0" not in _ledger(stage)


def test_an_exception_in_one_feature_chunk_costs_only_its_utterances(workspace, monkeypatch):
    root, params = workspace
    real = features.ChunkWorker.compute

    def compute(self, chunk):
        if "two/0" in chunk.utt_ids:
            raise RuntimeError("injected fault")
        return real(self, chunk)

    monkeypatch.setattr(features, "make_chunks", lambda manifest, wanted: [[u] for u in sorted(wanted)])
    monkeypatch.setattr(features.ChunkWorker, "compute", compute)
    features.run(params, _runner(), "audio")
    _check_isolated("features@audio", {"two/0"})
    ids = set(read_frame(paths.features_path("audio")).utt_id)
    assert "two/0" not in ids and {"one/0", "tiny/0"} <= ids


def test_an_exception_reading_one_media_file_does_not_stop_lipsync_train(workspace, monkeypatch):
    root, params = workspace
    faces.run(params, _runner())
    params = json.loads(json.dumps(params))
    params["lipsync"].update({"device": "cpu", "steps": 5, "batch_size": 8, "rounds": 1, "dev_fraction": 0.0,
                              "bootstrap_margin": 0.0})
    monkeypatch.setattr(lipsync_train, "_material_for_media",
                        _explode_for("one.mp4", lipsync_train._material_for_media))
    lipsync_train.run(params, _runner())
    _check_isolated("lipsync_train", {"one/0"})
    assert (root / paths.LIPSYNC_DIR / "config.json").exists()
