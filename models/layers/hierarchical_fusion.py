"""Five-stage hierarchical attention fusion of per-utterance modality vectors (Li et al., 2026, §3.4).

1. projection to d_f per modality (a top-k mixture of experts or Linear + LN + GELU), then a
   feature-selector gate x * sigmoid(MLP(x));
2. quality-aware gating (Eqs. 11-17), per utterance: Q_m = clamp(sigmoid(w [q_stats; q_entropy;
   q_neural]), 0.1, 1), C_global = sum_m Q_m H_m / sum_m Q_m over present modalities,
   H_gated = sigmoid(W_g [H_m; C_global]) * H_m;
3. cross-modal attention: each modality queries the others, H = 0.7 attn + 0.3 H_gated (Eq. 18);
4. a pre-norm transformer encoder over the modality tokens;
5. attention pooling with learned queries, an MLP to the fused vector h, and an ensemble of heads.

Everything is per utterance: the rows are independent, so one utterance's prediction never depends on
the rest of the batch. An absent modality is zero, gets no weight in C_global and is never a key.
q_stats (the Fisher ratio of each modality's projected features) is a buffer set from the training
split by `set_quality_stats`, the same for every utterance, so prediction needs no labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.layers.transformer import FeedForward, MultiHeadAttention


@dataclass
class FusionTrace:
    """Per-utterance results of the fusion ([N] rows): logits, fused h and the stage-2 internals."""

    logits: Tensor  # [N, C]
    fused: Tensor  # [N, d_f]
    aux_logits: Tensor  # [N, M, C], auxiliary per-modality heads on the projected features
    quality: Tensor  # [N, M], in [0.1, 1]
    gates: Tensor  # [N, M, d_f], in (0, 1)


def fisher_ratio(features: Tensor, labels: Tensor, num_classes: int, eps: float = 1e-6) -> Tensor:
    """Mean over dimensions of between-class variance / (within-class variance + eps) of [N, D] rows."""
    if features.shape[0] == 0:
        return features.new_zeros(())
    one_hot = F.one_hot(labels, num_classes).to(features.dtype)  # [N, C]
    counts = one_hot.sum(0)
    means = (one_hot.T @ features) / counts.clamp(min=1).unsqueeze(-1)  # [C, D]
    overall = features.mean(0)
    between = (counts.unsqueeze(-1) * (means - overall).pow(2)).sum(0) / features.shape[0]
    within = (features - means[labels]).pow(2).mean(0)
    return (between / (within + eps)).mean()


class ExpertProjection(nn.Module):
    """Top-k mixture of experts: E experts Linear + LN + GELU + Dropout; a gate MLP picks k per row."""

    def __init__(self, in_dim: int, dim: int, experts: int = 4, top_k: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ValueError(f"mixture of experts: need 1 <= top_k <= experts, got top_k={top_k}, experts={experts}")
        self.top_k = top_k
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Dropout(dropout))
            for _ in range(experts)
        )
        hidden = max(1, in_dim // 2)
        self.gate = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, experts))

    def forward(self, x: Tensor) -> Tensor:
        outputs = torch.stack([expert(x) for expert in self.experts], dim=-2)  # [N, E, d]
        scores, chosen = self.gate(x).topk(self.top_k, dim=-1)
        mix = torch.softmax(scores, dim=-1)
        picked = outputs.gather(-2, chosen.unsqueeze(-1).expand(*chosen.shape, outputs.shape[-1]))
        return (mix.unsqueeze(-1) * picked).sum(dim=-2)


class ModalityProjection(nn.Module):
    """Stage 1 for one modality: MoE or Linear + LN + GELU + Dropout, then the feature selector."""

    def __init__(self, in_dim: int, dim: int, dropout: float, use_moe: bool, experts: int, top_k: int) -> None:
        super().__init__()
        self.project: nn.Module = (
            ExpertProjection(in_dim, dim, experts, top_k)
            if use_moe
            else nn.Sequential(nn.Linear(in_dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Dropout(dropout))
        )
        self.selector = nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, dim))

    def forward(self, x: Tensor) -> Tensor:
        projected = self.project(x)
        return projected * torch.sigmoid(self.selector(projected))


class PreNormEncoderLayer(nn.Module):
    """x + Drop(MHA(LN x)), then x + Drop(FFN(LN x)); masked keys, no NaN when a row has none."""

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, heads, dropout)
        self.norm_ff = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, ff_dim, dropout, "gelu")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        normed = self.norm_attention(x)
        x = x + self.dropout(self.attention(normed, normed, allowed))
        return x + self.dropout(self.feed_forward(self.norm_ff(x)))


class HierarchicalFusion(nn.Module):
    """The five stages over M modality vectors per utterance; see the module docstring."""

    def __init__(
        self,
        input_dims: Mapping[str, int],
        num_classes: int,
        dim: int = 256,
        heads: int = 8,
        layers: int = 3,
        ff_dim: int = 1024,
        dropout: float = 0.35,
        use_moe: bool = True,
        experts: int = 4,
        top_k: int = 2,
        use_gates: bool = True,
        use_cross_attention: bool = True,
        cross_alpha: float = 0.7,
        cross_beta: float = 0.3,
        pool_queries: int = 3,
        ensemble_heads: int = 3,
    ) -> None:
        super().__init__()
        self.modalities = list(input_dims)
        self.use_gates, self.use_cross_attention = use_gates, use_cross_attention
        self.cross_alpha, self.cross_beta = cross_alpha, cross_beta
        count = len(self.modalities)
        self.projections = nn.ModuleDict(
            {m: ModalityProjection(int(d), dim, dropout, use_moe, experts, top_k) for m, d in input_dims.items()}
        )
        self.aux_heads = nn.ModuleDict(
            {
                m: nn.Sequential(nn.Linear(dim, dim // 2), nn.GELU(), nn.Linear(dim // 2, num_classes))
                for m in self.modalities
            }
        )
        self.neural_quality = nn.ModuleDict({m: nn.Linear(dim, 1) for m in self.modalities})
        self.quality = nn.ModuleDict({m: nn.Linear(3, 1) for m in self.modalities})
        self.gate = nn.ModuleDict({m: nn.Linear(2 * dim, dim) for m in self.modalities})
        self.register_buffer("quality_stats", torch.zeros(count))
        self.cross = nn.ModuleDict({m: MultiHeadAttention(dim, heads, dropout) for m in self.modalities})
        self.encoder = nn.ModuleList(PreNormEncoderLayer(dim, heads, ff_dim, dropout) for _ in range(layers))
        self.encoder_norm = nn.LayerNorm(dim)
        self.pool_queries = nn.Parameter(torch.randn(pool_queries, dim) * dim**-0.5)
        self.pool = MultiHeadAttention(dim, heads, dropout)
        self.pool_mlp = nn.Sequential(
            nn.Linear(pool_queries * dim, 2 * dim),
            nn.LayerNorm(2 * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * dim, dim),
            nn.LayerNorm(dim),
            nn.Dropout(dropout / 2),
        )
        self.heads = nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(ensemble_heads))

    def project(self, inputs: Mapping[str, Tensor], present: Tensor) -> Tensor:
        """Stage 1: [N, M, d_f], zero where a modality is absent (present [N, M])."""
        tokens = torch.stack([self.projections[m](inputs[m]) for m in self.modalities], dim=1)
        return torch.where(present.unsqueeze(-1), tokens, torch.zeros_like(tokens))

    def set_quality_stats(self, values: Sequence[float] | Tensor) -> None:
        """Store q_stats (one Fisher ratio per modality, from the training split)."""
        self.quality_stats.copy_(torch.as_tensor(values, dtype=self.quality_stats.dtype))

    def _gate(self, tokens: Tensor, present: Tensor, aux_logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Stage 2: (quality [N, M], gates [N, M, d], gated tokens)."""
        probabilities = torch.softmax(aux_logits.detach().float(), dim=-1)
        entropy = -(probabilities * probabilities.clamp(min=1e-12).log()).sum(-1) / math.log(
            max(aux_logits.shape[-1], 2)
        )
        qualities = []
        for i, m in enumerate(self.modalities):
            neural = torch.sigmoid(self.neural_quality[m](tokens[:, i])).squeeze(-1)
            stats = self.quality_stats[i].expand_as(neural)
            features = torch.stack([stats, entropy[:, i].to(neural.dtype), neural], dim=-1)
            qualities.append(torch.sigmoid(self.quality[m](features)).squeeze(-1).clamp(0.1, 1.0))
        quality = torch.stack(qualities, dim=1)
        weight = quality * present.to(quality.dtype)
        context = (weight.unsqueeze(-1) * tokens).sum(1) / weight.sum(1, keepdim=True).clamp(min=1e-6)
        gates = torch.stack(
            [
                torch.sigmoid(self.gate[m](torch.cat([tokens[:, i], context], dim=-1)))
                for i, m in enumerate(self.modalities)
            ],
            dim=1,
        )
        gated = torch.where(present.unsqueeze(-1), gates * tokens, torch.zeros_like(tokens))
        return quality, gates, gated

    def _cross(self, tokens: Tensor, present: Tensor) -> Tensor:
        """Stage 3: each modality attends to the other present ones; identity when it has none."""
        count = len(self.modalities)
        outputs = []
        for i, m in enumerate(self.modalities):
            others = present.clone()
            others[:, i] = False
            query = tokens[:, i : i + 1]
            attended = self.cross[m](query, tokens, others.unsqueeze(1)).squeeze(1)
            has_key = others.any(dim=-1, keepdim=True)
            attended = torch.where(has_key, attended, tokens[:, i])
            outputs.append(self.cross_alpha * attended + self.cross_beta * tokens[:, i])
        crossed = torch.stack(outputs, dim=1) if count else tokens
        return torch.where(present.unsqueeze(-1), crossed, torch.zeros_like(crossed))

    def forward(self, inputs: Mapping[str, Tensor], present: Tensor) -> FusionTrace:
        """inputs[m]: [N, d_m]; present: bool [N, M] in `self.modalities` order."""
        tokens = self.project(inputs, present)
        aux_logits = torch.stack([self.aux_heads[m](tokens[:, i]) for i, m in enumerate(self.modalities)], dim=1)
        quality, gates, gated = self._gate(tokens, present, aux_logits)
        if not self.use_gates:
            gated = tokens
        crossed = self._cross(gated, present) if self.use_cross_attention else gated
        allowed = present.unsqueeze(1).expand(-1, len(self.modalities), -1)
        encoded = crossed
        for layer in self.encoder:
            encoded = layer(encoded, allowed)
        encoded = self.encoder_norm(encoded)
        queries = self.pool_queries.unsqueeze(0).expand(encoded.shape[0], -1, -1)
        pooled = self.pool(queries, encoded, present.unsqueeze(1).expand(-1, queries.shape[1], -1))
        fused = self.pool_mlp(pooled.reshape(pooled.shape[0], -1))
        logits = torch.stack([head(fused) for head in self.heads]).mean(dim=0)
        return FusionTrace(logits=logits, fused=fused, aux_logits=aux_logits, quality=quality, gates=gates)
