"""Stages under Prefect: a flow run per stage with one task per item and progress/summary artifacts,
and monitoring that never fails or hangs a stage when the server is absent or dies mid-run."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from flows import adapter, server_address
from pipeline.hooks import silent_hook
from pipeline.runner import PlainRunner

ITEMS = list(range(6))


def slow_stage(params, runner, arg=None):
    """A stand-in stage: maps over items like the real ones, slowly enough to kill a server mid-run."""
    results = runner.map(lambda x: (time.sleep(params["delay"]), x * x)[1], ITEMS, name="square")
    return {"total": sum(results), "arg": arg}


@pytest.fixture
def fake_stage(monkeypatch):
    monkeypatch.setattr(adapter, "get_stage", lambda name: slow_stage)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` on a free loopback port with a fresh database."""
    from flows.server import start, stop

    process, api = start(timeout=120, home=tmp_path_factory.mktemp("prefect_home"))
    yield process, api
    stop(process)


def test_stage_becomes_a_flow_run_with_a_task_per_item(prefect_server, fake_stage, monkeypatch):
    _, api = prefect_server
    monkeypatch.setenv("PREFECT_API_URL", api)
    summary = adapter.run_stage_as_flow("fake", "x", {"delay": 0.0, "run": {"workers": 2}}, api)
    assert summary == {"total": sum(i * i for i in ITEMS), "arg": "x"}

    import httpx

    def query():
        post = lambda path, body: httpx.post(f"{api}/{path}", json=body, timeout=10).json()  # noqa: E731
        runs = post("flow_runs/filter", {"flow_runs": {"name": {"any_": ["fake-x"]}}, "limit": 10})
        run_ids = [r["id"] for r in runs]
        tasks = post("task_runs/filter", {"flow_runs": {"id": {"any_": run_ids}}, "limit": 100}) if run_ids else []
        artifacts = post("artifacts/filter", {"limit": 100})
        return runs, tasks, artifacts

    deadline = time.monotonic() + 30
    while True:
        runs, tasks, artifacts = query()
        square_tasks = [t for t in tasks if t["name"].startswith("square-")]
        keys = {a["key"] for a in artifacts}
        if (runs and len(square_tasks) >= len(ITEMS) and "fake-x-summary" in keys) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert runs and runs[0]["state_type"] == "COMPLETED"
    assert len(square_tasks) == len(ITEMS)
    assert {"fake-x-square", "fake-x-summary"} <= keys


@pytest.mark.parametrize("runner", ["dask", "ray"])
def test_run_runner_sends_the_flows_tasks_to_a_local_cluster(prefect_server, monkeypatch, tmp_path, runner):
    _, api = prefect_server
    monkeypatch.setenv("PREFECT_API_URL", api)
    monkeypatch.chdir(tmp_path)  # the tasks' function and result files go under .cache/runner here
    def pid_stage(params, runner, arg=None):
        return {"pids": sorted(set(runner.map(lambda x: os.getpid(), ITEMS, name="pid")))}

    monkeypatch.setattr(adapter, "get_stage", lambda name: pid_stage)
    summary = adapter.run_stage_as_flow("pids", runner, {"run": {"workers": 2, "runner": runner}}, api)
    assert summary["pids"] and os.getpid() not in summary["pids"]  # the items ran in the cluster's workers
    assert not any((tmp_path / ".cache" / "runner").iterdir())  # every task's files were read back and removed


def test_a_stage_error_under_prefect_is_raised_not_rerun(prefect_server, monkeypatch):
    """A bug in the stage is the stage's failure, not a monitoring failure: no second, plain attempt."""
    _, api = prefect_server
    monkeypatch.setenv("PREFECT_API_URL", api)
    calls = []

    def broken_stage(params, runner, arg=None):
        calls.append(type(runner).__name__)
        runner.map(lambda x: x, ITEMS, name="square")
        raise ValueError("a bug in the stage")

    monkeypatch.setattr(adapter, "get_stage", lambda name: broken_stage)
    with pytest.raises(ValueError, match="a bug in the stage"):
        adapter.run_stage_as_flow("broken", None, {"run": {"workers": 2}}, api)
    assert calls == ["PrefectRunner"]


def test_an_absent_server_means_a_plain_run(monkeypatch):
    from flows.server import free_port

    monkeypatch.setenv("PIPELINE_ORCHESTRATOR", "auto")
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    started = time.monotonic()
    assert server_address.monitoring_api() is None
    assert time.monotonic() - started < 5


def two_map_stage(params, runner, arg=None):
    """Two maps with a pause between them long enough for the watch to notice that the server went away
    during the first one; the second map must then run without Prefect. With `server_gone` (an Event),
    the pause starts only once the server is dead or frozen, so the stage cannot end before it."""
    first = runner.map(lambda x: (time.sleep(params["delay"]), x * x)[1], ITEMS, name="square")
    if "server_gone" in params:
        params["server_gone"].wait(timeout=60)
    time.sleep(params["pause"])
    second = runner.map(lambda x: (time.sleep(params["delay"]), x + 1)[1], ITEMS, name="increment")
    return {"total": sum(first) + sum(second)}


