"""Utterance graphs over real dialogues and the dense graph layers that run on them.

A batch holds whole dialogues ([B, L] with a mask), so a graph is a dense [B, L, L] adjacency per
dialogue: edges never cross dialogues, and a dialogue's outputs do not depend on the rest of the
batch. `edges[b, i, j]` means a message from utterance j to utterance i; `weights` carries the edge
strength (temporal closeness, same speaker, cosine similarity) that GraphConv sums with and GAT
attends with (PyG's `edge_dim=1`).

`batch_graph` flattens the batch into one graph (the speaker-KD authors' code: kNN over whatever
utterances share a batch, "temporal" edges by batch position); it exists to reproduce that code and
mixes dialogues by design.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.layers.masking import zero_invalid


@dataclass
class UtteranceGraph:
    """edges: bool [B, N, N] (j -> i at [b, i, j]); weights: float [B, N, N], 0 where no edge."""

    edges: Tensor
    weights: Tensor


def knn_edges(features: Tensor, valid: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(edges, cosine): each valid node i receives edges from its k most similar valid nodes j != i.

    features [B, N, D], valid [B, N]. The in-degree is min(k, valid nodes - 1); ties break by index.
    """
    unit = F.normalize(features.float(), dim=-1)
    cosine = unit @ unit.transpose(1, 2)
    steps = features.shape[1]
    eye = torch.eye(steps, dtype=torch.bool, device=features.device)
    candidate = valid.unsqueeze(1) & valid.unsqueeze(2) & ~eye
    edges = torch.zeros_like(candidate)
    if k <= 0 or steps < 2:
        return edges, cosine
    scores = cosine.masked_fill(~candidate, float("-inf"))
    top = scores.topk(min(k, steps - 1), dim=-1).indices
    chosen = torch.zeros_like(candidate).scatter_(-1, top, True)
    return chosen & candidate, cosine


def dialogue_graph(
    features: Tensor,
    speakers: Tensor,
    valid: Tensor,
    window: int = 4,
    k: int = 6,
    temporal_weight: float = 1.0,
    speaker_weight: float = 0.5,
) -> UtteranceGraph:
    """Edges within each dialogue: a temporal window, same-speaker bonus, cosine kNN, self-loops.

    Temporal: |i - j| <= window, weight 1 + temporal_weight, plus speaker_weight when both turns are
    by the same speaker; kNN: weight = cosine, added to any temporal weight on the same pair;
    self-loop: weight 1. Invalid nodes (padding, absent modality) get no edge at all.
    """
    if window < 0:
        raise ValueError(f"graph window must be >= 0, got {window}")
    steps = features.shape[1]
    index = torch.arange(steps, device=features.device)
    distance = (index.unsqueeze(0) - index.unsqueeze(1)).abs()
    pair = valid.unsqueeze(1) & valid.unsqueeze(2)
    eye = torch.eye(steps, dtype=torch.bool, device=features.device)
    temporal = (distance <= window) & ~eye & pair
    same = (speakers.unsqueeze(1) == speakers.unsqueeze(2)) & temporal
    near, cosine = knn_edges(features, valid, k)
    loops = eye & pair
    weights = (
        temporal.float() * (1.0 + temporal_weight)
        + same.float() * speaker_weight
        + near.float() * cosine
        + loops.float()
    )
    return UtteranceGraph(edges=temporal | near | loops, weights=weights * (temporal | near | loops))


def batch_graph(
    features: Tensor, valid: Tensor, k: int = 6, temporal_weight: float = 1.0
) -> tuple[UtteranceGraph, Tensor]:
    """One graph over every valid utterance of the batch, as the authors' code builds it.

    Returns the graph over the flattened valid nodes ([1, N, N]) and their flat positions in [B*L].
    kNN by cosine; a chain i <-> i+1 in batch order with weight temporal_weight (added to the kNN
    cosine where both apply); self-loops.
    """
    flat = valid.reshape(-1).nonzero().squeeze(-1)
    nodes = features.reshape(-1, features.shape[-1])[flat].unsqueeze(0)
    count = nodes.shape[1]
    node_valid = torch.ones(1, count, dtype=torch.bool, device=features.device)
    near, cosine = knn_edges(nodes, node_valid, k)
    index = torch.arange(count, device=features.device)
    chain = ((index.unsqueeze(0) - index.unsqueeze(1)).abs() == 1).unsqueeze(0)
    loops = torch.eye(count, dtype=torch.bool, device=features.device).unsqueeze(0)
    edges = near | chain | loops
    weights = near.float() * cosine + chain.float() * temporal_weight + loops.float()
    return UtteranceGraph(edges=edges, weights=weights * edges), flat


