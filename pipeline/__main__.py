"""`python -m pipeline <stage> [arg]` (or `merc <stage> [arg]`): the one entry point every `dvc.yaml` stage calls.

`merc predict VIDEO` runs a trained model on one new recording instead (`pipeline.predict`).

The stage reports to a monitor when one is installed and can report (the Prefect monitor in
`flows/`, registered as an entry point, reports when a Prefect server answers or
`PIPELINE_ORCHESTRATOR=prefect` forces it) and runs plainly with a progress bar otherwise, so
`dvc repro` stays fast offline and gains monitoring for free when `make ui` is running. The summary
is printed as one JSON line on stdout; messages go to stderr through `logging`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from pipeline import logs
from pipeline.config import ConfigError, load_params
from pipeline.dag import under_dvc
from pipeline.item_guard import DiskFull, disk_full, is_disk_full
from pipeline.ledger import FailureRatioExceeded
from pipeline.monitor import StageMonitor, find_monitor
from pipeline.params_check import check_params
from pipeline.stages import STAGE_MODULES, get_stage
from pipeline.task_runners import make_runner

log = logging.getLogger("pipeline")


# oneDNN (torch's CPU kernels) keeps a compiled kernel per tensor shape it meets, up to 1024: MTCNN on
# frames of many sizes and batches of many lengths grew a stage's memory with the corpus (the faces
# stage: 2.6 GiB over 1320 utterances, 1.4 GiB with 8 kept, at the same speed; benchmarks/scale.py).
RUNTIME_ENV = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8"}


def main(argv: list[str] | None = None) -> int:
    for key, value in RUNTIME_ENV.items():  # before any stage imports torch; a user's own value wins
        os.environ.setdefault(key, value)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["predict"]:  # `merc predict VIDEO ...`: one recording, outside the DAG
        from pipeline.predict.__main__ import main as predict

        return predict(argv)
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    parser.add_argument("stage", choices=sorted(STAGE_MODULES))
    parser.add_argument("arg", nargs="?", default=None, help="feature key or model name for per-item stages")
    parser.add_argument("--params", default="params.yaml")
    options = parser.parse_args(argv)
    logs.configure()
    started = time.perf_counter()
    name = options.stage if options.arg is None else f"{options.stage}@{options.arg}"
    monitor: StageMonitor | None = None
    code = 0
    try:
        params = load_params(options.params)
        dvc_yaml, dvc_stage = under_dvc() or (None, None)  # started by DVC: its dvc.yaml must match params
        # every block, before any work: a typo never runs on defaults, a stale DAG never trains
        for warning in check_params(params, dvc_yaml, dvc_stage):
            log.warning("warning: %s", warning)
        monitor = find_monitor(name)
        if monitor is not None:
            summary = monitor.run(options.stage, options.arg, params)
        else:
            runner = make_runner(params)
            try:
                summary = get_stage(options.stage)(params, runner, options.arg)
            finally:
                runner.close()
        summary = {"stage": name, "seconds": round(time.perf_counter() - started, 2), **(summary or {})}
        print(json.dumps(summary, default=str))
    except ConfigError as error:
        log.error("configuration error: %s", error)
        code = 2
    except FailureRatioExceeded as error:
        log.error("%s", error)
        code = 3
    except OSError as error:
        if not is_disk_full(error):
            raise
        message = str(error) if isinstance(error, DiskFull) else str(disk_full(error, options.stage))
        log.error("disk full: %s", message)
        code = 4
    except BaseException:
        code = 1  # a crash keeps its traceback and a failing exit status
        raise
    finally:
        if monitor is not None:
            monitor.close(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
