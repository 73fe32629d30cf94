"""Shared training machinery: metrics, data alignment, the trainer, the train and evaluate stages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn import metrics as skm

from models import IGNORE_INDEX, ModelOutput
from pipeline import paths
from pipeline.config import ConfigError
from pipeline.hooks import RecordingHook
from pipeline.manifest import write_manifest
from pipeline.runner import PlainRunner
from pipeline.stages import evaluate as evaluate_stage
from pipeline.stages import train as train_stage
from pipeline.tables import vector_table, write_atomic
from pipeline.training import cache as training_cache
from pipeline.training import trainer
from pipeline.training.data import iter_batches, load_dialogue_data
from pipeline.training.metrics import aggregate_scores, classification_scores, confusion_matrix, mean_std

LABELS = ["neutral", "joy", "anger"]
MISSING_AUDIO = "train_d00/1"


# ---------------------------------------------------------------- metrics


def test_metrics_match_sklearn():
    y_true = [0, 0, 1, 1, 1, 2, 2, 0, 1, 0]
    y_pred = [0, 1, 1, 1, 0, 2, 0, 0, 3, 0]  # class 3 predicted but never true; class 4 never seen
    labels = ["a", "b", "c", "d", "e"]
    scores = classification_scores(y_true, y_pred, labels)
    assert scores["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert scores["weighted_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted"))
    assert scores["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    per_class = skm.f1_score(y_true, y_pred, labels=range(5), average=None, zero_division=0)
    assert [scores["per_class_f1"][name] for name in labels] == pytest.approx(list(per_class))
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, 5), skm.confusion_matrix(y_true, y_pred, labels=range(5))
    )


def test_seed_aggregation_uses_sample_std():
    sample_std = np.std([0.5, 0.7, 0.9], ddof=1)
    assert mean_std([0.5, 0.7, 0.9]) == {"mean": pytest.approx(0.7), "std": pytest.approx(sample_std)}
    assert mean_std([0.4]) == {"mean": 0.4, "std": None}
    seeds = [{"accuracy": 0.5, "per_class_f1": {"a": 0.2}}, {"accuracy": 0.7, "per_class_f1": {"a": 0.4}}]
    agg = aggregate_scores(seeds)
    assert agg["accuracy"]["mean"] == pytest.approx(0.6)
    assert agg["per_class_f1"]["a"]["std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))


def test_loss_weights_scale_disable_and_default_aux_terms():
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    labels = torch.tensor([[0, IGNORE_INDEX]])
    ce = float(np.log(3))
    output = ModelOutput(logits, {"kd": torch.tensor(2.0), "broken": torch.tensor(float("nan"))})
    loss, parts = trainer.total_loss(output, labels, {"kd": 0.5, "broken": 0.0})
    assert float(loss.detach()) == pytest.approx(ce + 1.0)
    assert "broken" not in parts and parts["kd"] == 2.0
    loss, _ = trainer.total_loss(ModelOutput(logits, {"kd": torch.tensor(2.0)}), labels, {})
    assert float(loss.detach()) == pytest.approx(ce + 2.0)  # a missing weight means 1.0


# ---------------------------------------------------------------- a tiny synthetic corpus


def write_corpus(root: Path, scramble_test: bool = False, audio_seed: int = 1) -> None:
    """Dialogues whose text carries the label; audio is noise; one utterance lacks audio."""
    rng = np.random.default_rng(0)
    rows = []
    for split, count in (("train", 10), ("dev", 4), ("test", 4)):
        for d in range(count):
            for turn in range(int(rng.integers(3, 6))):
                label = LABELS[int(rng.integers(0, 3))]
                rows.append(
                    dict(utt_id=f"{split}_d{d:02d}/{turn}", dialogue_id=f"{split}_d{d:02d}", turn=turn,
                         speaker=f"s{turn % 2}", text="...", label=label, split=split,
                         media=f"{split}_d{d:02d}.mp4", start=np.nan, end=np.nan)
                )
    frame = pd.DataFrame(rows)
    if scramble_test:
        test = frame["split"] == "test"
        frame.loc[test, "label"] = np.random.default_rng(9).permutation(frame.loc[test, "label"].to_numpy())
    write_manifest(frame, root, LABELS, "synthetic", path=root / paths.MANIFEST)
    signal = np.eye(3, 8)[[LABELS.index(v) for v in pd.DataFrame(rows)["label"]]] * 2.0
    text = (signal + rng.normal(0, 0.7, signal.shape) + 5.0).astype(np.float32)
    text_path = root / paths.features_path("text")
    write_atomic(vector_table(frame["utt_id"].tolist(), text), text_path, {"config_hash": "t1"})
    keep = frame["utt_id"] != MISSING_AUDIO
    audio = np.random.default_rng(audio_seed).normal(size=(int(keep.sum()), 4)).astype(np.float32)
    write_atomic(vector_table(frame.loc[keep, "utt_id"].tolist(), audio), root / paths.features_path("audio"), {})


def make_params(seeds: list[int] | None = None) -> dict:
    return {
        "models": {
            "text_gru": {"kind": "context_gru", "inputs": ["text"], "hidden": 16, "dropout": 0.1},
            "fusion_gru": {"kind": "context_gru", "inputs": ["text", "audio"], "hidden": 16, "dropout": 0.1},
        },
        "train": {"seeds": seeds or [0, 1], "epochs": 8, "patience": 3, "batch_dialogues": 4, "lr": 0.01,
                  "weight_decay": 0.0001, "grad_clip": 5.0, "device": "cpu", "loss_weights": {}},
    }


def runner() -> PlainRunner:
    return PlainRunner(workers=1, hook=RecordingHook())


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path)
    return tmp_path


def weights(model: str, seed: int) -> dict[str, torch.Tensor]:
    return load_file(str(paths.MODELS_DIR / model / f"seed{seed}" / "model.safetensors"))


# ---------------------------------------------------------------- data


def test_data_alignment_standardisation_and_batches(corpus):
    data = load_dialogue_data(["text", "audio"])
    assert data.input_dims == {"text": 8, "audio": 4}
    assert data.missing == {"text": 0, "audio": 1}
    dialogue = data.split("train")[0]
    assert dialogue.utt_ids[1] == MISSING_AUDIO
    assert not dialogue.present["audio"][1] and not dialogue.features["audio"][1].any()
    assert dialogue.speakers.tolist()[:2] == [0, 1]
    train_text = np.concatenate([d.features["text"] for d in data.split("train")])
    np.testing.assert_allclose(train_text.mean(axis=0), 0.0, atol=1e-5)  # fitted on train only
    assert abs(np.concatenate([d.features["text"] for d in data.split("test")]).mean()) > 0
    batches = list(iter_batches(data.split("dev"), data.inputs, 3))
    assert [b.size for b in batches] == [3, 1]
    assert [ids[0] for b in batches for ids in b.utt_ids] == [d.utt_ids[0] for d in data.split("dev")]
    first = batches[0]
    assert (first.labels[~first.mask] == IGNORE_INDEX).all() and not first.present["audio"][~first.mask].any()


# ---------------------------------------------------------------- trainer and stages


def test_train_and_evaluate_write_checkpoints_metrics_and_plots(corpus):
    summary = train_stage.run(make_params(), runner(), "fusion_gru")
    assert summary["seeds"] == 2 and summary["missing_features"] == {"text": 0, "audio": 1}
    for seed in (0, 1):
        folder = paths.MODELS_DIR / "fusion_gru" / f"seed{seed}"
        config = json.loads((folder / "config.json").read_text())
        assert config["input_dims"] == {"text": 8, "audio": 4} and config["labels"] == LABELS
        assert config["features"]["text"]["metadata"] == {"config_hash": "t1"}
        assert len(config["feature_stats"]["text"]["mean"]) == 8 and 1 <= config["best_epoch"] <= 8
        assert weights("fusion_gru", seed)
        assert not list(folder.glob("*.pt")) and not list(folder.glob("*.pkl"))
    report = json.loads((paths.METRICS_DIR / "fusion_gru" / "train.json").read_text())
    assert [s["seed"] for s in report["per_seed"]] == [0, 1]
    assert set(report["dev"]["weighted_f1"]) == {"mean", "std"}
    curves = paths.DVCLIVE_DIR / "fusion_gru" / "plots" / "metrics"
    for seed in (0, 1):
        rows = pd.read_csv(curves / f"seed{seed}" / "dev_weighted_f1.tsv", sep="\t")
        assert rows["step"].tolist() == list(range(1, len(rows) + 1))
    assert not (corpus / "dvc.yaml").exists()

    lock = {"stages": {"train@fusion_gru": {
        "deps": [{"path": "data/manifest.parquet", "md5": "aa11"}, {"path": "data/features", "md5": "bb22.dir"}],
        "outs": [{"path": "artifacts/models/fusion_gru", "md5": "cc33.dir"}]}}}
    (corpus / "dvc.lock").write_text(json.dumps(lock))  # what `dvc repro` leaves after train@fusion_gru
    evaluate_stage.run(make_params(), runner(), "fusion_gru")
    result = json.loads((paths.METRICS_DIR / "fusion_gru" / "eval.json").read_text())
    assert list(result)[:7] == ["commit", "dirty", "params", "inputs", "command", "machine", "date"]
    assert len(result["commit"]) == 40 and isinstance(result["dirty"], bool)  # the code's commit
    assert result["params"] == {"models": {"fusion_gru": make_params()["models"]["fusion_gru"]},
                                "train": make_params()["train"]}
    assert result["inputs"] == {"data/manifest.parquet": "aa11", "data/features": "bb22.dir",
                                "artifacts/models/fusion_gru": "cc33.dir"}
    assert result["command"] == "python -m pipeline evaluate fusion_gru"
    assert result["seeds"] == [0, 1] and "dev" in result["protocol"]
    assert set(result["test"]) == {"accuracy", "weighted_f1", "macro_f1", "per_class_f1"}
    assert set(result["test"]["per_class_f1"]) == set(LABELS)
    assert result["majority_baseline"]["label"] in LABELS
    assert result["test"]["accuracy"]["mean"] > result["majority_baseline"]["accuracy"]  # text carries the label
    predictions = pd.read_parquet(paths.METRICS_DIR / "fusion_gru" / "predictions.parquet")
    assert list(predictions.columns) == ["utt_id", "split", "seed", "label", "predicted"]
    test_rows = predictions[predictions["split"] == "test"]
    confusion = pd.read_csv(paths.PLOTS_DIR / "fusion_gru" / "confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == len(test_rows)
    assert (paths.PLOTS_DIR / "fusion_gru" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    for seed_scores, trained in zip(result["per_seed"], report["per_seed"]):  # the checkpoint reloads exactly
        assert seed_scores["best_epoch"] == trained["best_epoch"]
        for name, value in trained["dev"].items():
            assert seed_scores["dev"][name] == pytest.approx(value)
    seed0 = test_rows[test_rows["seed"] == 0]
    assert result["per_seed"][0]["test"]["accuracy"] == pytest.approx((seed0["label"] == seed0["predicted"]).mean())


def test_training_is_deterministic_and_selects_on_dev_only(corpus):
    params = make_params(seeds=[3])
    train_stage.run(params, runner(), "text_gru")
    first = weights("text_gru", 3)
    report = json.loads((paths.METRICS_DIR / "text_gru" / "train.json").read_text())
    assert report["restored_from_cache"] == []

    write_corpus(corpus, scramble_test=True)  # a new manifest: the cache key changes, training reruns
    summary = train_stage.run(params, runner(), "text_gru")
    assert summary["restored_from_cache"] == 0
    rerun = json.loads((paths.METRICS_DIR / "text_gru" / "train.json").read_text())
    assert rerun["per_seed"] == report["per_seed"]  # same best epoch and dev scores
    second = weights("text_gru", 3)
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0)


def test_train_cache_restores_instead_of_retraining(corpus, monkeypatch):
    params = make_params()
    train_stage.run(params, runner(), "text_gru")
    before = json.loads((paths.METRICS_DIR / "text_gru" / "train.json").read_text())
    tsv = paths.DVCLIVE_DIR / "text_gru" / "plots" / "metrics" / "seed1" / "train_loss.tsv"
    curve = tsv.read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although nothing it depends on changed")

    monkeypatch.setattr(training_cache, "fit_seed", no_training)
    write_corpus(corpus, audio_seed=2)  # an audio swap must not retrain a text-only model
    summary = train_stage.run(params, runner(), "text_gru")
    assert summary["restored_from_cache"] == 2
    after = json.loads((paths.METRICS_DIR / "text_gru" / "train.json").read_text())
    assert after["per_seed"] == before["per_seed"] and after["restored_from_cache"] == [0, 1]
    assert tsv.read_text() == curve  # the curves are replayed from the cache
    assert weights("text_gru", 0)
    with pytest.raises(AssertionError, match="retrained"):
        train_stage.run(params, runner(), "fusion_gru")  # its audio input changed: it would train


def test_the_optimiser_is_a_train_setting_that_retrains_when_changed(corpus):
    params = make_params(seeds=[0])
    train_stage.run(params, runner(), "text_gru")
    adamw = weights("text_gru", 0)
    params["models"]["text_gru"]["train"] = {"optimizer": "adam", "warmup_steps": 3}
    summary = train_stage.run(params, runner(), "text_gru")
    assert summary["restored_from_cache"] == 0  # not the AdamW run restored
    adam = weights("text_gru", 0)
    assert any(not torch.equal(adamw[name], adam[name]) for name in adamw)
    params["models"]["text_gru"]["train"] = {"lr_groups": {"nowhere": 0.1}}
    with pytest.raises(ConfigError, match=r"lr_groups.*'nowhere'"):
        train_stage.run(params, runner(), "text_gru")


def test_evaluate_refuses_checkpoints_of_other_features(corpus):
    params = make_params(seeds=[0])
    params["train"]["epochs"] = 2
    train_stage.run(params, runner(), "fusion_gru")
    write_corpus(corpus, audio_seed=5)
    with pytest.raises(ValueError, match="audio.*changed"):
        evaluate_stage.run(params, runner(), "fusion_gru")


def test_configuration_errors_name_the_key(corpus):
    with pytest.raises(ConfigError, match="'models'.*text_gru, fusion_gru"):
        train_stage.run(make_params(), runner(), "nope")
    with pytest.raises(ConfigError, match="'models'"):
        evaluate_stage.run(make_params(), runner(), None)
    params = make_params()
    params["models"]["text_gru"]["kind"] = "gru9000"
    with pytest.raises(ConfigError, match=r"models\.text_gru\.kind.*context_gru"):
        train_stage.run(params, runner(), "text_gru")
    params = make_params()
    params["models"]["text_gru"]["layerz"] = 2
    with pytest.raises(ConfigError, match=r"models\.text_gru.*layerz"):
        train_stage.run(params, runner(), "text_gru")
    params = make_params()
    params["train"]["patience"] = 0
    with pytest.raises(ConfigError, match=r"train\.patience"):
        train_stage.run(params, runner(), "text_gru")
    params = make_params()
    params["train"]["device"] = "tpu"
    with pytest.raises(ConfigError, match=r"train\.device"):
        train_stage.run(params, runner(), "text_gru")


def test_speaker_normalisation_centres_each_speaker_within_a_dialogue():
    from pipeline.training.data import centre_per_group

    matrix = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 10.0], [0.0, 0.0]], dtype=np.float32)
    present = np.array([True, True, True, False])
    groups = np.array(["d1|a", "d1|a", "d1|b", "d1|b"])
    out = centre_per_group(matrix, present, groups)
    np.testing.assert_allclose(out, [[-1, -1], [1, 1], [0, 0], [0, 0]])
