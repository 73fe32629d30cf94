"""Faults and bad input: no single clip, kill, full disk or dead monitor may cost a run or a row.

Four parts, each on real stages run as `python -m pipeline <stage>` subprocesses:

* **cases**: a corpus of awkward inputs (`benchmarks/fault_cases.py`): every bad utterance must end in
  the failure ledger with a reason, every good one in the features, and no stage may crash;
* **kills**: on a small demo workspace, each long stage is started from scratch (its outputs and part
  cache removed), SIGKILLed at a random point while it works, rerun, and its outputs compared with an
  uninterrupted run: Parquet tables row for row, JSON metrics with timing fields left out, every
  other file byte for byte;
* **disk_full**: `data/` on a small tmpfs filled to the brim: `faces` must exit 4 with a `disk full:`
  message, leave no output a later run could take as complete, and resume to the same rows once
  space is freed (skipped, and reported as not run, where tmpfs cannot be mounted);
* **monitor**: `faces` reporting to a real Prefect server that is killed, or frozen with SIGSTOP,
  mid-stage: same rows as a plain run, at most one warning line, bounded extra time.

    python benchmarks/faults.py [--trials 5] [--workdir /tmp/merc-faults] [--parts cases kills disk_full monitor]
    python benchmarks/faults.py --combine kills.json cases.json   # parts run separately; each keeps its provenance

Prints the tables and writes `benchmarks/results/faults.json`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.workspace import env as _env  # noqa: E402
from benchmarks.workspace import prepare_workspace  # noqa: E402
from pipeline.provenance import KEYS, provenance  # noqa: E402

# Small enough that every stage runs in seconds to a minute on 2 cores, big enough to have many items.
WORKSPACE_OVERRIDES = [
    "dataset.demo.dialogues=6", "dataset.demo.turns=[4, 6]",
    "lipsync.steps=60", "lipsync.batch_size=32",
    "finetune_text.epochs=3",
    "train.seeds=[0, 1]", "train.epochs=12",  # enough epochs that a kill lands in training, not in imports
    "refine.mrd.epochs=8",
    "run.workers=2",
]
LONG_STAGES = ("cut", "faces", "lipsync_train", "speaker", "features", "finetune_text", "train", "refine")
VOLATILE_KEYS = ("second", "time", "date", "elapsed", "per_second", "throughput", "resumed", "wall")
MONITOR_LINE_MARKS = ("[prefect]", "ERROR", "Traceback", "Error logging", "WARNING")


# -------------------------------------------------------------------------------- the stages

def stage_plan(workdir: Path) -> list[dict[str, Any]]:
    """Every runnable stage of `dvc.yaml` up to `refine`, in order: name, command and outputs."""
    dvc = yaml.safe_load((workdir / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    plan = []
    for name, body in dvc.items():
        if name in ("evaluate", "evaluate_refined", "failures", "loso") or name.startswith("evaluate"):
            continue
        if "foreach" in body:
            foreach = body["foreach"]  # `${features}`, or the inline dict `python -m pipeline.dag` writes
            keys = list(foreach) if isinstance(foreach, dict) else list(params[foreach.strip("${}")])
            instances = [(f"{name}@{key}", body["do"], key) for key in keys]
        else:
            instances = [(name, body, None)]
        for full, spec, key in instances:
            def fill(text: str, key: str | None = key) -> str:
                return text.replace("${key}", key) if key is not None else text

            outs = [fill(o if isinstance(o, str) else next(iter(o))) for o in spec.get("outs", [])]
            outs += [fill(next(iter(m)) if isinstance(m, dict) else m) for m in spec.get("metrics", [])]
            plan.append({"stage": full, "family": name, "cmd": fill(spec["cmd"]).split(), "outs": outs,
                         "cache": _cache_dirs(name, key)})
    return plan


def _cache_dirs(family: str, key: str | None) -> list[str]:
    """The stage's resume state, removed so each trial starts from nothing."""
    if family in ("train", "refine"):
        return [".cache/train"]
    if family == "features":
        return [f".cache/features-{key}"]
    return [f".cache/{family}"]


