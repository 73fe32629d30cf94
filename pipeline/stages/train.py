"""`train@<model>`: fit one configured model per seed, selecting each on dev weighted F1.

Writes `artifacts/models/<model>/seed<k>/` (safetensors + config), `metrics/<model>/train.json`
and per-epoch curves in `dvclive/<model>/` (one `seed<k>/` series per seed, for `dvc plots show`).
"""

from __future__ import annotations

import sys
from typing import Any

from pipeline import paths
from pipeline.runner import Runner
from pipeline.training.metrics import aggregate_scores
from pipeline.training.trainer import ModelSpec, SeedResult, TrainConfig, train_model, write_json

PROTOCOL = "best epoch selected on dev weighted F1; test never seen during training; mean ± std (ddof=1) over seeds"


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    spec = ModelSpec.from_params(params, arg)
    cfg = TrainConfig.for_model(params, spec.name)
    cfg.apply_threads()
    if spec.folds is not None:  # e.g. leave-one-session-out: one model per fold
        from pipeline.stages.loso import train_folds

        return train_folds(runner, spec, cfg)
    from dvclive import Live

    live = Live(dir=str(paths.DVCLIVE_DIR / spec.name), save_dvc_exp=False, dvcyaml=None)

    def on_epoch(seed: int, record: dict[str, float]) -> None:
        live.step = int(record["epoch"])
        for name, value in record.items():  # train_loss, train_<loss term>, dev_<score>
            if name != "epoch":
                live.log_metric(f"seed{seed}/{name}", float(value))
        runner.hook(f"train {spec.name} seed {seed}", int(record["epoch"]), cfg.epochs)

    def on_seed(result: SeedResult) -> None:
        runner.hook(f"train {spec.name} seed {result.seed}", cfg.epochs, cfg.epochs)
        origin = "restored from cache" if result.cached else f"trained {result.epochs_run} epochs"
        print(
            f"[train@{spec.name}] seed {result.seed}: {origin}, best epoch {result.best_epoch}, "
            f"dev weighted F1 {result.dev['weighted_f1']:.4f}",
            file=sys.stderr,
        )

    try:
        outcome = train_model(spec, cfg, on_epoch=on_epoch, on_seed=on_seed)
    finally:
        live.end()
    per_seed = [r.summary() for r in outcome.results]
    report = {
        "model": spec.name,
        "kind": spec.kind,
        "inputs": list(spec.inputs),
        "protocol": PROTOCOL,
        "seeds": list(cfg.seeds),
        "dev": aggregate_scores([r.dev for r in outcome.results]),
        "per_seed": per_seed,
        "restored_from_cache": [r.seed for r in outcome.results if r.cached],
        "missing_features": outcome.data.missing,
        "unlabeled_utterances": outcome.data.unlabeled,
    }
    write_json(paths.METRICS_DIR / spec.name / "train.json", report)
    return {
        "model": spec.name,
        "seeds": len(outcome.results),
        "restored_from_cache": len(report["restored_from_cache"]),
        "dev_weighted_f1": report["dev"]["weighted_f1"],
        "missing_features": outcome.data.missing,
    }
