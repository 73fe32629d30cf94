"""The whole DAG through `dvc repro` in a temporary git repository, on a tiny demo corpus.

Checks what a user relies on: every stage runs, a second repro runs nothing, and swapping the audio
extractor reruns only `features@audio` and what is downstream of it (from DVC's own output).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]
CODE = ["pipeline", "extractors", "models", "flows", "params.yaml", "dvc.yaml", ".dvcignore"]
pytestmark = pytest.mark.slow


def tiny_params(params: dict) -> dict:
    demo = params["dataset"]["demo"]
    demo.update({"dialogues": 4, "turns": [3, 4], "split": [0.5, 0.25, 0.25], "width": 320, "height": 180})
    params["faces"]["detect_width"] = 320
    params["features"]["visual"]["frames"] = 4
    params["train"].update({"seeds": [0], "epochs": 3, "patience": 2})
    params["finetune_text"]["epochs"] = 1
    params["lipsync"].update({"steps": 30, "rounds": 1, "batch_size": 16})
    for block in params.get("refine", {}).values():
        block["epochs"] = 2
    return params


def run(cmd: list[str], cwd: Path) -> str:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {**os.environ, "PIPELINE_ORCHESTRATOR": "plain", "PATH": path}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-6000:]}"
    return output


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def build_workspace(repo: Path) -> Path:
    """A git + DVC repository holding a copy of the code and tiny params, committed once."""
    for name in CODE:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / name)
    params = tiny_params(yaml.safe_load((repo / "params.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.email", "ci@example.com"], repo)
    run(["git", "config", "user.name", "ci"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "workspace"], repo)  # dvclive and `dvc exp` need a commit to refer to
    return repo


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("dvc_repo"))


@pytest.fixture(scope="module")
def first_repro(workspace) -> str:
    return run(["dvc", "repro"], workspace)


def test_the_stage_code_comes_from_the_workspace(workspace):
    where = run([sys.executable, "-c", "import pipeline; print(pipeline.__file__)"], workspace)
    assert str(workspace) in where


def test_first_repro_runs_every_stage(workspace, first_repro):
    stages = yaml.safe_load((workspace / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    expected = set()
    for name, stage in stages.items():
        if "foreach" in stage:
            group = stage["foreach"].strip("${}")  # e.g. "${models}" -> the params block it loops over
            expected |= {f"{name}@{key}" for key in params[group]}
        else:
            expected.add(name)
    assert ran_stages(first_repro) == expected
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], workspace))
    assert "eval.json" in json.dumps(metrics)
    for model in params["models"]:
        result = json.loads((workspace / "metrics" / model / "eval.json").read_text())
        assert 0.0 <= result["test"]["weighted_f1"]["mean"] <= 1.0
        assert (workspace / "plots" / model / "confusion.csv").exists()


def test_second_repro_runs_nothing(workspace, first_repro):
    output = run(["dvc", "repro"], workspace)
    assert ran_stages(output) == set()
    assert "up to date" in output


def test_swapping_the_audio_extractor_reruns_only_what_depends_on_it(workspace, first_repro):
    params_file = workspace / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["features"]["audio"]["feature_set"] = "IS09"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(["dvc", "status", "--json"], workspace))
    assert set(status) == {"features@audio"}, status
    output = run(["dvc", "repro"], workspace)
    ran = ran_stages(output)
    models = set(params["models"])
    refined = set(params.get("refine", {}))
    downstream = ({"features@audio", "failures"} | {f"{s}@{m}" for s in ("train", "evaluate") for m in models}
                  | {f"{s}@{r}" for s in ("refine", "evaluate_refined") for r in refined})
    assert "features@audio" in ran
    assert ran <= downstream, f"ran more than the audio branch: {sorted(ran - downstream)}"
    untouched = {"demo_corpus", "prepare", "cut", "faces", "lipsync_train", "speaker", "finetune_text", "features@text",
                 "features@visual"}
    assert not ran & untouched


def test_the_whole_pipeline_flow_runs_dvc_stage_by_stage(workspace, first_repro):
    """`python -m flows.pipeline` (a Prefect flow; ephemeral API here) runs each named stage through DVC."""
    order = run([sys.executable, "-m", "flows.pipeline", "--dry"], workspace).split()
    assert order.index("prepare") < order.index("cut") < order.index("faces") < order.index("speaker")
    output = run([sys.executable, "-m", "flows.pipeline", "prepare", "cut"], workspace)
    assert "Finished in state Completed" in output