def run_stage(step: dict[str, Any], workdir: Path, env: dict[str, str] | None = None,
              timeout: float = 3600) -> tuple[int, float, str]:
    started = time.perf_counter()
    done = subprocess.run(step["cmd"], cwd=workdir, env=env or _env(), capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, time.perf_counter() - started, done.stdout + done.stderr


def clear(step: dict[str, Any], workdir: Path) -> None:
    for relative in (*step["outs"], *step["cache"]):
        path = workdir / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# -------------------------------------------------------------------------------- comparing outputs

def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if not any(mark in k.lower() for mark in VOLATILE_KEYS)}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def fingerprint(path: Path) -> str:
    """What must not change between an interrupted and an uninterrupted run."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        rows = json.dumps(table.to_pylist(), sort_keys=True, default=repr).encode()
        return f"rows:{hashlib.sha256(rows).hexdigest()}"
    if path.suffix == ".json":
        try:
            return "json:" + hashlib.sha256(json.dumps(_scrub(json.loads(path.read_text())), sort_keys=True,
                                                        default=repr).encode()).hexdigest()
        except ValueError:
            pass
    return "bytes:" + hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(step: dict[str, Any], workdir: Path) -> dict[str, str]:
    prints: dict[str, str] = {}
    for relative in step["outs"]:
        path = workdir / relative
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            prints[str(file.relative_to(workdir))] = fingerprint(file) if file.exists() else "missing"
    return prints


def differences(reference: dict[str, str], got: dict[str, str]) -> list[str]:
    names = sorted(set(reference) | set(got))
    return [name for name in names if reference.get(name) != got.get(name)]


# -------------------------------------------------------------------------------- kill -9 trials

def kill_trials(workdir: Path, trials: int, families: tuple[str, ...], rng: random.Random) -> list[dict[str, Any]]:
    """Reference run of every stage, then `trials` killed-and-resumed runs of each long stage family."""
    plan = stage_plan(workdir)
    needed = [index for index, step in enumerate(plan) if step["family"] in (*families, "faces")]
    plan = plan[:max(needed) + 1]  # upstream of the last stage tried, and `faces` for disk_full / monitor
    reference: dict[str, dict[str, str]] = {}
    seconds: dict[str, float] = {}
    for step in plan:
        code, took, output = run_stage(step, workdir)
        if code != 0:
            raise RuntimeError(f"reference run of {step['stage']} failed (exit {code}):\n{output[-3000:]}")
        reference[step["stage"]], seconds[step["stage"]] = snapshot(step, workdir), took
        print(f"  reference {step['stage']:<24} {took:7.1f} s", flush=True)
    rows = []
    for family in families:
        members = [step for step in plan if step["family"] == family]
        per_family = []
        for trial in range(max(trials, len(members)) if trials else 0):  # every instance at least once
            step = members[trial % len(members)]
            per_family.append(_one_trial(step, workdir, seconds[step["stage"]], reference[step["stage"]], rng))
            print(f"  kill {step['stage']:<24} at {per_family[-1]['killed_at_s']:6.1f} s: "
                  f"{'identical' if per_family[-1]['identical'] else per_family[-1]['differs']}", flush=True)
        rows.append({"stage": family if len(members) == 1 else f"{family}@*",
                     "instances": sorted({t["instance"] for t in per_family}),
                     "trials": len(per_family), "identical": sum(t["identical"] for t in per_family),
                     "killed_mid_work": sum(t["killed_mid_work"] for t in per_family), "runs": per_family})
    return rows


def _one_trial(step: dict[str, Any], workdir: Path, reference_seconds: float, reference: dict[str, str],
               rng: random.Random) -> dict[str, Any]:
    """Start from nothing, SIGKILL the stage's process group at a random moment, rerun, compare."""
    for attempt in range(6):  # a run faster than the reference is tried again with an earlier kill
        clear(step, workdir)
        at = rng.uniform(0.45, 0.95) * reference_seconds * (0.6 ** attempt)  # past most of the start-up
        process = subprocess.Popen(step["cmd"], cwd=workdir, env=_env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            process.wait(timeout=at)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            break
    killed_mid_work = process.returncode == -signal.SIGKILL
    code, took, output = run_stage(step, workdir)
    got = snapshot(step, workdir)
    diff = differences(reference, got) if code == 0 else [f"rerun exit {code}: {output[-300:]}"]
    return {"instance": step["stage"], "killed_at_s": round(at, 2), "killed_mid_work": killed_mid_work,
            "resume_seconds": round(took, 1), "identical": code == 0 and not diff and killed_mid_work,
            "differs": diff[:5]}


# -------------------------------------------------------------------------------- disk full

def disk_full_case(workdir: Path, reference_dir: Path, faces_step: dict[str, Any]) -> dict[str, Any]:
    """`faces` with `data/` on a full tmpfs: exit 4, clear message, no output; same rows once freed."""
    data = workdir / "data"
    data.mkdir(parents=True)
    for name in ("params.yaml",):
        shutil.copy(reference_dir / name, workdir / name)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(data)], capture_output=True)
    if mounted.returncode != 0:
        return {"ok": False, "ran": False, "why": f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}"}
    try:
        for relative in ("data/corpus", "data/manifest.parquet", "data/cuts.parquet", "data/audio"):
            source = reference_dir / relative
            (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / relative)
        stat = os.statvfs(data)
        with open(data / "ballast", "wb") as handle:
            handle.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 4096))
        code, _, output = run_stage(faces_step, workdir)
        message = [line for line in output.splitlines() if line.startswith("disk full:")]
        leftovers = [p.name for p in data.iterdir() if p.name == "faces.parquet" or p.name.startswith(".faces")]
        (data / "ballast").unlink()
        resumed, _, resumed_output = run_stage(faces_step, workdir)
        same = resumed == 0 and fingerprint(data / "faces.parquet") == fingerprint(reference_dir / "data/faces.parquet")
        ok = code == 4 and bool(message) and not leftovers and "Traceback" not in output and same
        return {"ok": ok, "ran": True, "exit_code": code, "message": message[0] if message else output[-300:],
                "leftover_outputs": leftovers, "resumed_exit_code": resumed, "resumed_rows_identical": same}
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True)


