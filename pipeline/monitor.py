"""Deciding whether a stage reports to Prefect: only when a server answers, never by accident.

The address comes from `PREFECT_API_URL`, else from `.prefect/server.json` written by `make ui`,
so a `dvc repro` in another terminal shows up in the UI without exporting anything.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

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


def monitoring_api() -> str | None:
    """The Prefect API to report to, or None to run plain. `PIPELINE_ORCHESTRATOR` overrides."""
    mode = os.environ.get("PIPELINE_ORCHESTRATOR", "auto")
    if mode == "plain":
        return None
    api = configured_api()
    if api and api_healthy(api):
        return api
    if mode == "prefect":
        return api or ""  # forced: Prefect's own default (ephemeral server) when no URL is set
    return None
