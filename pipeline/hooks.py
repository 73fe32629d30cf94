"""Progress hooks: stage code reports progress through these and never imports a UI library.

A hook is any callable `hook(step, completed, total)`; tqdm bars, Prefect artifacts and tests all
implement it (the pattern of pyannote.audio's pipeline hooks).
"""

from __future__ import annotations

import sys
import time
from typing import Protocol


class ProgressHook(Protocol):
    def __call__(self, step: str, completed: int, total: int) -> None: ...


def silent_hook(step: str, completed: int, total: int) -> None:
    """A hook that reports nothing."""


class TqdmHook:
    """A progress bar on stderr, one per step name."""

    def __init__(self) -> None:
        self._bars: dict[str, object] = {}

    def __call__(self, step: str, completed: int, total: int) -> None:
        from tqdm import tqdm

        bar = self._bars.get(step)
        if bar is None:
            bar = tqdm(total=total, desc=step, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
            self._bars[step] = bar
        bar.total = total
        bar.n = completed
        bar.refresh()
        if completed >= total:
            bar.close()
            del self._bars[step]


class RecordingHook:
    """Keeps every call; used by tests to check that a stage reports progress."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, float]] = []

    def __call__(self, step: str, completed: int, total: int) -> None:
        self.calls.append((step, completed, total, time.monotonic()))
