"""From the manifest and a model's feature files to standardised dialogues and padded batches.

Rows are aligned by `utt_id`. An utterance missing from a feature file (its media failed upstream)
or with non-finite values keeps its place in the dialogue with zeros and `present=False`. Each
feature dimension is standardised with mean/std from the TRAIN split only; the stats travel with the
checkpoint so evaluation and prediction apply exactly the same transform.

Inputs a model reads as sequences (its `sequence_inputs`) also load the feature file's `sequence`
column, capped at `max_sequence_length` steps and standardised per dimension with train-split
stats kept under `<input>:sequence`; the model's input dim for such an input is the step dim, and
the utterance counts as present only when both its vector and a non-empty, finite sequence exist.
A `split_of` mapping (dialogue id -> split) replaces the manifest's splits, e.g. for
leave-one-session-out folds; stats are then fitted on that mapping's train split.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from models.batch import IGNORE_INDEX, DialogueBatch
from pipeline import paths
from pipeline.manifest import read_manifest
from pipeline.tables import SEQUENCE_OVERFLOW, read_metadata, read_sequences, read_vectors

_MIN_STD = 1e-6
SEQUENCE_STATS_SUFFIX = ":sequence"


def sequence_stats_key(key: str) -> str:
    """Where an input's sequence standardisation lives among the stats (next to its vector's)."""
    return f"{key}{SEQUENCE_STATS_SUFFIX}"


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

    @classmethod
    def fit_steps(cls, sequences: Sequence[np.ndarray], dim: int) -> FeatureStats:
        """Per-dimension stats over every step of `sequences` ([T_i, dim] each), without concatenating them."""
        count = sum(len(s) for s in sequences)
        if count == 0:
            raise ValueError("no train-split sequence steps to fit feature standardisation on")
        total = np.zeros(dim, dtype=np.float64)
        squares = np.zeros(dim, dtype=np.float64)
        for steps in sequences:
            total += steps.sum(axis=0, dtype=np.float64)
            squares += np.square(steps, dtype=np.float64).sum(axis=0)
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        std = np.where(std < _MIN_STD, 1.0, std)
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
    sequences: dict[str, list[np.ndarray]] = field(default_factory=dict)  # per sequence input: L x [T_i, D_k]

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
    sequence_inputs: list[str] = field(default_factory=list)

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


def centre_per_group(matrix: np.ndarray, present: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Subtract each group's mean over its present rows; absent rows stay zero."""
    out = matrix.copy()
    for group in np.unique(groups[present]):
        rows = present & (groups == group)
        out[rows] -= matrix[rows].mean(axis=0)
    return out


def _aligned_sequences(
    path: Path, utt_ids: Sequence[str], max_length: int | None, overflow: str
) -> tuple[list[np.ndarray], np.ndarray, int]:
    """Each utterance's [T, D] steps in manifest order ([0, D] where absent), presence, and D."""
    by_utt = read_sequences(path, max_length, overflow)
    dims = {steps.shape[1] for steps in by_utt.values()}
    if len(dims) > 1:
        raise ValueError(f"{path}: sequences differ in step dimension: {sorted(dims)}")
    declared = (read_metadata(path).get("sequence") or {}).get("dim")  # the features stage records it
    dim = dims.pop() if dims else int(declared or 0)
    empty = np.zeros((0, dim), dtype=np.float32)
    aligned, present = [], np.zeros(len(utt_ids), dtype=bool)
    for row, utt in enumerate(utt_ids):
        steps = by_utt.get(utt)
        if steps is not None and len(steps) and np.isfinite(steps).all():
            aligned.append(steps)
            present[row] = True
        else:
            aligned.append(empty)
    return aligned, present, dim


def _standardise_steps(sequences: list[np.ndarray], present: np.ndarray, stats: FeatureStats) -> list[np.ndarray]:
    return [(s - stats.mean) / stats.std if keep else s for s, keep in zip(sequences, present)]


