"""From the manifest and a model's feature files to standardised dialogues and padded batches.

Rows are aligned by `utt_id`. An utterance missing from a feature file (its media failed upstream)
or with non-finite values keeps its place in the dialogue with zeros and `present=False`. Each
feature dimension is standardised with mean/std from the TRAIN split only; the stats travel with the
checkpoint so evaluation and prediction apply exactly the same transform.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.batch import IGNORE_INDEX, DialogueBatch
from pipeline import paths
from pipeline.manifest import read_manifest
from pipeline.tables import read_metadata, read_vectors

_MIN_STD = 1e-6


@dataclass
class FeatureStats:
    """Per-dimension standardisation fitted on the train split."""

    mean: np.ndarray
    std: np.ndarray

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": self.mean.astype(float).tolist(), "std": self.std.astype(float).tolist()}

    @classmethod
    def from_json(cls, value: Mapping[str, Sequence[float]]) -> FeatureStats:
        return cls(np.asarray(value["mean"], dtype=np.float32), np.asarray(value["std"], dtype=np.float32))

    @classmethod
    def fit(cls, matrix: np.ndarray) -> FeatureStats:
        if len(matrix) == 0:
            raise ValueError("no train-split rows to fit feature standardisation on")
        mean = matrix.mean(axis=0, dtype=np.float64)
        std = matrix.std(axis=0, dtype=np.float64)
        std = np.where(std < _MIN_STD, 1.0, std)  # constant dimensions pass through unscaled
        return cls(mean.astype(np.float32), std.astype(np.float32))


@dataclass
class Dialogue:
    """One dialogue's utterances in turn order, with per-input feature rows and presence flags."""

    dialogue_id: str
    split: str
    utt_ids: list[str]
    speakers: np.ndarray  # int64 [L], index of the speaker within this dialogue
    labels: np.ndarray  # int64 [L], IGNORE_INDEX where the label is missing or not a known class
    features: dict[str, np.ndarray]  # float32 [L, D_k]
    present: dict[str, np.ndarray]  # bool [L]

    def __len__(self) -> int:
        return len(self.utt_ids)


@dataclass
class DialogueData:
    """Everything a model of the given inputs trains and is scored on."""

    inputs: list[str]
    labels: list[str]
    input_dims: dict[str, int]
    splits: dict[str, list[Dialogue]]
    stats: dict[str, FeatureStats]
    feature_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)  # utterances without each input
    unlabeled: int = 0

    def split(self, name: str) -> list[Dialogue]:
        return self.splits.get(name, [])

    def label_counts(self, split: str) -> np.ndarray:
        counts = np.zeros(len(self.labels), dtype=np.int64)
        for dialogue in self.split(split):
            known = dialogue.labels[dialogue.labels != IGNORE_INDEX]
            counts += np.bincount(known, minlength=len(self.labels))
        return counts


