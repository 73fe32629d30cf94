"""Corpus adapters: MELD, IEMOCAP and table layouts turned into manifest rows, with failures kept."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest

from pipeline.config import ConfigError
from pipeline.datasets import get_adapter, iemocap, meld, table
from pipeline.datasets.base import RowFailure
from pipeline.datasets.encoding import read_text, repair_text
from pipeline.schema import MANIFEST_COLUMNS, MANIFEST_OPTIONAL_COLUMNS
from tests.corpus_builders import (
    MELD_HEADER,
    build_iemocap,
    build_meld,
    iemocap_dialogue,
    meld_row,
    project_params,
    touch,
)


def dataset_params(**changes):
    params = project_params()["dataset"]
    for dotted, value in changes.items():
        node = params
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return params


# --- text repair -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("I\x92m here\x85", "I\u2019m here\u2026"),  # C1 characters stand for cp1252 bytes
        ("wait\x97no", "wait\u2014no"),
        ("don\u00e2\u20ac\u2122t", "don\u2019t"),  # UTF-8 read as cp1252: "donâ€™t"
        ("\u00e2\u20ac\u0153Hi\u00e2\u20ac\x9d", "\u201cHi\u201d"),  # one byte kept as a C1 char
        ("caf\u00e9 na\u00efve \u2019ok\u2019", "caf\u00e9 na\u00efve \u2019ok\u2019"),  # clean text is untouched
        ("odd \x81 byte", "odd \x81 byte"),  # unassigned in cp1252: kept, never raises
        (float("nan"), ""),
        (None, ""),
        (42, "42"),
    ],
)
def test_repair_text(raw, expected):
    assert repair_text(raw) == expected


def test_read_text_falls_back_to_windows_bytes(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("It\u2019s \u2014 fine\u2026".encode("cp1252"))
    assert repair_text(read_text(path)) == "It\u2019s \u2014 fine\u2026"
    path.write_bytes("\ufeffclean \u2019".encode())
    assert read_text(path) == "clean \u2019"


# --- MELD --------------------------------------------------------------------------------------


def test_meld_manifest_rows_ids_and_text(tmp_path):
    root = build_meld(tmp_path / "MELD")
    corpus = get_adapter("meld")(dataset_params(), root)
    frame = corpus.frame.set_index("utt_id")
    assert list(corpus.frame.columns) == list(MANIFEST_COLUMNS)
    assert corpus.labels == ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
    assert corpus.failures == []
    assert len(frame) == 7 and frame.index.is_unique
    # dialogue 0 exists in train, dev and test: ids carry the split so they never collide
    assert {"meld_train_dia0_utt0", "meld_dev_dia0_utt0", "meld_test_dia0_utt0"} <= set(frame.index)
    row = frame.loc["meld_train_dia0_utt1"]
    assert row.dialogue_id == "meld_train_dia0" and row.turn == 1 and row.split == "train"
    assert row.label == "joy" and row.speaker == "The Interviewer"
    assert row.text == "You must\u2019ve had \u2014 your hands full."
    assert frame.loc["meld_train_dia0_utt0", "text"] == "I\u2019m the point person\u2026"
    assert frame.loc["meld_dev_dia0_utt0", "text"] == "don\u2019t go"
    assert frame.loc["meld_test_dia0_utt1", "media"] == "output_repeated_splits_test/dia0_utt1.mp4"
    assert frame["start"].isna().all() and frame["end"].isna().all()  # pre-cut clips: the whole file


def test_meld_c1_characters_in_utf8_file_are_repaired(tmp_path):
    root = build_meld(tmp_path / "MELD")
    rows = meld_row(1, "It\x92s ok\x85", "Ross", "anger", 0, 0) + meld_row(2, "Oh.", "Rachel", "fear", 0, 1)
    text = MELD_HEADER + rows
    (root / "dev_sent_emo.csv").write_text(text, encoding="utf-8")  # U+0092 stored as UTF-8 bytes c2 92
    frame = meld.build_manifest(dataset_params(), root).frame.set_index("utt_id")
    assert frame.loc["meld_dev_dia0_utt0", "text"] == "It\u2019s ok\u2026"


def test_meld_missing_clip_is_a_failure_not_a_crash(tmp_path):
    root = build_meld(tmp_path / "MELD", missing=("dev_splits_complete/dia0_utt1.mp4",))
    corpus = meld.build_manifest(dataset_params(), root)
    assert "meld_dev_dia0_utt1" not in set(corpus.frame.utt_id)
    assert len(corpus.frame) == 6
    [failure] = corpus.failures
    assert failure.utt_id == "meld_dev_dia0_utt1"
    assert failure.reason == f"media file not found: {root / 'dev_splits_complete' / 'dia0_utt1.mp4'}"


def test_meld_text_only_run_needs_no_clip_folders(tmp_path):
    root = build_meld(tmp_path / "MELD")
    for folder in ("train_splits", "dev_splits_complete", "output_repeated_splits_test"):
        shutil.rmtree(root / folder)
    with pytest.raises(ConfigError, match=r"dataset\.meld\.clips\.train"):
        meld.build_manifest(dataset_params(), root)  # media expected: the clip folders must be there
    corpus = meld.build_manifest(dataset_params(media=False), root)
    assert len(corpus.frame) == 7 and corpus.failures == []
    assert corpus.frame.set_index("utt_id").loc["meld_dev_dia0_utt1", "media"] == "dev_splits_complete/dia0_utt1.mp4"
    with pytest.raises(ConfigError, match=r"dataset\.media.*true or false"):
        meld.build_manifest(dataset_params(media="no"), root)


def test_meld_bad_ids_are_failures_and_blank_rows_kept(tmp_path):
    root = build_meld(tmp_path / "MELD")
    text = MELD_HEADER + meld_row(1, "", "Joey", "sadness", 0, 0) + meld_row(2, "Hey.", "Monica", "disgust", 0, "x")
    (root / "test_sent_emo.csv").write_text(text, encoding="utf-8")
    corpus = meld.build_manifest(dataset_params(), root)
    blank = corpus.frame.set_index("utt_id").loc["meld_test_dia0_utt0"]
    assert blank.text == ""  # kept: the prepare stage reports it as an empty transcript
    [failure] = corpus.failures
    assert failure.utt_id == "meld_test_row2" and "not whole numbers" in failure.reason


def test_meld_configuration_errors_name_the_key(tmp_path):
    root = build_meld(tmp_path / "MELD")
    (root / "dev_sent_emo.csv").unlink()
    with pytest.raises(ConfigError, match=r"dataset\.meld\.csv\.dev"):
        meld.build_manifest(dataset_params(), root)
    with pytest.raises(ConfigError, match=r"unknown key .dataset\.meld\.csv\.valid.*: train, dev, test"):
        meld.build_manifest(dataset_params(meld__csv={"valid": "x.csv"}), root)
    with pytest.raises(ConfigError, match=r"dataset\.meld\.clips\.train"):
        meld.build_manifest(dataset_params(meld__csv={"train": "train_sent_emo.csv"},
                                           meld__clips={"train": "nowhere"}), root)
    with pytest.raises(ConfigError, match=r"dataset\.root"):
        meld.build_manifest(dataset_params(), tmp_path / "absent")


# --- IEMOCAP -----------------------------------------------------------------------------------


def test_iemocap_labels_speakers_times_and_turns(tmp_path):
    root = build_iemocap(tmp_path / "IEMOCAP_full_release")
    corpus = get_adapter("iemocap")(dataset_params(iemocap__dev_dialogues=1), root)
    frame = corpus.frame.set_index("utt_id")
    assert list(corpus.frame.columns) == [*MANIFEST_COLUMNS, *MANIFEST_OPTIONAL_COLUMNS]
    assert corpus.labels == ["hap", "sad", "neu", "ang", "exc", "fru"]
    # xxx, sur (Session 1) and fea (Session 2) are outside the six classes: counted, not failures
    assert corpus.failures == []
    assert sum(corpus.excluded.values()) == 3
    assert corpus.excluded == {"label 'xxx' not in dataset.iemocap.labels": 1,
                               "label 'sur' not in dataset.iemocap.labels": 1,
                               "label 'fea' not in dataset.iemocap.labels": 1}
    assert set(frame.label) <= set(corpus.labels) and len(frame) == 9
    row = frame.loc["Ses01F_impro01_M000"]
    assert row.speaker == "Ses01_M" and row.dialogue_id == "Ses01F_impro01"
    assert row.media == "Session1/dialog/avi/DivX/Ses01F_impro01.avi"
    assert (row.start, row.end) == (7.5712, 10.475)
    assert row.text == "Do you have your forms?"
    # EmoEvaluation listed M000 first, but F000 starts earlier: turns follow start time
    assert frame.loc["Ses01F_impro01_F000", "turn"] == 0 and row.turn == 1
    assert frame.loc["Ses02F_impro05_M000", "speaker"] == "Ses02_M"
    assert frame.loc["Ses01F_script01_1_F000", "text"] == "[LAUGHTER] Great."


def test_iemocap_splits_session5_test_and_seeded_dev(tmp_path):
    root = build_iemocap(tmp_path / "IEMOCAP_full_release")
    corpus = iemocap.build_manifest(dataset_params(iemocap__dev_dialogues=2, iemocap__dev_seed=3), root)
    by_dialogue = corpus.frame.groupby("dialogue_id")["split"].agg(set)
    assert all(len(s) == 1 for s in by_dialogue)  # a dialogue never straddles splits
    splits = by_dialogue.map(lambda s: next(iter(s)))
    assert splits["Ses05F_impro07"] == "test" and (splits == "test").sum() == 1
    assert (splits == "dev").sum() == 2 and (splits == "train").sum() == 2
    again = iemocap.build_manifest(dataset_params(iemocap__dev_dialogues=2, iemocap__dev_seed=3), root)
    pd.testing.assert_frame_equal(corpus.frame, again.frame)
    dev_sets = {
        frozenset(iemocap.build_manifest(dataset_params(iemocap__dev_dialogues=2, iemocap__dev_seed=seed), root)
                  .frame.query("split == 'dev'").dialogue_id)
        for seed in range(8)
    }
    assert len(dev_sets) > 1  # the seed, not the folder order, decides


def test_iemocap_untranscribed_utterance_is_a_failure(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    iemocap_dialogue(root, 1, "Ses01M_impro02", [("F000", 1.0, 2.0, "neu", "Hm."), ("M000", 2.0, 3.0, "sad", "Bye.")],
                     untranscribed=("Ses01M_impro02_M000",))
    iemocap_dialogue(root, 2, "Ses02F_impro01", [("F000", 1.0, 2.0, "neu", "Hi.")])
    corpus = iemocap.build_manifest(dataset_params(iemocap__dev_dialogues=1), root)
    [failure] = corpus.failures
    assert failure.utt_id == "Ses01M_impro02_M000"
    where = "Session1/dialog/transcriptions/Ses01M_impro02.txt"
    assert failure.reason == f"no transcription line for this utterance in {where}"
    assert failure == RowFailure("Ses01M_impro02_M000", failure.reason)  # prepare adds the stage


def test_iemocap_configuration_errors(tmp_path):
    root = build_iemocap(tmp_path / "IEMOCAP_full_release")
    with pytest.raises(ConfigError, match=r"dataset\.iemocap\.dev_dialogues.*only 4 usable"):
        iemocap.build_manifest(dataset_params(iemocap__dev_dialogues=4), root)
    with pytest.raises(ConfigError, match=r"dataset\.iemocap\.labels"):
        iemocap.build_manifest(dataset_params(iemocap__labels=[]), root)
    with pytest.raises(ConfigError, match=r"dataset\.iemocap\.dev_seed"):
        iemocap.build_manifest(dataset_params(iemocap__dev_seed="zero"), root)
    with pytest.raises(ConfigError, match=r"dataset\.root.*IEMOCAP_full_release"):
        iemocap.build_manifest(dataset_params(), tmp_path)


def test_iemocap_merge_counts_excited_as_happy_for_the_four_class_protocol(tmp_path):
    root = build_iemocap(tmp_path / "IEMOCAP_full_release")
    four = ["hap", "sad", "neu", "ang"]
    plain = iemocap.build_manifest(dataset_params(iemocap__dev_dialogues=1, iemocap__labels=four), root)
    merged = iemocap.build_manifest(dataset_params(iemocap__dev_dialogues=1, iemocap__labels=four,
                                                   iemocap__merge={"exc": "hap"}), root)
    assert "Ses01F_script01_1_M000" not in set(plain.frame.utt_id)  # excited, dropped without the merge
    row = merged.frame.set_index("utt_id").loc["Ses01F_script01_1_M000"]
    assert row.label == "hap" and merged.labels == four
    assert len(merged.frame) == len(plain.frame) + 1
    assert "label 'exc' not in dataset.iemocap.labels" in plain.excluded
    assert "label 'exc' not in dataset.iemocap.labels" not in merged.excluded
    with pytest.raises(ConfigError, match=r"dataset\.iemocap\.merge.*'joy', which is not among the labels"):
        iemocap.build_manifest(dataset_params(iemocap__labels=four, iemocap__merge={"exc": "joy"}), root)
    with pytest.raises(ConfigError, match=r"dataset\.iemocap\.merge.*'exc' is still one of the labels"):
        iemocap.build_manifest(dataset_params(iemocap__merge={"exc": "hap"}), root)


def write_iemocap_tables(folder, rows_by_split):
    """`IEMOCAP_{split}.csv` with the reference tables' columns; rows are (utterance id, start, end, emotion, text)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in rows_by_split.items():
        pd.DataFrame([{"Utterance": text, "Speaker": utt, "Dialogue_ID": utt.rsplit("_", 1)[0], "Start_Time": start,
                       "End_Time": end, "Wav_Path": "", "Emotion": emotion,
                       "Video_Path": f"./IEMOCAP_full_release/Session{int(utt[3:5])}/dialog/avi/DivX/"
                                     f"{utt.rsplit('_', 1)[0]}.avi"}
                      for utt, start, end, emotion, text in rows]).to_csv(folder / f"IEMOCAP_{split}.csv", index=False)
    return folder


