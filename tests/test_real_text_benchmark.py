"""The real-transcript benchmark's data assembly, the new model rows and the merge of results (tiny inputs)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.training.config import TrainConfig
from pipeline.training.data import collate, sequence_stats_key

LABELS = ["neu", "joy", "sad"]


def load_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "real_text.py"
    spec = importlib.util.spec_from_file_location("real_text_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_corpus(dim: int = 6, seed: int = 0):
    """Frame, vectors, presence and token states of 9 short dialogues (train 5, dev 2, test 2)."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(9):
        split = "train" if d < 5 else "dev" if d < 7 else "test"
        for turn in range(4):
            rows.append(
                {
                    "utt_id": f"d{d}_u{turn}",
                    "dialogue_id": f"d{d}",
                    "turn": turn,
                    "speaker": "AB"[turn % 2],
                    "split": split,
                    "label": LABELS[(d + turn) % 3],
                    "text": f"words {d} {turn}",
                }
            )
    frame = pd.DataFrame(rows)
    targets = np.array([LABELS.index(v) for v in frame["label"]])
    vectors = rng.normal(size=(len(frame), dim)).astype(np.float32) + targets[:, None]
    present = np.ones(len(frame), dtype=bool)
    present[3] = False  # one utterance without text
    steps = [
        (rng.normal(size=(int(rng.integers(2, 6)), dim)) * 3 + 5 + t).astype(np.float32)
        if p
        else np.zeros((0, dim), np.float32)
        for t, p in zip(targets, present)
    ]
    return frame, vectors, present, steps


def tiny_cfg(epochs: int = 2) -> TrainConfig:
    return TrainConfig.from_params(
        {"seeds": [0], "epochs": epochs, "patience": 2, "batch_dialogues": 4, "lr": 1e-3, "device": "cpu",
         "weight_decay": 1e-4, "grad_clip": 5.0, "loss_weights": {}}
    )  # fmt: skip


def test_dialogue_data_carries_train_standardised_token_sequences():
    bench = load_benchmark()
    frame, vectors, present, steps = tiny_corpus()
    data = bench.dialogue_data(frame, LABELS, vectors, present, steps)
    assert data.sequence_inputs == ["text"] and sequence_stats_key("text") in data.stats
    train_steps = np.concatenate([s for d in data.split("train") for s in d.sequences["text"] if len(s)])
    assert np.allclose(train_steps.mean(axis=0), 0.0, atol=1e-4)
    assert np.allclose(train_steps.std(axis=0), 1.0, atol=1e-2)
    first = data.split("train")[0]
    assert not first.present["text"][3] and len(first.sequences["text"][3]) == 0
    batch = collate(data.split("dev"), data.inputs)
    assert batch.sequences["text"].shape[:2] == batch.mask.shape
    plain = bench.dialogue_data(frame, LABELS, vectors, present)
    assert plain.sequence_inputs == [] and not plain.split("train")[0].sequences


def test_drkf_and_kd_hierfusion_rows_and_mrd_refinement_run_text_only():
    bench = load_benchmark()
    frame, vectors, present, steps = tiny_corpus()
    blocks = bench.model_blocks("meld")
    cfg = tiny_cfg()
    seq_data = bench.dialogue_data(frame, LABELS, vectors, present, steps)
    drkf = bench.run_neural("drkf", blocks["drkf"], seq_data, cfg)
    assert drkf["model"] == "drkf" and 0.0 <= drkf["test"]["weighted_f1"]["mean"] <= 1.0
    data = bench.dialogue_data(frame, LABELS, vectors, present)
    states: dict[str, dict[int, dict]] = {"kd_hierfusion": {}, "context_gru": {}}
    blocks["kd_hierfusion"]["teacher_epochs"] = 1
    for name in states:
        row = bench.run_neural(name, blocks[name], data, cfg, states[name])
        assert row["per_seed"][0]["epochs_run"] >= 1
    assert set(states["context_gru"]) == {0}
    bench.MRD["epochs"] = 2
    mrd = bench.run_mrd("meld", blocks, data, replace(cfg, lr=bench.MRD["lr"]), states)
    seed = mrd["per_seed"][0]
    assert mrd["model"] == "mrd_text" and mrd["config"]["refines"] == {
        "multimodal": "kd_hierfusion",
        "text": "context_gru",
    }
    assert seed["epochs_run"] == 2 and 1 <= seed["best_epoch"] <= 2
    assert seed["curriculum"]["out_of_fold"] is False
    assert set(seed["start"]) == {"dev", "test"} and "weighted_f1" in mrd["start"]["test"]


def test_merge_replaces_rerun_rows_and_keeps_the_others(tmp_path):
    bench = load_benchmark()
    old_row = {"model": "cmath", "test": {}, "dev": {}}
    stale = {"model": "drkf", "test": {"old": True}}
    stored = {
        "command": "python benchmarks/real_text.py",
        "date": "2026-01-01T00:00:00+00:00",
        "wall_seconds": 1.0,
        "results": {"meld": {"train": {"lr": {"cmath": 3e-3}}, "models": [old_row, stale]}},
    }
    path = tmp_path / "real_text.json"
    path.write_text(json.dumps(stored))
    fresh = {"model": "drkf", "test": {"new": True}}
    report = {
        "commit": "c0ffee", "dirty": False,
        "command": "python benchmarks/real_text.py --models drkf",
        "date": "2026-01-02T00:00:00+00:00",
        "wall_seconds": 2.0,
        "models": ["drkf"],
        "machine": {},
        "features": {},
        "protocol": "dev",
        "results": {"meld": {"train": {"lr": {"drkf": 1e-3}}, "models": [fresh]}},
    }
    merged = bench.merge(path, report)
    rows = merged["results"]["meld"]["models"]
    assert [r["model"] for r in rows] == ["cmath", "drkf"] and rows[1]["test"] == {"new": True}
    assert merged["results"]["meld"]["train"]["lr"] == {"cmath": 3e-3, "drkf": 1e-3}
    assert [r["command"] for r in merged["runs"]] == [stored["command"], report["command"]]
    assert merged["commit"] == merged["runs"][1]["commit"] == "c0ffee" and "commit" not in merged["runs"][0]
    assert bench.merge(tmp_path / "absent.json", report)["results"] == report["results"]


def test_unknown_model_names_are_rejected(tmp_path, capsys):
    bench = load_benchmark()
    with pytest.raises(SystemExit) as stop:
        bench.main(["--models", "kd_hierfusion,bogus", "--data", str(tmp_path), "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert "bogus" in capsys.readouterr().err
    assert not (tmp_path / "real_text.json").exists()
