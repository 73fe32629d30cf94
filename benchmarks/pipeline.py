"""Per-stage cost of the whole pipeline on the demo corpus: seconds, utterances per second, peak memory.

Copies the project into a fresh git + DVC workspace (so nothing in your checkout is touched and no
cache is reused), then runs every stage of `dvc.yaml` in dependency order with
`dvc repro --single-item <stage>`, watching the stage's process tree for its peak resident memory.

    python benchmarks/pipeline.py [--out benchmarks/results] [--workdir /tmp/merc-bench] [--set key=value ...]

Seconds include DVC's own overhead per call (about half a second).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from pipeline.provenance import provenance  # noqa: E402

CODE = ["pipeline", "extractors", "models", "flows", "params.yaml", "dvc.yaml", ".dvcignore"]


def prepare_workspace(workdir: Path, overrides: list[str]) -> None:
    for name in CODE:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, workdir / name)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for item in overrides:
        key, value = item.split("=", 1)
        node = params
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(value)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # an override may change what a stage reads (a model's inputs, the speaker method): dvc.yaml follows params
    subprocess.run([sys.executable, "-m", "pipeline.dag"], cwd=workdir, check=True, env=_env())
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "bench@localhost"],
                ["git", "config", "user.name", "bench"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.analytics", "false"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
        subprocess.run(cmd, cwd=workdir, check=True, env=_env())


def _env() -> dict[str, str]:
    return {**os.environ, "PIPELINE_ORCHESTRATOR": "plain",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def stage_order(workdir: Path) -> list[str]:
    code = "from flows.pipeline import stage_order; print('\\n'.join(stage_order('.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=_env(), capture_output=True, text=True,
                         check=True)
    return [line for line in out.stdout.splitlines() if line.strip()]


def run_measured(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB, summed over the process tree) of one command."""
    started = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    output = process.stdout.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output[-4000:]}")
    return time.perf_counter() - started, peak / 2**20, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(PROJECT / "benchmarks" / "results"))
    parser.add_argument("--workdir", default=None, help="workspace to create (default: a temporary folder)")
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. dataset.demo.dialogues=10")
    options = parser.parse_args()
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="merc-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    prepare_workspace(workdir, options.set)
    # as of the start: the checkout may change while the run goes on; the corpus is rendered from params
    origin = provenance(yaml.safe_load((workdir / "params.yaml").read_text()))
    rows = []
    utterances = None
    total_started = time.perf_counter()
    for stage in stage_order(workdir):
        seconds, peak, _ = run_measured(["dvc", "repro", "--single-item", stage], workdir)
        if utterances is None and (workdir / "data" / "manifest.parquet").exists():
            import pyarrow.parquet as pq

            utterances = pq.read_metadata(workdir / "data" / "manifest.parquet").num_rows
        rows.append({"stage": stage, "seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1),
                     "utterances_per_second": round(utterances / seconds, 2) if utterances else None})
        print(f"{stage:<28} {seconds:8.1f} s {peak:9.0f} MiB", flush=True)
    total = time.perf_counter() - total_started
    print(f"\n{'stage':<28} {'seconds':>9} {'utt/s':>9} {'peak MiB':>9}")
    for row in rows:
        rate = "-" if row["utterances_per_second"] is None else f"{row['utterances_per_second']:.1f}"
        print(f"{row['stage']:<28} {row['seconds']:>9.1f} {rate:>9} {row['peak_rss_mib']:>9.0f}")
    print(f"{'total':<28} {total:>9.1f}   ({utterances} utterances)")
    result = {
        **origin, "benchmark": "pipeline", "utterances": utterances, "total_seconds": round(total, 1),
        "stages": rows, "overrides": options.set,
    }
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {out / 'pipeline.json'}; workspace kept at {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
