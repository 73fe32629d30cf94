"""The Prefect task runner a stage flow uses, chosen by environment so stage code never changes.

`PIPELINE_TASK_RUNNER`: thread (default), process, dask (needs prefect-dask; `DASK_ADDRESS` for an
existing cluster) or ray (needs prefect-ray; `RAY_ADDRESS`). `PIPELINE_WORKERS` sets the pool size.
"""

from __future__ import annotations

import os

from pipeline.config import ConfigError

RUNNERS = ("thread", "process", "dask", "ray")


def task_runner(default_workers: int = 2):
    kind = os.environ.get("PIPELINE_TASK_RUNNER", "thread")
    workers = int(os.environ.get("PIPELINE_WORKERS", default_workers))
    if kind == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner  # optional extra: pip install prefect-dask

        address = os.environ.get("DASK_ADDRESS")
        return DaskTaskRunner(address=address) if address else DaskTaskRunner(cluster_kwargs={"n_workers": workers})
    if kind == "ray":
        from prefect_ray import RayTaskRunner  # optional extra: pip install prefect-ray

        return RayTaskRunner(address=os.environ.get("RAY_ADDRESS"))
    raise ConfigError(f"PIPELINE_TASK_RUNNER is {kind!r}; allowed values: {', '.join(RUNNERS)}")
