"""Cross-validation folds that replace the manifest's train/dev/test split: leave one session out.

IEMOCAP papers (DRKF among them) report the mean over five folds, each testing on one recorded
session and training on the other four. A fold here tests on every dialogue of one session and
splits the remaining sessions' dialogues into train and a dev share drawn by a seeded shuffle, so
model selection never sees the held-out session. Which session a dialogue belongs to is the
manifest's optional `session` column, written by the corpus adapter that knows it (IEMOCAP: `Ses01`...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import ConfigError

FOLD_KINDS = ("session",)


@dataclass(frozen=True)
class FoldOptions:
    """A model block's `folds` (kind) and `fold_dev_fraction` (share of training dialogues held out for dev),
    parsed with the rest of its wiring (`pipeline.training.config.ModelWiring`)."""

    kind: str = "session"
    dev_fraction: float = 0.1


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


def dialogue_sessions(manifest: pd.DataFrame, name: str = "model") -> dict[str, str]:
    """Dialogue id -> session, from the manifest's `session` column (one session per dialogue)."""
    if "session" not in manifest.columns:
        raise ConfigError(
            f"params.yaml: 'models.{name}.folds' is 'session', but the manifest has no `session` column (the "
            "corpus adapter writes it when the corpus has recording sessions, e.g. IEMOCAP); use folds: null"
        )
    pairs = manifest[["dialogue_id", "session"]].fillna("").astype(str).drop_duplicates()
    unnamed = sorted(pairs.loc[pairs["session"].str.strip() == "", "dialogue_id"])
    if unnamed:
        raise ConfigError(
            f"params.yaml: 'models.{name}.folds' is 'session', but {len(unnamed)} dialogue(s) have no session in "
            f"the manifest, e.g. {unnamed[:3]}; use folds: null for this corpus"
        )
    split = sorted(pairs.loc[pairs["dialogue_id"].duplicated(), "dialogue_id"].unique())
    if split:
        raise ConfigError(f"manifest: dialogue(s) {split[:3]} belong to more than one session")
    return dict(zip(pairs["dialogue_id"], pairs["session"]))


def session_folds(manifest: pd.DataFrame, dev_fraction: float, name: str = "model") -> list[Fold]:
    """One fold per session of the manifest's dialogues, in session order."""
    sessions = dialogue_sessions(manifest, name)
    held_out = sorted(set(sessions.values()))
    if len(held_out) < 2:
        raise ConfigError(
            f"params.yaml: 'models.{name}.folds' is 'session', but the manifest holds only {held_out}: "
            "leave-one-session-out needs two or more sessions"
        )
    return [_fold(sessions, session, dev_fraction, index) for index, session in enumerate(held_out)]


def _fold(sessions: Mapping[str, str], held_out: str, dev_fraction: float, index: int) -> Fold:
    ids = sorted(sessions)
    rest = [d for d in ids if sessions[d] != held_out]
    order = np.random.default_rng(index).permutation(len(rest))
    dev_count = min(max(1, round(dev_fraction * len(rest))), len(rest) - 1)
    dev = {rest[i] for i in order[:dev_count]}
    split_of = {d: "test" if sessions[d] == held_out else "dev" if d in dev else "train" for d in ids}
    return Fold(name=held_out, held_out=held_out, split_of=split_of)
