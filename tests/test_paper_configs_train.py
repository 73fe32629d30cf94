"""Every paper config trains: each of its models (and MRD's refinement) runs one epoch through the real
train stage, at the paper's sizes, on a small corpus holding every input the configs read.

The corpus is IEMOCAP-shaped (sessions, so DRKF's session folds run too) with the demo's feature keys:
`text`, `audio` and `visual` vectors and `audio_seq` / `text_seq` step sequences.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import paths
from pipeline.runner import PlainRunner
from pipeline.stages import get_stage
from pipeline.tables import read_frame, vector_table, write_atomic
from tests.test_paper_configs import FILES, merged_params, read_config
from tests.test_sequence_batches import write_sequence_corpus

VECTOR_DIMS = {"text": 24, "audio": 12, "visual": 16}


def write_corpus(root: Path) -> None:
    write_sequence_corpus(root, sessions=3, dialogues=3, turns=4)
    utt_ids = read_frame(root / paths.MANIFEST, ["utt_id"]).utt_id.tolist()
    rng = np.random.default_rng(0)
    for key, dim in VECTOR_DIMS.items():
        vectors = rng.normal(size=(len(utt_ids), dim)).astype(np.float32)
        write_atomic(vector_table(utt_ids, vectors), root / paths.features_path(key), {"key": key})


def one_epoch(params: dict, names: list[str]) -> dict:
    """`params` with every named model's train block cut to one epoch of one seed on this machine."""
    for name in names:
        block = params["models"][name]
        block["train"] = {**(block.get("train") or {}), "epochs": 1, "patience": 1, "seeds": [0], "device": "cpu"}
    for refinement in (params.get("refine") or {}).values():
        refinement["epochs"] = 1
    return params


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_each_paper_config_trains_one_epoch(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path)
    names = list(read_config(path)["models"])
    params = one_epoch(merged_params(path), names)
    for name in names:
        get_stage("train")(params, PlainRunner(1), name)
        report = json.loads((paths.METRICS_DIR / name / "train.json").read_text())
        seeds = report.get("per_seed") or [s for fold in report["per_fold"].values() for s in fold["per_seed"]]
        assert seeds and all(seed["best_epoch"] == 1 for seed in seeds), (name, seeds)
        assert any((paths.MODELS_DIR / name).rglob("model.safetensors")), name
    for refinement in read_config(path).get("refine") or {}:
        get_stage("refine")(params, PlainRunner(1), refinement)
        assert (paths.METRICS_DIR / refinement / "train.json").is_file(), refinement
        assert any((paths.MODELS_DIR / refinement).rglob("*.safetensors")), refinement


def test_the_demo_benchmark_lays_only_the_model_blocks_over_the_demo_and_cuts_to_one_epoch():
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_configs.py"
    spec = importlib.util.spec_from_file_location("paper_configs_benchmark", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    demo = merged_params(FILES[0]) | {"dataset": {"name": "demo", "root": "data/corpus/demo"}}
    drkf = next(p for p in FILES if p.parent.name == "drkf" and p.stem == "iemocap")
    params, names = bench.demo_params(demo, read_config(drkf))
    block = params["models"]["drkf"]
    assert names == ["drkf"] and params["dataset"] == demo["dataset"]  # the demo corpus and labels stay
    assert block["folds"] is None and block["hidden"] == 1024  # no sessions on the demo; the paper's size
    assert block["train"]["epochs"] == 1 and block["train"]["seeds"] == [0] and block["train"]["batch_utterances"] == 4
    mrd = next(p for p in FILES if p.parent.name == "mrd" and p.stem == "meld")
    params, names = bench.demo_params(demo, read_config(mrd))
    assert params["refine"]["mrd"]["epochs"] == 1 and set(names) == set(read_config(mrd)["models"])
