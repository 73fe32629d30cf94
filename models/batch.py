"""The one batch format every MERC model consumes, and what it returns.

Whole dialogues are padded to the longest one in the batch. A modality an utterance lacks (its media
failed upstream) is zeros with `present=False`: the utterance stays in its dialogue, because
dropping it would shift every neighbour's context. Utterance-level models simply ignore the
dialogue axis.

Models that read frame- or token-level features (a feature file's optional `sequence` column) get
them in `sequences`, padded on a third axis, with `sequence_mask` marking the real steps; models
that do not ask for them see empty dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

IGNORE_INDEX = -100  # label of padding and of unlabeled utterances; cross-entropy skips it


@dataclass
class DialogueBatch:
    """B dialogues padded to L utterances.

    features[k]: float [B, L, D_k], zero where absent or padding; present[k]: bool [B, L];
    mask: bool [B, L], True on real utterances (a prefix of each row); speakers: long [B, L], speaker
    index within the dialogue (0..S-1, 0 on padding); labels: long [B, L], IGNORE_INDEX on padding and
    unlabeled utterances; utt_ids: the real utterance ids of each dialogue, in order.
    sequences[k]: float [B, L, T_k, D_k] for the inputs a model reads as sequences (zero on padding
    and where absent); sequence_mask[k]: bool [B, L, T_k], True on real steps (a prefix of each
    utterance's row, all False where the utterance or its sequence is absent).
    """

    features: dict[str, Tensor]
    present: dict[str, Tensor]
    mask: Tensor
    speakers: Tensor
    labels: Tensor
    utt_ids: list[list[str]]
    sequences: dict[str, Tensor] = field(default_factory=dict)
    sequence_mask: dict[str, Tensor] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def lengths(self) -> Tensor:
        """Real utterances per dialogue, long [B] on the batch's device."""
        return self.mask.sum(dim=1)

    def to(self, device: torch.device | str) -> DialogueBatch:
        """The same batch on `device` (non-blocking where the source is pinned)."""
        return DialogueBatch(
            features={k: v.to(device, non_blocking=True) for k, v in self.features.items()},
            present={k: v.to(device, non_blocking=True) for k, v in self.present.items()},
            mask=self.mask.to(device, non_blocking=True),
            speakers=self.speakers.to(device, non_blocking=True),
            labels=self.labels.to(device, non_blocking=True),
            utt_ids=self.utt_ids,
            sequences={k: v.to(device, non_blocking=True) for k, v in self.sequences.items()},
            sequence_mask={k: v.to(device, non_blocking=True) for k, v in self.sequence_mask.items()},
        )


@dataclass
class ModelOutput:
    """Logits [B, L, C] and named auxiliary losses (scalars).

    The trainer adds each auxiliary loss times `train.loss_weights[name]` (1.0 when not listed; 0
    switches the term off), so every ablation of a loss term is a params edit.
    """

    logits: Tensor
    aux_losses: dict[str, Tensor] = field(default_factory=dict)
