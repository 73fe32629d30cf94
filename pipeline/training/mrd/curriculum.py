"""MRD's reverse curriculum: categorise training utterances, order them, and pace the active pool.

Categories come from the two pre-trained models' correctness on TRAINING utterances only: Difficult
(exactly one model right), General (both wrong), Simple (both right). They are presented in that
order, hardest first: within a category by descending summed loss of the two models, ties broken
by the run's seed. The pool of active utterances grows each pacing step,
r_e = min(1, r0 * (floor(e / step) + 1)) for 0-indexed epoch e, and earlier utterances stay in it.

The predictions are the pre-trained pair's own on the training split or, when those make it nearly all
Simple (the models fit their training data), out-of-fold ones: K folds by dialogue, each retraining
both backbones with the ordinary trainer on the other folds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from models.batch import IGNORE_INDEX
from models.registry import build_model
from pipeline.device import resolve_device
from pipeline.training.config import ModelSpec, TrainConfig
from pipeline.training.data import DialogueData, load_dialogue_data
from pipeline.training.mrd.config import MRDConfig
from pipeline.training.mrd.pairs import PairedData, utterance_logits
from pipeline.training.trainer import fit_seed

DIFFICULT, GENERAL, SIMPLE = 0, 1, 2
CATEGORY_NAMES = ("difficult", "general", "simple")


def categorize(pred_multi: np.ndarray, pred_text: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per utterance: DIFFICULT when exactly one model is right, GENERAL when both are wrong, SIMPLE otherwise."""
    right_m = np.asarray(pred_multi) == np.asarray(labels)
    right_t = np.asarray(pred_text) == np.asarray(labels)
    return np.where(right_m ^ right_t, DIFFICULT, np.where(~right_m & ~right_t, GENERAL, SIMPLE)).astype(np.int64)


def category_counts(categories: np.ndarray) -> dict[str, int]:
    return {name: int((categories == code).sum()) for code, name in enumerate(CATEGORY_NAMES)}


