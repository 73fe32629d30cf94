"""`dvc.yaml` follows `params.yaml`: each model stage depends on exactly the feature files its model reads,
`speaker` on LipSyncNet only for the methods that read it, and a DAG left out of sync fails before any
work, naming the stage and the fix. DVC's own parser and dry runs are the judge."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import dag
from pipeline.config import ConfigError
from tests.conftest import PROJECT
from tests.test_dvc_pipeline import build_workspace, run

DVC_YAML = PROJECT / "dvc.yaml"


def committed_dvc() -> dict:
    return yaml.safe_load(DVC_YAML.read_text())


def test_the_committed_dvc_yaml_is_in_sync_with_params(base_params):
    drift = dag.compare(base_params, committed_dvc())
    assert not drift, "dvc.yaml is out of sync with params.yaml (run `python -m pipeline.dag`):\n" + "\n".join(
        drift.lines())
    assert dag.render(DVC_YAML.read_text(), base_params) == DVC_YAML.read_text()


def test_rendering_follows_a_change_of_inputs_and_keeps_the_rest(base_params):
    params = copy.deepcopy(base_params)
    params["models"]["fusion_gru"]["inputs"] = ["text", "audio", "visual", "text_seq"]
    params["models"]["tiny"] = {"kind": "context_gru", "inputs": ["audio"]}
    text = dag.render(DVC_YAML.read_text(), params)
    assert not dag.compare(params, yaml.safe_load(text))
    stages = yaml.safe_load(text)["stages"]
    assert stages["train"]["foreach"]["tiny"] == {"in1": "audio", "in2": "audio", "in3": "audio", "in4": "audio"}
    assert "data/features/${item.in4}.parquet" in stages["evaluate"]["do"]["deps"]
    assert "data/features" not in stages["train"]["do"]["deps"]
    untouched = [line for line in DVC_YAML.read_text().splitlines() if line.startswith("#")]
    assert untouched == [line for line in text.splitlines() if line.startswith("#")]
    assert dag.render(text, base_params) == DVC_YAML.read_text()  # and back, byte for byte


def test_a_missing_dependency_is_an_error_and_a_needless_one_a_warning(base_params):
    params = copy.deepcopy(base_params)
    params["models"]["text_gru"]["inputs"] = ["text", "audio"]  # dvc.yaml: text only
    params["models"]["new_model"] = {"kind": "context_gru", "inputs": ["text"]}
    params["models"]["visual_gru"]["inputs"] = ["visual"]
    with pytest.raises(ConfigError) as caught:
        dag.check(params, DVC_YAML, "train@visual_gru")
    message = str(caught.value)
    assert "train@text_gru: does not depend on data/features/audio.parquet" in message
    assert "train@new_model: no such stage" in message and "python -m pipeline.dag" in message

    params = copy.deepcopy(base_params)
    params["models"]["fusion_gru"]["inputs"] = ["text", "audio"]  # dvc.yaml still lists visual
    params["speaker"]["method"] = "first_face"
    assert dag.check(params, DVC_YAML, "train@text_gru") == []  # another stage's excess is not its business
    [warning] = dag.check(params, DVC_YAML, "train@fusion_gru")
    assert "data/features/visual.parquet" in warning and "python -m pipeline.dag" in warning
    assert any("artifacts/lipsyncnet" in w for w in dag.check(params, DVC_YAML, "speaker"))

    broken = committed_dvc()
    broken["stages"]["train"]["do"]["deps"].append("data/features")  # the whole folder again
    drift = dag.compare(base_params, broken)
    assert not drift.missing and "whole data/features folder" in "\n".join(drift.lines())


def test_a_stage_started_by_dvc_refuses_an_out_of_sync_dag_before_any_work(tmp_path, base_params):
    params = copy.deepcopy(base_params)
    params["models"]["fusion_gru"]["inputs"] = ["text", "audio", "visual", "text_seq"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text(DVC_YAML.read_text())
    env = {**os.environ, "DVC_ROOT": str(tmp_path), "DVC_STAGE": "train@fusion_gru", "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-m", "pipeline", "train", "fusion_gru"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "out of sync" in done.stderr and "data/features/text_seq.parquet" in done.stderr
    assert "python -m pipeline.dag" in done.stderr
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / ".cache").exists()


def test_the_generator_command_rewrites_and_checks(tmp_path, base_params):
    params = copy.deepcopy(base_params)
    params["speaker"]["method"] = "first_face"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text(DVC_YAML.read_text())
    argv = ["--params", str(tmp_path / "params.yaml"), "--dvc-yaml", str(tmp_path / "dvc.yaml")]
    assert dag.main([*argv, "--check"]) == 1
    assert dag.main(argv) == 0
    assert dag.main([*argv, "--check"]) == 0
    speaker = yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]["speaker"]
    assert "artifacts/lipsyncnet" not in speaker["deps"] and speaker["params"] == ["speaker", "video"]


# ---------------------------------------------------------------- DVC's own view


@pytest.fixture(scope="module")
def bare_workspace(tmp_path_factory) -> Path:
    """A git + DVC copy of the project with nothing reproduced: DVC parses it and dry-runs it."""
    return build_workspace(tmp_path_factory.mktemp("dag_repo"))


def dvc_deps(workspace: Path) -> dict[str, list[str]]:
    """Every stage's dependency paths as DVC itself resolves them (relative to the workspace)."""
    code = ("import json; from dvc.repo import Repo; r = Repo('.'); "
            "print(json.dumps({s.addressing: [d.def_path for d in s.deps] for s in r.index.stages}))")
    return yaml.safe_load(run([sys.executable, "-c", code], workspace).strip().splitlines()[-1])