def load_dialogue_data(
    inputs: Sequence[str],
    stats: Mapping[str, FeatureStats] | None = None,
    manifest_path: Path = paths.MANIFEST,
    sequence_inputs: Sequence[str] = (),
    max_sequence_length: int | None = None,
    sequence_overflow: str = "truncate",
    split_of: Mapping[str, str] | None = None,
    speaker_normalise: Sequence[str] = (),
) -> DialogueData:
    """Build per-split dialogues for a model reading the feature files `inputs`.

    `stats` (from a checkpoint) replaces fitting on train, so a trained model sees its own transform.
    `sequence_inputs` (a subset of `inputs`) also load their steps, at most `max_sequence_length`
    each ("truncate" keeps the first, "subsample" evenly spaced ones); `split_of` maps every
    dialogue id to the split it plays (train, dev, test) instead of the manifest's column.
    `speaker_normalise` inputs have each speaker's mean vector within the dialogue subtracted first
    (no labels involved): what identifies the person (face, voice) cancels and what changes between
    their utterances (expression, prosody) remains — speaker normalisation, as in speech emotion work.
    """
    if not inputs:
        raise ValueError("a model needs at least one input feature")
    unknown = [k for k in sequence_inputs if k not in inputs]
    if unknown:
        raise ValueError(f"sequence inputs {unknown} are not among the model's inputs {list(inputs)}")
    if sequence_overflow not in SEQUENCE_OVERFLOW:
        raise ValueError(f"sequence overflow must be one of {', '.join(SEQUENCE_OVERFLOW)}, got {sequence_overflow!r}")
    if max_sequence_length is not None and max_sequence_length <= 0:
        raise ValueError(f"max_sequence_length must be a positive integer or null, got {max_sequence_length!r}")
    manifest = read_manifest(manifest_path)
    frame = manifest.frame
    if split_of is not None:
        dialogues = frame["dialogue_id"].astype(str)
        unassigned = sorted(set(dialogues) - set(split_of))
        if unassigned:
            raise ValueError(f"no split given for {len(unassigned)} dialogue(s), e.g. {unassigned[:3]}")
        frame = frame.assign(split=dialogues.map(dict(split_of)))
    utt_ids = frame["utt_id"].astype(str).tolist()
    class_index = {label: i for i, label in enumerate(manifest.labels)}
    labels = np.array([class_index.get(v, IGNORE_INDEX) for v in frame["label"]], dtype=np.int64)
    is_train = (frame["split"] == "train").to_numpy()

    features: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    sequences: dict[str, list[np.ndarray]] = {}
    input_dims: dict[str, int] = {}
    fitted: dict[str, FeatureStats] = {}
    meta: dict[str, dict[str, Any]] = {}
    for key in inputs:
        path = paths.features_path(key)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: input '{key}' has no feature file (run the features stage)")
        if key in sequence_inputs and "sequence" not in pq.read_schema(path).names:
            raise ValueError(
                f"{path} has no `sequence` column: enable `sequence: true` in its features block, "
                f"or remove '{key}' from the model's sequence_inputs"
            )
        matrix, mask = _aligned_features(path, utt_ids)
        if key in speaker_normalise:
            groups = (frame["dialogue_id"].astype(str) + "\x1f" + frame["speaker"].astype(str)).to_numpy()
            matrix = centre_per_group(matrix, mask, groups)
        key_stats = stats[key] if stats is not None else FeatureStats.fit(matrix[mask & is_train])
        if key_stats.mean.shape[0] != matrix.shape[1]:
            raise ValueError(f"{path}: {matrix.shape[1]}-d features, but the stats are {key_stats.mean.shape[0]}-d")
        matrix[mask] = (matrix[mask] - key_stats.mean) / key_stats.std
        features[key], present[key], fitted[key] = matrix, mask, key_stats
        input_dims[key] = int(matrix.shape[1])
        meta[key] = read_metadata(path)
        if key in sequence_inputs:
            steps, has_steps, dim = _aligned_sequences(path, utt_ids, max_sequence_length, sequence_overflow)
            present[key] = mask & has_steps
            matrix[~present[key]] = 0.0  # an utterance without steps is absent for this input, vector too
            seq_key = sequence_stats_key(key)
            if stats is not None:
                if seq_key not in stats:
                    raise ValueError(f"the stats hold no sequence standardisation for input '{key}'")
                seq_stats = stats[seq_key]
            else:
                seq_stats = FeatureStats.fit_steps([s for s, t in zip(steps, present[key] & is_train) if t], dim)
            if seq_stats.mean.shape[0] != dim:
                raise ValueError(f"{path}: {dim}-d sequence steps, but the stats are {seq_stats.mean.shape[0]}-d")
            sequences[key] = _standardise_steps(steps, present[key], seq_stats)
            fitted[seq_key] = seq_stats
            input_dims[key] = dim

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
                sequences={k: [sequences[k][r] for r in rows] for k in sequences},
            )
        )
    return DialogueData(
        inputs=list(inputs),
        labels=list(manifest.labels),
        input_dims=input_dims,
        splits=splits,
        stats=fitted,
        feature_meta=meta,
        missing={k: int((~present[k]).sum()) for k in inputs},
        unlabeled=int((labels == IGNORE_INDEX).sum()),
        sequence_inputs=[k for k in inputs if k in sequences],
    )


