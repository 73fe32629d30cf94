"""Attention building blocks shared by the fusion models.

Both CMATH and LFVD write their blocks as post-norm transformer layers whose attention output is
sometimes needed *before* its residual (CMATH adds the cross-attention outputs into the self branch
there; LFVD adds the key/value stream as the residual), so `PostNormBlock` exposes the two halves,
`attend` and `finish`, separately. Attention is written out here rather than taken from
`nn.MultiheadAttention` so that a query with no valid key (a dialogue where a modality is absent
everywhere) gets a zero output instead of NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.layers.checks import choice

ACTIVATIONS = ("relu", "gelu")
GATES = ("softmax", "sigmoid_concat", "mean")


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed encoding [length, dim]: P[i, 2k] = sin(i / 10000^(2k/dim)), P[i, 2k+1] = cos(same)."""
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    even = torch.arange(0, dim, 2, dtype=torch.float32, device=device)
    angle = position / torch.pow(10000.0, even / dim)
    table = torch.zeros(length, dim + dim % 2, device=device)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table[:, :dim]


def attention_mask(query_valid: Tensor, key_valid: Tensor, causal: bool = False) -> Tensor:
    """Bool [B, Lq, Lk]: which keys each query may attend to (valid keys; with `causal`, not later ones)."""
    allowed = key_valid.unsqueeze(1).expand(-1, query_valid.shape[1], -1)
    if causal:
        lq, lk = query_valid.shape[1], key_valid.shape[1]
        later = torch.arange(lk, device=key_valid.device).unsqueeze(0) > torch.arange(
            lq, device=key_valid.device
        ).unsqueeze(1)
        allowed = allowed & ~later
    return allowed


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with separate Q/K/V/O projections and a boolean attend mask."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.output = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: Tensor, key: Tensor, allowed: Tensor) -> Tensor:
        """query [B, Lq, D], key (also the value source) [B, Lk, D], allowed [B, Lq, Lk] -> [B, Lq, D]."""
        size, lq, dim = query.shape
        lk = key.shape[1]
        head_dim = dim // self.heads

        def split(x: Tensor, length: int) -> Tensor:
            return x.view(size, length, self.heads, head_dim).transpose(1, 2)

        q, k, v = split(self.query(query), lq), split(self.key(key), lk), split(self.value(key), lk)
        scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)
        allowed = allowed.unsqueeze(1)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        weights = weights.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)  # no valid key: attend to nothing
        mixed = (self.dropout(weights) @ v).transpose(1, 2).reshape(size, lq, dim)
        return self.output(mixed)


class FeedForward(nn.Module):
    """Linear -> activation -> dropout -> Linear."""

    def __init__(self, dim: int, hidden: int, dropout: float, activation: str = "relu") -> None:
        super().__init__()
        choice("feed-forward", "activation", activation, ACTIVATIONS)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.ReLU() if activation == "relu" else nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PostNormBlock(nn.Module):
    """out = LN(FFN(LN(attn + residual)) + LN(attn + residual)), with dropout on both sub-layer outputs."""

    def __init__(
        self,
        dim: int,
        heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.attention = MultiHeadAttention(dim, heads, attention_dropout)
        self.norm_attention = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, ff_dim, dropout, activation)
        self.norm_output = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def attend(self, query: Tensor, key: Tensor, allowed: Tensor) -> Tensor:
        """The attention sub-layer output before its residual (the paper's tilde-H)."""
        return self.dropout(self.attention(query, key, allowed))

    def finish(self, attended: Tensor, residual: Tensor) -> Tensor:
        """Residual + norm, then the feed-forward sub-layer with its own residual + norm."""
        hidden = self.norm_attention(attended + residual)
        return self.norm_output(self.dropout(self.feed_forward(hidden)) + hidden)

    def forward(self, query: Tensor, key: Tensor, allowed: Tensor, residual: Tensor | None = None) -> Tensor:
        return self.finish(self.attend(query, key, allowed), query if residual is None else residual)


