"""The Prefect task runner a stage flow uses: the one `run.runner` names, so stage code never changes.

threads -> ThreadPoolTaskRunner, processes -> ProcessPoolTaskRunner, dask -> prefect-dask's
DaskTaskRunner (on `run.address`, else a local cluster of `run.workers` single-threaded processes),
ray -> prefect-ray's RayTaskRunner (on `run.address`, else a local Ray instance).
"""

from __future__ import annotations

from pipeline.runner import RunConfig


def task_runner(cfg: RunConfig):
    if cfg.runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    if cfg.runner == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=cfg.workers)
    if cfg.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.address:
            return DaskTaskRunner(address=cfg.address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None})
    from prefect_ray import RayTaskRunner

    if cfg.address:
        return RayTaskRunner(address=cfg.address)
    return RayTaskRunner(init_kwargs={"num_cpus": cfg.workers, "include_dashboard": False})
