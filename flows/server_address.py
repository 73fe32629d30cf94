"""Where the Prefect server is and whether it answers: the address lookup every monitor part shares.

The address comes from `PREFECT_API_URL`, else from `.prefect/server.json` written by `make ui`,
so a `dvc repro` in another terminal shows up in the UI without exporting anything. Nothing here
imports Prefect.
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