def test_iemocap_tables_layout_keeps_the_tables_splits(tmp_path):
    folder = write_iemocap_tables(tmp_path / "tables", {
        "train": [("Ses01F_impro01_M000", 2.0, 3.0, "neu", "Hi."), ("Ses01F_impro01_F000", 1.0, 2.0, "sad", "Oh.")],
        "dev": [("Ses02M_impro03_F000", 1.0, 2.0, "ang", "No!"), ("Ses02M_impro03_M000", 2.5, 3.0, "sur", "Eh?")],
        "test": [("Ses05F_impro07_F000", 0.5, 1.5, "hap", "Yay.")],
    })
    corpus = get_adapter("iemocap")(dataset_params(iemocap__layout="tables", media=False), folder)
    frame = corpus.frame.set_index("utt_id")
    assert list(corpus.frame.columns) == [*MANIFEST_COLUMNS, *MANIFEST_OPTIONAL_COLUMNS] and corpus.root == folder
    assert dict(frame.split) == {"Ses01F_impro01_F000": "train", "Ses01F_impro01_M000": "train",
                                 "Ses02M_impro03_F000": "dev", "Ses05F_impro07_F000": "test"}
    assert corpus.excluded == {"label 'sur' not in dataset.iemocap.labels": 1}
    assert frame.loc["Ses01F_impro01_F000", "turn"] == 0 and frame.loc["Ses01F_impro01_M000", "turn"] == 1
    assert frame.loc["Ses02M_impro03_F000", "media"] == "Session2/dialog/avi/DivX/Ses02M_impro03.avi"
    assert (frame.loc["Ses02M_impro03_F000", "session"], frame.loc["Ses02M_impro03_F000", "seat_hint"]) == (
        "Ses02", "right")
    with pytest.raises(ConfigError, match=r"dataset\.root.*layout: tables.*IEMOCAP_train\.csv"):
        iemocap.build_manifest(dataset_params(iemocap__layout="tables"), tmp_path)
    with pytest.raises(ConfigError, match=r"dataset\.iemocap\.layout.*release, tables"):
        iemocap.build_manifest(dataset_params(iemocap__layout="csv"), folder)


