"""The train and evaluate stages for a model with `folds: session` (leave-one-session-out).

Not a stage of its own: `train` and `evaluate` hand over here when the model block asks for folds.
Per fold (one held-out IEMOCAP session) every seed is trained on the other sessions' train share
and selected on their dev share, then scored once on the held-out session. Reported scores are the
mean over folds per seed, then mean ± std over seeds; every fold's own scores and class counts are
kept too. Outputs go where the default protocol puts them (checkpoints under `fold-<session>/`),
so dvc.yaml needs no change.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.batch import IGNORE_INDEX
from pipeline import paths
from pipeline.device import resolve_device
from pipeline.manifest import read_manifest
from pipeline.runner import Runner
from pipeline.stages.evaluate import SPLITS, _check_checkpoints, majority_baseline, prediction_frame
from pipeline.tables import write_frame
from pipeline.training.data import load_dialogue_data
from pipeline.training.metrics import aggregate_scores, classification_scores, confusion_matrix, unweighted_accuracy
from pipeline.training.plots import write_confusion_csv, write_confusion_png
from pipeline.training.splits import Fold, session_folds
from pipeline.training.trainer import (
    ModelSpec,
    SeedResult,
    TrainConfig,
    feature_stats,
    load_checkpoint,
    predict_dialogues,
    read_checkpoint_config,
    train_model,
    write_json,
)

PROTOCOL = (
    "leave-one-session-out: per fold, train on the other sessions' train share, select the epoch on their dev "
    "share (dev weighted F1), score the held-out session once; mean over folds per seed, then mean ± std "
    "(ddof=1) over seeds"
)


def folds_of(spec: ModelSpec) -> list[Fold]:
    return session_folds(read_manifest().frame, spec.folds.dev_fraction, spec.name)


def mean_over_folds(scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The per-key mean of several folds' score dicts (nested dicts such as per_class_f1 per key)."""
    out: dict[str, Any] = {}
    for key, first in scores[0].items():
        if isinstance(first, Mapping):
            out[key] = {name: float(np.mean([s[key][name] for s in scores])) for name in first}
        else:
            out[key] = float(np.mean([s[key] for s in scores]))
    return out


def train_folds(runner: Runner, spec: ModelSpec, cfg: TrainConfig) -> dict[str, Any]:
    """`train@<model>` under leave-one-session-out: every seed of every fold, one `train.json`."""
    from dvclive import Live

    folds = folds_of(spec)
    model_dir = paths.MODELS_DIR / spec.name
    shutil.rmtree(model_dir, ignore_errors=True)
    live = Live(dir=str(paths.DVCLIVE_DIR / spec.name), save_dvc_exp=False, dvcyaml=None)
    per_fold: dict[str, Any] = {}
    dev_by_seed: dict[int, list[dict[str, Any]]] = {seed: [] for seed in cfg.seeds}
    restored: dict[str, list[int]] = {}
    outcome = None
    try:
        for fold in folds:
            step = f"train {spec.name} {fold.dirname}"

            def on_epoch(seed: int, record: dict[str, float], fold: Fold = fold, step: str = step) -> None:
                live.step = int(record["epoch"])
                for name, value in record.items():
                    if name != "epoch":
                        live.log_metric(f"{fold.dirname}/seed{seed}/{name}", float(value))
                runner.hook(f"{step} seed {seed}", completed=int(record["epoch"]), total=cfg.epochs)

            def on_seed(result: SeedResult, fold: Fold = fold) -> None:
                origin = "restored from cache" if result.cached else f"trained {result.epochs_run} epochs"
                print(
                    f"[train@{spec.name}] {fold.dirname} seed {result.seed}: {origin}, best epoch "
                    f"{result.best_epoch}, dev weighted F1 {result.dev['weighted_f1']:.4f}",
                    file=sys.stderr,
                )

            outcome = train_model(
                spec, cfg, on_epoch=on_epoch, on_seed=on_seed, out_dir=model_dir / fold.dirname, fold=fold
            )
            for result in outcome.results:
                dev_by_seed[result.seed].append(result.dev)
            restored[fold.name] = [r.seed for r in outcome.results if r.cached]
            per_fold[fold.name] = {
                "held_out": fold.held_out,
                "dev_dialogues": fold.dialogues("dev"),
                "class_counts": {
                    split: dict(zip(outcome.data.labels, outcome.data.label_counts(split).tolist()))
                    for split in ("train", "dev", "test")
                },
                "dev": aggregate_scores([r.dev for r in outcome.results]),
                "per_seed": [r.summary() for r in outcome.results],
            }
    finally:
        live.end()
    report = {
        "model": spec.name,
        "kind": spec.kind,
        "inputs": list(spec.inputs),
        "protocol": PROTOCOL,
        "folds": [f.name for f in folds],
        "seeds": list(cfg.seeds),
        "dev": aggregate_scores([mean_over_folds(dev_by_seed[seed]) for seed in cfg.seeds]),
        "per_fold": per_fold,
        "restored_from_cache": restored,
        "missing_features": outcome.data.missing,
        "unlabeled_utterances": outcome.data.unlabeled,
    }
    write_json(paths.METRICS_DIR / spec.name / "train.json", report)
    return {
        "model": spec.name,
        "folds": len(folds),
        "seeds": len(cfg.seeds),
        "restored_from_cache": sum(len(v) for v in restored.values()),
        "dev_weighted_f1": report["dev"]["weighted_f1"],
        "missing_features": outcome.data.missing,
    }