class ModalityGate(nn.Module):
    """Fuses K same-shaped candidates [..., D] into one.

    softmax: G_k = softmax_k(W_g H_k) per position and dim with a shared bias-free W_g (SDT's gate);
    sigmoid_concat: g = sigmoid(W [H_1; ...; H_K]) split into K gates, output sum_k g_k * H_k;
    mean: the plain average. One candidate passes through unchanged.
    """

    def __init__(self, dim: int, count: int, kind: str = "softmax") -> None:
        super().__init__()
        self.kind = choice("gate", "gate", kind, GATES)
        self.count = count
        self.projection: nn.Linear | None = None
        if count > 1 and kind == "softmax":
            self.projection = nn.Linear(dim, dim, bias=False)
        elif count > 1 and kind == "sigmoid_concat":
            self.projection = nn.Linear(count * dim, count * dim)

    def weights(self, candidates: Sequence[Tensor]) -> Tensor:
        """Gate values [K, ..., D] for each candidate."""
        stacked = torch.stack(list(candidates))
        if self.count == 1 or self.kind == "mean":
            return torch.full_like(stacked, 1.0 / len(candidates))
        if self.kind == "softmax":
            return torch.softmax(self.projection(stacked), dim=0)
        gates = torch.sigmoid(self.projection(torch.cat(list(candidates), dim=-1)))
        return torch.stack(gates.chunk(self.count, dim=-1))

    def forward(self, candidates: Sequence[Tensor]) -> Tensor:
        if len(candidates) != self.count:
            raise ValueError(f"gate built for {self.count} candidates, got {len(candidates)}")
        if self.count == 1:
            return candidates[0]
        return (self.weights(candidates) * torch.stack(list(candidates))).sum(dim=0)


class CrossModalAugmentedBlock(nn.Module):
    """CMATH's CMA-Transformer layer for one central modality c (Eq. 9-12).

    Each auxiliary j gets its own cross-attention block (query c, key/value j); the self branch adds
    the auxiliaries' raw cross-attention outputs to its own self-attention output before its residual
    and norm; a gate fuses the self branch and the cross branches. With no auxiliaries it is the self
    branch alone.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        ff_dim: int,
        dropout: float,
        auxiliaries: int,
        gate: str = "softmax",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.self_block = PostNormBlock(dim, heads, ff_dim, dropout, activation=activation)
        self.cross_blocks = nn.ModuleList(
            PostNormBlock(dim, heads, ff_dim, dropout, activation=activation) for _ in range(auxiliaries)
        )
        self.gate = ModalityGate(dim, 1 + auxiliaries, gate)

    def forward(
        self, centre: Tensor, centre_allowed: Tensor, auxiliaries: Sequence[Tensor], auxiliary_allowed: Sequence[Tensor]
    ) -> Tensor:
        attended = [
            block.attend(centre, aux, allowed)
            for block, aux, allowed in zip(self.cross_blocks, auxiliaries, auxiliary_allowed, strict=True)
        ]
        cross = [block.finish(tilde, centre) for block, tilde in zip(self.cross_blocks, attended)]
        self_tilde = self.self_block.attend(centre, centre, centre_allowed)
        for tilde in attended:
            self_tilde = self_tilde + tilde
        own = self.self_block.finish(self_tilde, centre)
        return self.gate([own, *cross])


class LanguageFocusedBlock(nn.Module):
    """LFVD's LFA transformer (Eq. 6-8): the dominant modality queries every other one and itself.

    X^m = sum_j X^{j->l} + X_hat^l + X^l. `cross_residual` picks the first residual of a cross block:
    "kv" adds the key/value modality (as Eq. 6 is written), "query" adds the dominant stream.
    """

    RESIDUALS = ("kv", "query")

    def __init__(
        self,
        dim: int,
        heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float,
        auxiliaries: int,
        cross_residual: str = "kv",
    ) -> None:
        super().__init__()
        self.cross_residual = choice("lfvd", "cross_residual", cross_residual, self.RESIDUALS)
        self.self_block = PostNormBlock(dim, heads, ff_dim, dropout, attention_dropout)
        self.cross_blocks = nn.ModuleList(
            PostNormBlock(dim, heads, ff_dim, dropout, attention_dropout) for _ in range(auxiliaries)
        )

    def forward(
        self,
        dominant: Tensor,
        dominant_allowed: Tensor,
        auxiliaries: Sequence[Tensor],
        auxiliary_allowed: Sequence[Tensor],
    ) -> Tensor:
        total = dominant + self.self_block(dominant, dominant, dominant_allowed)
        for block, aux, allowed in zip(self.cross_blocks, auxiliaries, auxiliary_allowed, strict=True):
            residual = aux if self.cross_residual == "kv" else dominant
            total = total + block(dominant, aux, allowed, residual=residual)
        return total