def test_iemocap_speaker_is_the_turn_gender_not_the_marker_session():
    assert iemocap.speaker_of("Ses01F_impro01_M003") == "Ses01_M"
    assert iemocap.speaker_of("Ses03M_script02_2_F012") == "Ses03_F"


@pytest.mark.parametrize(("dialogue", "speaker", "seat"), [
    ("Ses01F_impro01", "Ses01_F", "left"), ("Ses01F_impro01", "Ses01_M", "right"),
    ("Ses03M_script02_1", "Ses03_M", "left"), ("Ses05M_impro04", "Ses05_F", "right"),
    ("dia1", "Joey", ""),
])
def test_iemocap_marker_actor_sits_on_the_left(dialogue, speaker, seat):
    assert iemocap.seat_of(dialogue, speaker) == seat


def test_iemocap_writes_each_dialogues_session_and_each_speakers_seat(tmp_path):
    corpus = iemocap.build_manifest(dataset_params(iemocap__dev_dialogues=1), build_iemocap(tmp_path / "release"))
    frame = corpus.frame.set_index("utt_id")
    assert dict(frame.groupby("dialogue_id")["session"].first()) == {
        "Ses01F_impro01": "Ses01", "Ses01F_script01_1": "Ses01", "Ses02F_impro05": "Ses02",
        "Ses02M_impro03": "Ses02", "Ses05F_impro07": "Ses05"}
    assert frame.loc["Ses01F_impro01_F000", "seat_hint"] == "left"
    assert frame.loc["Ses01F_impro01_M000", "seat_hint"] == "right"
    assert frame.loc["Ses02M_impro03_M000", "seat_hint"] == "left"
    assert iemocap.session_of("Ses03M_script01_2") == "Ses03" and iemocap.session_of("dia7") == ""