EXPECTED_TWO_MAP = sum(i * i for i in ITEMS) + sum(i + 1 for i in ITEMS)


def monitor_lines(text: str) -> list[str]:
    """What the user sees of monitoring: our warning lines and any Prefect error output."""
    lines = text.replace("\r", "\n").splitlines()
    return [line for line in lines if "[prefect]" in line or "ERROR" in line or "Traceback" in line
            or "Error logging" in line or "WARNING" in line]


@pytest.fixture
def command_line_logging():
    """Messages reach stderr as `python -m pipeline` sends them (pipeline.logs.configure), restored afterwards."""
    import logging

    from pipeline import logs
    from pipeline.env import PROJECT_PACKAGES

    loggers = [logging.getLogger(name) for name in PROJECT_PACKAGES]
    saved = [(lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    logs.configure()
    yield
    for logger, (level, propagate, handlers) in zip(loggers, saved):
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers


@pytest.mark.parametrize("fault", ["dies", "freezes"])
def test_a_dead_or_frozen_server_costs_one_warning_line_and_a_bounded_delay(fault, monkeypatch, tmp_path, capfd,
                                                                            command_line_logging):
    """The server is killed (or SIGSTOPped: it accepts connections and never answers) during the first
    map. The stage's result is unchanged, the user sees one warning line, and the run is not held up
    by Prefect's timeouts (minutes each before this was fixed)."""
    from flows.server import start, stop

    monkeypatch.setattr(adapter, "get_stage", lambda name: two_map_stage)
    process, api = start(timeout=120, home=tmp_path)
    monkeypatch.setenv("PREFECT_API_URL", api)
    gone = threading.Event()
    params = {"delay": 0.5, "pause": 12.0, "run": {"workers": 2}, "server_gone": gone}
    seen_gone: dict[str, object] = {}

    def fail() -> None:
        if fault == "dies":
            stop(process)
        else:
            os.killpg(process.pid, signal.SIGSTOP)
        seen_gone["at"] = time.monotonic()
        seen_gone["answers"] = server_address.api_healthy(api, timeout=3.0)  # a dead server refuses, a frozen one hangs
        seen_gone["exited"] = process.poll() is not None
        seen_gone["stopped"] = not seen_gone["exited"] and psutil.Process(process.pid).status() == psutil.STATUS_STOPPED
        gone.set()

    timer = threading.Timer(1.0, fail)
    timer.start()
    try:
        summary = adapter.run_stage_as_flow("fake", None, params, api)
        finished = time.monotonic()
    finally:
        timer.join()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGCONT)
        stop(process)
    assert summary["total"] == EXPECTED_TWO_MAP
    # the fault happened while the stage ran: the server no longer answered before the stage finished
    assert "at" in seen_gone and seen_gone["at"] < finished, seen_gone
    assert seen_gone["answers"] is False, seen_gone
    assert seen_gone["exited"] if fault == "dies" else seen_gone["stopped"], seen_gone
    work = len(ITEMS) * params["delay"] / 2 + params["pause"]  # after the fault: the pause and the second map
    assert finished - seen_gone["at"] < work + 40, f"stage took {finished - seen_gone['at']:.0f} s after the fault"
    seen = monitor_lines(capfd.readouterr().err)
    assert len(seen) == 1 and "monitoring at" in seen[0] and "goes on without it" in seen[0], seen


def test_plain_runner_keeps_item_order_and_reports_progress():
    from pipeline.hooks import RecordingHook

    hook = RecordingHook()
    runner = PlainRunner(workers=2, hook=hook)
    assert runner.map(lambda x: x + 1, [3, 1, 2], name="inc") == [4, 2, 3]
    assert hook.calls[0][1:3] == (0, 3) and hook.calls[-1][1:3] == (3, 3)
    assert PlainRunner(workers=1, hook=silent_hook).map(str, [1, 2], name="s") == ["1", "2"]


def test_the_command_line_reports_to_a_server_through_the_installed_monitor(prefect_server, tmp_path, base_params):
    """`python -m pipeline <stage>` with the entry point `pip install -e .` registers (written here as a
    dist-info folder) becomes a flow run on the server that answers, and exits with the stage's summary."""
    import json
    import subprocess
    import sys
    import tomllib

    import httpx
    import yaml

    from pipeline.monitor import GROUP

    _, api = prefect_server
    project = Path(__file__).resolve().parents[1]
    registered = tomllib.loads((project / "pyproject.toml").read_text())["project"]["entry-points"][GROUP]
    info = tmp_path / "site" / "merc_pipeline-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: merc-pipeline\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in registered.items()))
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(base_params))
    env = {**os.environ, "PYTHONPATH": f"{project}:{info.parent}", "PIPELINE_ORCHESTRATOR": "auto",
           "PREFECT_API_URL": api}
    done = subprocess.run([sys.executable, "-m", "pipeline", "failures"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["stage"] == "failures"
    runs = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"name": {"any_": ["failures"]}}, "limit": 5},
                      timeout=10).json()
    assert runs and runs[0]["state_type"] == "COMPLETED"
