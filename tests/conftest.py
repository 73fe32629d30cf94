"""Shared fixtures: the real data folder beside the checkout, small params, thread limits."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ.setdefault("PIPELINE_ORCHESTRATOR", "plain")  # tests opt in to Prefect explicitly

import pipeline  # noqa: E402,F401  (project environment: offline hub, no telemetry)
from pipeline.config import load_params  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"


def _limit_threads() -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


_limit_threads()


@pytest.fixture
def shared_data() -> Path:
    """The real public data folder; tests using it skip when it is absent (a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def base_params() -> dict:
    return load_params(PROJECT / "params.yaml")


@pytest.fixture
def params(base_params) -> dict:
    """A private copy of the project's params for a test to edit."""
    return copy.deepcopy(base_params)
