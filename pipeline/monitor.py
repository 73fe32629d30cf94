"""Finding the monitor a stage reports to, without the pipeline knowing what it is.

A monitor (the Prefect one lives in `flows/`) is installed as an entry point in the
`merc_pipeline.monitors` group: a factory `factory(name, forced) -> StageMonitor | None` that
returns a monitor only when it can report (a server answers). `PIPELINE_ORCHESTRATOR` chooses:
`auto` (default) asks every installed monitor, `plain` asks none, and any other value names the
monitor that must run, forced. An install older than the entry point has no monitor and runs
plainly; naming a monitor that is not installed is a configuration error that says how to fix it.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Protocol

from pipeline.config import ConfigError

GROUP = "merc_pipeline.monitors"
log = logging.getLogger(__name__)


class StageMonitor(Protocol):
    def run(self, stage: str, arg: str | None, params: dict[str, Any]) -> dict[str, Any]:
        """Run the stage under monitoring and return its summary (the stage's own result)."""
        ...

    def close(self, code: int) -> None:
        """Called once the summary is printed, with the process's exit status."""
        ...


def installed_monitors() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=GROUP)}


def find_monitor(name: str) -> StageMonitor | None:
    """The monitor stage `name` (`stage` or `stage@arg`) reports to, or None to run plain."""
    mode = os.environ.get("PIPELINE_ORCHESTRATOR", "auto")
    if mode == "plain":
        return None
    monitors = installed_monitors()
    if mode == "auto":
        for entry in monitors.values():
            try:
                monitor = entry.load()(name, forced=False)
            except Exception as error:  # monitoring is best effort: a broken monitor never stops a stage
                log.warning("monitor %r could not start (%s: %s); %s runs without it",
                            entry.name, type(error).__name__, error, name)
                continue
            if monitor is not None:
                return monitor
        return None
    if mode not in monitors:
        installed = ", ".join(sorted(monitors)) or "none"
        raise ConfigError(f"PIPELINE_ORCHESTRATOR is {mode!r} but no such monitor is installed (installed: "
                          f"{installed}); allowed values: auto, plain or an installed monitor. "
                          "Reinstall the project (`pip install -e .`) to register the Prefect monitor")
    return monitors[mode].load()(name, forced=True)
