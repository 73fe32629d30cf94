"""The `finetune_text` stage on a tiny BERT: learns the labels, selects on dev, exports a folder the
text extractor reads, never reads test, and resumes a killed run to the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from extractors import TextItem, build_extractor
from pipeline import paths
from pipeline.config import ConfigError
from pipeline.hooks import RecordingHook
from pipeline.manifest import write_manifest
from pipeline.runner import PlainRunner
from pipeline.stages import finetune_text
from tests.test_extractors import tiny_bert

CUES = {"joy": "happy", "sadness": "sad", "neutral": "late"}
FILLER = ["the", "train", "is", "one", "two", "three", "four", "five"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def write_corpus(root: Path, dialogues: int = 12, seed: int = 0) -> pd.DataFrame:
    """Dialogues whose utterances name their emotion's cue word among filler words."""
    rng = np.random.default_rng(seed)
    labels = list(CUES)
    rows = []
    for d in range(dialogues):
        split = "train" if d < 8 else "dev" if d < 10 else "test"
        for t in range(5):
            label = labels[rng.integers(len(labels))]
            words = list(rng.choice(FILLER, size=3)) + [CUES[label]]
            rng.shuffle(words)
            text = " ".join(words) if not (d == 0 and t == 4) else "  "
            rows.append({"utt_id": f"d{d}/{t}", "dialogue_id": f"d{d}", "turn": t, "speaker": ["alice", "bob"][t % 2],
                         "text": text, "label": label if t != 3 else "unknown", "split": split,
                         "media": f"d{d}.mp4", "start": np.nan, "end": np.nan})
    frame = pd.DataFrame(rows)
    write_manifest(frame, root / "corpus", labels, "test")
    return frame


def finetune_params(params: dict, model: Path, epochs: int = 4) -> dict:
    params["finetune_text"] = {
        "encoder": {"modality": "text", "name": "minilm", "model": str(model), "pooling": "cls", "max_length": 32},
        "epochs": epochs, "lr": 3e-3, "weight_decay": 0.01, "warmup": 0.1, "batch_size": 8, "grad_clip": 10.0,
        "seed": 0, "device": "cpu",
    }
    return params


