"""How a model is trained and scored: on the manifest's own split, or fold by fold.

`Holdout` is one partition, the manifest's train/dev/test split, with checkpoints in `seed<k>/`.
`SessionFolds` (a model block's `folds: session`, leave-one-session-out) is one partition per
recorded session: every seed is trained on the other sessions' train share, selected on their dev
share, and scored once on the held-out session, with checkpoints in `fold-<session>/seed<k>/`; its
scores are the mean over folds per seed, then mean ± std over seeds, and every fold's own scores and
class counts are kept too. The `train` and `evaluate` stages loop over `partitions()` once; each
protocol shapes its own `train.json` and `eval.json`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.manifest import read_manifest
from pipeline.training.cache import TrainOutcome
from pipeline.training.config import ModelSpec, TrainConfig
from pipeline.training.data import DialogueData
from pipeline.training.evaluation import labelled_test_utterances, majority_baseline
from pipeline.training.metrics import aggregate_scores, classification_scores, unweighted_accuracy
from pipeline.training.splits import Fold, session_folds


@dataclass(frozen=True)
class Partition:
    """One way the manifest's dialogues are split for one set of seeds; `fold` is None for the manifest's split."""

    fold: Fold | None = None

    @property
    def dirname(self) -> str:
        """Checkpoint subfolder under `artifacts/models/<model>/`, also how logs name the partition ("" for none)."""
        return self.fold.dirname if self.fold is not None else ""

    def split_of(self) -> dict[str, str] | None:
        return self.fold.split_of if self.fold is not None else None


@dataclass
class ScoredPartition:
    """Every seed's scores on one partition, with the data they were computed on."""

    partition: Partition
    data: DialogueData
    per_seed: dict[int, dict[str, Any]]  # seed -> {"best_epoch", "dev", "test"}