# --- table -------------------------------------------------------------------------------------


def write_user_table(root, name="talks.csv"):
    for clip in ("clips/a.mp4", "clips/b.mp4", "long.mp4"):
        touch(root / clip)
    frame = pd.DataFrame({
        "video": ["long.mp4", "long.mp4", "clips/a.mp4", "clips/b.mp4", "long.mp4"],
        "from": ["00:00:05.5", "1.0", "", "", "oops"],
        "to": ["7", "2.5", "", "", "9"],
        "who": ["Ann", "Bob", "Ann", "Cy", "Bob"],
        "said": ["Later line", "First line", "Clip A", "Clip B", "Bad time"],
        "emotion": ["joy", "neutral", "anger", "joy", "sadness"],
        "part": ["train", "Train", "val", "test", "train"],
    })
    path = root / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


TABLE_COLUMNS = {"media": "video", "start": "from", "end": "to", "speaker": "who", "text": "said",
                 "label": "emotion", "split": "part", "dialogue_id": "conversation"}


@pytest.mark.parametrize("name", ["talks.csv", "talks.parquet"])
def test_table_maps_columns_and_fills_optional_ones(tmp_path, name):
    path = write_user_table(tmp_path, name)
    corpus = get_adapter("table")(dataset_params(table__path=str(path), table__columns=TABLE_COLUMNS), tmp_path)
    frame = corpus.frame.set_index("utt_id")
    # no dialogue_id column: each media file is its own dialogue; turns follow start time
    assert set(frame.dialogue_id) == {"long.mp4", "clips/a.mp4", "clips/b.mp4"}
    first = frame.loc["long.mp4/0"]
    assert (first.text, first.start, first.end, first.split) == ("First line", 1.0, 2.5, "train")
    assert (frame.loc["long.mp4/1", "start"], frame.loc["long.mp4/1", "end"]) == (5.5, 7.0)
    clip = frame.loc["clips/a.mp4/0"]
    assert math.isnan(clip.start) and math.isnan(clip.end) and clip.split == "dev"
    # labels: sorted unique labels of the train split (sadness is only on the failed row)
    assert corpus.labels == ["joy", "neutral"]
    [failure] = corpus.failures
    assert failure.utt_id == "long.mp4/2"
    assert failure.reason == "start time 'oops' is not a time (seconds or HH:MM:SS.mmm)"


