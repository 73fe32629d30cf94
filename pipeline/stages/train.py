"""`train@<model>`: fit one configured model per seed (per fold with `folds:`), selecting each on dev weighted F1.

Writes `artifacts/models/<model>/seed<k>/` (safetensors + config; `fold-<session>/seed<k>/` under
leave-one-session-out), `metrics/<model>/train.json` and per-epoch curves in `dvclive/<model>/`
(one `seed<k>/` series per seed, for `dvc plots show`).
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from pipeline import paths
from pipeline.checkpoints import write_json
from pipeline.runner import Runner
from pipeline.training.cache import TrainOutcome, train_model
from pipeline.training.config import ModelSpec, TrainConfig
from pipeline.training.protocols import Partition, protocol_for
from pipeline.training.trainer import SeedResult

log = logging.getLogger(__name__)


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    spec = ModelSpec.from_params(params, arg)
    cfg = TrainConfig.for_model(params, spec.name)
    cfg.apply_threads()
    protocol = protocol_for(spec)
    partitions = protocol.partitions()
    model_dir = paths.MODELS_DIR / spec.name
    shutil.rmtree(model_dir, ignore_errors=True)
    from dvclive import Live

    live = Live(dir=str(paths.DVCLIVE_DIR / spec.name), save_dvc_exp=False, dvcyaml=None)
    trained: list[tuple[Partition, TrainOutcome]] = []
    try:
        for partition in partitions:
            where = f"{partition.dirname} " if partition.dirname else ""
            curves = f"{partition.dirname}/" if partition.dirname else ""

            def on_epoch(seed: int, record: dict[str, float], where: str = where, curves: str = curves) -> None:
                live.step = int(record["epoch"])
                for name, value in record.items():  # train_loss, train_<loss term>, dev_<score>
                    if name != "epoch":
                        live.log_metric(f"{curves}seed{seed}/{name}", float(value))
                runner.hook(f"train {spec.name} {where}seed {seed}", completed=int(record["epoch"]), total=cfg.epochs)

            def on_seed(result: SeedResult, where: str = where) -> None:
                runner.hook(f"train {spec.name} {where}seed {result.seed}", completed=cfg.epochs, total=cfg.epochs)
                origin = "restored from cache" if result.cached else f"trained {result.epochs_run} epochs"
                log.info(
                    f"[train@{spec.name}] {where}seed {result.seed}: {origin}, best epoch {result.best_epoch}, "
                    f"dev weighted F1 {result.dev['weighted_f1']:.4f}"
                )

            outcome = train_model(
                spec, cfg, on_epoch=on_epoch, on_seed=on_seed, out_dir=model_dir / partition.dirname,
                fold=partition.fold,
            )
            trained.append((partition, outcome))
    finally:
        live.end()
    report, summary = protocol.train_report(spec, cfg, trained)
    write_json(paths.METRICS_DIR / spec.name / "train.json", report)
    return summary
