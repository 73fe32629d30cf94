"""Reductions over real utterances only, so padding and absent modalities never reach a loss."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mean(per_position: Tensor, valid: Tensor) -> Tensor:
    """Mean of `per_position` [B, L] over `valid` [B, L] positions; 0 (still in the graph) when none is valid.

    `torch.where` rather than a product, so a non-finite value at an invalid position cannot leak in.
    """
    kept = torch.where(valid, per_position, torch.zeros_like(per_position))
    return kept.sum() / valid.sum().clamp(min=1).to(per_position.dtype)


def masked_mse(prediction: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean squared error over valid positions and feature dims ([B, L, D] inputs, [B, L] mask)."""
    per_position = (prediction - target).pow(2).mean(dim=-1)
    return masked_mean(per_position, valid)


def zero_invalid(values: Tensor, valid: Tensor) -> Tensor:
    """`values` [B, L, D] with rows where `valid` [B, L] is False set to exactly zero."""
    return torch.where(valid.unsqueeze(-1), values, torch.zeros_like(values))
