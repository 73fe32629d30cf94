"""Confusion outputs of evaluation: the CSV DVC's `confusion` template reads and a PNG for people."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def write_confusion_csv(actual: Sequence[str], predicted: Sequence[str], path: str | Path) -> Path:
    """One row per prediction, columns `actual,predicted` (label names), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame({"actual": list(actual), "predicted": list(predicted)}).to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def row_normalise(matrix: np.ndarray) -> np.ndarray:
    """Each true class's row as fractions (all-zero rows stay zero)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


def write_confusion_png(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str) -> Path:
    """Row-normalised confusion heat map with label names and the fraction in every cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    normalised = row_normalise(matrix)
    size = max(4.0, 0.6 * len(labels) + 2.0)
    figure, axes = plt.subplots(figsize=(size + 1.0, size))
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels=list(labels), rotation=45, ha="right")
    axes.set_yticks(ticks, labels=list(labels))
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            value = normalised[i, j]
            axes.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    os.replace(tmp, path)
    return path