# -------------------------------------------------------------------------------- monitor

def monitor_case(workdir: Path, faces_step: dict[str, Any], reference: dict[str, str],
                 plain_seconds: float) -> dict[str, Any]:
    """`faces` under a real Prefect server that dies or freezes (SIGSTOP) a third of the way in."""
    from flows.server import start, stop

    results = {}
    for fault in ("dies", "freezes"):
        clear(faces_step, workdir)
        home = Path(tempfile.mkdtemp(prefix="faults-prefect-"))
        server, api = start(timeout=180, home=home)
        try:
            env = _env(PIPELINE_ORCHESTRATOR="auto", PREFECT_API_URL=api, PREFECT_HOME=str(home))
            started = time.perf_counter()
            process = subprocess.Popen(faces_step["cmd"], cwd=workdir, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            time.sleep(max(3.0, plain_seconds / 3))
            if fault == "dies":
                stop(server)
            else:
                os.killpg(server.pid, signal.SIGSTOP)
            out, err = process.communicate(timeout=plain_seconds * 3 + 600)
            took = time.perf_counter() - started
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGCONT)
            stop(server)
            shutil.rmtree(home, ignore_errors=True)
        lines = [line for line in err.replace("\r", "\n").splitlines() if any(m in line for m in MONITOR_LINE_MARKS)]
        identical = not differences(reference, snapshot(faces_step, workdir))
        results[fault] = {"exit_code": process.returncode, "seconds": round(took, 1),
                          "plain_seconds": round(plain_seconds, 1), "warning_lines": lines,
                          "rows_identical": identical,
                          "ok": process.returncode == 0 and identical and len(lines) <= 1}
    return {"ok": all(r["ok"] for r in results.values()), **results}


# -------------------------------------------------------------------------------- report