def test_dvc_resolves_each_model_stage_to_exactly_its_feature_files(bare_workspace):
    params = yaml.safe_load((bare_workspace / "params.yaml").read_text())
    deps = dvc_deps(bare_workspace)

    def features(stage: str) -> set[str]:
        return {d for d in deps[stage] if d.startswith("data/features")}

    for name, block in params["models"].items():
        wanted = {f"data/features/{key}.parquet" for key in block["inputs"]}
        assert features(f"train@{name}") == wanted, name
        assert features(f"evaluate@{name}") == wanted, name
    for name, block in params["refine"].items():
        keys = params["models"][block["multimodal"]]["inputs"] + params["models"][block["text"]]["inputs"]
        wanted = {f"data/features/{key}.parquet" for key in keys}
        assert features(f"refine@{name}") == wanted and features(f"evaluate_refined@{name}") == wanted
    assert features("train@text_gru") == {"data/features/text.parquet"}
    assert "artifacts/lipsyncnet" in deps["speaker"]  # the committed method (auto) reads LipSyncNet


def upstream_of(stage: str, workspace: Path) -> set[str]:
    """The stages `dvc repro <stage>` would consider, from DVC's own graph (`dvc dag --dot`)."""
    return set(re.findall(r'"([^"]+)"', run(["dvc", "dag", "--dot", stage], workspace))) - {stage}


def test_first_face_needs_no_lipsync_training(bare_workspace):
    """With `auto`, DVC trains LipSyncNet before `speaker`; with `first_face` (after `python -m pipeline.dag`)
    `speaker` does not wait for it."""
    assert "lipsync_train" in upstream_of("speaker", bare_workspace)
    params_file, dvc_file = bare_workspace / "params.yaml", bare_workspace / "dvc.yaml"
    committed = params_file.read_text(), dvc_file.read_text()
    params = yaml.safe_load(committed[0])
    params["speaker"]["method"] = "first_face"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        run([sys.executable, "-m", "pipeline.dag"], bare_workspace)
        upstream = upstream_of("speaker", bare_workspace)
    finally:
        params_file.write_text(committed[0])
        dvc_file.write_text(committed[1])
    assert {"cut", "faces"} <= upstream and "lipsync_train" not in upstream, upstream


def test_the_demo_corpus_stage_depends_on_every_module_its_renderer_reads():
    """The rendered corpus records a fingerprint of its code; an edit DVC did not see would make
    `prepare` refuse the corpus while `dvc repro` believes it current."""
    import importlib.util

    from pipeline.code_fingerprint import module_closure
    from pipeline.datasets.demo import RENDERER_MODULES

    deps = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]["demo_corpus"]["deps"]
    modules = module_closure("pipeline.datasets.demo", *RENDERER_MODULES)
    files = {Path(importlib.util.find_spec(m).origin).relative_to(PROJECT).as_posix() for m in modules}
    missing = sorted(f for f in files if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
    assert missing == []
