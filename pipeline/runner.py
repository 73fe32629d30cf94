"""How a stage runs its work: `map` over videos or chunks, reporting through its hook.

Stage code only sees this protocol: `runner.map(...)` for the work and `runner.hook(...)`
(`pipeline.hooks`) for progress it measures itself (epochs, folds). `run.runner` picks where items
run: `PlainRunner` (threads + progress bar, the default) or `pipeline.task_runners.DistributedRunner`
(a process pool, Dask or Ray); the Prefect runner in `flows/adapter.py` implements the same protocol
with one task per item on the matching Prefect task runner and a hook that also feeds Prefect's
artifacts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from core.config import ConfigError, parse_block, setting
from pipeline.hooks import ProgressHook, TqdmHook

T = TypeVar("T")
R = TypeVar("R")


RUNNERS = ("threads", "processes", "dask", "ray")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The `run` block: where a stage's items run and how many at once, and the share of failed
    utterances a stage may leave. DVC tracks none of it: every runner gives the same outputs."""

    workers: int = setting(2, runtime=True, positive=True)
    max_failure_ratio: float = setting(0.5, min=0, max=1)
    runner: str = setting("threads", runtime=True, choices=RUNNERS)
    address: str | None = setting(None, runtime=True)  # an existing Dask scheduler or Ray cluster

    def __post_init__(self) -> None:
        if self.address and self.runner not in ("dask", "ray"):
            raise ConfigError.at("address", f"names a cluster, which only runner dask or ray uses (runner is "
                                            f"{self.runner!r})")


class Runner(Protocol):
    hook: ProgressHook

    def map(self, fn: Callable[[T], R], items: Sequence[T], name: str) -> list[R]:
        """Apply `fn` to every item; results come back in item order."""
        ...

    def close(self) -> None:
        """Release what the runner started (a cluster); a no-op for threads."""
        ...


class ClosingRunner:
    """What every runner shares: `with runner:` calls `close()`, which releases what it started."""

    def close(self) -> None:
        pass

    def __enter__(self) -> ClosingRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PlainRunner(ClosingRunner):
    """Threads (torch, ffmpeg and OpenSMILE release the GIL) and a stderr progress bar."""

    def __init__(self, workers: int = 2, hook: ProgressHook | None = None) -> None:
        self.workers = max(1, int(workers))
        self.hook: ProgressHook = hook if hook is not None else TqdmHook()

    def map(self, fn: Callable[[T], R], items: Sequence[T], name: str) -> list[R]:
        items = list(items)
        total = len(items)
        self.hook(name, completed=0, total=total)
        if self.workers == 1 or total <= 1:
            results = []
            for done, item in enumerate(items, 1):
                results.append(fn(item))
                self.hook(name, completed=done, total=total)
            return results
        slots: list[R | None] = [None] * total
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(fn, item): index for index, item in enumerate(items)}
            for done, future in enumerate(as_completed(futures), 1):
                slots[futures[future]] = future.result()
                self.hook(name, completed=done, total=total)
        return slots  # type: ignore[return-value]


def run_config(params: Mapping[str, Any]) -> RunConfig:
    return parse_block(RunConfig, params.get("run") or {}, "run")
