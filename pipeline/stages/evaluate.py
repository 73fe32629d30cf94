"""`evaluate@<model>`: score every seed's dev-selected checkpoint on dev and test.

Writes `metrics/<model>/eval.json` (provenance block, mean ± std over seeds, per-class F1, a majority-class row),
`metrics/<model>/predictions.parquet`, and `plots/<model>/confusion.csv|png` for the test split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.batch import IGNORE_INDEX
from pipeline import paths
from pipeline.device import resolve_device
from pipeline.provenance import dvc_lock_inputs, dvc_lock_outputs, provenance
from pipeline.runner import Runner
from pipeline.tables import write_frame
from pipeline.training.data import DialogueData, load_dialogue_data
from pipeline.training.metrics import aggregate_scores, classification_scores, confusion_matrix
from pipeline.training.mrd import TEXT_SUFFIX, refinements, resolve_model_spec
from pipeline.training.plots import write_confusion_csv, write_confusion_png
from pipeline.training.trainer import (
    ModelSpec,
    TrainConfig,
    feature_fingerprints,
    feature_stats,
    load_checkpoint,
    predict_dialogues,
    read_checkpoint_config,
    write_json,
)

PROTOCOL = "best epoch selected on dev weighted F1; test reported; mean ± std over seeds"
SPLITS = ("dev", "test")


def eval_provenance(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The block `eval.json` starts with, so its scores name the code, params and checkpoints they came from.

    `params` are the model's block (or the refinement that wrote it) and `train`; `inputs` are the md5s
    `dvc.lock` holds for the stage that trained the checkpoints: what it read and the checkpoints
    themselves (empty outside DVC).
    """
    refined = next((key for key in refinements(params) if name in (key, f"{key}{TEXT_SUFFIX}")), None)
    if refined is not None:
        block, stage = {"refine": {refined: params["refine"][refined]}}, f"refine@{refined}"
    else:
        block, stage = {"models": {name: params["models"][name]}}, f"train@{name}"
    workspace = Path.cwd()  # stages run at the DVC workspace root, where dvc.lock is
    inputs = {**dvc_lock_inputs(stage, workspace), **dvc_lock_outputs(stage, workspace)}
    return provenance({**block, "train": params.get("train", {})}, inputs, ["-m", "pipeline", "evaluate", name])


def prediction_frame(utt_ids: list[str], split: str, seed: int, truth: np.ndarray, predicted: np.ndarray,
                     labels: list[str]) -> pd.DataFrame:
    """One seed's predictions on one split as rows of `predictions.parquet` (unlabelled truth -> None)."""
    return pd.DataFrame({
        "utt_id": utt_ids,
        "split": split,
        "seed": seed,
        "label": [labels[t] if t != IGNORE_INDEX else None for t in truth],
        "predicted": [labels[p] for p in predicted],
    })

def _check_checkpoints(spec: ModelSpec, configs: dict[int, dict[str, Any]]) -> None:
    """Refuse to score checkpoints that no longer match the params or the feature files."""
    current = feature_fingerprints(spec.inputs)
    reference = next(iter(configs.values()))
    for seed, config in configs.items():
        if list(config["inputs"]) != list(spec.inputs):
            raise ValueError(
                f"seed {seed} of {spec.name} was trained on {config['inputs']}, params say {list(spec.inputs)}: "
                f"rerun `dvc repro train@{spec.name}`"
            )
        for key in spec.inputs:
            if config["features"][key]["fingerprint"] != current[key]:
                raise ValueError(
                    f"{paths.features_path(key)} changed since seed {seed} of {spec.name} was trained: "
                    f"rerun `dvc repro train@{spec.name}`"
                )
        if config["feature_stats"] != reference["feature_stats"] or config["labels"] != reference["labels"]:
            raise ValueError(
                f"the seeds of {spec.name} were trained on different data: rerun `dvc repro train@{spec.name}`"
            )


