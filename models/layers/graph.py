"""DAG-ERC context encoding: a directed acyclic graph over a dialogue's utterances (Shen et al., 2021).

Utterance i receives edges from every earlier utterance back to the `window`-th most recent one by
its own speaker (all earlier ones if that speaker has spoken fewer times), with one relation type
for same-speaker and one for other-speaker edges. Each layer updates utterances in order, so an
utterance sees its predecessors' *current*-layer states: information only flows forward in time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.layers.masking import zero_invalid


def dag_edges(speakers: Tensor, mask: Tensor, window: int = 1) -> tuple[Tensor, Tensor]:
    """(edges, same_speaker), bool [B, L, L]: edges[b, i, j] when j is a predecessor of i.

    j < i is a predecessor while fewer than `window` utterances strictly between j and i belong to
    i's speaker, i.e. walking back from i - 1 stops after the `window`-th same-speaker utterance.
    """
    if window < 1:
        raise ValueError(f"DAG window must be >= 1, got {window}")
    steps = speakers.shape[1]
    same = speakers.unsqueeze(2) == speakers.unsqueeze(1)  # [B, i, j]
    index = torch.arange(steps, device=speakers.device)
    earlier = index.unsqueeze(0) < index.unsqueeze(1)  # j < i
    hits = (same & earlier).long()
    # between[b, i, j] = same-speaker utterances k with j < k < i: reverse cumulative sum minus the term at j
    between = hits.flip(-1).cumsum(-1).flip(-1) - hits
    pair_valid = mask.unsqueeze(2) & mask.unsqueeze(1)
    edges = earlier & (between < window) & pair_valid
    return edges, same & pair_valid


class DAGNetwork(nn.Module):
    """Layers of relation-typed attention + two GRU cells over the dialogue DAG (DAG-ERC's DAGNN).

    H^0 = ReLU(W_0 x); for layer k and utterance i in order:
    alpha_ij = softmax_{j in N(i)} w_k^T [H^{k-1}_i || H^k_j], M_i = sum_j alpha_ij W^k_{r_ij} H^k_j,
    H^k_i = GRU_c(H^{k-1}_i, M_i) + GRU_p(M_i, H^{k-1}_i). Output: W_out [H^0 || ... || H^K].
    """

    def __init__(self, in_dim: int, dim: int, layers: int = 2, window: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.window = window
        self.input = nn.Linear(in_dim, dim)
        self.score_query = nn.ModuleList(nn.Linear(dim, 1) for _ in range(layers))
        self.score_key = nn.ModuleList(nn.Linear(dim, 1, bias=False) for _ in range(layers))
        self.relation_other = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(layers))
        self.relation_same = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(layers))
        self.gru_context = nn.ModuleList(nn.GRUCell(dim, dim) for _ in range(layers))
        self.gru_update = nn.ModuleList(nn.GRUCell(dim, dim) for _ in range(layers))
        self.output = nn.Linear(dim * (layers + 1), dim)
        self.dropout = nn.Dropout(dropout)

    def _layer(self, k: int, previous: Tensor, edges: Tensor, same: Tensor) -> Tensor:
        size, steps, _ = previous.shape
        query_scores = self.score_query[k](previous).squeeze(-1)  # [B, L]
        keys: list[Tensor] = []
        values_same: list[Tensor] = []
        values_other: list[Tensor] = []
        outputs: list[Tensor] = []
        # how far back any utterance of the batch reaches: only that many states are stacked per step
        reach = edges.any(dim=0)
        index = torch.arange(steps, device=edges.device)
        span = int(((index.unsqueeze(1) - index.unsqueeze(0)) * reach).max()) if reach.any() else 0
        for i in range(steps):
            low = max(0, i - span)
            h_prev = previous[:, i]
            if i == 0 or span == 0:
                message = torch.zeros_like(h_prev)
            else:
                linked = edges[:, i, low:i]  # [B, w]
                scores = query_scores[:, i : i + 1] + torch.stack(keys[low:i], dim=1)
                scores = scores.masked_fill(~linked, torch.finfo(scores.dtype).min)
                alpha = torch.softmax(scores, dim=-1).masked_fill(~linked.any(-1, keepdim=True), 0.0)
                values = torch.where(
                    same[:, i, low:i].unsqueeze(-1),
                    torch.stack(values_same[low:i], dim=1),
                    torch.stack(values_other[low:i], dim=1),
                )
                message = (alpha.unsqueeze(-1) * values).sum(dim=1)
            state = self.gru_context[k](h_prev, message) + self.gru_update[k](message, h_prev)
            outputs.append(state)
            keys.append(self.score_key[k](state).squeeze(-1))
            values_same.append(self.relation_same[k](state))
            values_other.append(self.relation_other[k](state))
        return torch.stack(outputs, dim=1)

    def forward(self, x: Tensor, speakers: Tensor, mask: Tensor) -> Tensor:
        """x [B, L, D_in], speakers [B, L], mask [B, L] -> [B, L, dim], zero on padding."""
        edges, same = dag_edges(speakers, mask, self.window)
        state = zero_invalid(torch.relu(self.input(x)), mask)
        layers = [state]
        for k in range(len(self.gru_context)):
            state = zero_invalid(self._layer(k, state, edges, same), mask)
            layers.append(state)
        return zero_invalid(self.dropout(self.output(torch.cat(layers, dim=-1))), mask)


class ContextGraphEncoder(nn.Module):
    """One modality's context encoder: a (Bi-)GRU over the dialogue, then the DAG network.

    The GRU is packed by the utterance mask so padding never reaches a real utterance; `causal`
    makes it unidirectional (the DAG is causal already).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        layers: int = 2,
        window: int = 1,
        dropout: float = 0.0,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, dim if causal else dim // 2, batch_first=True, bidirectional=not causal)
        self.dropout = nn.Dropout(dropout)
        self.graph = DAGNetwork(dim if causal else 2 * (dim // 2), dim, layers, window, dropout)

    def forward(self, x: Tensor, speakers: Tensor, mask: Tensor) -> Tensor:
        steps = x.shape[1]
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        context, _ = self.gru(packed)
        context, _ = pad_packed_sequence(context, batch_first=True, total_length=steps)
        return self.graph(self.dropout(context), speakers, mask)
