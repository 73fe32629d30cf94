"""Cross-validation folds that replace the manifest's train/dev/test split: leave one session out.

IEMOCAP papers (DRKF among them) report the mean over five folds, each testing on one recorded
session and training on the other four. A fold here tests on every dialogue of one session
(`Ses01F_impro01` -> `Ses01`), and splits the remaining sessions' dialogues into train and a dev
share drawn by a seeded shuffle, so model selection never sees the held-out session.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import ConfigError

FOLD_KINDS = ("session",)
SESSION = re.compile(r"^(Ses\d\d)")


@dataclass(frozen=True)
class FoldOptions:
    """A model block's `folds` (kind) and `fold_dev_fraction` (share of training dialogues held out for dev)."""

    kind: str = "session"
    dev_fraction: float = 0.1

    @classmethod
    def from_block(cls, block: Mapping[str, Any], name: str) -> FoldOptions | None:
        """None when the block asks for no folds (the manifest's own split is used)."""
        kind = block.get("folds")
        fraction = block.get("fold_dev_fraction", 0.1)
        if kind is None:
            return None
        if kind not in FOLD_KINDS:
            raise ConfigError(
                f"params.yaml: 'models.{name}.folds' is {kind!r}; allowed values: null, {', '.join(FOLD_KINDS)}"
            )
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ConfigError(
                f"params.yaml: 'models.{name}.fold_dev_fraction' must be a number in (0, 1), got {fraction!r}"
            )
        return cls(kind=str(kind), dev_fraction=float(fraction))


@dataclass(frozen=True)
class Fold:
    """One fold: its name, the session it tests on, and the split every dialogue plays in it."""

    name: str
    held_out: str
    split_of: dict[str, str]

    @property
    def dirname(self) -> str:
        return f"fold-{self.name}"

    def identity(self) -> dict[str, Any]:
        """What the fold's training depends on beyond the manifest (for cache keys and checkpoints)."""
        return {"held_out": self.held_out, "dev": self.dialogues("dev")}

    def dialogues(self, split: str) -> list[str]:
        return sorted(d for d, s in self.split_of.items() if s == split)


def session_of(dialogue_id: str) -> str | None:
    """`Ses03M_script01_2` -> `Ses03`; None for ids that do not follow IEMOCAP's naming."""
    match = SESSION.match(str(dialogue_id))
    return match.group(1) if match else None


def session_folds(dialogue_ids: Sequence[str], dev_fraction: float, name: str = "model") -> list[Fold]:
    """One fold per session found in `dialogue_ids` (IEMOCAP ids), in session order."""
    ids = sorted({str(d) for d in dialogue_ids})
    unnamed = [d for d in ids if session_of(d) is None]
    if unnamed:
        raise ConfigError(
            f"params.yaml: 'models.{name}.folds' is 'session', but {len(unnamed)} dialogue id(s) do not start with "
            f"an IEMOCAP session (SesNN), e.g. {unnamed[:3]}; use folds: null for this corpus"
        )
    sessions = sorted({session_of(d) for d in ids})
    if len(sessions) < 2:
        raise ConfigError(
            f"params.yaml: 'models.{name}.folds' is 'session', but the manifest holds only {sessions}: "
            "leave-one-session-out needs two or more sessions"
        )
    return [_fold(ids, held_out, dev_fraction, index) for index, held_out in enumerate(sessions)]


def _fold(ids: list[str], held_out: str, dev_fraction: float, index: int) -> Fold:
    rest = [d for d in ids if session_of(d) != held_out]
    order = np.random.default_rng(index).permutation(len(rest))
    dev_count = min(max(1, round(dev_fraction * len(rest))), len(rest) - 1)
    dev = {rest[i] for i in order[:dev_count]}
    split_of = {d: "test" if session_of(d) == held_out else "dev" if d in dev else "train" for d in ids}
    return Fold(name=held_out, held_out=held_out, split_of=split_of)
