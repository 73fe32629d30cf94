"""The two models' data side by side (each standardised with its own checkpoint's stats), and their logits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.training.config import ModelSpec
from pipeline.training.data import Dialogue, DialogueData, collate, load_dialogue_data
from pipeline.training.model_checkpoints import feature_stats


@dataclass
class PairedData:
    """The two models' data (each standardised with its own checkpoint's stats), dialogue by dialogue."""

    multi: DialogueData
    text: DialogueData

    def __post_init__(self) -> None:
        for split in set(self.multi.splits) | set(self.text.splits):
            ids_m = [d.utt_ids for d in self.multi.split(split)]
            ids_t = [d.utt_ids for d in self.text.split(split)]
            if ids_m != ids_t:
                raise ValueError(f"the two models' {split} dialogues differ: were they trained on one manifest?")
        if self.multi.labels != self.text.labels:
            raise ValueError(f"label sets differ: {self.multi.labels} vs {self.text.labels}")

    def batches(self, indices: Sequence[int], size: int, split: str = "train"):
        """(multimodal batch, text batch) pairs over the given dialogue indices of `split`."""
        dialogues_m, dialogues_t = self.multi.split(split), self.text.split(split)
        for start in range(0, len(indices), size):
            chunk = indices[start : start + size]
            yield (
                collate([dialogues_m[i] for i in chunk], self.multi.inputs),
                collate([dialogues_t[i] for i in chunk], self.text.inputs),
            )


def load_model_data(
    spec: ModelSpec, config: Mapping[str, Any], split_of: Mapping[str, str] | None = None
) -> DialogueData:
    """A trained model's data with the standardisation stored in its checkpoint."""
    return load_dialogue_data(
        spec.inputs, stats=feature_stats(config), split_of=split_of, **spec.sequences.loader_kwargs()
    )


@torch.no_grad()
def utterance_logits(
    model: nn.Module, dialogues: Sequence[Dialogue], inputs: Sequence[str], batch_dialogues: int, device: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """utt_ids, labels and logits [N, C] of every real utterance, in dialogue order (eval mode)."""
    model.eval()
    ids, labels, logits = [], [], []
    for start in range(0, len(dialogues), batch_dialogues):
        batch = collate(dialogues[start : start + batch_dialogues], inputs)
        out = model(batch.to(device)).logits.float().cpu().numpy()
        for row, utts in enumerate(batch.utt_ids):
            ids.extend(utts)
            labels.append(batch.labels[row, : len(utts)].numpy())
            logits.append(out[row, : len(utts)])
    if not ids:
        return [], np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return ids, np.concatenate(labels), np.concatenate(logits)
