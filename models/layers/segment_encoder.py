"""BERT-style fusion over several step sequences: `[CLS] seg_1 [SEP] seg_2 [SEP] ...` per sample.

`pack_segments` writes each sample's *valid* steps contiguously, so the position a token gets, and
therefore the encoder's output, does not depend on how much padding other samples in the batch
force; padding sits only at the end and is masked out of attention. `SegmentEncoder` adds learned
absolute positions and token types (segment k and its SEP are type k, CLS is type 0), normalises,
and runs post-norm self-attention blocks. `CrossSegmentEncoder` is the cross-attention alternative:
each segment keeps its own stream (with its own CLS) and attends only to the other segments.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models.layers.transformer import PostNormBlock, attention_mask


def pack_segments(
    segments: Sequence[Tensor], valid: Sequence[Tensor], cls: Tensor, sep: Tensor, max_length: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Pack segments[k] [N, T_k, H] (steps where valid[k] [N, T_k]) behind a CLS, each followed by a SEP.

    Returns tokens [N, S, H], token_valid [N, S] and token_type [N, S]; S = the longest packed row,
    at most `max_length` (longer rows lose their tail).
    """
    size, dim = segments[0].shape[0], segments[0].shape[-1]
    counts = [v.sum(dim=1) for v in valid]
    totals = 1 + sum(c + 1 for c in counts)
    full = int(totals.max()) if size else 1
    tokens = segments[0].new_zeros(size, full, dim)
    types = torch.zeros(size, full, dtype=torch.long, device=tokens.device)
    rows = torch.arange(size, device=tokens.device)
    tokens = tokens.index_put((rows, torch.zeros_like(rows)), cls.to(tokens.dtype).expand(size, dim))
    offset = torch.ones(size, dtype=torch.long, device=tokens.device)
    for kind, (steps, keep) in enumerate(zip(segments, valid)):
        rank = keep.long().cumsum(dim=1) - 1
        row, step = keep.nonzero(as_tuple=True)
        where = offset[row] + rank[row, step]
        tokens = tokens.index_put((row, where), steps[row, step].to(tokens.dtype))
        types = types.index_put((row, where), torch.full_like(where, kind))
        separator = offset + counts[kind]
        tokens = tokens.index_put((rows, separator), sep.to(tokens.dtype).expand(size, dim))
        types = types.index_put((rows, separator), torch.full_like(separator, kind))
        offset = separator + 1
    length = min(full, max_length)
    token_valid = torch.arange(full, device=tokens.device).unsqueeze(0) < totals.unsqueeze(1)
    return tokens[:, :length], token_valid[:, :length], types[:, :length]


class SegmentEncoder(nn.Module):
    """Embeddings (input + position + token type, LayerNorm, dropout) and `layers` post-norm self-attention blocks."""

    def __init__(
        self,
        dim: int,
        layers: int,
        heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float,
        max_positions: int,
        type_count: int,
    ) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.position = nn.Embedding(max_positions, dim)
        self.token_type = nn.Embedding(max(type_count, 1), dim)
        nn.init.normal_(self.position.weight, std=0.02)
        nn.init.normal_(self.token_type.weight, std=0.02)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            PostNormBlock(dim, heads, ff_dim, dropout, attention_dropout, activation="gelu") for _ in range(layers)
        )

    def forward(self, tokens: Tensor, token_valid: Tensor, token_type: Tensor, masked: bool = True) -> Tensor:
        """Hidden states [N, S, dim]; with `masked` False every position (padding too) is attended to."""
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device)
        hidden = self.dropout(self.norm(tokens + self.position(positions) + self.token_type(token_type)))
        keys = token_valid if masked else torch.ones_like(token_valid)
        allowed = attention_mask(keys, keys)
        for block in self.blocks:
            hidden = block(hidden, hidden, allowed)
        return hidden


class CrossSegmentEncoder(nn.Module):
    """Per segment a stream `[CLS_k] seg_k`; each layer lets every stream attend to all the *other* streams.

    The fused vector is a linear map of the concatenated stream CLS outputs. Needs two or more segments.
    """

    def __init__(
        self,
        dim: int,
        segments: int,
        layers: int,
        heads: int,
        ff_dim: int,
        dropout: float,
        attention_dropout: float,
        max_positions: int,
    ) -> None:
        super().__init__()
        if segments < 2:
            raise ValueError("cross-attention fusion needs at least two input sequences")
        self.max_positions = max_positions
        self.cls = nn.Parameter(torch.randn(segments, dim) * 0.02)
        self.position = nn.Embedding(max_positions, dim)
        self.token_type = nn.Embedding(segments, dim)
        nn.init.normal_(self.position.weight, std=0.02)
        nn.init.normal_(self.token_type.weight, std=0.02)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        def block() -> PostNormBlock:
            return PostNormBlock(dim, heads, ff_dim, dropout, attention_dropout, activation="gelu")

        self.layers = nn.ModuleList(nn.ModuleList(block() for _ in range(segments)) for _ in range(layers))
        self.output = nn.Linear(segments * dim, dim)

    def forward(self, segments: Sequence[Tensor], valid: Sequence[Tensor]) -> Tensor:
        """segments[k] [N, T_k, dim], valid[k] [N, T_k] -> fused [N, dim]."""
        streams, keeps = [], []
        for kind, (steps, keep) in enumerate(zip(segments, valid)):
            steps, keep = steps[:, : self.max_positions - 1], keep[:, : self.max_positions - 1]
            size = steps.shape[0]
            stream = torch.cat([self.cls[kind].expand(size, 1, -1), steps], dim=1)
            positions = torch.arange(stream.shape[1], device=stream.device)
            kinds = torch.full_like(positions, kind)
            streams.append(self.dropout(self.norm(stream + self.position(positions) + self.token_type(kinds))))
            keeps.append(torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1))
        for blocks in self.layers:
            updated = []
            for kind, block in enumerate(blocks):
                others = [s for j, s in enumerate(streams) if j != kind]
                other_keep = torch.cat([k for j, k in enumerate(keeps) if j != kind], dim=1)
                updated.append(block(streams[kind], torch.cat(others, dim=1), attention_mask(keeps[kind], other_keep)))
            streams = updated
        return self.output(torch.cat([s[:, 0] for s in streams], dim=-1))
