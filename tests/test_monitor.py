"""How `python -m pipeline` finds the monitor a stage reports to: entry points, never an import of flows/."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import yaml

from pipeline import monitor
from pipeline.config import ConfigError

PROJECT = Path(__file__).resolve().parents[1]
STARTED: list[tuple[str, bool]] = []


class FakeMonitor:
    def __init__(self, name: str) -> None:
        self.name = name


def fake_factory(name: str, forced: bool = False) -> FakeMonitor | None:
    STARTED.append((name, forced))
    return FakeMonitor(name) if forced or name == "wanted" else None


def broken_factory(name: str, forced: bool = False) -> None:
    raise RuntimeError("no such server library")


def entry(name: str, target: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"{__name__}:{target}", group=monitor.GROUP)


@pytest.fixture
def installed(monkeypatch):
    """Replace the installed monitors by the given entry points."""
    STARTED.clear()

    def install(*entries: EntryPoint) -> None:
        monkeypatch.setattr(monitor, "installed_monitors", lambda: {e.name: e for e in entries})

    return install


def test_pyproject_registers_the_prefect_monitor(monkeypatch):
    registered = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["entry-points"][monitor.GROUP]
    factory = EntryPoint(name="prefect", value=registered["prefect"], group=monitor.GROUP).load()
    from flows.monitor import prefect_monitor

    assert factory is prefect_monitor
    from flows.server import free_port

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")  # nobody answers there
    assert factory("cut", forced=False) is None


def test_auto_asks_each_monitor_and_plain_asks_none(installed, monkeypatch):
    installed(entry("fake", "fake_factory"))
    monkeypatch.setenv("PIPELINE_ORCHESTRATOR", "auto")
    assert monitor.find_monitor("cut") is None  # the monitor cannot report for this stage: plain run
    assert isinstance(monitor.find_monitor("wanted"), FakeMonitor)
    assert STARTED == [("cut", False), ("wanted", False)]
    monkeypatch.setenv("PIPELINE_ORCHESTRATOR", "plain")
    assert monitor.find_monitor("wanted") is None and len(STARTED) == 2


def test_a_named_monitor_is_forced(installed, monkeypatch):
    installed(entry("fake", "fake_factory"))
    monkeypatch.setenv("PIPELINE_ORCHESTRATOR", "fake")
    assert isinstance(monitor.find_monitor("cut"), FakeMonitor) and STARTED == [("cut", True)]


def test_a_monitor_that_cannot_start_never_stops_the_stage(installed, monkeypatch, caplog):
    installed(entry("broken", "broken_factory"), entry("fake", "fake_factory"))
    monkeypatch.setenv("PIPELINE_ORCHESTRATOR", "auto")
    assert isinstance(monitor.find_monitor("wanted"), FakeMonitor)
    assert "monitor 'broken' could not start" in caplog.text and "wanted runs without it" in caplog.text


def test_naming_a_monitor_that_is_not_installed_says_how_to_install_it(installed, monkeypatch):
    installed()  # an install older than the entry point
    monkeypatch.setenv("PIPELINE_ORCHESTRATOR", "auto")
    assert monitor.find_monitor("cut") is None
    monkeypatch.setenv("PIPELINE_ORCHESTRATOR", "prefect")
    with pytest.raises(ConfigError, match=r"no such monitor is installed \(installed: none\).*pip install -e \."):
        monitor.find_monitor("cut")


MONITOR_MODULE = '''
import json
from pathlib import Path


class Recorder:
    def __init__(self, name):
        self.name = name

    def run(self, stage, arg, params):
        return {"monitored_by": "recorder", "stage_run": stage}

    def close(self, code):
        Path("closed.json").write_text(json.dumps({"name": self.name, "code": code}))


def factory(name, forced=False):
    return Recorder(name)
'''


def test_the_command_line_runs_the_stage_through_an_installed_monitor(tmp_path, base_params):
    """A package's entry point, as `pip install` writes it, is all `python -m pipeline` needs."""
    site = tmp_path / "site"
    (site / "recorder_monitor-1.0.dist-info").mkdir(parents=True)
    (site / "recorder_monitor-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: recorder-monitor\nVersion: 1.0\n")
    (site / "recorder_monitor-1.0.dist-info" / "entry_points.txt").write_text(
        f"[{monitor.GROUP}]\nrecorder = recorder_monitor:factory\n")
    (site / "recorder_monitor.py").write_text(MONITOR_MODULE)
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(base_params))
    done = subprocess.run([sys.executable, "-m", "pipeline", "failures"], cwd=work, capture_output=True, text=True,
                          env={"PYTHONPATH": f"{PROJECT}:{site}", "PIPELINE_ORCHESTRATOR": "recorder",
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["monitored_by"] == "recorder" and summary["stage"] == "failures"
    assert json.loads((work / "closed.json").read_text()) == {"name": "failures", "code": 0}
    assert not (work / "data").exists()  # the monitor ran the stage, not the plain runner