def test_table_dialogue_ids_and_own_utterance_ids(tmp_path):
    path = tmp_path / "t.csv"
    media = [str(tmp_path / "sub" / "x.mp4"), "y.mp4"]  # an absolute path inside the root becomes relative
    pd.DataFrame({"media": media, "speaker": ["A", "B"], "text": ["hi", "yo"], "label": ["joy", "joy"],
                  "split": ["train", "train"], "dialogue_id": ["d1", "d1"], "id": ["u1", "u2"]}
                 ).to_csv(path, index=False)
    columns = {"utt_id": "id", "start": None, "end": None}
    # a relative table path is read from the corpus root
    frame = table.build_manifest(dataset_params(table__path="t.csv", table__columns=columns), tmp_path).frame
    assert list(frame.utt_id) == ["u1", "u2"] and list(frame.dialogue_id) == ["d1", "d1"]
    assert list(frame.media) == ["sub/x.mp4", "y.mp4"]
    assert list(frame.turn) == [0, 1]


def test_table_missing_required_column_names_key_and_file_columns(tmp_path):
    path = write_user_table(tmp_path)
    columns = {**TABLE_COLUMNS, "text": "transcript"}
    with pytest.raises(ConfigError) as error:
        table.build_manifest(dataset_params(table__path=str(path), table__columns=columns), tmp_path)
    message = str(error.value)
    assert "dataset.table.columns.text" in message and "'transcript'" in message
    assert "video, from, to, who, said, emotion, part" in message


