"""Where the project's messages go: `logging`, one logger per module, handled by the command lines.

Library code (stages, extractors, models, flows) only calls `logging.getLogger(__name__)` and never
prints to stderr. A command line (`python -m pipeline`, the report, `python -m pipeline.dag`, ...)
calls `configure()` once, so messages reach stderr as the plain lines users read. Prefect copies its
own handler onto the same loggers (`PREFECT_LOGGING_EXTRA_LOGGERS`, set in `pipeline.env`), so a
monitored run can ship them to the UI.
"""

from __future__ import annotations

import logging
import sys

from pipeline.env import PROJECT_PACKAGES


class StderrHandler(logging.StreamHandler):
    """Plain `message` lines on whatever `sys.stderr` is when a record arrives (a redirect, a test's capture)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


def configure(level: int = logging.INFO) -> None:
    """Send the project's messages at `level` and above to stderr, once, whoever configures logging later.

    The project loggers stop propagating, so a root handler added by a library (Prefect adds one)
    does not print every message twice.
    """
    for package in PROJECT_PACKAGES:
        logger = logging.getLogger(package)
        logger.setLevel(level)
        logger.propagate = False
        if not any(isinstance(handler, StderrHandler) for handler in logger.handlers):
            logger.addHandler(StderrHandler())
