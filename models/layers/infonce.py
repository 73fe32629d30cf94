"""Standard contrastive mutual-information estimators on paired views (cosine similarity / temperature).

`nt_xent` is SimCLR's loss over 2M views: each view's positive is its partner and its denominator
holds the other 2M - 1 views, positive included, so the loss is bounded below by 0. `info_nce`
is the one-directional form over M pairs. A `LearnedTemperature` keeps tau in (0, 1) as sigmoid(theta).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def nt_xent(first: Tensor, second: Tensor, temperature: Tensor | float) -> Tensor:
    """Mean NT-Xent over the 2M rows of [first; second] ([M, D] each); row i and row i + M are positives."""
    count = first.shape[0]
    views = F.normalize(torch.cat([first, second]).float(), dim=-1)
    logits = views @ views.T / temperature
    eye = torch.eye(2 * count, dtype=torch.bool, device=views.device)
    logits = logits.masked_fill(eye, float("-inf"))
    index = torch.arange(count, device=views.device)
    target = torch.cat([index + count, index])
    return F.cross_entropy(logits, target)


def info_nce(anchors: Tensor, candidates: Tensor, temperature: Tensor | float) -> Tensor:
    """Mean InfoNCE: anchor i should pick candidate i among all M candidates ([M, D] each)."""
    logits = F.normalize(anchors.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(anchors.shape[0], device=anchors.device))


class LearnedTemperature(nn.Module):
    """tau = sigmoid(theta) with theta learnable (initial value `logit`), or a fixed tau when `fixed` is given."""

    def __init__(self, logit: float = 1.0, fixed: float | None = None) -> None:
        super().__init__()
        if fixed is not None and fixed <= 0:
            raise ValueError(f"a fixed temperature must be > 0, got {fixed}")
        self.fixed = fixed
        self.logit = nn.Parameter(torch.tensor(float(logit))) if fixed is None else None

    def forward(self) -> Tensor:
        if self.logit is None:
            return torch.tensor(self.fixed)
        return torch.sigmoid(self.logit)