def test_table_configuration_errors(tmp_path):
    path = write_user_table(tmp_path)
    with pytest.raises(ConfigError, match=r"dataset\.table\.path.*not set"):
        table.build_manifest(dataset_params(table__path=None), tmp_path)
    with pytest.raises(ConfigError, match=r"dataset\.table\.path.*not found"):
        table.build_manifest(dataset_params(table__path=str(tmp_path / "none.csv")), tmp_path)
    with pytest.raises(ConfigError, match=r"columns. names .mood., which is not a manifest field"):
        table.build_manifest(dataset_params(table__path=str(path), table__columns={"mood": "emotion"}), tmp_path)
    (tmp_path / "t.xlsx").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"allowed file types"):
        table.build_manifest(dataset_params(table__path=str(tmp_path / "t.xlsx")), tmp_path)


@pytest.mark.parametrize(("value", "seconds"), [(3, 3.0), ("2.5", 2.5), ("01:15.5", 75.5), ("00:16:16,059", 976.059)])
def test_parse_seconds(value, seconds):
    assert table.parse_seconds(value) == pytest.approx(seconds)
    assert math.isnan(table.parse_seconds(""))


# --- the real annotation tables (skipped where shared/data is absent) ------------------------------


def test_real_meld_tables(shared_data):
    folder = shared_data / "meld"
    frame = meld.load_reference_tables(folder)
    assert list(frame.columns) == list(MANIFEST_COLUMNS)
    assert frame.split.value_counts().to_dict() == {"train": 9989, "dev": 1109, "test": 2610}
    assert frame.utt_id.is_unique
    assert frame.groupby("split").dialogue_id.nunique().to_dict() == {"train": 1038, "dev": 114, "test": 280}
    train = frame[frame.split == "train"].label.value_counts().to_dict()
    assert train == {"neutral": 4710, "joy": 1743, "surprise": 1205, "anger": 1109, "sadness": 683,
                     "disgust": 271, "fear": 268}
    test = frame[frame.split == "test"].label.value_counts().to_dict()
    assert test == {"neutral": 1256, "joy": 402, "surprise": 281, "anger": 345, "sadness": 208,
                    "disgust": 68, "fear": 50}
    assert set(frame.label) == set(meld.LABELS)
    first = frame.set_index("utt_id").loc["meld_train_dia0_utt0"]
    assert first.media == "train_splits/dia0_utt0.mp4"
    assert first.text.startswith("also I was the point person on my company\u2019s transition")
    assert not frame.text.str.contains("[\x80-\x9f]|\u00e2\u20ac", regex=True).any()


def test_real_iemocap_tables(shared_data):
    folder = shared_data / "iemocap"
    frame = iemocap.load_reference_tables(folder)
    assert list(frame.columns) == [*MANIFEST_COLUMNS, *MANIFEST_OPTIONAL_COLUMNS]
    assert frame.split.value_counts().to_dict() == {"train": 5163, "dev": 647, "test": 1623}
    assert frame.utt_id.is_unique
    assert frame.groupby("split").dialogue_id.nunique().to_dict() == {"train": 108, "dev": 12, "test": 31}
    test = frame[frame.split == "test"].label.value_counts().to_dict()
    assert test == {"hap": 144, "sad": 245, "neu": 384, "ang": 170, "exc": 299, "fru": 381}
    tested = frame[frame.split == "test"]
    assert set(tested.dialogue_id.str[:5]) == {"Ses05"} == set(tested.session)
    assert set(frame.seat_hint) == {"left", "right"}
    row = frame.set_index("utt_id").loc["Ses01F_impro01_F000"]
    assert row.media == "Session1/dialog/avi/DivX/Ses01F_impro01.avi"
    assert (row.speaker, row.text, row.start, row.end, row.turn) == ("Ses01_F", "Excuse me.", 6.2901, 8.2357, 0)
    assert (frame.end > frame.start).all()
    assert set(frame.speaker.str[-1]) == {"F", "M"}
