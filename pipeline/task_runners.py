"""Runners that send a stage's items to other processes: a local process pool, Dask or Ray.

`run.runner` picks one (`threads`, the default, is `pipeline.runner.PlainRunner`). Stage code does
not change: it still calls `runner.map(work, items, name)`. Tasks exchange file paths on storage the
driver and the workers share, never large arrays:

- the stage's work function (a closure holding its detector, scorer, config and caches) is pickled
  once, with cloudpickle, into `.cache/runner/<uuid>/function.pkl`; every task gets that path, loads
  it once per worker process and keeps it;
- each task writes its result to `.cache/runner/<uuid>/<index>.pkl` and returns the path; the driver
  reads the results back in item order and deletes the folder.

Workers run in the driver's working directory (the project, which must be on shared storage for a
real cluster, as `dvc repro` needs anyway), so the stages' relative paths hold there. Each item's
part is stored in the part cache (`pipeline.cache`) by the worker that computed it: a worker that dies
costs only its item (Dask and Ray retry it elsewhere; a rerun restores every finished part).
Workers run torch on one thread each; the threads runner with `torch.set_num_threads(1)` gives the
same bytes (tests/test_task_runners.py), with more threads the same values up to float rounding.
"""

from __future__ import annotations

import os
import pickle
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pipeline import paths
from pipeline.hooks import ProgressHook, TqdmHook
from pipeline.runner import ClosingRunner, PlainRunner, Runner, run_config

T = TypeVar("T")
R = TypeVar("R")

_LOADED: dict[str, Callable[[Any], Any]] = {}  # function file -> function, per worker process


def _one_torch_thread() -> None:
    """Workers are single-threaded: parallelism comes from running several, and a result does not depend on
    how many threads a worker's machine would give torch (its float sums do)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def run_task(function_file: str, item: Any, result_file: str, workdir: str) -> str:
    """One item on a worker: load the stage's function (once per process), run it, write the result."""
    if os.getcwd() != workdir:
        os.chdir(workdir)
    function = _LOADED.get(function_file)
    if function is None:
        _one_torch_thread()
        with open(function_file, "rb") as handle:
            function = _LOADED[function_file] = pickle.load(handle)
    result = function(item)
    partial = f"{result_file}.partial"
    with open(partial, "wb") as handle:
        pickle.dump(result, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, result_file)
    return result_file


class TaskBatch:
    """The scratch folder of one `map` call: the function file and one result file per item."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        import cloudpickle

        self.folder = (paths.CACHE_DIR / "runner" / uuid.uuid4().hex).resolve()
        self.folder.mkdir(parents=True)
        self.function_file = str(self.folder / "function.pkl")
        with open(self.function_file, "wb") as handle:
            cloudpickle.dump(fn, handle, protocol=pickle.HIGHEST_PROTOCOL)
        self.workdir = os.getcwd()

    def args(self, index: int, item: Any) -> tuple[str, Any, str, str]:
        return self.function_file, item, str(self.folder / f"{index}.pkl"), self.workdir

    @staticmethod
    def load(result_file: str) -> Any:
        with open(result_file, "rb") as handle:
            return pickle.load(handle)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        _LOADED.pop(self.function_file, None)


class DistributedRunner(ClosingRunner):
    """The Runner protocol on a process pool, a Dask cluster or a Ray cluster (see the module docstring).

    `address` names an existing cluster (Dask: `tcp://host:8786`; Ray: `auto` or `ray://host:10001`);
    without one, a local cluster of `workers` single-threaded processes is started on first use and
    stopped by `close()`.
    """

    def __init__(self, backend: str, workers: int = 2, address: str | None = None,
                 hook: ProgressHook | None = None) -> None:
        if backend not in ("processes", "dask", "ray"):
            raise ValueError(f"unknown backend {backend!r}")
        self.backend = backend
        self.workers = max(1, int(workers))
        self.address = address
        self.hook: ProgressHook = hook if hook is not None else TqdmHook()
        self._engine: Any = None

    # ------------------------------------------------------------------ engines
    def _start(self) -> Any:
        if self._engine is not None:
            return self._engine
        if self.backend == "processes":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._engine = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        elif self.backend == "dask":
            from distributed import Client, LocalCluster

            if self.address:
                self._engine = Client(self.address)
            else:
                cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
                self._engine = Client(cluster)
        else:
            import ray

            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            self._engine = ray.remote(max_retries=3)(run_task)
        return self._engine

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if self.backend == "processes":
            engine.shutdown()
        elif self.backend == "dask":
            cluster = engine.cluster if not self.address else None
            engine.close()
            if cluster is not None:
                cluster.close()
        else:
            import ray

            ray.shutdown()

    # ------------------------------------------------------------------ the protocol
    def map(self, fn: Callable[[T], R], items: Sequence[T], name: str) -> list[R]:
        items = list(items)
        total = len(items)
        self.hook(name, completed=0, total=total)
        if not total:
            return []
        engine = self._start()
        batch = TaskBatch(fn)
        try:
            files = self._submit_all(engine, batch, items, name, total)
            return [batch.load(file) for file in files]
        finally:
            batch.close()

    def _submit_all(self, engine: Any, batch: TaskBatch, items: list[Any], name: str, total: int) -> list[str]:
        if self.backend == "processes":
            from concurrent.futures import as_completed

            futures = {engine.submit(run_task, *batch.args(i, item)): i for i, item in enumerate(items)}
            files: list[str | None] = [None] * total
            for done, future in enumerate(as_completed(futures), 1):
                files[futures[future]] = future.result()
                self.hook(name, completed=done, total=total)
            return files  # type: ignore[return-value]
        if self.backend == "dask":
            from distributed import as_completed as dask_completed

            futures = [engine.submit(run_task, *batch.args(i, item), pure=False) for i, item in enumerate(items)]
            where = {future.key: i for i, future in enumerate(futures)}
            files = [None] * total
            for done, future in enumerate(dask_completed(futures), 1):
                files[where[future.key]] = future.result()
                self.hook(name, completed=done, total=total)
            return files  # type: ignore[return-value]
        import ray

        refs = [engine.remote(*batch.args(i, item)) for i, item in enumerate(items)]
        pending, done = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done += len(ready)
            ray.get(ready)  # raises the task's error here
            self.hook(name, completed=done, total=total)
        return ray.get(refs)


def make_runner(params: Mapping[str, Any], hook: ProgressHook | None = None) -> Runner:
    """The runner `run.runner` names; close it (`close()`, or `with`) to stop a cluster it started."""
    cfg = run_config(params)
    if cfg.runner == "threads":
        return PlainRunner(cfg.workers, hook)
    return DistributedRunner(cfg.runner, cfg.workers, cfg.address, hook)