def test_finetuning_learns_selects_on_dev_and_exports_a_loadable_folder(tmp_path, monkeypatch, params, tiny_model):
    monkeypatch.chdir(tmp_path)
    frame = write_corpus(tmp_path)
    params = finetune_params(params, tiny_model, epochs=6)
    seen: list[str] = []
    original = finetune_text.load_splits

    def spy(extractor):
        splits, labels, skipped = original(extractor)
        seen.extend(u for s in splits.values() for u in s.utt_ids)
        return splits, labels, skipped

    monkeypatch.setattr(finetune_text, "load_splits", spy)
    runner = PlainRunner(1, RecordingHook())
    summary = finetune_text.run(params, runner, None)
    test_ids = set(frame.utt_id[frame.split == "test"])
    assert seen and not test_ids & set(seen)  # test never enters training or selection
    report = json.loads(paths.METRICS_DIR.joinpath("finetune_text.json").read_text())
    history = report["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    best = max(history, key=lambda h: h["dev_weighted_f1"])
    assert report["best_epoch"] == best["epoch"] == summary["best_epoch"]
    assert report["best_dev_weighted_f1"] > 0.8  # the cue word is learnt (chance is about 0.33)
    assert report["skipped"] == {"unlabeled": 10, "empty_text": 1}
    assert report["train_utterances"] == 8 * 4 - 1 and report["dev_utterances"] == 2 * 4
    assert runner.hook.calls[-1][1:3] == (6, 6)

    folder = paths.ARTIFACTS / "text_encoder"
    assert {"config.json", "model.safetensors", "tokenizer.json", "classifier_head.safetensors",
            "finetune.json"} <= {p.name for p in folder.iterdir()}
    tuned = build_extractor({"name": "minilm", "model": str(folder), "pooling": "cls", "max_length": 32})
    base = build_extractor({"name": "minilm", "model": str(tiny_model), "pooling": "cls", "max_length": 32})
    items = [TextItem(str(i), f"the train is {CUES[label]}") for i, label in enumerate(CUES)]
    tuned_vectors, base_vectors = tuned.extract(items), base.extract(items)
    assert tuned_vectors.shape == (3, 32) and not np.allclose(tuned_vectors, base_vectors)
    # the exported head on the extractor's features reproduces the classifier's decisions
    from safetensors.torch import load_file

    head = load_file(str(folder / "classifier_head.safetensors"))
    raw = build_extractor({"name": "minilm", "model": str(folder), "pooling": "cls", "max_length": 32,
                           "normalize": False}).extract(items)
    logits = raw @ head["weight"].numpy().T + head["bias"].numpy()
    assert logits.argmax(axis=1).tolist() == [0, 1, 2]


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch, params, tiny_model):
    from safetensors.torch import load_file

    def exported() -> dict:
        return load_file(str(paths.ARTIFACTS / "text_encoder" / "model.safetensors"))

    clean, killed = tmp_path / "clean", tmp_path / "killed"
    for root in (clean, killed):
        root.mkdir()
        monkeypatch.chdir(root)
        write_corpus(root)
    params = finetune_params(params, tiny_model, epochs=3)

    monkeypatch.chdir(clean)
    finetune_text.run(params, PlainRunner(1, RecordingHook()), None)
    reference = exported()

    monkeypatch.chdir(killed)
    original = finetune_text.FinetuneTask.begin_epoch

    def dies_in_epoch_two(task, epoch):
        if epoch == 2:
            raise KeyboardInterrupt("killed")
        return original(task, epoch)

    monkeypatch.setattr(finetune_text.FinetuneTask, "begin_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        finetune_text.run(params, PlainRunner(1, RecordingHook()), None)
    assert not (paths.ARTIFACTS / "text_encoder").exists()
    monkeypatch.setattr(finetune_text.FinetuneTask, "begin_epoch", original)
    summary = finetune_text.run(params, PlainRunner(1, RecordingHook()), None)
    assert summary["resumed_from_epoch"] == 1
    resumed = exported()
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert np.array_equal(resumed[name].numpy(), tensor.numpy()), name
    # a finished run is read back whole: nothing is retrained
    again = finetune_text.run(params, PlainRunner(1, RecordingHook()), None)
    assert again["resumed_from_epoch"] == 3 and again["best_epoch"] == summary["best_epoch"]


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"epochs": 0}, r"finetune_text\.epochs.*integer >= 1"),
        ({"lr": -1}, r"finetune_text\.lr.*positive number"),
        ({"warmup": 2}, r"finetune_text\.warmup.*in \[0, 1\]"),
        ({"batchsize": 8}, r"unknown key .finetune_text\.batchsize.*batch_size"),
        ({"device": "gpu"}, r"finetune_text\.device.*auto, cpu"),
        ({"encoder": {"name": "opensmile"}}, r"finetune_text\.encoder\.name.*minilm, roberta"),
        ({"encoder": {"name": "roberta", "pooling": "max"}}, r"finetune_text\.encoder\.pooling.*prompt_mask"),
    ],
)
def test_config_errors_name_the_key(tmp_path, monkeypatch, params, tiny_model, change, pattern):
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path)
    params = finetune_params(params, tiny_model)
    params["finetune_text"].update(change)
    with pytest.raises(ConfigError, match=pattern):
        finetune_text.run(params, PlainRunner(1, RecordingHook()), None)


def test_missing_block_and_missing_dev_split_are_reported(tmp_path, monkeypatch, params, tiny_model):
    monkeypatch.chdir(tmp_path)
    frame = write_corpus(tmp_path)
    params.pop("finetune_text", None)
    with pytest.raises(ConfigError, match="missing key 'finetune_text'"):
        finetune_text.run(params, PlainRunner(1, RecordingHook()), None)
    frame.loc[frame.split == "dev", "split"] = "train"
    write_manifest(frame, tmp_path / "corpus", list(CUES), "test")
    with pytest.raises(ValueError, match="dev split has no labelled utterances"):
        finetune_text.run(finetune_params(params, tiny_model), PlainRunner(1, RecordingHook()), None)
