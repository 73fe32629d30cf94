"""Dialogue-context baseline: per-input projection, early fusion, a bidirectional GRU, a classifier.

With one input (text) it is the text-only baseline; with text, audio and visual it is the trimodal
early-fusion baseline the fusion-distillation models have to beat.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.batch import DialogueBatch, ModelOutput
from models.registry import register


class InputProjection(nn.Module):
    """LayerNorm + Linear to `hidden` + dropout; absent utterances project to exactly zero."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.linear = nn.Linear(dim, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        projected = self.dropout(self.linear(self.norm(features)))
        return projected * present.unsqueeze(-1).to(projected.dtype)


@register("context_gru")
class ContextGRU(nn.Module):
    """Early fusion by concatenation, then a BiGRU over each dialogue's utterances.

    Sequences are packed by the utterance mask, so padding never reaches a real position and one
    dialogue's outputs do not depend on the rest of the batch.
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        num_classes: int,
        hidden: int = 128,
        dropout: float = 0.3,
        layers: int = 1,
    ) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError("context_gru needs at least one input")
        if hidden <= 0 or layers <= 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"context_gru: need hidden > 0, layers > 0, 0 <= dropout < 1; got {hidden}, {layers}, {dropout}"
            )
        self.inputs = list(input_dims)
        self.projections = nn.ModuleDict({k: InputProjection(int(d), hidden, dropout) for k, d in input_dims.items()})
        self.gru = nn.GRU(
            hidden * len(self.inputs),
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, num_classes)

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        fused = torch.cat([self.projections[k](batch.features[k], batch.present[k]) for k in self.inputs], dim=-1)
        steps = fused.shape[1]
        lengths = batch.lengths.clamp(min=1).cpu()
        packed = pack_padded_sequence(fused, lengths, batch_first=True, enforce_sorted=False)
        context, _ = self.gru(packed)
        context, _ = pad_packed_sequence(context, batch_first=True, total_length=steps)
        logits = self.classifier(self.dropout(context))
        return ModelOutput(logits=logits)