def _pad_sequences(dialogues: Sequence[Dialogue], key: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """[B, L, T, D] steps and [B, L, T] step mask, T the longest sequence in the batch (at least 1)."""
    rows = [s for d in dialogues for s in d.sequences[key]]
    length = max([len(s) for s in rows] + [1])
    values = np.zeros((len(dialogues), steps, length, rows[0].shape[1]), dtype=np.float32)
    valid = np.zeros((len(dialogues), steps, length), dtype=bool)
    for i, dialogue in enumerate(dialogues):
        for j, seq in enumerate(dialogue.sequences[key]):
            values[i, j, : len(seq)] = seq
            valid[i, j, : len(seq)] = True
    return values, valid


def collate(dialogues: Sequence[Dialogue], inputs: Sequence[str]) -> DialogueBatch:
    """Pad whole dialogues to the longest one; padding is zero, absent, unmasked and unlabeled.

    Inputs the dialogues carry sequences for are also padded on a step axis to the batch's longest.
    """
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
    padded = {k: _pad_sequences(dialogues, k, steps) for k in inputs if k in dialogues[0].sequences}
    return DialogueBatch(
        features={k: torch.from_numpy(v) for k, v in feats.items()},
        present={k: torch.from_numpy(v) for k, v in pres.items()},
        mask=torch.from_numpy(mask),
        speakers=torch.from_numpy(speakers),
        labels=torch.from_numpy(labels),
        utt_ids=[list(d.utt_ids) for d in dialogues],
        sequences={k: torch.from_numpy(v) for k, (v, _) in padded.items()},
        sequence_mask={k: torch.from_numpy(m) for k, (_, m) in padded.items()},
    )


def single_utterances(dialogues: Sequence[Dialogue]) -> list[Dialogue]:
    """Every utterance of `dialogues` as a one-utterance dialogue, for utterance-level batches: the
    batch's contrastive and pair terms then range over the utterances drawn, not over whole dialogues."""
    singles = []
    for dialogue in dialogues:
        for row, utt in enumerate(dialogue.utt_ids):
            keep = slice(row, row + 1)
            singles.append(Dialogue(
                dialogue_id=dialogue.dialogue_id,
                split=dialogue.split,
                utt_ids=[utt],
                speakers=np.zeros(1, dtype=np.int64),
                labels=dialogue.labels[keep],
                features={k: v[keep] for k, v in dialogue.features.items()},
                present={k: v[keep] for k, v in dialogue.present.items()},
                sequences={k: v[keep] for k, v in dialogue.sequences.items()},
            ))
    return singles


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
