"""One item, one fate: an unexpected exception in a stage's per-item work becomes ledger rows.

Every per-item stage (`cut`, `faces`, `speaker`, `features@*`, `lipsync_train`'s media reading) wraps
the work of one media file or chunk in `guarded`. Anything that goes wrong inside (a library
assertion on an odd video, a codec bug, a NaN check) is recorded for each of the item's utterances
as `stage, utt_id, "<ExceptionType>: <message>"`, the traceback is appended to
`data/failures/<stage>.log`, and the stage goes on with the other items; `run.max_failure_ratio`
alone decides whether too much was lost. A guarded failure is not stored in the part cache, so the
next run tries the item again.

Errors that are not about one item still stop the stage at once: configuration errors (the same
for every item), a full disk (`DiskFull`, with a clear message), and interrupts.
"""

from __future__ import annotations

import errno
import threading
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pipeline import paths
from pipeline.config import ConfigError
from pipeline.ledger import Failure

R = TypeVar("R")
_LOG_LOCK = threading.Lock()
MAX_REASON = 300


class DiskFull(OSError):
    """No space left while writing: the stage stops; finished parts stay, nothing half-written is kept."""


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full(error: OSError, where: str) -> DiskFull:
    return DiskFull(errno.ENOSPC, f"no space left on the device while writing {where} ({error}); free some "
                                  f"space and rerun: finished items are kept in .cache/ and resume")


def _fatal(error: BaseException) -> bool:
    """Errors every item would hit alike (an extractor's included): stop instead of failing each item."""
    return isinstance(error, ConfigError) or is_disk_full(error)


def reason_of(error: BaseException) -> str:
    message = " ".join(str(error).split()) or "(no message)"
    if len(message) > MAX_REASON:
        message = message[:MAX_REASON] + "..."
    return f"{type(error).__name__}: {message}"


def traceback_log(stage: str) -> Path:
    """`data/failures/<stage>.log`, beside the stage's ledger."""
    return paths.stage_ledger(stage).with_suffix(".log")


def log_traceback(stage: str, utt_ids: Iterable[str], error: BaseException) -> None:
    """Append the full traceback to the stage's traceback log."""
    log = traceback_log(stage)
    ids = list(utt_ids)
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    with _LOG_LOCK:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            handle.write(f"--- {datetime.now(UTC).isoformat(timespec='seconds')} {stage}: {shown}\n{text}\n")


def guarded(stage: str, utt_ids: Iterable[str], compute: Callable[[], R],
            fallback: Callable[[list[Failure]], R]) -> R:
    """`compute()`, or `fallback(failures)` with one failure per utterance when it raises."""
    try:
        return compute()
    except Exception as error:
        if is_disk_full(error) and not isinstance(error, DiskFull):
            raise disk_full(error, stage) from error
        if _fatal(error):
            raise
        ids = [str(u) for u in utt_ids]
        log_traceback(stage, ids, error)
        reason = f"unexpected error: {reason_of(error)} (traceback in {traceback_log(stage)})"
        return fallback([Failure(stage, u, reason) for u in ids])
