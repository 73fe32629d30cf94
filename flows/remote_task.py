"""The Prefect task that runs one item in another process (`run.runner` processes, dask or ray).

Dask and Ray pickle a task by reference, so it must be a module-level object under its own name;
it takes and returns file paths only (`pipeline.task_runners.run_task`).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from pipeline.task_runners import run_task


@task(cache_policy=NO_CACHE, persist_result=False)
def run_item(function_file: str, item: Any, result_file: str, workdir: str) -> str:
    return run_task(function_file, item, result_file, workdir)
