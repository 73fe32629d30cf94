"""One reporting channel: hooks in pyannote's shape carry progress and summaries, messages go through logging."""

from __future__ import annotations

import logging
import threading

import pytest

from pipeline import logs, paths
from pipeline.env import PROJECT_PACKAGES
from pipeline.hooks import Hooks, RecordingHook, TqdmHook, silent_hook
from pipeline.ledger import Failure, write_stage_ledger
from pipeline.runner import PlainRunner


class Closing(RecordingHook):
    closed = 0

    def close(self) -> None:
        self.closed += 1


def test_hooks_compose_and_each_sees_progress_and_artifacts():
    first, second = Closing(), Closing()
    with Hooks(first, second, silent_hook) as hook:
        hook("cut", completed=0, total=2)
        hook("cut", completed=2, total=2)
        hook("cut", {"utterances": 2})
    for recorder in (first, second):
        assert [call[:3] for call in recorder.calls] == [("cut", 0, 2), ("cut", 2, 2)]
        assert recorder.artifacts == [("cut", {"utterances": 2})]
        assert recorder.closed == 1


def test_the_runner_reports_through_any_hook():
    first, second = RecordingHook(), RecordingHook()
    assert PlainRunner(workers=2, hook=Hooks(first, second)).map(lambda x: x * 2, [1, 2, 3], name="x") == [2, 4, 6]
    assert [c[1:3] for c in first.calls] == [c[1:3] for c in second.calls] == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_the_bar_ignores_artifacts_and_closes_what_never_finished(capsys):
    bar = TqdmHook()
    bar("summary", {"utterances": 3})
    assert not bar._bars
    with bar:
        bar("epochs", completed=1, total=5)  # early stopping: the total is never reached
        assert "epochs" in bar._bars
    assert not bar._bars
    bar("frames", completed=2, total=2)
    assert not bar._bars and "frames" in capsys.readouterr().err


class FakeWatch:
    def __init__(self) -> None:
        self.lost = threading.Event()
        self.reasons: list[str] = []

    def declare_lost(self, reason: str) -> None:
        self.reasons.append(reason)
        self.lost.set()


def test_the_prefect_hook_reports_progress_per_step_and_the_stage_summary(monkeypatch):
    from flows import adapter

    started: list[FakeReporter] = []

    class FakeReporter:
        def __init__(self, key, watch, interval=1.0):
            self.key, self.updates, self.finished = key, [], False
            started.append(self)

        def update(self, fraction):
            self.updates.append(fraction)

        def finish(self):
            self.finished = True

    summaries = []
    monkeypatch.setattr(adapter, "ProgressReporter", FakeReporter)
    monkeypatch.setattr("prefect.artifacts.create_markdown_artifact",
                        lambda markdown, key, description: summaries.append((key, markdown)))
    watch = FakeWatch()
    hook = adapter.PrefectArtifactHook("features@audio", watch)
    hook("features@audio", completed=0, total=2)
    hook("features@audio", completed=2, total=2)
    hook("seed 0", completed=1, total=10)
    hook("seed 0", {"epoch": 1})  # another step's record is no summary
    hook("features@audio", {"utterances": 2})
    hook.close()
    assert [(r.key, r.updates, r.finished) for r in started] == [
        ("features-audio-features-audio", [0.0, 1.0], True), ("features-audio-seed-0", [0.1], True)]
    assert [key for key, _ in summaries] == ["features-audio-summary"] and "| utterances | 2 |" in summaries[0][1]
    watch.lost.set()
    hook("features@audio", completed=0, total=2)
    hook("features@audio", {"utterances": 2})
    assert len(started) == 2 and len(summaries) == 1  # nothing reaches a lost server


def test_a_summary_the_server_refuses_declares_the_monitor_lost(monkeypatch):
    from flows import adapter

    def refuse(*args, **kwargs):
        raise ConnectionError("server gone")

    monkeypatch.setattr("prefect.artifacts.create_markdown_artifact", refuse)
    watch = FakeWatch()
    adapter.PrefectArtifactHook("cut", watch)("cut", {"utterances": 1})
    assert watch.reasons == ["summary not reported: ConnectionError: server gone"]


@pytest.fixture
def project_loggers():
    """Restore the project loggers after a test configured them as a command line does."""
    saved = {name: (lg.level, lg.propagate, list(lg.handlers))
             for name in PROJECT_PACKAGES for lg in [logging.getLogger(name)]}
    yield
    for name, (level, propagate, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers


def test_the_failure_summary_is_a_log_record(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    failures = [Failure("cut", f"u{i}", "no audio stream") for i in range(12)]
    with caplog.at_level(logging.WARNING, logger="pipeline.ledger"):
        write_stage_ledger("cut", failures, 100, 1.0)
    (record,) = [r for r in caplog.records if r.name == "pipeline.ledger"]
    lines = record.getMessage().splitlines()
    assert record.levelno == logging.WARNING and lines[0].startswith("[cut] 12 of 100 utterances failed")
    assert lines[1] == "  u0: no audio stream" and lines[-1] == "  ... and 2 more"
    assert (tmp_path / paths.stage_ledger("cut")).exists()


def test_a_command_line_prints_plain_lines_once_whoever_else_handles_the_root(project_loggers, capsys):
    root_handler = logging.StreamHandler()  # what Prefect's logging setup adds to the root logger
    logging.getLogger().addHandler(root_handler)
    try:
        logs.configure()
        logs.configure()  # twice: still one handler
        logging.getLogger("flows.watch").warning("[prefect] monitoring at %s stopped", "http://x")
        logging.getLogger("pipeline.stages.train").info("seed 0: trained 3 epochs")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert capsys.readouterr().err.splitlines() == ["[prefect] monitoring at http://x stopped",
                                                    "seed 0: trained 3 epochs"]
