"""`refine@<name>`: a `refine` block's procedure (MRD) over two trained models, seed by seed.

Writes `artifacts/models/<name>/` and `artifacts/models/<name>_text/` (the refined multimodal and
text models, scored by `evaluate_refined@<name>` like any model), `metrics/<name>/train.json` and
per-epoch curves in `dvclive/<name>/`.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline import paths
from pipeline.checkpoints import write_json
from pipeline.runner import Runner
from pipeline.training.metrics import aggregate_scores
from pipeline.training.mrd import PROTOCOL, MRDConfig, RefinedSeed, refine
from pipeline.training.mrd.curriculum import CATEGORY_NAMES

log = logging.getLogger(__name__)


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    """MRD over two trained models; curves in dvclive, summary in `metrics/<name>/train.json`."""
    cfg = MRDConfig.from_params(params, arg)
    from dvclive import Live

    live = Live(dir=str(paths.DVCLIVE_DIR / cfg.name), save_dvc_exp=False, dvcyaml=None)

    def on_epoch(seed: int, record: dict[str, float]) -> None:
        live.step = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch":
                live.log_metric(f"seed{seed}/{key}", float(value))
        runner.hook(f"refine {cfg.name} seed {seed}", completed=int(record["epoch"]), total=cfg.epochs)

    def on_seed(result: RefinedSeed) -> None:
        log.info(
            f"[refine@{cfg.name}] seed {result.multi.seed}: categories {result.curriculum['counts']}"
            f"{' (out of fold)' if result.curriculum['out_of_fold'] else ''}; dev weighted F1 "
            f"multimodal {result.multi.dev['weighted_f1']:.4f} (epoch {result.multi.best_epoch}), "
            f"text {result.text.dev['weighted_f1']:.4f} (epoch {result.text.best_epoch})"
        )

    try:
        outcome = refine(params, cfg.name, on_epoch, on_seed)
    finally:
        live.end()
    report = {
        "model": cfg.name,
        "procedure": "mrd",
        "refines": {"multimodal": cfg.multimodal, "text": cfg.text},
        "outputs": {"multimodal": cfg.name, "text": cfg.text_output},
        "protocol": PROTOCOL,
        "seeds": [r.multi.seed for r in outcome.seeds],
        "dev": {
            "multimodal": aggregate_scores([r.multi.dev for r in outcome.seeds]),
            "text": aggregate_scores([r.text.dev for r in outcome.seeds]),
        },
        "per_seed": [
            {
                "seed": r.multi.seed,
                "multimodal": r.multi.summary(),
                "text": r.text.summary(),
                "curriculum": r.curriculum,
            }
            for r in outcome.seeds
        ],
        "categories": list(CATEGORY_NAMES),
    }
    write_json(paths.METRICS_DIR / cfg.name / "train.json", report)
    return {
        "model": cfg.name,
        "outputs": [cfg.name, cfg.text_output],
        "seeds": len(outcome.seeds),
        "dev_weighted_f1": {k: v["weighted_f1"] for k, v in report["dev"].items()},
        "out_of_fold": [r.curriculum["out_of_fold"] for r in outcome.seeds],
    }
