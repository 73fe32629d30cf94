"""Frame/token sequences in the shared data path: Parquet reading, alignment, standardisation, padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from models import DialogueBatch
from pipeline import paths
from pipeline.config import ConfigError
from pipeline.manifest import write_manifest
from pipeline.tables import read_sequences, vector_table, write_atomic
from pipeline.training.config import ModelSpec
from pipeline.training.data import collate, iter_batches, load_dialogue_data, sequence_stats_key

LABELS = ["neutral", "happy", "angry", "sad"]
AUDIO_DIM, TEXT_DIM = 5, 7
NO_AUDIO = "Ses01F_impro00/1"  # no row at all in the audio file
EMPTY_AUDIO = "Ses01F_impro00/2"  # a row whose sequence has no steps


def write_sequence_corpus(root: Path, sessions: int = 3, dialogues: int = 4, turns: int = 5, seed: int = 0) -> None:
    """IEMOCAP-like ids (`Ses01F_impro00`) and `session` column, labels carried by both sequences; splits by
    session (last = test).

    Audio frames and text tokens are a class prototype plus noise (offset 3 so standardisation matters);
    `vector` is the mean of the steps.
    """
    rng = np.random.default_rng(seed)
    audio_proto = rng.normal(size=(len(LABELS), AUDIO_DIM)) * 1.5
    text_proto = rng.normal(size=(len(LABELS), TEXT_DIM)) * 1.5
    rows, audio, text = [], {}, {}
    for s in range(1, sessions + 1):
        for d in range(dialogues):
            dialogue = f"Ses{s:02d}{'FM'[d % 2]}_impro{d:02d}"
            split = "test" if s == sessions else "dev" if d == 0 else "train"
            for turn in range(turns):
                label = int(rng.integers(0, len(LABELS)))
                utt = f"{dialogue}/{turn}"
                rows.append(dict(utt_id=utt, dialogue_id=dialogue, turn=turn, speaker=f"s{turn % 2}", text="...",
                                 label=LABELS[label], split=split, media=f"{dialogue}.avi", start=0.0, end=1.0,
                                 session=f"Ses{s:02d}"))
                steps_a, steps_t = int(rng.integers(3, 9)), int(rng.integers(2, 7))
                audio[utt] = audio_proto[label] + rng.normal(0, 0.8, (steps_a, AUDIO_DIM)) + 3.0
                text[utt] = text_proto[label] + rng.normal(0, 0.8, (steps_t, TEXT_DIM)) + 3.0
    frame = pd.DataFrame(rows)
    write_manifest(frame, root, LABELS, "synthetic-iemocap", path=root / paths.MANIFEST)
    audio.pop(NO_AUDIO, None)
    if EMPTY_AUDIO in audio:
        audio[EMPTY_AUDIO] = np.zeros((0, AUDIO_DIM))
    for key, table in (("audio_seq", audio), ("text_seq", text)):
        ids = list(table)
        vectors = np.stack([v.mean(axis=0) if len(v) else np.zeros(v.shape[1]) for v in table.values()])
        write_atomic(vector_table(ids, vectors, list(table.values())), root / paths.features_path(key), {"key": key})


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_sequence_corpus(tmp_path)
    return tmp_path


def test_read_sequences_decodes_caps_and_skips_null_rows(tmp_path):
    rows = [np.arange(12, dtype=np.float32).reshape(6, 2), np.zeros((0, 2), np.float32), None, np.ones((2, 2))]
    table = pa.table({
        "utt_id": ["a", "b", "c", "d"],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(8, np.float32)), 2),
        "sequence": pa.array([None if r is None else r.tolist() for r in rows], type=pa.list_(pa.list_(pa.float32()))),
    })
    path = write_atomic(table, tmp_path / "seq.parquet")
    full = read_sequences(path)
    assert set(full) == {"a", "b", "d"}  # a null sequence is absent, an empty one is [0, D]
    np.testing.assert_array_equal(full["a"], rows[0])
    assert full["b"].shape == (0, 2) and full["a"].dtype == np.float32
    np.testing.assert_array_equal(read_sequences(path, 3)["a"], rows[0][:3])
    np.testing.assert_array_equal(read_sequences(path, 3, "subsample")["a"], rows[0][[0, 2, 5]])  # spans the whole
    np.testing.assert_array_equal(read_sequences(path, 3)["d"], rows[3])


def test_sequences_are_aligned_standardised_on_train_and_mark_presence(corpus):
    data = load_dialogue_data(["audio_seq", "text_seq"], sequence_inputs=["audio_seq", "text_seq"])
    assert data.input_dims == {"audio_seq": AUDIO_DIM, "text_seq": TEXT_DIM}  # the step dims
    assert data.sequence_inputs == ["audio_seq", "text_seq"]
    assert data.missing == {"audio_seq": 2, "text_seq": 0}  # no row, and a row with no steps
    dialogue = next(d for d in data.split("dev") if d.dialogue_id == "Ses01F_impro00")
    for utt in (NO_AUDIO, EMPTY_AUDIO):
        row = dialogue.utt_ids.index(utt)
        assert not dialogue.present["audio_seq"][row] and dialogue.sequences["audio_seq"][row].shape == (0, AUDIO_DIM)
        assert not dialogue.features["audio_seq"][row].any()
    train_steps = np.concatenate([s for d in data.split("train") for s in d.sequences["text_seq"]])
    np.testing.assert_allclose(train_steps.mean(axis=0), 0.0, atol=1e-5)  # fitted on train steps only
    np.testing.assert_allclose(train_steps.std(axis=0), 1.0, atol=1e-4)
    test_steps = np.concatenate([s for d in data.split("test") for s in d.sequences["text_seq"]])
    assert np.abs(test_steps.mean(axis=0)).max() > 0.01
    assert set(data.stats) == {"audio_seq", "text_seq", sequence_stats_key("audio_seq"), sequence_stats_key("text_seq")}

    again = load_dialogue_data(["audio_seq", "text_seq"], stats=data.stats, sequence_inputs=["audio_seq", "text_seq"])
    for a, b in zip(again.split("test")[0].sequences["text_seq"], data.split("test")[0].sequences["text_seq"]):
        np.testing.assert_array_equal(a, b)  # a checkpoint's stats reproduce the transform exactly


def test_max_sequence_length_caps_steps(corpus):
    data = load_dialogue_data(["audio_seq"], sequence_inputs=["audio_seq"], max_sequence_length=4)
    dialogues = [d for split in ("train", "dev", "test") for d in data.split(split)]
    lengths = [len(s) for d in dialogues for s in d.sequences["audio_seq"]]
    assert max(lengths) == 4 and min(lengths) == 0
    with pytest.raises(ValueError, match="overflow"):
        load_dialogue_data(["audio_seq"], sequence_inputs=["audio_seq"], sequence_overflow="drop")


def test_collate_pads_steps_and_keeps_vector_only_models_unchanged(corpus):
    data = load_dialogue_data(["audio_seq", "text_seq"], sequence_inputs=["text_seq"])
    dialogues = data.split("train")[:3]
    batch = collate(dialogues, data.inputs)
    size, steps = batch.mask.shape
    assert set(batch.sequences) == {"text_seq"} and set(batch.sequence_mask) == {"text_seq"}
    longest = max(len(s) for d in dialogues for s in d.sequences["text_seq"])
    assert batch.sequences["text_seq"].shape == (size, steps, longest, TEXT_DIM)
    assert batch.features["audio_seq"].shape == (size, steps, AUDIO_DIM)  # vectors travel as before
    for i, dialogue in enumerate(dialogues):
        for j, seq in enumerate(dialogue.sequences["text_seq"]):
            n = len(seq)
            assert batch.sequence_mask["text_seq"][i, j].tolist() == [True] * n + [False] * (longest - n)
            torch.testing.assert_close(batch.sequences["text_seq"][i, j, :n], torch.from_numpy(seq))
            assert not batch.sequences["text_seq"][i, j, n:].any()
    assert not batch.sequence_mask["text_seq"][~batch.mask].any()
    moved = batch.to("cpu")
    assert isinstance(moved, DialogueBatch) and moved.sequences["text_seq"].shape == batch.sequences["text_seq"].shape

    plain = next(iter_batches(load_dialogue_data(["text_seq"]).split("dev"), ["text_seq"], 2))
    assert plain.sequences == {} and plain.sequence_mask == {}


def test_split_override_refits_stats_on_its_own_train_split(corpus):
    split_of = {f"Ses{s:02d}{'FM'[d % 2]}_impro{d:02d}": ("test" if s == 1 else "train") for s in (1, 2, 3)
                for d in range(4)}
    split_of["Ses02F_impro00"] = "dev"
    data = load_dialogue_data(["text_seq"], sequence_inputs=["text_seq"], split_of=split_of)
    assert {d.dialogue_id[:5] for d in data.split("test")} == {"Ses01"}
    assert [d.dialogue_id for d in data.split("dev")] == ["Ses02F_impro00"]
    train_steps = np.concatenate([s for d in data.split("train") for s in d.sequences["text_seq"]])
    np.testing.assert_allclose(train_steps.mean(axis=0), 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="no split given"):
        load_dialogue_data(["text_seq"], split_of={"Ses01F_impro00": "train"})


def test_a_feature_file_without_sequences_fails_clearly(corpus):
    write_atomic(vector_table(["x"], np.zeros((1, 3))), paths.features_path("text_seq"))
    with pytest.raises(ValueError, match="no `sequence` column.*sequence: true"):
        load_dialogue_data(["text_seq"], sequence_inputs=["text_seq"])


def _params(**block) -> dict:
    model = {"kind": "drkf", "inputs": ["audio_seq", "text_seq"], "sequence_inputs": ["audio_seq", "text_seq"]}
    return {"models": {"m": model | block}}


def test_model_block_sequence_keys_are_validated_by_name():
    spec = ModelSpec.from_params(_params(max_sequence_length=32, sequence_overflow="subsample"), "m")
    assert spec.sequences.loader_kwargs() == {
        "sequence_inputs": ("audio_seq", "text_seq"), "max_sequence_length": 32, "sequence_overflow": "subsample",
        "speaker_normalise": (),
    }
    assert "sequence_inputs" not in spec.params or spec.params["sequence_inputs"] == ["audio_seq", "text_seq"]
    with pytest.raises(ConfigError, match=r"models\.m\.sequence_inputs.*\['video'\]"):
        ModelSpec.from_params(_params(sequence_inputs=["audio_seq", "video"]), "m")
    with pytest.raises(ConfigError, match=r"models\.m'.*sequences only.*sequence_inputs"):
        ModelSpec.from_params(_params(sequence_inputs=["text_seq"]), "m")
    with pytest.raises(ConfigError, match=r"models\.m\.max_sequence_length"):
        ModelSpec.from_params(_params(max_sequence_length=0), "m")
    with pytest.raises(ConfigError, match=r"models\.m\.sequence_overflow.*truncate, subsample"):
        ModelSpec.from_params(_params(sequence_overflow="drop"), "m")
    plain = {"models": {"g": {"kind": "context_gru", "inputs": ["text"], "hidden": 4}}}
    assert ModelSpec.from_params(plain, "g").sequences.inputs == ()
