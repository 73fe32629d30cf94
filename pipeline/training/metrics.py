"""Scores reported for every model: accuracy, weighted / macro / per-class F1, confusion matrix.

Implemented on the confusion matrix with numpy and checked against scikit-learn in the tests.
Macro F1 averages over the classes that occur in the truth or the predictions (scikit-learn's
default); per-class F1 is given for every class, 0 where a class is neither true nor predicted.
Seeds are aggregated as mean and *sample* standard deviation (ddof=1); with one seed the std is
None, because a spread cannot be estimated from one run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """[C, C] counts, rows = true class, columns = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _per_class_f1(matrix: np.ndarray) -> np.ndarray:
    tp = np.diag(matrix).astype(np.float64)
    denominator = matrix.sum(axis=0) + matrix.sum(axis=1)  # 2tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def scores_from_confusion(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """accuracy, weighted_f1, macro_f1 and per_class_f1 {label: f1} from a confusion matrix."""
    total = matrix.sum()
    if total == 0:
        raise ValueError("cannot score an empty set of predictions")
    f1 = _per_class_f1(matrix)
    support = matrix.sum(axis=1)
    seen = (support + matrix.sum(axis=0)) > 0
    return {
        "accuracy": float(np.trace(matrix) / total),
        "weighted_f1": float((f1 * support).sum() / support.sum()) if support.sum() else 0.0,
        "macro_f1": float(f1[seen].mean()),
        "per_class_f1": {str(label): float(v) for label, v in zip(labels, f1)},
    }


def classification_scores(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """All reported scores for integer class predictions (classes index `labels`)."""
    return scores_from_confusion(confusion_matrix(y_true, y_pred, len(labels)), labels)


def unweighted_accuracy(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> float:
    """Mean per-class recall over the classes that occur in the truth (IEMOCAP papers' "UA")."""
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    support = matrix.sum(axis=1)
    if not support.any():
        raise ValueError("cannot score an empty set of predictions")
    return float((np.diag(matrix)[support > 0] / support[support > 0]).mean())


def mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and sample std (ddof=1) over seeds; std is None for a single seed."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("no values to aggregate")
    std = float(array.std(ddof=1)) if array.size > 1 else None
    return {"mean": float(array.mean()), "std": std}


def aggregate_scores(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean ± std of each score over seeds; nested dicts (per_class_f1) are aggregated per key."""
    if not per_seed:
        raise ValueError("no per-seed scores to aggregate")
    out: dict[str, Any] = {}
    for key, first in per_seed[0].items():
        if isinstance(first, Mapping):
            out[key] = {name: mean_std([s[key][name] for s in per_seed]) for name in first}
        else:
            out[key] = mean_std([s[key] for s in per_seed])
    return out


def wilson_interval(hits: int, total: int, z: float = 1.959964) -> tuple[float, float] | None:
    """95 % Wilson score interval of a proportion: honest at small counts and near 0 or 1 (unlike p +- 2 se)."""
    if total <= 0:
        return None
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)
