"""MRD's reverse curriculum: categorise training utterances, order them, and pace the active pool.

Categories come from the two pre-trained models' correctness on TRAINING utterances only: Difficult
(exactly one model right), General (both wrong), Simple (both right). They are presented in that
order, hardest first: within a category by descending summed loss of the two models, ties broken
by the run's seed. The pool of active utterances grows each pacing step,
r_e = min(1, r0 * (floor(e / step) + 1)) for 0-indexed epoch e, and earlier utterances stay in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
