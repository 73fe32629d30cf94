"""Running a pipeline stage as a Prefect flow: one flow run per stage, one task per work item.

Monitoring is best effort and never on the stage's path. The flow runs on its own thread; the
runner's hook (`PrefectArtifactHook`, composed with the progress bar) pushes progress artifacts from
background threads and the summary artifact once the work is done; a `ServerWatch` notices a server
that dies or freezes, logs one warning line, silences Prefect and lets the stage finish without it
(later maps run plainly). If Prefect fails before the stage starts, the stage runs plainly; its
per-item part cache means finished items are never redone. A dead server never fails or hangs a stage.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from flows.watch import ServerWatch
from pipeline.hooks import Hooks, TqdmHook
from pipeline.runner import PlainRunner, run_config
from pipeline.stages import get_stage
from pipeline.task_runners import TaskBatch

T = TypeVar("T")
R = TypeVar("R")
EXIT_FLUSH_SECONDS = 20.0  # Prefect drains queued events at exit; a healthy server needs far less
LOST_EXIT_SECONDS = 1.0  # nothing left worth waiting for once the monitor is lost
FINISH_GRACE_SECONDS = 10.0  # after the stage's work, time the flow gets to record its final state
POLL_SECONDS = 0.2


def _start_in_context(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread that keeps the caller's Prefect run context (artifacts attach to the run)."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target,), daemon=True, name=name)
    thread.start()
    return thread


class ProgressReporter:
    """Pushes the latest progress to a Prefect progress artifact at most once per `interval`.

    All pushes happen on the reporter's thread; `update` and `finish` never wait on the server.
    """

    def __init__(self, key: str, watch: ServerWatch, interval: float = 1.0) -> None:
        self.key = key
        self.watch = watch
        self.interval = interval
        self._latest: float | None = None
        self._artifact_id = None
        self._stop = threading.Event()
        _start_in_context(self._loop, f"progress-{key}")

    def update(self, fraction: float) -> None:
        self._latest = fraction

    def finish(self) -> None:
        self._stop.set()  # the thread makes the last push

    def _push(self) -> None:
        if self._latest is None or self.watch.lost.is_set():
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
            self.watch.declare_lost(f"progress not reported: {type(error).__name__}: {error}")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._push()
        self._push()


class PrefectArtifactHook:
    """The hook (`pipeline.hooks`) that shows a stage in Prefect: one progress artifact per step and a
    summary artifact for the stage's own summary (`hook(stage_key, summary)`).

    Progress goes through a `ProgressReporter` thread per step; once the watch has lost the server,
    nothing is reported.
    """

    def __init__(self, stage_key: str, watch: ServerWatch) -> None:
        self.stage_key = stage_key
        self.watch = watch
        self._reporters: dict[str, ProgressReporter] = {}
        self._lock = threading.Lock()

    def __call__(self, step_name: str, artifact: Any = None, *, completed: int | None = None,
                 total: int | None = None) -> None:
        if self.watch.lost.is_set():
            return
        if completed is not None and total is not None:
            self._progress(step_name, completed, total)
        if artifact is not None and step_name == self.stage_key:
            self._summary(artifact)

    def _progress(self, step_name: str, completed: int, total: int) -> None:
        with self._lock:
            reporter = self._reporters.get(step_name)
            if reporter is None:
                reporter = ProgressReporter(_artifact_key(f"{self.stage_key}-{step_name}"), self.watch)
                self._reporters[step_name] = reporter
            reporter.update(completed / max(1, total))
            if completed >= total:
                del self._reporters[step_name]
                reporter.finish()

    def _summary(self, summary: Any) -> None:
        try:
            from prefect.artifacts import create_markdown_artifact

            create_markdown_artifact(_summary_markdown(self.stage_key, dict(summary)),
                                     key=_artifact_key(f"{self.stage_key}-summary"),
                                     description=f"summary of {self.stage_key}")
        except Exception as error:
            self.watch.declare_lost(f"summary not reported: {type(error).__name__}: {error}")

    def close(self) -> None:
        """Finish the reporters of steps that never reached their total."""
        with self._lock:
            reporters, self._reporters = list(self._reporters.values()), {}
        for reporter in reporters:
            reporter.finish()


class PrefectRunner:
    """The `Runner` protocol over Prefect tasks submitted to the flow's task runner.

    Its hook draws the progress bar and feeds Prefect's artifacts. Once the watch has lost the
    server, maps run on a `PlainRunner` instead.
    """

    def __init__(self, stage_key: str, watch: ServerWatch, workers: int, by_file: bool = False) -> None:
        self.stage_key = stage_key
        self.watch = watch
        self.workers = workers
        self.by_file = by_file  # other processes run the tasks: they exchange file paths (pipeline.task_runners)
        self.hook = Hooks(TqdmHook(), PrefectArtifactHook(stage_key, watch))

    def close(self) -> None:
        pass

    def map(self, fn: Callable[[T], R], items: Sequence[T], name: str) -> list[R]:
        if self.watch.lost.is_set():
            return PlainRunner(self.workers, hook=self.hook).map(fn, items, name)
        from prefect import task
        from prefect.cache_policies import NO_CACHE
        from prefect.futures import as_completed

        items = list(items)
        batch = TaskBatch(fn) if self.by_file else None
        try:
            if batch:
                from flows.remote_task import run_item  # by reference: no per-stage options

                futures = [run_item.submit(*batch.args(index, item)) for index, item in enumerate(items)]
            else:
                work = task(fn, name=name, cache_policy=NO_CACHE, persist_result=False)
                futures = [work.with_options(task_run_name=f"{name}-{index}").submit(item)
                           for index, item in enumerate(items)]
        except Exception as error:  # Prefect could not take the work: do it here
            if batch:
                batch.close()
            self.watch.declare_lost(f"tasks not submitted: {type(error).__name__}: {error}")
            return PlainRunner(self.workers, hook=self.hook).map(fn, items, name)
        index_of = {id(future): index for index, future in enumerate(futures)}
        results: list[R | None] = [None] * len(items)
        self.hook(name, completed=0, total=len(items))
        try:
            for done, future in enumerate(as_completed(futures), 1):
                result = future.result()
                results[index_of[id(future)]] = batch.load(result) if batch else result
                self.hook(name, completed=done, total=len(items))
        finally:
            if batch:
                batch.close()
        return results  # type: ignore[return-value]


def _artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _summary_markdown(name: str, summary: dict[str, Any]) -> str:
    rows = "\n".join(f"| {key} | {value} |" for key, value in summary.items())
    return f"## {name}\n\n| item | value |\n|---|---|\n{rows}\n"


class _Owner:
    """Who runs the stage: the flow thread or, if the monitor is lost before it starts, the caller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value: str | None = None

    def claim(self, who: str) -> bool:
        with self._lock:
            if self.value is None:
                self.value = who
            return self.value == who


