"""The provenance block: input hashes, and combining benchmark runs written before and after it existed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from pipeline import provenance

ROOT = Path(__file__).resolve().parents[1]
# The keys every result file had before the block existed (commit and dirty only where a script recorded them).
OLD = {"commit": "a" * 40, "dirty": False, "command": "python benchmarks/x.py", "machine": "x86_64, 2 CPUs",
       "date": "2026-11-22", "seconds": 1.0}


def _benchmark(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_folder_has_one_hash_that_follows_its_content(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "a.txt").write_text("a")
    before = provenance.file_inputs([tmp_path / "d", tmp_path / "d" / "sub" / "a.txt"], tmp_path)
    assert set(before) == {"d", "d/sub/a.txt"} and before["d/sub/a.txt"] == "0cc175b9c0f1b6a831c399e269772661"
    (tmp_path / "d" / "sub" / "a.txt").write_text("b")
    assert provenance.file_inputs([tmp_path / "d"], tmp_path)["d"] != before["d"]


def test_dvc_lock_gives_a_stages_inputs_and_outputs(tmp_path):
    lock = {"stages": {"train@m": {"deps": [{"path": "data/f", "md5": "1.dir"}],
                                   "outs": [{"path": "artifacts/models/m", "md5": "2.dir"}]}}}
    (tmp_path / "dvc.lock").write_text(json.dumps(lock))
    assert provenance.dvc_lock_inputs("train@m", tmp_path) == {"data/f": "1.dir"}
    assert provenance.dvc_lock_outputs("train@m", tmp_path) == {"artifacts/models/m": "2.dir"}
    assert provenance.dvc_lock_inputs("train@other", tmp_path) == {}


def test_the_block_has_its_keys_in_order():
    block = provenance.provenance({"p": 1}, {"i": "md5"}, ["benchmarks/x.py", "--flag"])
    assert tuple(block) == provenance.KEYS and block["command"] == "python benchmarks/x.py --flag"


def test_active_speaker_combines_old_and_new_runs(tmp_path):
    bench = _benchmark("active_speaker")
    params = {"speaker": {"method": "auto"}}
    old = {**OLD, "params": params, "overrides": [], "corpora": {"grid": {"hard": {}}}}
    new = {**provenance.provenance(params, {"clips/voxceleb2": "ff"}), "overrides": [], "seconds": 2.0,
           "corpora": {"voxceleb2": {"hard": {}}}}
    new["commit"], new["dirty"] = old["commit"], False
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    combined = bench.combine([tmp_path / "old.json", tmp_path / "new.json"])
    assert list(combined["corpora"]) == ["grid", "voxceleb2"] and combined["inputs"] == {"clips/voxceleb2": "ff"}
    assert combined["commit"] == old["commit"] and combined["seconds"] == 3.0
    assert combined["corpora"]["voxceleb2"]["run"]["machine"] == new["machine"]


def test_faults_combines_old_and_new_runs(tmp_path):
    bench = _benchmark("faults")
    old = {**OLD, "benchmark": "faults", "params": {}, "cases": [{"case": "c", "expected": "e", "got": "g",
                                                                   "ok": True}]}
    new = {**provenance.provenance({"trials": 1}), "benchmark": "faults", "seconds": 2.0,
           "kills": [{"stage": "cut", "trials": 1, "identical": 1, "killed_mid_work": 1}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert bench.combine([tmp_path / "old.json", tmp_path / "new.json"], tmp_path / "out") == 0
    combined = json.loads((tmp_path / "out" / "faults.json").read_text())
    assert combined["part_run"] == {"cases": 0, "kills": 1} and combined["commit"] == new["commit"]
    assert "inputs" not in combined["runs"][0] and combined["runs"][1]["params"] == {"trials": 1}


def test_faults_kill_trials_of_a_later_run_replace_only_their_own_stages(tmp_path):
    bench = _benchmark("faults")

    def kills(*stages: str, identical: int) -> list[dict]:
        return [{"stage": s, "trials": 5, "identical": identical, "killed_mid_work": 5} for s in stages]

    first = {**provenance.provenance({}), "benchmark": "faults", "kills": kills("cut", "train@*", identical=1)}
    second = {**provenance.provenance({}), "benchmark": "faults", "kills": kills("train@*", identical=5)}
    (tmp_path / "first.json").write_text(json.dumps(first))
    (tmp_path / "second.json").write_text(json.dumps(second))
    assert bench.combine([tmp_path / "first.json", tmp_path / "second.json"], tmp_path / "out") == 0
    combined = json.loads((tmp_path / "out" / "faults.json").read_text())
    rows = {row["stage"]: row for row in combined["kills"]}
    assert rows["cut"]["run"] == 0 and rows["train@*"] == {**kills("train@*", identical=5)[0], "run": 1}
    assert combined["part_run"]["kills"] == [0, 1]
