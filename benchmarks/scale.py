"""Does cost grow with the corpus and nothing else? The whole pipeline at 1x and 4x the demo corpus.

    python benchmarks/scale.py [--dialogues 10] [--factor 4] [--workdir DIR] [--set key=value ...]
                               [--prefect-tasks 2000] [--out benchmarks/results]

Renders the demo corpus at `--dialogues` and at `--factor` times as many, each in a fresh git + DVC
workspace (`benchmarks/workspace.py`), and runs every stage, front end and training alike, with
`dvc repro --single-item` in dependency order. Per stage: seconds per utterance and peak RSS at both
sizes, and their ratios (large / small). Memory is the stage's own processes (the stage and the
tools it starts), measured apart from the `dvc` process running it, whose hashing of the corpus
folders is DVC's cost and reported beside it. Memory is flat when the peak ratio stays at or below 1.2;
time scales linearly when seconds per utterance at the large size stay within 1.3x of the small
size's (fixed costs such as model loading and LipSyncNet's fixed step budget make it fall).

With `--prefect-tasks N`, a local Prefect server is started and a stage of N trivial items runs as
a flow on it: tasks per second, and the slowest `/health` answer while the flow runs.

Writes `benchmarks/results/scale.json`; README's table is rendered from it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.workspace import measure_stages, prepare_workspace  # noqa: E402
from pipeline.provenance import provenance, write_result  # noqa: E402

MEMORY_LIMIT = 1.2
TIME_LIMIT = 1.3


def run_size(workdir: Path, dialogues: int, overrides: list[str]) -> dict[str, Any]:
    params = prepare_workspace(workdir, [*overrides, f"dataset.demo.dialogues={dialogues}"])
    rows, utterances, total = measure_stages(workdir)
    return {"dialogues": dialogues, "utterances": utterances, "total_seconds": round(total, 1), "stages": rows,
            "params": params}


def compare(small: dict[str, Any], large: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage: seconds per utterance and the peak RSS of the stage's own processes at both sizes, their
    ratios, and DVC's own peak beside them (hashing the corpus folders grows with their file count)."""
    rows = []
    large_by_stage = {row["stage"]: row for row in large["stages"]}
    for row in small["stages"]:
        other = large_by_stage.get(row["stage"])
        if other is None:
            continue
        per_small = row["seconds"] / small["utterances"]
        per_large = other["seconds"] / large["utterances"]
        time_ratio = per_large / per_small if per_small else None
        memory_ratio = other["stage_rss_mib"] / row["stage_rss_mib"] if row["stage_rss_mib"] else None
        rows.append({
            "stage": row["stage"],
            "seconds_per_utterance": [round(per_small, 4), round(per_large, 4)],
            "stage_rss_mib": [row["stage_rss_mib"], other["stage_rss_mib"]],
            "dvc_rss_mib": [row["dvc_rss_mib"], other["dvc_rss_mib"]],
            "time_ratio": None if time_ratio is None else round(time_ratio, 2),
            "memory_ratio": None if memory_ratio is None else round(memory_ratio, 2),
            "memory_flat": memory_ratio is not None and memory_ratio <= MEMORY_LIMIT,
            "time_linear": time_ratio is not None and time_ratio <= TIME_LIMIT,
        })
    return rows


def prefect_responsiveness(tasks: int, workdir: Path) -> dict[str, Any]:
    """A stage of `tasks` trivial items as a flow on a fresh local Prefect server."""
    import httpx

    from flows import adapter
    from flows.server import start, stop

    process, api = start(timeout=180, home=workdir / "prefect_home")
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            started = time.perf_counter()
            try:
                httpx.get(f"{api}/health", timeout=30)
            except httpx.HTTPError:
                latencies.append(30.0)
            else:
                latencies.append(time.perf_counter() - started)
            time.sleep(0.5)

    def many(params: dict[str, Any], runner: Any, arg: str | None = None) -> dict[str, Any]:
        return {"sum": sum(runner.map(lambda x: x, list(range(tasks)), name="item"))}

    original = adapter.get_stage
    adapter.get_stage = lambda name: many
    watcher = threading.Thread(target=probe, daemon=True)
    try:
        watcher.start()
        started = time.perf_counter()
        summary = adapter.run_stage_as_flow("scale", None, {"run": {"workers": 2}}, api)
        seconds = time.perf_counter() - started
    finally:
        done.set()
        adapter.get_stage = original
        stop(process)
    assert summary == {"sum": tasks * (tasks - 1) // 2}, summary
    return {"tasks": tasks, "seconds": round(seconds, 1), "tasks_per_second": round(tasks / seconds, 1),
            "health_checks": len(latencies), "slowest_health_seconds": round(max(latencies), 3) if latencies else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=10, help="demo dialogues at 1x")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--workdir", default=None, help="folder for the two workspaces (default: temporary)")
    parser.add_argument("--set", action="append", default=[], help="params override for both sizes")
    parser.add_argument("--prefect-tasks", type=int, default=2000, help="0 skips the Prefect check")
    parser.add_argument("--out", default=str(PROJECT / "benchmarks" / "results"))
    options = parser.parse_args()
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="merc-scale-"))
    origin = provenance({"dialogues": options.dialogues, "factor": options.factor, "overrides": options.set,
                         "prefect_tasks": options.prefect_tasks})
    small = run_size(workdir / "1x", options.dialogues, options.set)
    large = run_size(workdir / f"{options.factor}x", options.dialogues * options.factor, options.set)
    rows = compare(small, large)
    print(f"\n{'stage':<28} {'s/utt 1x':>9} {'s/utt Nx':>9} {'ratio':>6} {'MiB 1x':>7} {'MiB Nx':>7} {'ratio':>6}")
    for row in rows:
        print(f"{row['stage']:<28} {row['seconds_per_utterance'][0]:>9.3f} {row['seconds_per_utterance'][1]:>9.3f} "
              f"{row['time_ratio']:>6.2f} {row['stage_rss_mib'][0]:>7.0f} {row['stage_rss_mib'][1]:>7.0f} "
              f"{row['memory_ratio']:>6.2f}")
    prefect = prefect_responsiveness(options.prefect_tasks, workdir) if options.prefect_tasks else None
    if prefect:
        print(f"\nPrefect: {prefect['tasks']} tasks in {prefect['seconds']} s ({prefect['tasks_per_second']}/s), "
              f"slowest /health {prefect['slowest_health_seconds']} s")
    result = {
        **origin, "benchmark": "scale", "memory_limit": MEMORY_LIMIT, "time_limit": TIME_LIMIT,
        "sizes": [{k: v for k, v in size.items() if k != "params"} for size in (small, large)],
        "stages": rows, "prefect": prefect,
        "all_memory_flat": all(r["memory_flat"] for r in rows), "all_time_linear": all(r["time_linear"] for r in rows),
    }
    path = write_result(options.out, "scale.json", result)
    print(f"written to {path}; workspaces kept under {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