_BODIES: dict[str, Callable[[], dict[str, Any]]] = {}  # stage key -> the running flow's body


def _run_body(stage_key: str) -> dict[str, Any]:
    """The flow's function. Module-level, and holding no state itself: Prefect ships the flow with every
    task it sends to Dask or Ray, and the body's state (locks, the server watch) cannot be pickled."""
    return _BODIES[stage_key]()


def run_stage_as_flow(stage: str, arg: str | None, params: dict[str, Any], api: str,
                      watch: ServerWatch | None = None) -> dict[str, Any]:
    """Run `stage` inside a Prefect flow reporting to `api`; fall back to a plain run on any failure."""
    if api:
        os.environ["PREFECT_API_URL"] = api
    # log records stay on stderr; `PREFECT_LOGGING_TO_API_ENABLED=true` ships them, the project's loggers included
    # (pipeline.env names them in PREFECT_LOGGING_EXTRA_LOGGERS)
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    name = stage if arg is None else f"{stage}@{arg}"
    run_cfg = run_config(params)
    workers = run_cfg.workers
    watch = (watch or ServerWatch(api, name)).start()
    stage_fn = get_stage(stage)
    owner = _Owner()
    box: dict[str, Any] = {}

    def run_flow() -> None:
        try:
            from prefect import flow, tags
            from prefect.settings import PREFECT_API_URL, temporary_settings

            from flows.runtime import task_runner

            def body() -> dict[str, Any]:
                if not owner.claim("flow"):
                    return {}
                runner = PrefectRunner(name, watch, workers, by_file=run_cfg.runner != "threads")
                with runner.hook:
                    try:
                        box["summary"] = stage_fn(params, runner, arg)
                    except BaseException as error:
                        box["stage_error"] = error  # the stage's own failure: never retried as if monitoring broke
                        raise
                    runner.hook(name, box["summary"])
                return box["summary"]

            _BODIES[name] = body
            stage_flow = flow(_run_body, name=f"stage-{stage}", flow_run_name=name.replace("@", "-"),
                              task_runner=task_runner(run_cfg), log_prints=False, validate_parameters=False)

            run_tags = [t for t in (os.environ.get("PIPELINE_RUN_TAG"), os.environ.get("DVC_STAGE")) if t]
            api_settings = {PREFECT_API_URL: api} if api else {}  # also when Prefect was imported earlier
            with temporary_settings(updates=api_settings), tags(*run_tags):
                stage_flow(name)
        except BaseException as error:  # reported to the caller's thread below
            box["error"] = error
        finally:
            _BODIES.pop(name, None)

    flow_thread = _start_in_context(run_flow, f"flow-{name}")
    finished_at: float | None = None
    while flow_thread.is_alive():
        flow_thread.join(POLL_SECONDS)
        if "summary" in box:
            finished_at = finished_at or time.monotonic()
            if watch.lost.is_set() or time.monotonic() - finished_at > FINISH_GRACE_SECONDS:
                break  # the work is done; the flow's final state is only reporting
        elif watch.lost.is_set() and owner.claim("caller"):
            break  # Prefect never got as far as starting the stage: run it here
    watch.stop()
    if "summary" in box:
        return box["summary"]
    if "stage_error" in box:
        raise box["stage_error"]
    error = box.get("error")
    if error is not None and owner.value == "flow" and not isinstance(error, Exception):
        raise error
    if error is not None:
        watch.declare_lost(f"{type(error).__name__}: {error}")
    return stage_fn(params, PlainRunner(workers), arg)  # Prefect failed before the stage began


def cap_exit_flush(code: int, lost: bool) -> None:
    """End the process with `code` after a bounded wait for Prefect's exit-time event flush.

    Only for command-line runs, called once the stage's output and summary are written.
    """

    def force_exit() -> None:
        time.sleep(LOST_EXIT_SECONDS if lost else EXIT_FLUSH_SECONDS)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    threading.Thread(target=force_exit, daemon=True).start()