def curriculum_order(categories: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices: Difficult, then General, then Simple; each by descending score; random tie breaks."""
    ties = rng.permutation(len(categories))
    return np.lexsort((ties, -np.asarray(scores, dtype=np.float64), np.asarray(categories)))


def pacing_ratio(epoch: int, r0: float, step: int) -> float:
    """Share of the ordered training utterances active in 0-indexed `epoch`."""
    return min(1.0, r0 * (epoch // step + 1))


@dataclass
class Curriculum:
    """The ordered training utterances with their categories (computed once, or again when dynamic)."""

    utt_ids: list[str]
    categories: np.ndarray
    order: np.ndarray

    def __post_init__(self) -> None:
        self.category_of: dict[str, int] = dict(zip(self.utt_ids, self.categories.tolist()))

    @classmethod
    def build(
        cls,
        utt_ids: Sequence[str],
        pred_multi: np.ndarray,
        pred_text: np.ndarray,
        labels: np.ndarray,
        scores: np.ndarray,
        rng: np.random.Generator,
    ) -> Curriculum:
        categories = categorize(pred_multi, pred_text, labels)
        return cls(list(utt_ids), categories, curriculum_order(categories, scores, rng))

    def counts(self) -> dict[str, int]:
        return category_counts(self.categories)

    def difficult_share(self) -> float:
        return float((self.categories == DIFFICULT).mean()) if len(self.categories) else 0.0

    def pool(self, ratio: float) -> set[str]:
        """The first ceil(ratio * N) utterances of the order."""
        size = min(len(self.order), math.ceil(ratio * len(self.order) - 1e-9))
        return {self.utt_ids[i] for i in self.order[:size]}

    def dialogue_priority(self, dialogue_utts: Sequence[str]) -> tuple[float, float]:
        """(share of Difficult, share of General) of a dialogue's categorised utterances ("order" mode)."""
        codes = [self.category_of[u] for u in dialogue_utts if u in self.category_of]
        if not codes:
            return 0.0, 0.0
        codes_array = np.asarray(codes)
        return float((codes_array == DIFFICULT).mean()), float((codes_array == GENERAL).mean())


def _per_utterance_ce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


def build_curriculum(
    ids: Sequence[str], labels: np.ndarray, logits_m: np.ndarray, logits_t: np.ndarray, rng: np.random.Generator
) -> Curriculum:
    """Categories and order over the labeled utterances given both models' logits on them."""
    keep = labels != IGNORE_INDEX
    kept = [u for u, k in zip(ids, keep) if k]
    y, zm, zt = labels[keep], logits_m[keep], logits_t[keep]
    scores = _per_utterance_ce(zm, y) + _per_utterance_ce(zt, y) if len(y) else np.zeros(0)
    return Curriculum.build(kept, zm.argmax(1), zt.argmax(1), y, scores, rng)


def out_of_fold_logits(
    specs: tuple[ModelSpec, ModelSpec],
    data: DialogueData,
    train_cfgs: tuple[TrainConfig, TrainConfig],
    seed: int,
    folds: int,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """K-fold (by dialogue) out-of-fold logits of both backbones over the training split.

    Each fold retrains both backbones from scratch with the ordinary trainer on the other folds
    (selected on dev) and predicts the held-out one; test dialogues keep playing "test" and are unused.
    """
    train = [d.dialogue_id for d in data.split("train")]
    if len(train) < folds:
        raise ValueError(f"{len(train)} training dialogues cannot be split into {folds} out-of-fold folds")
    rng = np.random.default_rng([seed, 17])
    chunks = np.array_split(rng.permutation(len(train)), folds)
    base = {d.dialogue_id: split for split, dialogues in data.splits.items() for d in dialogues}
    found: dict[str, dict[str, np.ndarray]] = {"multi": {}, "text": {}}
    labels_of: dict[str, int] = {}
    for chunk in chunks:
        held = {train[i] for i in chunk}
        split_of = {d: ("heldout" if d in held else s) for d, s in base.items()}
        for role, spec, train_cfg in zip(("multi", "text"), specs, train_cfgs):
            device = resolve_device(train_cfg.device, "train.device")
            fold_data = load_dialogue_data(spec.inputs, split_of=split_of, **spec.sequences.loader_kwargs())
            result = fit_seed(spec, fold_data, train_cfg, seed)
            model = build_model(spec.kind, spec.params, fold_data.input_dims, len(fold_data.labels)).to(device)
            model.load_state_dict(result.state)
            ids, labels, logits = utterance_logits(
                model, fold_data.split("heldout"), fold_data.inputs, train_cfg.batch_dialogues, device
            )
            found[role].update(zip(ids, logits))
            labels_of.update(zip(ids, labels.tolist()))
    ids = [u for d in data.split("train") for u in d.utt_ids]
    stack = lambda role: np.stack([found[role][u] for u in ids])  # noqa: E731
    return ids, np.array([labels_of[u] for u in ids], dtype=np.int64), stack("multi"), stack("text")


def categorise_training_split(
    pair: PairedData, models: tuple[nn.Module, nn.Module], train_cfg: TrainConfig, device: str, rng: np.random.Generator
) -> Curriculum:
    """Curriculum from both models' current predictions on the TRAIN split (labeled utterances only)."""
    ids, labels, logits_m = utterance_logits(
        models[0], pair.multi.split("train"), pair.multi.inputs, train_cfg.batch_dialogues, device
    )
    _, _, logits_t = utterance_logits(
        models[1], pair.text.split("train"), pair.text.inputs, train_cfg.batch_dialogues, device
    )
    return build_curriculum(ids, labels, logits_m, logits_t, rng)


def initial_curriculum(
    cfg: MRDConfig,
    specs: tuple[ModelSpec, ModelSpec],
    pair: PairedData,
    models: tuple[nn.Module, nn.Module],
    train_cfg: TrainConfig,
    seed: int,
    rng: np.random.Generator,
    fold_cfgs: tuple[TrainConfig, TrainConfig] | None = None,
) -> tuple[Curriculum, dict[str, Any]]:
    """Categories from the pre-trained pair on the training split, or out-of-fold when that is nearly all Simple."""
    device = resolve_device(train_cfg.device, "train.device")
    curriculum = categorise_training_split(pair, models, train_cfg, device, rng)
    info: dict[str, Any] = {"in_sample_counts": curriculum.counts(), "out_of_fold": False}
    rule = cfg.curriculum
    wanted = rule.oof == "always" or (rule.oof == "auto" and curriculum.difficult_share() < rule.oof_threshold)
    if wanted and cfg.curriculum.mode != "none":
        cfgs = fold_cfgs or (train_cfg, train_cfg)
        ids, labels, logits_m, logits_t = out_of_fold_logits(specs, pair.multi, cfgs, seed, rule.oof_folds)
        curriculum = build_curriculum(ids, labels, logits_m, logits_t, rng)
        info["out_of_fold"] = True
        for model in models:
            model.train()
    info["counts"] = curriculum.counts()
    info["difficult_share"] = curriculum.difficult_share()
    return curriculum, info
