"""Scoring trained checkpoints: refuse stale ones, predict, score, and write what `evaluate` reports.

Shared by every protocol (`pipeline.training.protocols`): the checks that a checkpoint still matches
the params and the feature files, the per-utterance prediction rows, the majority-class floor, and
the files `dvc metrics show` / `dvc plots show` read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.batch import IGNORE_INDEX
from pipeline import paths
from pipeline.checkpoints import write_json
from pipeline.tables import write_frame
from pipeline.training.cache import feature_fingerprints
from pipeline.training.config import ModelSpec
from pipeline.training.data import DialogueData
from pipeline.training.metrics import classification_scores, confusion_matrix
from pipeline.training.plots import write_confusion_csv, write_confusion_png

SPLITS = ("dev", "test")


def check_checkpoints(spec: ModelSpec, configs: Mapping[int, Mapping[str, Any]]) -> None:
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


def check_scorable(data: DialogueData, labels: Sequence[str], where: str = "") -> None:
    """The data must carry the checkpoint's label set and labelled dev and test utterances.

    `where` prefixes the message (e.g. `fold-Ses01: `) when several partitions are scored.
    """
    if data.labels != list(labels):
        raise ValueError(f"the manifest's labels {data.labels} differ from the checkpoint's {list(labels)}")
    for split in SPLITS:
        if not any((d.labels != IGNORE_INDEX).any() for d in data.split(split)):
            raise ValueError(f"{where}the {split} split has no labeled utterances: nothing to evaluate")


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


def majority_baseline(data: DialogueData) -> dict[str, Any]:
    """Predict the most frequent TRAIN label for every test utterance: the floor a model must beat."""
    counts = data.label_counts("train")
    majority = int(np.argmax(counts))
    truth = np.concatenate([d.labels for d in data.split("test")] or [np.zeros(0, dtype=np.int64)])
    truth = truth[truth != IGNORE_INDEX]
    scores = classification_scores(truth, np.full_like(truth, majority), data.labels)
    return {"label": data.labels[majority], "accuracy": scores["accuracy"], "weighted_f1": scores["weighted_f1"]}


def labelled_test_utterances(data: DialogueData) -> int:
    return int(sum((d.labels != IGNORE_INDEX).sum() for d in data.split("test")))


def write_evaluation(name: str, report: Mapping[str, Any], predictions: pd.DataFrame, labels: Sequence[str],
                     title: str) -> None:
    """`metrics/<name>/eval.json`, `predictions.parquet`, and the test confusion matrix (csv + png)."""
    metrics_dir = paths.METRICS_DIR / name
    write_json(metrics_dir / "eval.json", report)
    write_frame(predictions, metrics_dir / "predictions.parquet")
    test = predictions[(predictions["split"] == "test") & predictions["label"].notna()]
    plots_dir = paths.PLOTS_DIR / name
    write_confusion_csv(test["label"], test["predicted"], plots_dir / "confusion.csv")
    index = {label: i for i, label in enumerate(labels)}
    matrix = confusion_matrix(test["label"].map(index), test["predicted"].map(index), len(labels))
    write_confusion_png(matrix, list(labels), plots_dir / "confusion.png", title)
