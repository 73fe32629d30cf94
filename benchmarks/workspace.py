"""A git + DVC copy of the project in which a benchmark runs the real stages through `dvc repro`.

Benchmarks never touch your checkout: they copy the code and `params.yaml` into a workspace, apply
their params edits there, let `python -m pipeline.dag` rewrite `dvc.yaml` for what the edited params
read, and commit. A workspace can be reused (`--workdir` of an earlier run): the code is copied
afresh and DVC decides what is stale, so a second benchmark on the same workspace only pays for what
its edits change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import yaml

PROJECT = Path(__file__).resolve().parents[1]
CODE = ["core", "pipeline", "extractors", "models", "flows", "params.yaml", "dvc.yaml", ".dvcignore"]


def env(**extra: str) -> dict[str, str]:
    """The environment of every workspace command: plain orchestration, offline hubs, this interpreter first."""
    variables = {**os.environ, "PIPELINE_ORCHESTRATOR": "plain", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                 "DVC_NO_ANALYTICS": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    variables.pop("PREFECT_API_URL", None)
    variables.update(extra)
    return variables


def apply_overrides(params: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """`params` with each `dotted.key=yaml value` set (missing parents are created)."""
    for item in overrides:
        key, _, value = item.partition("=")
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return params


def prepare_workspace(workdir: Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Copy the project's code and params into `workdir` (fresh or reused), apply `overrides`, commit.

    Returns the params the workspace now holds.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for name in CODE:
        source, target = PROJECT / name, workdir / name
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    params = apply_overrides(yaml.safe_load((workdir / "params.yaml").read_text()), overrides)
    if not (workdir / ".git").exists():
        for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "bench@localhost"],
                    ["git", "config", "user.name", "bench"], ["dvc", "init", "-q"],
                    ["dvc", "config", "core.analytics", "false"]):
            subprocess.run(cmd, cwd=workdir, check=True, env=env())
    write_params(workdir, params, "workspace from the project")
    return params


def read_params(workdir: Path) -> dict[str, Any]:
    return yaml.safe_load((Path(workdir) / "params.yaml").read_text())


def write_params(workdir: Path, params: Mapping[str, Any], message: str = "params") -> None:
    """Write `params.yaml`, rewrite `dvc.yaml` for what the params read, commit (DVC's experiments need a commit)."""
    (Path(workdir) / "params.yaml").write_text(yaml.safe_dump(dict(params), sort_keys=False))
    subprocess.run([sys.executable, "-m", "pipeline.dag"], cwd=workdir, check=True, env=env(), capture_output=True)
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", message, "--allow-empty"]):
        subprocess.run(cmd, cwd=workdir, check=True, env=env(), capture_output=True)


def stage_order(workdir: Path) -> list[str]:
    """Every stage of the workspace's `dvc.yaml` in dependency order (foreach items expanded)."""
    code = "from flows.pipeline import stage_order; print('\\n'.join(stage_order('.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env(), capture_output=True, text=True,
                         check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def stages_run(output: str) -> list[str]:
    """The stages a `dvc repro` / `dvc exp run` actually ran, from its 'Running stage' lines."""
    return sorted({line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")})


class Measured(NamedTuple):
    seconds: float
    peak_rss_mib: float  # summed over the command's process tree
    output: str  # stdout and stderr together
    returncode: int
    work_rss_mib: float = 0.0  # the `python -m pipeline` processes under it and their children: the stage alone


def run_measured(cmd: list[str], cwd: Path, check: bool = True) -> Measured:
    """Wall seconds, peak memory and output of one command; with `check`, a non-zero exit raises with its tail."""
    started = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(process.pid)
    peak = work_peak = 0
    chunks: list[str] = []
    reader = _drain(process, chunks)
    while process.poll() is None:
        try:
            below = [p for p in root.children(recursive=True) if p.is_running()]
            peak = max(peak, root.memory_info().rss + sum(p.memory_info().rss for p in below))
            work_peak = max(work_peak, sum(p.memory_info().rss for p in _stage_tree(below)))
        except psutil.Error:
            pass
        time.sleep(0.1)
    reader.join()
    output = "".join(chunks)
    if check and process.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output[-4000:]}")
    return Measured(time.perf_counter() - started, peak / 2**20, output, process.returncode, work_peak / 2**20)


def _stage_tree(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The `python -m pipeline ...` processes among `processes` and everything they started (ffmpeg,
    espeak-ng, workers), without the helpers DVC itself starts."""
    stages = [p for p in processes if "-m pipeline" in " ".join(p.cmdline())]
    tree = {p.pid: p for p in stages}
    for stage in stages:
        tree.update({child.pid: child for child in stage.children(recursive=True)})
    return list(tree.values())


def _drain(process: subprocess.Popen, chunks: list[str]):
    """Read the command's output as it comes, so a chatty stage never blocks on a full pipe."""
    import threading

    def read() -> None:
        for line in process.stdout:
            chunks.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def measure_stages(workdir: Path, echo: bool = True) -> tuple[list[dict[str, Any]], int | None, float]:
    """Every stage of the workspace, each by `dvc repro --single-item` in dependency order: per stage the
    wall seconds, peak RSS of the whole process tree, of the stage's own processes (without DVC, whose
    hashing of the corpus folders is its own cost), of the rest, and utterances per second; then the
    utterance count and the total seconds."""
    rows: list[dict[str, Any]] = []
    utterances = None
    started = time.perf_counter()
    for stage in stage_order(workdir):
        seconds, peak, _, _, work = run_measured(["dvc", "repro", "--single-item", stage], workdir)
        if utterances is None and (workdir / "data" / "manifest.parquet").exists():
            import pyarrow.parquet as pq

            utterances = pq.read_metadata(workdir / "data" / "manifest.parquet").num_rows
        rows.append({"stage": stage, "seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1),
                     "stage_rss_mib": round(work, 1), "dvc_rss_mib": round(peak - work, 1),
                     "utterances_per_second": round(utterances / seconds, 2) if utterances else None})
        if echo:
            print(f"{stage:<28} {seconds:8.1f} s {peak:9.0f} MiB", flush=True)
    return rows, utterances, time.perf_counter() - started