class DenseGATConv(nn.Module):
    """Graph attention (GAT, Velickovic et al.) with a scalar edge weight in the score.

    e_ij = LeakyReLU(a_dst . W x_i + a_src . W x_j + a_edge * w_ij) per head, softmax over j in
    N(i), out_i = sum_j alpha_ij W x_j, heads concatenated or averaged, plus a bias. A node without
    edges outputs the bias only.
    """

    def __init__(
        self, in_dim: int, out_dim: int, heads: int = 1, concat: bool = True, negative_slope: float = 0.2
    ) -> None:
        super().__init__()
        self.heads, self.out_dim, self.concat = heads, out_dim, concat
        self.linear = nn.Linear(in_dim, heads * out_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(heads, out_dim))
        self.att_edge = nn.Parameter(torch.empty(heads))
        self.bias = nn.Parameter(torch.zeros(heads * out_dim if concat else out_dim))
        self.negative_slope = negative_slope
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)
        nn.init.normal_(self.att_edge, std=0.1)

    @property
    def output_dim(self) -> int:
        return self.heads * self.out_dim if self.concat else self.out_dim

    def forward(self, x: Tensor, graph: UtteranceGraph) -> Tensor:
        size, steps, _ = x.shape
        projected = self.linear(x).view(size, steps, self.heads, self.out_dim)
        source = (projected * self.att_src).sum(-1)  # [B, N, H]
        target = (projected * self.att_dst).sum(-1)
        scores = target.unsqueeze(2) + source.unsqueeze(1)  # [B, i, j, H]
        scores = scores + graph.weights.unsqueeze(-1) * self.att_edge
        scores = F.leaky_relu(scores, self.negative_slope)
        edges = graph.edges.unsqueeze(-1)
        scores = scores.masked_fill(~edges, torch.finfo(scores.dtype).min)
        alpha = torch.softmax(scores, dim=2).masked_fill(~edges.any(dim=2, keepdim=True), 0.0)
        mixed = torch.einsum("bijh,bjhf->bihf", alpha, projected)
        out = mixed.reshape(size, steps, -1) if self.concat else mixed.mean(dim=2)
        return out + self.bias


class DenseGraphConv(nn.Module):
    """GraphConv (Morris et al., PyG `GraphConv`, sum aggregation): W_root x_i + W_rel sum_j w_ji x_j."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.root = nn.Linear(in_dim, out_dim)
        self.relation = nn.Linear(in_dim, out_dim, bias=False)
        self.output_dim = out_dim

    def forward(self, x: Tensor, graph: UtteranceGraph) -> Tensor:
        return self.root(x) + self.relation(graph.weights @ x)


@dataclass(frozen=True)
class GraphLayerSpec:
    """One layer of a graph encoder: output size per head, heads, concatenate heads or average them."""

    out_dim: int
    heads: int = 1
    concat: bool = True


class GraphEncoder(nn.Module):
    """A stack of graph layers, each LN(dropout(ReLU(conv(x))) + residual), then a class head.

    The residual is the identity when sizes match and a Linear otherwise. `embed` is the
    penultimate representation; invalid nodes are zero in it.
    """

    def __init__(
        self, in_dim: int, layers: Sequence[GraphLayerSpec], conv: str, num_classes: int, dropout: float
    ) -> None:
        super().__init__()
        if conv not in ("gat", "gcn"):
            raise ValueError(f"graph encoder conv must be 'gat' or 'gcn', got {conv!r}")
        self.convs = nn.ModuleList()
        self.residuals = nn.ModuleList()
        self.norms = nn.ModuleList()
        width = in_dim
        for spec in layers:
            layer: nn.Module = (
                DenseGATConv(width, spec.out_dim, spec.heads, spec.concat)
                if conv == "gat"
                else DenseGraphConv(width, spec.out_dim)
            )
            out = layer.output_dim
            self.convs.append(layer)
            self.residuals.append(nn.Identity() if out == width else nn.Linear(width, out))
            self.norms.append(nn.LayerNorm(out))
            width = out
        self.dropout = nn.Dropout(dropout)
        self.output_dim = width
        self.classifier = nn.Linear(width, num_classes)

    def embed(self, x: Tensor, graph: UtteranceGraph, valid: Tensor) -> Tensor:
        """x [B, N, D_in] -> [B, N, output_dim], zero on invalid nodes."""
        hidden = zero_invalid(x, valid)
        for conv, residual, norm in zip(self.convs, self.residuals, self.norms):
            hidden = norm(self.dropout(torch.relu(conv(hidden, graph))) + residual(hidden))
            hidden = zero_invalid(hidden, valid)
        return hidden

    def forward(self, x: Tensor, graph: UtteranceGraph, valid: Tensor) -> tuple[Tensor, Tensor]:
        """(embedding, logits) of every node."""
        hidden = self.embed(x, graph, valid)
        return hidden, self.classifier(self.dropout(hidden))
