"""The ablation benchmark turns every documented ablation row into DVC stages of its own."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import yaml

from models.registry import check_hyper_parameters
from pipeline.config import load_params
from pipeline.dag import check, foreach_items, model_inputs, render

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("ablations_benchmark", ROOT / "benchmarks" / "ablations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_row_is_a_stage_reading_exactly_its_inputs(tmp_path):
    bench = load_benchmark()
    params = load_params(ROOT / "params.yaml")
    variants_of = {family: bench.variants(family, params) for family in bench.FAMILIES}
    edited = bench.add_blocks(params, variants_of)
    runnable = [v for rows in variants_of.values() for v in rows if v["block"] is not None]
    assert len(runnable) >= 25 and all(v["reason"] is None for v in runnable)

    items = foreach_items(edited)
    inputs = model_inputs(edited)
    for variant in runnable:
        assert variant["name"] in items[variant["stage"]], variant["name"]
        if variant["family"] != "mrd":
            block = edited["models"][variant["name"]]
            check_hyper_parameters(block["kind"], block)
            slots = {value for key, value in items["train"][variant["name"]].items() if key.startswith("in")}
            assert slots == set(inputs[variant["name"]])
    text_only = edited["models"]["kd_hierfusion__text_only_table_5"]
    assert text_only["inputs"] == ["text"]
    assert set(items["train"]["kd_hierfusion__text_only_table_5"].values()) == {"text"}
    assert edited["refine"]["mrd__no_rcl"]["curriculum"]["mode"] == "none"

    # the rendered dvc.yaml holds every row and passes the same check every DVC stage runs first
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(render((ROOT / "dvc.yaml").read_text(), edited))
    assert check(edited, dvc_yaml) == []
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    assert "mrd__no_mic" in stages["evaluate_refined"]["foreach"]


def test_a_front_end_row_runs_as_an_experiment_on_the_full_model_block():
    bench = load_benchmark()
    params = load_params(ROOT / "params.yaml")
    rows = {v["row"]: v for v in bench.variants("kd_hierfusion", params)}
    speaker_row = rows["w/o speaker identification"]
    assert speaker_row["pipeline"] == {"speaker.method": "first_face"}
    assert speaker_row["block"] == rows["full model"]["block"]
    plain = rows["w/o adaptive gating"]
    assert plain["pipeline"] is None and plain["block"]["use_gates"] is False


def test_stages_run_reads_dvc_output():
    bench = load_benchmark()
    output = "Stage 'prepare' didn't change, skipping\nRunning stage 'speaker':\n> python -m pipeline speaker\n" \
             "Running stage 'train@kd_x':\nRunning stage 'speaker':\n"
    assert bench.stages_run(output) == ["speaker", "train@kd_x"]
