"""The prepare stage: adapter rows checked, bad ones moved to the ledger with readable reasons."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from pipeline import paths
from pipeline.config import ConfigError
from pipeline.hooks import RecordingHook, silent_hook
from pipeline.ledger import FailureRatioExceeded, read_ledger
from pipeline.manifest import read_manifest
from pipeline.runner import PlainRunner
from pipeline.schema import MANIFEST_COLUMNS
from pipeline.stages import get_stage
from pipeline.stages.prepare import EmptyManifestError, run
from pipeline.tables import read_metadata
from tests.corpus_builders import build_iemocap, build_meld, touch

RUNNER = PlainRunner(workers=1, hook=silent_hook)

GOOD = [  # id, media, start, end, speaker, text, label, split, dialogue
    ("g1", "rec.mp4", "0.0", "1.5", "Ann", "Hello there.", "joy", "train", "d1"),
    ("g2", "rec.mp4", "1.5", "3.0", "Bob", "Hi.", "neutral", "train", "d1"),
    ("g3", "clip.mp4", "", "", "Ann", "Whole clip.", "joy", "dev", "d2"),
    ("g4", "rec.mp4", "4.0", "5.0", "Bob", "Bye.", "neutral", "test", "d3"),
]
BAD = [
    ("blank", "rec.mp4", "5.0", "6.0", "Ann", "   ", "joy", "train", "d1"),
    ("backwards", "rec.mp4", "3.4", "1.2", "Bob", "Oops.", "neutral", "train", "d1"),
    ("half", "rec.mp4", "3.0", "", "Bob", "Half a time.", "neutral", "train", "d1"),
    ("lost", "gone.mp4", "", "", "Ann", "Where?", "joy", "train", "d4"),
    ("escape", "../outside.mp4", "", "", "Ann", "Out.", "joy", "train", "d5"),
    ("unseen", "clip.mp4", "", "", "Ann", "Eek.", "fear", "test", "d6"),
    ("oddsplit", "clip.mp4", "", "", "Ann", "Hm.", "joy", "holdout", "d7"),
    ("g1", "clip.mp4", "", "", "Ann", "Same id.", "joy", "train", "d8"),
]
FIELDS = ["id", "media", "start", "end", "speaker", "text", "label", "split", "dialogue_id"]


def table_params(params, rows, max_ratio=0.9):
    """A table corpus in ./corpus with its table inside (a relative table path is read from the root)."""
    touch(Path("corpus") / "rec.mp4")
    touch(Path("corpus") / "clip.mp4")
    touch(Path("outside.mp4"))
    pd.DataFrame(rows, columns=FIELDS).to_csv(Path("corpus") / "talks.csv", index=False)
    params["dataset"].update({"name": "table", "root": "corpus"})
    params["dataset"]["table"] = {"path": "talks.csv", "columns": {"utt_id": "id"}}
    params["run"]["max_failure_ratio"] = max_ratio
    return params


def test_prepare_writes_manifest_and_ledger_with_reasons(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    hook = RecordingHook()
    summary = run(table_params(params, GOOD + BAD), PlainRunner(workers=1, hook=hook))

    manifest = read_manifest()
    assert manifest.dataset == "table" and manifest.labels == ["joy", "neutral"] and manifest.media
    assert "media" not in read_metadata(paths.MANIFEST)  # manifests of corpora with media are as they always were
    assert str(manifest.root) == "corpus"  # a relative root stays relative to the project
    assert list(manifest.frame.columns) == list(MANIFEST_COLUMNS)
    assert sorted(manifest.frame.utt_id) == ["g1", "g2", "g3", "g4"]
    g3 = manifest.frame.set_index("utt_id").loc["g3"]
    assert math.isnan(g3.start) and math.isnan(g3.end) and manifest.media_path(g3.media).is_file()

    reasons = {f.utt_id: f.reason for f in read_ledger(tmp_path / paths.stage_ledger("prepare"))}
    assert reasons["blank"] == "empty transcript"
    assert reasons["backwards"] == "end time 1.20 s is before start time 3.40 s"
    assert reasons["half"].startswith("start and end must both be given or both be empty")
    assert reasons["lost"] == f"media file not found: {(tmp_path / 'corpus' / 'gone.mp4').resolve()}"
    assert "leaves the corpus root" in reasons["escape"] and "'../outside.mp4'" in reasons["escape"]
    assert reasons["unseen"] == "label 'fear' is not one of the classes joy, neutral"
    assert reasons["oddsplit"] == "split 'holdout' is not one of train, dev, test"
    assert reasons["g1"].startswith("duplicate utt_id")
    assert len(reasons) == len(BAD)

    assert summary["utterances"] == 4 and summary["dialogues"] == 3 and summary["failures"] == len(BAD)
    assert summary["splits"] == {"train": 2, "dev": 1, "test": 1}
    assert summary["labels"] == {"joy": 2, "neutral": 2}
    assert summary["excluded"] == {} and summary["dataset"] == "table"
    assert hook.calls[0][1:3] == (0, 12) and hook.calls[-1][1:3] == (12, 12)


def test_prepare_meld_records_missing_clip(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    build_meld(tmp_path / "MELD", missing=("train_splits/dia1_utt0.mp4",))
    params["dataset"].update({"name": "meld", "root": "MELD"})
    summary = get_stage("prepare")(params, RUNNER, None)
    assert summary["utterances"] == 6 and summary["failures"] == 1
    assert summary["splits"] == {"train": 2, "dev": 2, "test": 2}
    assert list(summary["labels"]) == ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
    [failure] = read_ledger(paths.stage_ledger("prepare"))
    assert failure.stage == "prepare" and failure.utt_id == "meld_train_dia1_utt0"  # an adapter failure, ledgered
    assert failure.reason.startswith("media file not found: ")
    manifest = read_manifest()
    assert manifest.dataset == "meld" and len(manifest.frame) == 6
    assert manifest.frame.groupby("dialogue_id").turn.apply(list).to_dict()["meld_train_dia0"] == [0, 1]


def test_prepare_iemocap_counts_labels_outside_the_class_set(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    build_iemocap(tmp_path / "IEMOCAP_full_release")
    params["dataset"].update({"name": "iemocap", "root": str(tmp_path / "IEMOCAP_full_release")})
    params["dataset"]["iemocap"]["dev_dialogues"] = 1
    summary = run(params, RUNNER)
    assert summary["failures"] == 0 and summary["utterances"] == 9
    assert sum(summary["excluded"].values()) == 3
    assert summary["splits"]["test"] == 2 and summary["splits"]["dev"] > 0
    manifest = read_manifest()
    assert manifest.root == tmp_path / "IEMOCAP_full_release"  # an absolute root is stored as given
    assert manifest.frame.start.notna().all() and (manifest.frame.end > manifest.frame.start).all()
    assert read_ledger(paths.stage_ledger("prepare")) == []
    rows = manifest.frame.set_index("utt_id")  # the adapter's optional columns reach the manifest
    assert set(rows.session) == {"Ses01", "Ses02", "Ses05"}
    assert (rows.loc["Ses05F_impro07_F000", "seat_hint"], rows.loc["Ses05F_impro07_M000", "seat_hint"]) == (
        "left", "right")


def test_prepare_text_only_run_keeps_rows_whose_media_is_absent(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    rows = [(*row[:1], "never/recorded.mp4", *row[2:]) for row in GOOD]
    params = table_params(params, [*rows, BAD[0]])
    params["dataset"]["media"] = False
    summary = run(params, RUNNER)
    manifest = read_manifest()
    assert sorted(manifest.frame.utt_id) == ["g1", "g2", "g3", "g4"] and not manifest.media
    assert {f.utt_id: f.reason for f in read_ledger(paths.stage_ledger("prepare"))} == {"blank": "empty transcript"}
    assert summary["utterances"] == 4
    params["dataset"]["media"] = True  # the same rows with media expected: every missing video is a failure
    with pytest.raises(EmptyManifestError, match="media file not found"):
        run(params, RUNNER)


def test_prepare_fails_past_the_failure_ratio(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FailureRatioExceeded, match="max_failure_ratio=0.5"):
        run(table_params(params, GOOD[:2] + BAD[:4], max_ratio=0.5), RUNNER)
    assert len(read_ledger(paths.stage_ledger("prepare"))) == 4


def test_prepare_refuses_an_empty_manifest(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    rows = [("x", "gone.mp4", "", "", "Ann", "Hi.", "joy", "train", "d1")]
    with pytest.raises(EmptyManifestError, match=r"no usable utterance.*media file not found"):
        run(table_params(params, rows), RUNNER)
    assert [f.utt_id for f in read_ledger(paths.stage_ledger("prepare"))] == ["x"]
    assert not paths.MANIFEST.exists()


def test_prepare_unknown_dataset_name(tmp_path, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    params["dataset"]["name"] = "voxceleb"
    with pytest.raises(ConfigError, match=r"dataset\.name.*allowed values: demo, meld, iemocap, table"):
        run(params, RUNNER)
