"""Deciding whether a stage reports to Prefect: only when a server answers, never by accident.

The address comes from `PREFECT_API_URL`, else from `.prefect/server.json` written by `make ui`,
so a `dvc repro` in another terminal shows up in the UI without exporting anything.

`python -m pipeline` finds this module through the `merc_pipeline.monitors` entry point that
`pyproject.toml` registers (`prefect_monitor`), so the pipeline never imports `flows/` itself.
Nothing here imports Prefect: a run without a server pays for none of it.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

SERVER_FILE = Path(".prefect") / "server.json"  # in the DVC workspace, written by `make ui`


def configured_api() -> str | None:
    api = os.environ.get("PREFECT_API_URL")
    if api:
        return api
    if SERVER_FILE.exists():
        try:
            return json.loads(SERVER_FILE.read_text())["api_url"]
        except (ValueError, KeyError):
            return None
    return None


def api_healthy(api: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{api.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def monitoring_api(forced: bool = False) -> str | None:
    """The Prefect API to report to, or None to run plain.

    `forced` (`PIPELINE_ORCHESTRATOR=prefect`) reports even without a healthy server: to the
    configured address, else to Prefect's own default (an ephemeral server).
    """
    api = configured_api()
    if api and api_healthy(api):
        return api
    if forced:
        return api or ""
    return None


class PrefectMonitor:
    """Runs one stage as a Prefect flow reporting to `api`, and bounds Prefect's exit-time flush."""

    def __init__(self, api: str, name: str) -> None:
        from flows.watch import ServerWatch

        self.api = api
        self.watch = ServerWatch(api, name)

    def run(self, stage: str, arg: str | None, params: dict[str, Any]) -> dict[str, Any]:
        from flows.adapter import run_stage_as_flow

        return run_stage_as_flow(stage, arg, params, self.api, watch=self.watch)

    def close(self, code: int) -> None:
        """Prefect flushes events at exit: bounded, and skipped once the server is gone."""
        from flows.adapter import cap_exit_flush

        cap_exit_flush(code, lost=self.watch.lost.is_set())


def prefect_monitor(name: str, forced: bool = False) -> PrefectMonitor | None:
    """The `merc_pipeline.monitors` entry point: a monitor for stage `name` when a server answers."""
    api = monitoring_api(forced)
    return None if api is None else PrefectMonitor(api, name)
