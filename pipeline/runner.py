"""How a stage runs its work: `map` over videos or chunks, reporting through its hook.

Stage code only sees this protocol: `runner.map(...)` for the work and `runner.hook(...)`
(`pipeline.hooks`) for progress it measures itself (epochs, folds). `PlainRunner` (threads +
progress bar) is the default; the Prefect runner in `flows/adapter.py` implements the same protocol
with one task per item and a hook that also feeds Prefect's artifacts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Protocol, TypeVar

from core.config import setting
from pipeline.hooks import ProgressHook, TqdmHook

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The `run` block: threads per stage, and the share of failed utterances a stage may leave."""

    workers: int = setting(2, runtime=True)
    max_failure_ratio: float = setting()


class Runner(Protocol):
    hook: ProgressHook

    def map(self, fn: Callable[[T], R], items: Sequence[T], name: str) -> list[R]:
        """Apply `fn` to every item; results come back in item order."""
        ...


class PlainRunner:
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