def _scores(truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    labeled = truth != IGNORE_INDEX
    scores = classification_scores(truth[labeled], predicted[labeled], labels)
    scores["unweighted_accuracy"] = unweighted_accuracy(truth[labeled], predicted[labeled], len(labels))
    return scores


def evaluate_folds(runner: Runner, spec: ModelSpec, cfg: TrainConfig, origin: dict[str, Any]) -> dict[str, Any]:
    """`evaluate@<model>` under leave-one-session-out: every fold's checkpoints on its own dev and test.

    `origin` is the provenance block `eval.json` starts with (`evaluate.eval_provenance`).
    """
    device = resolve_device(cfg.device, "train.device")
    folds = folds_of(spec)
    model_dir = paths.MODELS_DIR / spec.name
    frames: list[pd.DataFrame] = []
    per_seed: dict[int, dict[str, Any]] = {seed: {} for seed in cfg.seeds}
    per_fold: dict[str, Any] = {}
    baselines: list[dict[str, Any]] = []
    labels: list[str] = []
    step = f"evaluate {spec.name}"
    runner.hook(step, completed=0, total=len(folds))
    for done, fold in enumerate(folds, 1):
        configs = {seed: read_checkpoint_config(model_dir / fold.dirname / f"seed{seed}") for seed in cfg.seeds}
        _check_checkpoints(spec, configs)
        first = configs[cfg.seeds[0]]
        if first.get("fold") != fold.identity():
            raise ValueError(
                f"{fold.dirname} of {spec.name} was trained on other splits than the manifest gives now: "
                f"rerun `dvc repro train@{spec.name}`"
            )
        data = load_dialogue_data(
            spec.inputs, stats=feature_stats(first), split_of=fold.split_of, **spec.sequences.loader_kwargs()
        )
        labels = data.labels
        if data.labels != first["labels"]:
            raise ValueError(f"the manifest's labels {data.labels} differ from the checkpoint's {first['labels']}")
        for split in SPLITS:
            if not any((d.labels != IGNORE_INDEX).any() for d in data.split(split)):
                raise ValueError(f"{fold.dirname}: the {split} split has no labeled utterances: nothing to evaluate")
        for seed in cfg.seeds:
            model, config = load_checkpoint(model_dir / fold.dirname / f"seed{seed}", device)
            entry: dict[str, Any] = {"best_epoch": config["best_epoch"]}
            for split in SPLITS:
                utt_ids, truth, predicted = predict_dialogues(
                    model, data.split(split), data.inputs, cfg.batch_dialogues, device
                )
                entry[split] = _scores(truth, predicted, data.labels)
                rows = prediction_frame(utt_ids, split, seed, truth, predicted, data.labels)
                frames.append(rows.assign(fold=fold.name))
            per_seed[seed][fold.name] = entry
        per_fold[fold.name] = {
            split: aggregate_scores([per_seed[seed][fold.name][split] for seed in cfg.seeds]) for split in SPLITS
        }
        per_fold[fold.name]["test_utterances"] = int(sum((d.labels != IGNORE_INDEX).sum() for d in data.split("test")))
        baselines.append(majority_baseline(data))
        runner.hook(step, completed=done, total=len(folds))

    report = {
        **origin,
        "model": spec.name,
        "protocol": PROTOCOL,
        "std_kind": "sample standard deviation over seeds (ddof=1) of the fold means; null with a single seed",
        "folds": [f.name for f in folds],
        "seeds": list(cfg.seeds),
        **{
            split: aggregate_scores(
                [mean_over_folds([per_seed[seed][f.name][split] for f in folds]) for seed in cfg.seeds]
            )
            for split in SPLITS
        },
        "majority_baseline": {
            "accuracy": float(np.mean([b["accuracy"] for b in baselines])),
            "weighted_f1": float(np.mean([b["weighted_f1"] for b in baselines])),
            "label_per_fold": {f.name: b["label"] for f, b in zip(folds, baselines)},
        },
        "per_fold": per_fold,
        "per_seed": [{"seed": seed, "folds": per_seed[seed]} for seed in cfg.seeds],
    }
    predictions = pd.concat(frames, ignore_index=True)
    metrics_dir = paths.METRICS_DIR / spec.name
    write_json(metrics_dir / "eval.json", report)
    write_frame(predictions, metrics_dir / "predictions.parquet")
    test = predictions[(predictions["split"] == "test") & predictions["label"].notna()]
    plots_dir = paths.PLOTS_DIR / spec.name
    write_confusion_csv(test["label"], test["predicted"], plots_dir / "confusion.csv")
    index = {label: i for i, label in enumerate(labels)}
    matrix = confusion_matrix(test["label"].map(index), test["predicted"].map(index), len(labels))
    title = f"{spec.name}: held-out sessions, {len(folds)} folds x {len(cfg.seeds)} seed(s), rows normalised"
    write_confusion_png(matrix, labels, plots_dir / "confusion.png", title)
    return {
        "model": spec.name,
        "folds": len(folds),
        "seeds": len(cfg.seeds),
        "test_weighted_f1": report["test"]["weighted_f1"],
        "test_accuracy": report["test"]["accuracy"],
        "test_unweighted_accuracy": report["test"]["unweighted_accuracy"],
        "majority_weighted_f1": report["majority_baseline"]["weighted_f1"],
    }