def _aligned_features(path: Path, utt_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix in manifest order, zeros where an utterance is absent or non-finite."""
    ids, matrix = read_vectors(path)
    position = {utt: row for row, utt in enumerate(ids)}
    rows = np.array([position.get(utt, -1) for utt in utt_ids], dtype=np.int64)
    present = rows >= 0
    aligned = np.zeros((len(utt_ids), matrix.shape[1]), dtype=np.float32)
    aligned[present] = matrix[rows[present]]
    finite = np.isfinite(aligned).all(axis=1)
    aligned[~finite] = 0.0
    return aligned, present & finite


def load_dialogue_data(
    inputs: Sequence[str],
    stats: Mapping[str, FeatureStats] | None = None,
    manifest_path: Path = paths.MANIFEST,
) -> DialogueData:
    """Build per-split dialogues for a model reading the feature files `inputs`.

    `stats` (from a checkpoint) replaces fitting on train, so a trained model sees its own transform.
    """
    if not inputs:
        raise ValueError("a model needs at least one input feature")
    manifest = read_manifest(manifest_path)
    frame = manifest.frame
    utt_ids = frame["utt_id"].astype(str).tolist()
    class_index = {label: i for i, label in enumerate(manifest.labels)}
    labels = np.array([class_index.get(v, IGNORE_INDEX) for v in frame["label"]], dtype=np.int64)
    is_train = (frame["split"] == "train").to_numpy()

    features: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    fitted: dict[str, FeatureStats] = {}
    meta: dict[str, dict[str, Any]] = {}
    for key in inputs:
        path = paths.features_path(key)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: input '{key}' has no feature file (run the features stage)")
        matrix, mask = _aligned_features(path, utt_ids)
        key_stats = stats[key] if stats is not None else FeatureStats.fit(matrix[mask & is_train])
        if key_stats.mean.shape[0] != matrix.shape[1]:
            raise ValueError(f"{path}: {matrix.shape[1]}-d features, but the stats are {key_stats.mean.shape[0]}-d")
        matrix[mask] = (matrix[mask] - key_stats.mean) / key_stats.std
        features[key], present[key], fitted[key] = matrix, mask, key_stats
        meta[key] = read_metadata(path)

    splits: dict[str, list[Dialogue]] = {}
    speakers = frame["speaker"].astype("string").fillna("").to_numpy()
    groups = frame.groupby(["split", "dialogue_id"], sort=False, dropna=False).indices
    for (split, dialogue_id), rows in groups.items():
        rows = np.sort(rows)  # manifest is sorted by split, dialogue, turn; keep that order
        splits.setdefault(str(split), []).append(
            Dialogue(
                dialogue_id=str(dialogue_id),
                split=str(split),
                utt_ids=[utt_ids[r] for r in rows],
                speakers=pd.factorize(speakers[rows])[0].astype(np.int64),
                labels=labels[rows],
                features={k: features[k][rows] for k in inputs},
                present={k: present[k][rows] for k in inputs},
            )
        )
    return DialogueData(
        inputs=list(inputs),
        labels=list(manifest.labels),
        input_dims={k: int(features[k].shape[1]) for k in inputs},
        splits=splits,
        stats=fitted,
        feature_meta=meta,
        missing={k: int((~present[k]).sum()) for k in inputs},
        unlabeled=int((labels == IGNORE_INDEX).sum()),
    )


def collate(dialogues: Sequence[Dialogue], inputs: Sequence[str]) -> DialogueBatch:
    """Pad whole dialogues to the longest one; padding is zero, absent, unmasked and unlabeled."""
    if not dialogues:
        raise ValueError("cannot collate an empty list of dialogues")
    size, steps = len(dialogues), max(len(d) for d in dialogues)
    mask = np.zeros((size, steps), dtype=bool)
    speakers = np.zeros((size, steps), dtype=np.int64)
    labels = np.full((size, steps), IGNORE_INDEX, dtype=np.int64)
    feats = {k: np.zeros((size, steps, dialogues[0].features[k].shape[1]), dtype=np.float32) for k in inputs}
    pres = {k: np.zeros((size, steps), dtype=bool) for k in inputs}
    for i, dialogue in enumerate(dialogues):
        n = len(dialogue)
        mask[i, :n] = True
        speakers[i, :n] = dialogue.speakers
        labels[i, :n] = dialogue.labels
        for k in inputs:
            feats[k][i, :n] = dialogue.features[k]
            pres[k][i, :n] = dialogue.present[k]
    return DialogueBatch(
        features={k: torch.from_numpy(v) for k, v in feats.items()},
        present={k: torch.from_numpy(v) for k, v in pres.items()},
        mask=torch.from_numpy(mask),
        speakers=torch.from_numpy(speakers),
        labels=torch.from_numpy(labels),
        utt_ids=[list(d.utt_ids) for d in dialogues],
    )


def iter_batches(
    dialogues: Sequence[Dialogue],
    inputs: Sequence[str],
    batch_dialogues: int,
    rng: np.random.Generator | None = None,
) -> Iterator[DialogueBatch]:
    """Batches of `batch_dialogues` whole dialogues: shuffled by `rng` (train) or in order (dev/test)."""
    order = rng.permutation(len(dialogues)) if rng is not None else np.arange(len(dialogues))
    for start in range(0, len(order), batch_dialogues):
        yield collate([dialogues[i] for i in order[start : start + batch_dialogues]], inputs)