def mean_over_folds(scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The per-key mean of several folds' score dicts (nested dicts such as per_class_f1 per key)."""
    out: dict[str, Any] = {}
    for key, first in scores[0].items():
        if isinstance(first, Mapping):
            out[key] = {name: float(np.mean([s[key][name] for s in scores])) for name in first}
        else:
            out[key] = float(np.mean([s[key] for s in scores]))
    return out


class Holdout:
    """The manifest's own train/dev/test split: one partition, checkpoints in `seed<k>/`."""

    train_protocol = (
        "best epoch selected on dev weighted F1; test never seen during training; mean ± std (ddof=1) over seeds"
    )
    eval_protocol = "best epoch selected on dev weighted F1; test reported; mean ± std over seeds"

    def partitions(self) -> list[Partition]:
        return [Partition()]

    def scores(self, truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        return classification_scores(truth, predicted, labels)

    def train_report(self, spec: ModelSpec, cfg: TrainConfig, trained: Sequence[tuple[Partition, TrainOutcome]]
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`train.json` and the stage's summary."""
        (_, outcome), = trained
        report = {
            "model": spec.name,
            "kind": spec.kind,
            "inputs": list(spec.inputs),
            "protocol": self.train_protocol,
            "seeds": list(cfg.seeds),
            "dev": aggregate_scores([r.dev for r in outcome.results]),
            "per_seed": [r.summary() for r in outcome.results],
            "restored_from_cache": [r.seed for r in outcome.results if r.cached],
            "missing_features": outcome.data.missing,
            "unlabeled_utterances": outcome.data.unlabeled,
        }
        summary = {
            "model": spec.name,
            "seeds": len(outcome.results),
            "restored_from_cache": len(report["restored_from_cache"]),
            "dev_weighted_f1": report["dev"]["weighted_f1"],
            "missing_features": outcome.data.missing,
        }
        return report, summary

    def eval_report(self, spec: ModelSpec, cfg: TrainConfig, scored: Sequence[ScoredPartition]
                    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        """`eval.json` (after the provenance block), the stage's summary and the confusion plot's title."""
        (only,) = scored
        per_seed = [{"seed": seed, **only.per_seed[seed]} for seed in cfg.seeds]
        report = {
            "model": spec.name,
            "protocol": self.eval_protocol,
            "std_kind": "sample standard deviation over seeds (ddof=1); null with a single seed",
            "seeds": list(cfg.seeds),
            "dev": aggregate_scores([s["dev"] for s in per_seed]),
            "test": aggregate_scores([s["test"] for s in per_seed]),
            "majority_baseline": majority_baseline(only.data),
            "per_seed": per_seed,
        }
        summary = {
            "model": spec.name,
            "seeds": len(cfg.seeds),
            "test_weighted_f1": report["test"]["weighted_f1"],
            "test_accuracy": report["test"]["accuracy"],
            "majority_weighted_f1": report["majority_baseline"]["weighted_f1"],
        }
        return report, summary, f"{spec.name}: test, {len(cfg.seeds)} seed(s), rows normalised"


class SessionFolds:
    """Leave-one-session-out: one partition per recorded session, checkpoints in `fold-<session>/seed<k>/`."""

    train_protocol = (
        "leave-one-session-out: per fold, train on the other sessions' train share, select the epoch on their dev "
        "share (dev weighted F1), score the held-out session once; mean over folds per seed, then mean ± std "
        "(ddof=1) over seeds"
    )
    eval_protocol = train_protocol

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def partitions(self) -> list[Partition]:
        frame = read_manifest().frame
        folds = session_folds(frame, self.spec.folds.dev_fraction, self.spec.name)
        return [Partition(fold) for fold in folds]

    def scores(self, truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        scores = classification_scores(truth, predicted, labels)
        scores["unweighted_accuracy"] = unweighted_accuracy(truth, predicted, len(labels))
        return scores

    def train_report(self, spec: ModelSpec, cfg: TrainConfig, trained: Sequence[tuple[Partition, TrainOutcome]]
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
        per_fold: dict[str, Any] = {}
        dev_by_seed: dict[int, list[dict[str, Any]]] = {seed: [] for seed in cfg.seeds}
        restored: dict[str, list[int]] = {}
        for partition, outcome in trained:
            fold = partition.fold
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
        last = trained[-1][1]
        report = {
            "model": spec.name,
            "kind": spec.kind,
            "inputs": list(spec.inputs),
            "protocol": self.train_protocol,
            "folds": [p.fold.name for p, _ in trained],
            "seeds": list(cfg.seeds),
            "dev": aggregate_scores([mean_over_folds(dev_by_seed[seed]) for seed in cfg.seeds]),
            "per_fold": per_fold,
            "restored_from_cache": restored,
            "missing_features": last.data.missing,
            "unlabeled_utterances": last.data.unlabeled,
        }
        summary = {
            "model": spec.name,
            "folds": len(trained),
            "seeds": len(cfg.seeds),
            "restored_from_cache": sum(len(v) for v in restored.values()),
            "dev_weighted_f1": report["dev"]["weighted_f1"],
            "missing_features": last.data.missing,
        }
        return report, summary

    def eval_report(self, spec: ModelSpec, cfg: TrainConfig, scored: Sequence[ScoredPartition]
                    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        folds = [s.partition.fold for s in scored]
        per_fold: dict[str, Any] = {}
        for part, fold in zip(scored, folds):
            per_fold[fold.name] = {
                split: aggregate_scores([part.per_seed[seed][split] for seed in cfg.seeds]) for split in ("dev", "test")
            }
            per_fold[fold.name]["test_utterances"] = labelled_test_utterances(part.data)
        baselines = [majority_baseline(part.data) for part in scored]
        report = {
            "model": spec.name,
            "protocol": self.eval_protocol,
            "std_kind": "sample standard deviation over seeds (ddof=1) of the fold means; null with a single seed",
            "folds": [f.name for f in folds],
            "seeds": list(cfg.seeds),
            **{
                split: aggregate_scores(
                    [mean_over_folds([part.per_seed[seed][split] for part in scored]) for seed in cfg.seeds]
                )
                for split in ("dev", "test")
            },
            "majority_baseline": {
                "accuracy": float(np.mean([b["accuracy"] for b in baselines])),
                "weighted_f1": float(np.mean([b["weighted_f1"] for b in baselines])),
                "label_per_fold": {f.name: b["label"] for f, b in zip(folds, baselines)},
            },
            "per_fold": per_fold,
            "per_seed": [
                {"seed": seed, "folds": {f.name: part.per_seed[seed] for f, part in zip(folds, scored)}}
                for seed in cfg.seeds
            ],
        }
        summary = {
            "model": spec.name,
            "folds": len(folds),
            "seeds": len(cfg.seeds),
            "test_weighted_f1": report["test"]["weighted_f1"],
            "test_accuracy": report["test"]["accuracy"],
            "test_unweighted_accuracy": report["test"]["unweighted_accuracy"],
            "majority_weighted_f1": report["majority_baseline"]["weighted_f1"],
        }
        title = f"{spec.name}: held-out sessions, {len(folds)} folds x {len(cfg.seeds)} seed(s), rows normalised"
        return report, summary, title


def protocol_for(spec: ModelSpec) -> Holdout | SessionFolds:
    """The model block's protocol: its `folds` when set, else the manifest's split."""
    return SessionFolds(spec) if spec.folds is not None else Holdout()