def print_tables(result: dict[str, Any]) -> None:
    if result.get("cases"):
        print(f"\n{'case':<40} {'expected':<34} {'got':<40} ok")
        for row in result["cases"]:
            print(f"{row['case'][:40]:<40} {row['expected'][:34]:<34} {row['got'][:40]:<40} {row['ok']}")
    if result.get("kills"):
        print(f"\n{'stage':<16} {'trials':>6} {'identical':>9} {'killed mid-work':>15}")
        for row in result["kills"]:
            print(f"{row['stage']:<16} {row['trials']:>6} {row['identical']:>9} {row['killed_mid_work']:>15}")
    if result.get("disk_full"):
        print(f"\ndisk full: {json.dumps(result['disk_full'])}")
    if result.get("monitor"):
        for fault in ("dies", "freezes"):
            row = result["monitor"].get(fault, {})
            print(f"monitor {fault}: ok={row.get('ok')} {row.get('seconds')} s (plain {row.get('plain_seconds')} s), "
                  f"warning lines {len(row.get('warning_lines', []))}, rows identical {row.get('rows_identical')}")


PARTS = ("cases", "kills", "disk_full", "monitor")
PROVENANCE = (*KEYS, "seconds")


def combine(files: list[Path], out: Path) -> int:
    """One faults.json from parts measured in separate runs; each part names the run it came from.

    Each run keeps the provenance keys its file has (files written before `inputs` existed lack it).
    """
    result: dict[str, Any] = {"benchmark": "faults", "runs": []}
    for index, file in enumerate(files):
        report = json.loads(file.read_text())
        result["runs"].append({key: report[key] for key in PROVENANCE if key in report})
        for part in PARTS:
            if not report.get(part):
                continue
            if part == "kills" and result.get("kills"):  # per stage: a later run's trials replace an earlier's
                by_stage = {row["stage"]: row for row in result["kills"]}
                by_stage.update({row["stage"]: {**row, "run": index} for row in report["kills"]})
                result["kills"] = list(by_stage.values())
                used = sorted({row.get("run", result["part_run"]["kills"]) for row in result["kills"]})
                result["part_run"]["kills"] = used[0] if len(used) == 1 else used
                continue
            result[part] = [{**row, "run": index} for row in report[part]] if part == "kills" else report[part]
            result.setdefault("part_run", {})[part] = index
    result["commit"] = result["runs"][-1]["commit"]
    result["dirty"] = any(run["dirty"] for run in result["runs"])
    print_tables(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "faults.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwritten to {out / 'faults.json'}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", nargs="+", default=["cases", "kills", "disk_full", "monitor"],
                        choices=["cases", "kills", "disk_full", "monitor"])
    parser.add_argument("--stages", nargs="+", default=list(LONG_STAGES), choices=list(LONG_STAGES))
    parser.add_argument("--combine", nargs="+", type=Path, default=None,
                        help="merge the parts of earlier runs' faults.json files (later files win)")
    options = parser.parse_args()
    if options.combine:
        return combine(options.combine, options.out)
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="merc-faults-"))
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    result: dict[str, Any] = {
        **provenance({"workspace_overrides": WORKSPACE_OVERRIDES, "trials": options.trials, "seed": options.seed,
                      "parts": options.parts, "stages": options.stages}),
        "benchmark": "faults",
    }
    started = time.perf_counter()
    if "cases" in options.parts:
        import fault_cases

        print("bad-input cases", flush=True)
        result["cases"] = fault_cases.run_cases(workdir / "cases")
    needs_workspace = {"kills", "disk_full", "monitor"} & set(options.parts)
    if needs_workspace:
        kills_dir = workdir / "kills"
        kills_dir.mkdir()
        prepare_workspace(kills_dir, WORKSPACE_OVERRIDES)
        families = tuple(options.stages) if "kills" in options.parts else ()
        print("kill -9 trials", flush=True)
        result["kills"] = kill_trials(kills_dir, options.trials if families else 0, families,
                                      random.Random(options.seed))
        faces_step = next(step for step in stage_plan(kills_dir) if step["stage"] == "faces")
        faces_reference = snapshot(faces_step, kills_dir)
        if "disk_full" in options.parts:
            print("disk full", flush=True)
            result["disk_full"] = disk_full_case(workdir / "disk_full", kills_dir, faces_step)
        if "monitor" in options.parts:
            print("monitor", flush=True)
            clear(faces_step, kills_dir)
            _, plain_seconds, _ = run_stage(faces_step, kills_dir)
            result["monitor"] = monitor_case(kills_dir, faces_step, faces_reference, plain_seconds)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print_tables(result)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "faults.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwritten to {options.out / 'faults.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
