"""The real-transcript benchmark: its params files, the text-only workspace DAG, the rows it tabulates
from the stages' metrics, the logistic baseline and the merge of results (tiny inputs, no DVC run)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from models.cmath import PAPER_LOSS_WEIGHTS as CMATH_WEIGHTS
from models.lfvd import PAPER_LOSS_WEIGHTS as LFVD_WEIGHTS
from pipeline import paths
from pipeline.dag import check, render
from pipeline.manifest import write_manifest
from pipeline.params_check import check_params
from pipeline.readme_tables import real_text, real_text_context, real_text_mrd
from pipeline.tables import vector_table, write_atomic

PROJECT = Path(__file__).resolve().parents[1]
LABELS = ["neu", "joy", "sad"]


def load_benchmark():
    path = PROJECT / "benchmarks" / "real_text.py"
    spec = importlib.util.spec_from_file_location("real_text_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def project_params() -> dict:
    return yaml.safe_load((PROJECT / "params.yaml").read_text())


@pytest.mark.parametrize("corpus", ["meld", "iemocap"])
def test_each_corpus_is_a_valid_text_only_params_file(corpus, tmp_path):
    bench = load_benchmark()
    config = bench.load_config(corpus, tmp_path)
    assert config["dataset"]["root"] == str((tmp_path / corpus).resolve()) and config["dataset"]["media"] is False
    params = bench.corpus_params(project_params(), config)
    check_params(params)  # every key known, every model block accepted by its class
    assert all(block["modality"] == "text" for block in params["features"].values())
    assert all(set(block["inputs"]) <= set(params["features"]) for block in params["models"].values())
    models = params["models"]
    assert models["cmath"]["loss_weights"] == CMATH_WEIGHTS[corpus]  # the paper's weights for this corpus
    assert models["lfvd"]["loss_weights"] == LFVD_WEIGHTS[corpus]
    assert params["refine"]["mrd"]["multimodal"] == "kd_hierfusion" and params["refine"]["mrd"]["text"] == "context_gru"
    assert params["refine"]["mrd"]["curriculum"] == {"r0": {"meld": 0.4, "iemocap": 0.15}[corpus], "oof": "never"}
    assert params["speaker"] == project_params()["speaker"]  # blocks the file does not name stay the project's


def test_seeds_epochs_and_overrides_reach_every_budget(tmp_path):
    bench = load_benchmark()
    params = bench.corpus_params(project_params(), bench.load_config("meld", tmp_path), seeds=[4], epochs=2,
                                 overrides=["train.patience=1", "models.cmath.hidden=16"])
    assert params["train"]["seeds"] == [4] and params["train"]["epochs"] == 2 and params["train"]["patience"] == 1
    assert params["models"]["kd_hierfusion"]["train"] == {"epochs": 2, "patience": 6}
    assert params["models"]["drkf"]["train"]["epochs"] == 2 and params["refine"]["mrd"]["epochs"] == 2
    assert params["models"]["cmath"]["hidden"] == 16 and params["models"]["cmath"]["train"] == {"lr": 0.003}
    untouched = bench.corpus_params(project_params(), bench.load_config("meld", tmp_path))
    assert untouched["train"]["epochs"] == 30 and untouched["refine"]["mrd"]["epochs"] == 10


def test_the_workspace_dag_has_no_media_stage_and_matches_its_params(tmp_path):
    bench = load_benchmark()
    (tmp_path / "dvc.yaml").write_text((PROJECT / "dvc.yaml").read_text())
    bench.text_only_dag(tmp_path)
    params = bench.corpus_params(project_params(), bench.load_config("iemocap", tmp_path))
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(render(dvc_yaml.read_text(), params))  # what write_params does in the workspace
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    assert not {"demo_corpus", "cut", "faces", "lipsync_train", "speaker", "finetune_text"} & set(stages)
    assert {"prepare", "features", "train", "evaluate", "refine", "evaluate_refined"} <= set(stages)
    deps = stages["features"]["do"]["deps"]
    assert "data/manifest.parquet" in deps
    assert not {"${dataset.root}", "data/cuts.parquet", "data/audio", "data/speaker_tracks"} & set(deps)
    assert set(stages["train"]["foreach"]) == set(params["models"]) and set(stages["refine"]["foreach"]) == {"mrd"}
    assert check(params, dvc_yaml) == []  # the check every stage runs first under DVC


def test_rows_asked_for_by_name_and_refinements_by_their_own_name():
    bench = load_benchmark()
    params = bench.corpus_params(project_params(), bench.load_config("meld", Path(".")))
    everything = bench.wanted_rows(None, params)
    assert everything == ["cmath", "lfvd", "context_gru", "kd_hierfusion", "drkf", "logistic_regression", "mrd_text"]
    assert bench.wanted_rows("mrd, drkf,mrd_text", params) == ["mrd_text", "drkf"]
    with pytest.raises(ValueError, match="bogus"):
        bench.wanted_rows("kd_hierfusion,bogus", params)


def test_unknown_model_names_are_rejected_before_any_work(tmp_path, capsys):
    bench = load_benchmark()
    with pytest.raises(SystemExit) as stop:
        bench.main(["--models", "kd_hierfusion,bogus", "--data", str(tmp_path), "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert "bogus" in capsys.readouterr().err
    assert not (tmp_path / "real_text.json").exists()


# --- rows from the stages' metrics ---------------------------------------------------------------


def scores(f1: float) -> dict:
    return {"accuracy": f1 + 0.01, "weighted_f1": f1, "macro_f1": f1 - 0.01, "unweighted_accuracy": f1}


def stat(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None}


def write_model_metrics(workdir: Path, name: str, f1s: list[float], epochs: int = 3, restored=()) -> None:
    """`eval.json` and `train.json` as the evaluate and train stages write them (the keys the rows read)."""
    folder = workdir / "metrics" / name
    folder.mkdir(parents=True, exist_ok=True)
    per_seed = [{"seed": seed, "best_epoch": 2, "dev": scores(f1 - 0.02), "test": scores(f1)}
                for seed, f1 in enumerate(f1s)]
    aggregate = {split: {key: stat([s[split][key] for s in per_seed]) for key in scores(0)}
                 for split in ("dev", "test")}
    (folder / "eval.json").write_text(json.dumps({"model": name, **aggregate, "per_seed": per_seed}))
    (folder / "train.json").write_text(json.dumps({
        "model": name, "restored_from_cache": list(restored),
        "per_seed": [{"seed": seed, "best_epoch": 2, "epochs_run": epochs, "dev": scores(0)}
                     for seed in range(len(f1s))],
    }))


def write_refinement_metrics(workdir: Path, name: str, f1s: list[float]) -> None:
    write_model_metrics(workdir, f"{name}_text", f1s)
    curriculum = {"counts": {"easy": 3}, "out_of_fold": False}
    (workdir / "metrics" / name).mkdir(parents=True, exist_ok=True)
    (workdir / "metrics" / name / "train.json").write_text(json.dumps({"per_seed": [
        {"seed": seed, "multimodal": {"epochs_run": 2}, "text": {"epochs_run": 2}, "curriculum": curriculum}
        for seed in range(len(f1s))]}))


def test_model_and_refined_rows_come_from_eval_and_train_json(tmp_path):
    bench = load_benchmark()
    write_model_metrics(tmp_path, "context_gru", [0.5, 0.6])
    write_model_metrics(tmp_path, "drkf", [0.4, 0.5], restored=[0])
    write_refinement_metrics(tmp_path, "mrd", [0.55, 0.65])
    block = {"kind": "context_gru", "inputs": ["text"]}
    row = bench.model_row(tmp_path, "context_gru", block, train_seconds=12.0)
    assert row["model"] == "context_gru" and row["config"] == block
    assert set(row["test"]) == {"weighted_f1", "accuracy", "macro_f1"}
    assert row["test"]["weighted_f1"]["mean"] == pytest.approx(0.55)
    assert row["seconds_per_epoch"] == pytest.approx(12.0 / 6) and row["per_seed"][1]["epochs_run"] == 3
    assert row["per_seed"][1]["test"]["weighted_f1"] == 0.6
    assert bench.model_row(tmp_path, "drkf", block, 9.0)["seconds_per_epoch"] == pytest.approx(3.0)  # seed 1 only
    write_model_metrics(tmp_path, "lfvd", [0.4, 0.5], restored=[0, 1])
    assert "seconds_per_epoch" not in bench.model_row(tmp_path, "lfvd", block, 9.0)  # every seed restored
    assert "seconds_per_epoch" not in bench.model_row(tmp_path, "context_gru", block, None)  # DVC found it current
    refine = {"kind": "mrd", "multimodal": "kd_hierfusion", "text": "context_gru", "epochs": 2}
    mrd = bench.refined_row(tmp_path, "mrd", refine, train_seconds=8.0)
    assert mrd["model"] == "mrd_text" and mrd["config"]["multimodal"] == "kd_hierfusion"
    assert mrd["start"]["model"] == "context_gru" and mrd["start"]["test"]["weighted_f1"]["mean"] == pytest.approx(0.55)
    assert mrd["per_seed"][0]["start"]["test"]["weighted_f1"] == 0.5 and mrd["per_seed"][0]["curriculum"]["counts"]
    assert mrd["seconds_per_epoch"] == pytest.approx(2.0)


def write_text_workspace(workdir: Path, dim: int = 6, seed: int = 0) -> None:
    """A manifest (9 dialogues: train 5, dev 2, test 2) and `text` features a label shifts; one utterance without."""
    rng = np.random.default_rng(seed)
    rows, ids, vectors = [], [], []
    for d in range(9):
        split = "train" if d < 5 else "dev" if d < 7 else "test"
        for turn in range(4):
            label = (d + turn) % 3
            utt = f"d{d}_u{turn}"
            rows.append({"utt_id": utt, "dialogue_id": f"d{d}", "turn": turn, "speaker": "AB"[turn % 2],
                         "text": "words", "label": LABELS[label], "split": split, "media": "", "start": np.nan,
                         "end": np.nan})
            if utt != "d0_u3":
                ids.append(utt)
                vectors.append(rng.normal(size=dim) + 3 * label)
    write_manifest(pd.DataFrame(rows), workdir, LABELS, "test", path=workdir / paths.MANIFEST, media=False)
    write_atomic(vector_table(ids, np.array(vectors, np.float32)), workdir / paths.features_path("text"), {})


def test_logistic_baseline_reads_the_workspace_through_the_pipelines_loader(tmp_path):
    bench = load_benchmark()
    write_text_workspace(tmp_path)
    row = bench.logistic_row(tmp_path, [0, 1], lambda message: None)
    assert row["model"] == "logistic_regression" and row["config"]["inputs"] == ["text"]
    assert [s["seed"] for s in row["per_seed"]] == [0, 1] and row["per_seed"][0]["C"] in bench.C_GRID
    assert row["test"]["accuracy"]["mean"] > 0.9  # the label shifts the features: separable
    assert row["test"]["weighted_f1"]["std"] == pytest.approx(0.0)  # lbfgs: the seeds agree
    assert Path.cwd() != tmp_path


# --- the results file ----------------------------------------------------------------------------


def test_merge_replaces_rerun_rows_keeps_the_others_and_the_readme_tables_render(tmp_path):
    bench = load_benchmark()
    write_model_metrics(tmp_path, "context_gru", [0.5, 0.6])
    write_refinement_metrics(tmp_path, "mrd", [0.55, 0.65])
    gru = bench.model_row(tmp_path, "context_gru", {"kind": "context_gru"}, 6.0)
    mrd = bench.refined_row(tmp_path, "mrd", {"kind": "mrd", "multimodal": "kd", "text": "context_gru"}, None)
    stale = {"model": "mrd_text", "test": {"old": True}}
    stored = {"command": "python benchmarks/real_text.py", "date": "2026-01-01 00:00 UTC", "wall_seconds": 1.0,
              "machine": {}, "results": {"meld": {"train": {"epochs": 30}, "models": [gru, stale]}}}
    path = tmp_path / "real_text.json"
    path.write_text(json.dumps(stored))
    report = {"commit": "c0ffee", "dirty": False, "command": "python benchmarks/real_text.py --models mrd",
              "date": "2026-01-02 00:00 UTC", "wall_seconds": 2.0, "models": ["mrd_text"], "machine": {},
              "protocol": "dev", "results": {"meld": {"train": {"epochs": 2}, "models": [mrd]}}}
    merged = bench.merge(path, report)
    rows = merged["results"]["meld"]["models"]
    assert [r["model"] for r in rows] == ["context_gru", "mrd_text"] and rows[1]["start"]["model"] == "context_gru"
    assert merged["results"]["meld"]["train"] == {"epochs": 2}  # the corpus's settings are the latest run's
    assert [r["command"] for r in merged["runs"]] == [stored["command"], report["command"]]
    assert merged["commit"] == merged["runs"][1]["commit"] == "c0ffee" and "commit" not in merged["runs"][0]
    assert bench.merge(tmp_path / "absent.json", report)["results"] == report["results"]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "real_text.json").write_text(json.dumps(merged))
    table = real_text(tmp_path / "results")
    assert "| meld | context_gru | 55.0 ± 7.1 | 56.0 ± 7.1 | 2 | not tuned | - | 1.00 |" in table
    assert "| meld | mrd_text |" in table
    assert "meld 55.0 → 60.0 test W-F1, better on 2 of 2 seeds" in real_text_mrd(tmp_path / "results")
    assert "| meld | context_gru | 55.00 ± 7.07 |" in bench.table(merged["results"])


# --- the dev sweep -------------------------------------------------------------------------------


def test_the_sweep_keeps_each_models_best_dev_setting_in_order_and_restores_the_seeds():
    bench = load_benchmark()
    params = {"train": {"seeds": [0, 1, 2, 3, 4], "lr": 0.001},
              "models": {"gru": {"kind": "context_gru", "hidden": 128},
                         "kd": {"kind": "kd_hierfusion", "fusion_dim": 64, "train": {"epochs": 30}}}}
    sweep = {"seeds": [0], "models": {"gru": {"lr": [0.0003, 0.001, 0.003], "hidden": [128, 256]},
                                      "kd": {"size": [{"fusion_dim": 64, "teacher_dim": 64},
                                                      {"fusion_dim": 128, "teacher_dim": 128}]}}}
    seen = []

    def dev_score(trial, model):
        seen.append((model, trial["train"]["seeds"], copy.deepcopy(trial["models"])))
        block = trial["models"][model]
        if model == "gru":  # best at lr 0.001, hidden 256; hidden 128 ties with 256 at lr 0.003 (the first wins)
            return {(0.001, 256): 0.6, (0.003, 128): 0.55, (0.003, 256): 0.55}.get(
                (block["train"]["lr"], block["hidden"]), 0.5)
        return 0.4 + block["fusion_dim"] / 1000

    chosen, records = bench.tune(params, sweep, ["gru", "kd"], dev_score, lambda message: None)
    assert len(seen) == 8 and all(seeds == [0] for _, seeds, _ in seen)  # the sweep's seeds only
    assert [m for m, _, _ in seen] == ["gru"] * 6 + ["kd"] * 2
    assert all(models["gru"]["hidden"] == 256 and models["gru"]["train"]["lr"] == 0.001
               for m, _, models in seen if m == "kd")  # kd is tuned over gru's choice
    assert records["gru"]["chosen"] == {"lr": 0.001, "hidden": 256}
    assert [t["dev_weighted_f1"] for t in records["gru"]["trials"]] == [0.5, 0.5, 0.5, 0.6, 0.55, 0.55]
    assert records["kd"]["chosen"] == {"size": {"fusion_dim": 128, "teacher_dim": 128}}
    assert chosen["models"]["kd"] == {"kind": "kd_hierfusion", "fusion_dim": 128, "teacher_dim": 128,
                                      "train": {"epochs": 30}}
    assert chosen["train"] == {"seeds": [0, 1, 2, 3, 4], "lr": 0.001}  # the final run's seeds
    assert params["models"]["gru"] == {"kind": "context_gru", "hidden": 128}  # the input is left alone
    ties = {"seeds": [0], "models": {"gru": {"lr": [0.01, 0.02]}}}
    _, tied = bench.tune(params, ties, ["gru", "kd"], lambda trial, model: 0.5, lambda message: None)
    assert tied == {"gru": {"seeds": [0], "grid": {"lr": [0.01, 0.02]}, "chosen": {"lr": 0.01},
                            "trials": [{"setting": {"lr": 0.01}, "dev_weighted_f1": 0.5},
                                       {"setting": {"lr": 0.02}, "dev_weighted_f1": 0.5}]}}


@pytest.mark.parametrize("corpus", ["iemocap", "meld"])
def test_the_sweep_and_paper_blocks_are_the_benchmarks_and_name_real_settings(corpus, tmp_path):
    bench = load_benchmark()
    blocks = bench.load_benchmark_blocks(corpus)
    config = bench.load_config(corpus, tmp_path)
    assert not set(bench.BENCHMARK_BLOCKS) & set(config)  # never written into the workspace's params
    params = bench.corpus_params(project_params(), config)
    for model, grid in blocks["tune"]["models"].items():
        for setting in bench.candidates(grid):
            check_params(bench.with_setting(params, model, setting))  # every setting is a valid params edit
    rows = bench.row_names(params)
    assert set(blocks["paper"]) <= set(rows) and all({"weighted_f1", "source", "protocol"} <= set(p)
                                                      for p in blocks["paper"].values())


def test_the_readme_names_every_model_below_the_context_gru_and_the_no_context_baseline(tmp_path):
    def row(model, f1):
        return {"model": model, "test": {"weighted_f1": {"mean": f1, "std": 0.01}}}

    results = {"iemocap": {"models": [row("context_gru", 0.60), row("logistic_regression", 0.47),
                                      row("lfvd", 0.62), row("drkf", 0.49), row("cmath", 0.45)]},
               "meld": {"models": [row("context_gru", 0.58)]}}  # no baseline row: not judged
    (tmp_path / "real_text.json").write_text(json.dumps({"results": results}))
    assert real_text_context(tmp_path) == ("- iemocap: below the context GRU (60.0): `drkf` 49.0, `cmath` 45.0. "
                                           "Below the no-context logistic regression (47.0): `cmath`.")
