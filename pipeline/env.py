"""Environment the project sets for itself: offline hubs, no telemetry, project-local Prefect home."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("core", "extractors", "flows", "models", "pipeline")  # also the names of their loggers


def apply_project_env() -> None:
    """Set offline and privacy defaults without overriding what a user set explicitly."""
    defaults = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DVC_NO_ANALYTICS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(PROJECT_ROOT / ".prefect"),
        "PREFECT_CLIENT_MAX_RETRIES": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "TOKENIZERS_PARALLELISM": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": ",".join(PROJECT_PACKAGES),  # Prefect's handler on our loggers too
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",  # our messages outside a flow run stay local
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
