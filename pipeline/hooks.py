"""Hooks: how stage code reports progress, summaries and artifacts without importing a UI library.

Every hook has the shape of pyannote.audio's pipeline hooks:

    hook(step_name, artifact=None, *, completed=None, total=None)

Progress passes `completed` of `total` items of `step_name`; a finished result (a stage's summary
dict, an epoch record) passes as `artifact`. A hook ignores the calls it has nothing to show for.
`Hooks(a, b)` calls several in order, so a tqdm bar, the Prefect reporter (`flows/adapter.py`) and a
test's recorder compose instead of being chosen between; used as a context manager it closes them.

    >>> recorder = RecordingHook()
    >>> with Hooks(recorder, silent_hook) as hook:
    ...     hook("cut", completed=1, total=2)
    ...     hook("cut", {"utterances": 2})
    >>> recorder.calls[0][:3], recorder.artifacts
    (('cut', 1, 2), [('cut', {'utterances': 2})])
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol


class ProgressHook(Protocol):
    def __call__(self, step_name: str, artifact: Any = None, *, completed: int | None = None,
                 total: int | None = None) -> None: ...


def silent_hook(step_name: str, artifact: Any = None, *, completed: int | None = None,
                total: int | None = None) -> None:
    """A hook that reports nothing."""


class Hooks:
    """Several hooks called in order, as one; entering and leaving it enters and closes each of them."""

    def __init__(self, *hooks: ProgressHook) -> None:
        self.hooks = hooks

    def __call__(self, step_name: str, artifact: Any = None, *, completed: int | None = None,
                 total: int | None = None) -> None:
        for hook in self.hooks:
            hook(step_name, artifact, completed=completed, total=total)

    def __enter__(self) -> Hooks:
        for hook in self.hooks:
            if hasattr(hook, "__enter__"):
                hook.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for hook in self.hooks:
            close = getattr(hook, "close", None)
            if callable(close):
                close()


class TqdmHook:
    """A progress bar on stderr per step name; artifacts are not its business."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, step_name: str, artifact: Any = None, *, completed: int | None = None,
                 total: int | None = None) -> None:
        if completed is None or total is None:
            return
        from tqdm import tqdm

        bar = self._bars.get(step_name)
        if bar is None:
            bar = tqdm(total=total, desc=step_name, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
            self._bars[step_name] = bar
        bar.total = total
        bar.n = completed
        bar.refresh()
        if completed >= total:
            bar.close()
            del self._bars[step_name]

    def __enter__(self) -> TqdmHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """End the bars of steps that never reached their total."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


class RecordingHook:
    """Keeps every call; tests use it to check that a stage reports progress and what it hands over.

    `calls` holds progress as `(step_name, completed, total, monotonic time)`; `artifacts` holds
    `(step_name, artifact)`.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, float]] = []
        self.artifacts: list[tuple[str, Any]] = []

    def __call__(self, step_name: str, artifact: Any = None, *, completed: int | None = None,
                 total: int | None = None) -> None:
        if artifact is not None:
            self.artifacts.append((step_name, artifact))
        if completed is not None and total is not None:
            self.calls.append((step_name, completed, total, time.monotonic()))
