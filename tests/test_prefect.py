"""Stages under Prefect: a flow run per stage with one task per item and progress/summary artifacts,
and monitoring that never fails or hangs a stage when the server is absent or dies mid-run."""

from __future__ import annotations

import threading
import time

import pytest

from flows import adapter
from pipeline import monitor
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


def test_an_absent_server_means_a_plain_run(monkeypatch):
    from flows.server import free_port

    monkeypatch.setenv("PIPELINE_ORCHESTRATOR", "auto")
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    started = time.monotonic()
    assert monitor.monitoring_api() is None
    assert time.monotonic() - started < 5


def test_a_server_dying_mid_run_does_not_fail_the_stage(fake_stage, monkeypatch, tmp_path):
    from flows.server import start, stop

    process, api = start(timeout=120, home=tmp_path)
    monkeypatch.setenv("PREFECT_API_URL", api)
    killer = threading.Timer(1.5, stop, args=(process,))
    killer.start()
    started = time.monotonic()
    try:
        summary = adapter.run_stage_as_flow("fake", None, {"delay": 0.5, "run": {"workers": 2}}, api)
    finally:
        killer.join()
        stop(process)
    assert summary["total"] == sum(i * i for i in ITEMS)
    assert time.monotonic() - started < 120


def test_plain_runner_keeps_item_order_and_reports_progress():
    from pipeline.hooks import RecordingHook

    hook = RecordingHook()
    runner = PlainRunner(workers=2, hook=hook)
    assert runner.map(lambda x: x + 1, [3, 1, 2], name="inc") == [4, 2, 3]
    assert hook.calls[0][1:3] == (0, 3) and hook.calls[-1][1:3] == (3, 3)
    assert PlainRunner(workers=1, hook=silent_hook).map(str, [1, 2], name="s") == ["1", "2"]
