"""The whole-pipeline flow: runs the DVC stages one by one, for runs started from Prefect.

DVC still decides what is stale (`dvc repro --single-item` skips an up-to-date stage); this flow
only gives a UI button, a schedule or a deployment something to call. Each stage's own flow run is
tagged with this run's id so they group together in the UI.

    python -m flows.pipeline            # run every stage in order
    python -m flows.pipeline --dry      # list the order only
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

import pipeline  # noqa: F401  (project environment)


def stage_order(repo_dir: str = ".") -> list[str]:
    """Stage names (foreach items expanded) in dependency order."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(repo_dir) as repo:
        graph = repo.index.graph
        return [stage.addressing for stage in reversed(list(nx.topological_sort(graph)))
                if getattr(stage, "cmd", None)]


@task(cache_policy=NO_CACHE, retries=0)
def repro_stage(name: str, run_tag: str) -> str:
    logger = get_run_logger()
    env = {**os.environ, "PIPELINE_RUN_TAG": run_tag}
    result = subprocess.run(["dvc", "repro", "--single-item", name], env=env, capture_output=True, text=True)
    logger.info("%s\n%s", name, (result.stdout + result.stderr)[-4000:])
    if result.returncode != 0:
        raise RuntimeError(f"dvc repro --single-item {name} exited with {result.returncode}")
    return result.stdout


@flow(name="merc-pipeline")
def merc_pipeline(stages: list[str] | None = None) -> list[str]:
    from prefect.runtime import flow_run

    run_tag = f"pipeline-{flow_run.get_id()}"
    order = stages or stage_order()
    for name in order:
        repro_stage(name, run_tag)
    return order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry", action="store_true", help="print the stage order and exit")
    parser.add_argument("stages", nargs="*", help="stage names (default: all, in order)")
    options = parser.parse_args()
    if options.dry:
        print("\n".join(options.stages or stage_order()))
        return 0
    merc_pipeline(options.stages or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
