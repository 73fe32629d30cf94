"""Running a pipeline stage as a Prefect flow: one flow run per stage, one task per work item.

Monitoring is best effort. Progress goes to a throttled progress artifact from a background thread,
reporting errors are swallowed, and if Prefect fails at any point the stage finishes plainly (its
per-item part cache means finished items are not redone). A dead server never fails or hangs a stage.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pipeline.hooks import TqdmHook
from pipeline.runner import PlainRunner
from pipeline.stages import get_stage

T = TypeVar("T")
R = TypeVar("R")
EXIT_FLUSH_SECONDS = 20.0


class ProgressReporter:
    """Pushes the latest progress to a Prefect progress artifact at most once per `interval`."""

    def __init__(self, key: str, interval: float = 1.0) -> None:
        self.key = key
        self.interval = interval
        self._latest: float | None = None
        self._artifact_id = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"progress-{key}")
        self._thread.start()

    def update(self, fraction: float) -> None:
        self._latest = fraction

    def _push(self) -> None:
        if self._latest is None:
            return
        value, self._latest = self._latest, None
        try:
            from prefect.artifacts import create_progress_artifact, update_progress_artifact

            if self._artifact_id is None:
                self._artifact_id = create_progress_artifact(progress=100 * value, key=self.key,
                                                             description=f"progress of {self.key}")
            else:
                update_progress_artifact(self._artifact_id, progress=100 * value)
        except Exception as error:  # monitoring must never break the stage
            print(f"[prefect] progress not reported: {error}", file=sys.stderr)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._push()

    def finish(self) -> None:
        self._stop.set()
        self._push()


class PrefectRunner:
    """The `Runner` protocol over Prefect tasks submitted to the flow's task runner."""

    def __init__(self, stage_key: str) -> None:
        self.stage_key = stage_key
        self.hook = TqdmHook()

    def map(self, fn: Callable[[T], R], items: Sequence[T], name: str) -> list[R]:
        from prefect import task
        from prefect.cache_policies import NO_CACHE
        from prefect.futures import as_completed

        items = list(items)
        reporter = ProgressReporter(_artifact_key(f"{self.stage_key}-{name}"))
        work = task(fn, name=name, cache_policy=NO_CACHE, persist_result=False)
        futures = [work.with_options(task_run_name=f"{name}-{index}").submit(item) for index, item in enumerate(items)]
        index_of = {id(future): index for index, future in enumerate(futures)}
        results: list[R | None] = [None] * len(items)
        self.hook(name, 0, len(items))
        for done, future in enumerate(as_completed(futures), 1):
            results[index_of[id(future)]] = future.result()
            self.hook(name, done, len(items))
            reporter.update(done / max(1, len(items)))
        reporter.finish()
        return results  # type: ignore[return-value]


def _artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _summary_markdown(name: str, summary: dict[str, Any]) -> str:
    rows = "\n".join(f"| {key} | {value} |" for key, value in summary.items())
    return f"## {name}\n\n| item | value |\n|---|---|\n{rows}\n"


def run_stage_as_flow(stage: str, arg: str | None, params: dict[str, Any], api: str) -> dict[str, Any]:
    """Run `stage` inside a Prefect flow reporting to `api`; fall back to a plain run on any failure."""
    if api:
        os.environ["PREFECT_API_URL"] = api
    name = stage if arg is None else f"{stage}@{arg}"
    box: dict[str, Any] = {}
    stage_fn = get_stage(stage)
    try:
        from prefect import flow, tags
        from prefect.artifacts import create_markdown_artifact

        from flows.runtime import task_runner

        workers = int(params.get("run", {}).get("workers", 2))

        @flow(name=f"stage-{stage}", flow_run_name=name.replace("@", "-"), task_runner=task_runner(workers),
              log_prints=False, validate_parameters=False)
        def stage_flow() -> dict[str, Any]:
            box["summary"] = stage_fn(params, PrefectRunner(name), arg)
            try:
                create_markdown_artifact(_summary_markdown(name, box["summary"]), key=_artifact_key(f"{name}-summary"),
                                         description=f"summary of {name}")
            except Exception as error:
                print(f"[prefect] summary not reported: {error}", file=sys.stderr)
            return box["summary"]

        run_tags = [t for t in (os.environ.get("PIPELINE_RUN_TAG"), os.environ.get("DVC_STAGE")) if t]
        with tags(*run_tags):
            stage_flow()
        return box["summary"]
    except Exception as error:
        if "summary" in box:  # the work is done; only reporting failed
            return box["summary"]
        from pipeline.config import ConfigError
        from pipeline.ledger import FailureRatioExceeded

        if isinstance(error, (ConfigError, FailureRatioExceeded)):
            raise
        print(f"[prefect] monitoring failed ({type(error).__name__}: {error}); finishing {name} without it",
              file=sys.stderr)
        return stage_fn(params, PlainRunner(params.get("run", {}).get("workers", 2)), arg)


def cap_exit_flush() -> None:
    """Prefect drains queued events at exit; if the server went away, do not wait on it forever.

    Only for command-line runs: it ends the process `EXIT_FLUSH_SECONDS` after being called.
    """

    def force_exit() -> None:
        time.sleep(EXIT_FLUSH_SECONDS)
        os._exit(0)

    threading.Thread(target=force_exit, daemon=True).start()
