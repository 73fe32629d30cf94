"""LFVD's dual contrastive losses over the valid utterances of a batch (cosine similarity / temperature).

Both are implemented as the paper writes them, with switches for the textbook forms: the cross-modal
loss's denominator leaves the positive out (so the loss may go negative), and the supervised loss's
denominator holds only the anchor's negatives. Each sums over anchors and divides by `count`, the
number of valid utterances, even where some anchors contribute nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor


def _similarity(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature


def _masked_logsumexp(scores: Tensor, keep: Tensor) -> Tensor:
    """logsumexp over the kept entries of each row; -inf-free (0) where a row keeps nothing."""
    filled = scores.masked_fill(~keep, float("-inf"))
    result = torch.logsumexp(filled, dim=-1)
    return torch.where(keep.any(dim=-1), result, torch.zeros_like(result))


def cross_modal_contrastive(
    features: Mapping[str, Tensor],
    present: Mapping[str, Tensor],
    count: int,
    temperature: float = 0.1,
    include_positive: bool = False,
) -> Tensor:
    """Eq. 10: for every ordered pair of modalities (x, y), utterance i in x should match i in y.

    features[m]: [N, D] for the N valid utterances of the batch; present[m]: bool [N].
    loss_i = -(sim(x_i, y_i) - log sum_{j != i} exp sim(x_i, y_j)); `include_positive` adds j = i.
    """
    keys = list(features)
    first = features[keys[0]]
    total = first.sum() * 0.0
    if count < 2 or len(keys) < 2:
        return total
    eye = torch.eye(first.shape[0], dtype=torch.bool, device=first.device)
    for x in keys:
        for y in keys:
            if x == y:
                continue
            scores = _similarity(features[x], features[y], temperature)
            anchors = present[x] & present[y]
            candidates = present[y].unsqueeze(0).expand_as(scores)
            denominator = candidates & (torch.ones_like(eye) if include_positive else ~eye)
            usable = anchors & denominator.any(dim=-1)
            per_anchor = scores.diagonal() - _masked_logsumexp(scores, denominator)
            total = total - torch.where(usable, per_anchor, torch.zeros_like(per_anchor)).sum()
    return total / count


def supervised_contrastive(
    features: Tensor,
    labels: Tensor,
    valid: Tensor,
    count: int,
    temperature: float = 0.1,
    standard: bool = False,
) -> Tensor:
    """Eq. 11 for one modality: utterances of the same class attract, other classes repel.

    features [N, D], labels [N], valid [N] (present and labeled). Positives P(i) = same label, p != i;
    the denominator holds the negatives only (literal) or, with `standard`, every k != i (SupCon).
    Anchors with no positive or an empty denominator contribute 0.
    """
    total = features.sum() * 0.0
    if count < 2:
        return total
    scores = _similarity(features, features, temperature)
    eye = torch.eye(features.shape[0], dtype=torch.bool, device=features.device)
    pair_valid = valid.unsqueeze(0) & valid.unsqueeze(1)
    same = (labels.unsqueeze(0) == labels.unsqueeze(1)) & pair_valid
    positives = same & ~eye
    denominator = (pair_valid & ~eye) if standard else (pair_valid & ~same)
    log_denominator = _masked_logsumexp(scores, denominator)
    n_pos = positives.sum(dim=-1)
    usable = valid & (n_pos > 0) & denominator.any(dim=-1)
    log_prob = scores - log_denominator.unsqueeze(-1)
    mean_positive = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=-1) / n_pos.clamp(min=1)
    return total - torch.where(usable, mean_positive, torch.zeros_like(mean_positive)).sum() / count