def majority_baseline(data: DialogueData) -> dict[str, Any]:
    """Predict the most frequent TRAIN label for every test utterance: the floor a model must beat."""
    counts = data.label_counts("train")
    majority = int(np.argmax(counts))
    truth = np.concatenate([d.labels for d in data.split("test")] or [np.zeros(0, dtype=np.int64)])
    truth = truth[truth != IGNORE_INDEX]
    scores = classification_scores(truth, np.full_like(truth, majority), data.labels)
    return {"label": data.labels[majority], "accuracy": scores["accuracy"], "weighted_f1": scores["weighted_f1"]}


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    spec = resolve_model_spec(params, arg)  # a `models` block, or an output of a `refine` block (e.g. MRD)
    cfg = TrainConfig.for_model(params, spec.name)
    cfg.apply_threads()
    if spec.folds is not None:  # e.g. leave-one-session-out: every fold's checkpoints on its held-out session
        from pipeline.stages.loso import evaluate_folds

        return evaluate_folds(runner, spec, cfg, eval_provenance(params, spec.name))
    device = resolve_device(cfg.device, "train.device")
    model_dir = paths.MODELS_DIR / spec.name
    configs = {seed: read_checkpoint_config(model_dir / f"seed{seed}") for seed in cfg.seeds}
    _check_checkpoints(spec, configs)
    first = configs[cfg.seeds[0]]
    data = load_dialogue_data(spec.inputs, stats=feature_stats(first), **spec.sequences.loader_kwargs())
    if data.labels != first["labels"]:
        raise ValueError(f"the manifest's labels {data.labels} differ from the checkpoint's {first['labels']}")
    for split in SPLITS:
        if not any((d.labels != IGNORE_INDEX).any() for d in data.split(split)):
            raise ValueError(f"the {split} split has no labeled utterances: nothing to evaluate")

    step = f"evaluate {spec.name}"
    runner.hook(step, completed=0, total=len(cfg.seeds))
    frames, per_seed = [], []
    for done, seed in enumerate(cfg.seeds, 1):
        model, config = load_checkpoint(model_dir / f"seed{seed}", device)
        entry: dict[str, Any] = {"seed": seed, "best_epoch": config["best_epoch"]}
        for split in SPLITS:
            utt_ids, truth, predicted = predict_dialogues(
                model, data.split(split), data.inputs, cfg.batch_dialogues, device
            )
            labeled = truth != IGNORE_INDEX
            entry[split] = classification_scores(truth[labeled], predicted[labeled], data.labels)
            frames.append(prediction_frame(utt_ids, split, seed, truth, predicted, data.labels))
        per_seed.append(entry)
        runner.hook(step, completed=done, total=len(cfg.seeds))

    predictions = pd.concat(frames, ignore_index=True)
    report = {
        **eval_provenance(params, spec.name),
        "model": spec.name,
        "protocol": PROTOCOL,
        "std_kind": "sample standard deviation over seeds (ddof=1); null with a single seed",
        "seeds": list(cfg.seeds),
        "dev": aggregate_scores([s["dev"] for s in per_seed]),
        "test": aggregate_scores([s["test"] for s in per_seed]),
        "majority_baseline": majority_baseline(data),
        "per_seed": per_seed,
    }
    metrics_dir = paths.METRICS_DIR / spec.name
    write_json(metrics_dir / "eval.json", report)
    write_frame(predictions, metrics_dir / "predictions.parquet")

    test = predictions[(predictions["split"] == "test") & predictions["label"].notna()]
    plots_dir = paths.PLOTS_DIR / spec.name
    write_confusion_csv(test["label"], test["predicted"], plots_dir / "confusion.csv")
    index = {label: i for i, label in enumerate(data.labels)}
    matrix = confusion_matrix(test["label"].map(index), test["predicted"].map(index), len(data.labels))
    title = f"{spec.name}: test, {len(cfg.seeds)} seed(s), rows normalised"
    write_confusion_png(matrix, data.labels, plots_dir / "confusion.png", title)
    return {
        "model": spec.name,
        "seeds": len(cfg.seeds),
        "test_weighted_f1": report["test"]["weighted_f1"],
        "test_accuracy": report["test"]["accuracy"],
        "majority_weighted_f1": report["majority_baseline"]["weighted_f1"],
    }
