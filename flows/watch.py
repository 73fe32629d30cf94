"""Watching the Prefect server while a stage reports to it, so a dead or frozen monitor stays quiet.

A `ServerWatch` polls the server's `/health` from its own thread. When the server stops answering
(killed, or frozen by SIGSTOP: its port still accepts connections but nothing comes back), the watch
declares the monitor lost exactly once: it logs one warning line, silences Prefect's own loggers
(each lost event would otherwise print a multi-kilobyte ERROR record) and tells the stage runner to
carry on without Prefect. The stage's work never waits on the server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from flows.server_address import api_healthy

POLL_SECONDS = 2.0
HEALTH_TIMEOUT_SECONDS = 3.0
MISSES_BEFORE_LOST = 2  # a loaded machine may miss one answer; two in a row is a lost server
log = logging.getLogger(__name__)


PREFECT_SERVICE_LOGGERS = ("EventsWorker", "APILogWorker")  # named after their class, outside `prefect.`


def _not_from_prefect(record: logging.LogRecord) -> bool:
    return not (record.name.startswith("prefect") or record.name in PREFECT_SERVICE_LOGGERS)


def silence_prefect_logging() -> None:
    """Quiet every Prefect logger, including ones created later, and stop shipping records to the API."""
    names = [name for name in logging.root.manager.loggerDict if name.startswith("prefect")]
    for name in (*names, *PREFECT_SERVICE_LOGGERS):
        logging.getLogger(name).disabled = True
    for logger in (logging.getLogger("prefect"), logging.root):
        for handler in logger.handlers:
            handler.addFilter(_not_from_prefect)
    try:
        from prefect.logging import handlers

        handlers._api_log_sink = lambda log: None  # records are dropped instead of queued for the API
    except ImportError:
        pass


class ServerWatch:
    """Declares the monitor lost after `MISSES_BEFORE_LOST` failed health checks in a row."""

    def __init__(self, api: str, name: str, healthy: Callable[[str, float], bool] = api_healthy,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.api = api
        self.name = name
        self._healthy = healthy
        self._poll = poll_seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"watch-{name}")

    def start(self) -> ServerWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def declare_lost(self, reason: str) -> None:
        """Log the one warning line (only the first call does anything) and go quiet."""
        with self._lock:
            if self.lost.is_set():
                return
            self.lost.set()
        silence_prefect_logging()
        reason = " ".join(reason.split())[:200]  # one line, whatever the error text
        log.warning("[prefect] monitoring at %s stopped (%s); %s goes on without it, its result is unaffected",
                    self.api, reason, self.name)

    def _loop(self) -> None:
        misses = 0
        while not self._stop.wait(self._poll) and not self.lost.is_set():
            misses = 0 if self._healthy(self.api, HEALTH_TIMEOUT_SECONDS) else misses + 1
            if misses >= MISSES_BEFORE_LOST:
                self.declare_lost(f"no answer to {misses} health checks")
