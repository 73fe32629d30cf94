"""The whole DAG through `dvc repro` in a temporary git repository, on a tiny demo corpus.

Checks what a user relies on: `make demo`'s commands run every stage and report on one seed, a second
repro runs nothing, changing the audio features makes stale only `features@audio` and the models that
read audio (from DVC's own output), and the whole-pipeline flow reruns a stale stage through DVC.
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
CODE = ["core", "pipeline", "extractors", "models", "flows", "params.yaml", "dvc.yaml", ".dvcignore"]
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


def demo_recipe() -> list[str]:
    """The commands of the Makefile's `demo` target (its `setup` prerequisite aside)."""
    lines = (PROJECT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("demo:"))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


@pytest.fixture(scope="module")
def first_repro(workspace) -> str:
    """What `make demo` runs, on the tiny params (one seed): the dvc.yaml generator, `dvc repro`, the report."""
    recipe = demo_recipe()
    assert "dvc repro" in recipe and "python -m pipeline.report" in recipe, recipe
    return "".join(run(["bash", "-c", command], workspace) for command in recipe)


def model_stages(stages: dict, params: dict, name: str) -> set[str]:
    """`name@<key>` for every entry of a foreach stage (an inline mapping, or a params block)."""
    loop = stages[name]["foreach"]
    keys = loop if isinstance(loop, dict) else params[loop.strip("${}")]  # "${features}" -> that params block
    return {f"{name}@{key}" for key in keys}


def test_the_stage_code_comes_from_the_workspace(workspace):
    where = run([sys.executable, "-c", "import pipeline; print(pipeline.__file__)"], workspace)
    assert str(workspace) in where


def test_first_repro_runs_every_stage(workspace, first_repro):
    stages = yaml.safe_load((workspace / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    expected = set()
    for name, stage in stages.items():
        expected |= model_stages(stages, params, name) if "foreach" in stage else {name}
    assert ran_stages(first_repro) == expected
    assert params["train"]["seeds"] == [0]
    for model in params["models"]:  # the report's table: one line per model, a single seed has no spread
        assert re.search(rf"^  {model} .*\(1 seed\)", first_repro, re.MULTILINE), first_repro[-3000:]
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


def test_an_audio_change_makes_only_the_models_that_read_audio_stale(workspace, first_repro):
    """Each model stage depends on its own feature files: after `features@audio` reruns, DVC lists the
    models whose inputs include audio (and what refines or evaluates them), not text-only or face-only ones."""
    params_file = workspace / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["features"]["audio"]["feature_set"] = "IS09"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(["dvc", "status", "--json"], workspace))
    assert set(status) == {"features@audio"}, status

    run(["dvc", "repro", "features@audio"], workspace)  # that stage alone: DVC now sees what reads its output
    readers = {name for name, block in params["models"].items() if "audio" in block["inputs"]}
    refined = {name for name, block in params.get("refine", {}).items()
               if {block["multimodal"], block["text"]} & readers}
    stale = ({f"{stage}@{m}" for stage in ("train", "evaluate") for m in readers}
             | {f"{stage}@{r}" for stage in ("refine", "evaluate_refined") for r in refined})
    assert {"train@text_gru", "train@visual_gru"} <= {f"train@{m}" for m in params["models"]} - stale
    status = json.loads(run(["dvc", "status", "--json"], workspace))
    assert set(status) - {"failures"} == stale, sorted(status)
    assert not {"train@text_gru", "train@visual_gru", "evaluate@text_gru", "evaluate@visual_gru"} & set(status)

    ran = ran_stages(run(["dvc", "repro"], workspace))
    assert ran - {"failures"} == stale, sorted(ran)


def test_the_whole_pipeline_flow_reruns_a_stale_stage_through_dvc(workspace, first_repro):
    """`python -m flows.pipeline` (a Prefect flow; ephemeral API here) runs each named stage through DVC:
    a stale one reruns (DVC records its new params), a fresh one is skipped."""
    order = run([sys.executable, "-m", "flows.pipeline", "--dry"], workspace).split()
    assert order.index("prepare") < order.index("cut") < order.index("faces") < order.index("speaker")
    params_file = workspace / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["cut"]["max_seconds"] = 29.5  # longer than any demo utterance: a new value, the same cuts
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    assert "cut" in json.loads(run(["dvc", "status", "--json", "cut"], workspace))

    output = run([sys.executable, "-m", "flows.pipeline", "prepare", "cut"], workspace)
    assert "Finished in state Completed" in output
    assert ran_stages(output) == {"cut"}, output[-4000:]
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]
    assert lock["cut"]["params"]["params.yaml"]["cut"]["max_seconds"] == 29.5
    assert json.loads(run(["dvc", "status", "--json", "prepare", "cut"], workspace)) == {}
