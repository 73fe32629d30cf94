"""MRD's losses: mutual distillation between two models, refactoring anchors, and their classification terms.

L = alpha KL_T(text || multi) + beta KL_T(multi || text)            (MIC, teachers detached)
  + gamma |z_m - zbar_m|^2 + delta |z_t - zbar_t|^2                 (ILC, against frozen copies)
  + CE(z_m) + CE(z_t)                                              (classification)
over logits [B, L, C]: classification and MIC average over the active utterances (a [B, L] mask),
ILC over all real ones. The training procedure around them is `pipeline.training.mrd`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from models.batch import IGNORE_INDEX
from models.layers.composite_loss import poly_cross_entropy
from models.layers.distill import logit_distillation, masked_cross_entropy
from models.layers.masking import masked_mean


class MRDWeights(Protocol):
    """The settings the loss reads (an MRD config block)."""

    temperature: float
    kd_t2_scale: bool
    cls_loss: str  # ce | balanced | focal
    focal_gamma: float
    alpha: float
    beta: float
    gamma: float
    delta: float


def mutual_distillation(student: Tensor, teacher: Tensor, active: Tensor, temperature: float, t2_scale: bool) -> Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) over active utterances; the teacher is detached.

    >= 0 and exactly 0 when the logits agree; multiplied by T^2 only with `t2_scale` (the paper has none).
    """
    kl = logit_distillation(teacher.detach(), student, active, temperature)  # includes T^2
    return kl if t2_scale else kl / temperature**2


def refactoring_loss(logits: Tensor, frozen: Tensor, valid: Tensor) -> Tensor:
    """Mean over valid utterances of the squared L2 distance to the frozen copy's output (summed over classes)."""
    return masked_mean((logits.float() - frozen.detach().float()).pow(2).sum(dim=-1), valid)


def classification_loss(
    logits: Tensor, labels: Tensor, active: Tensor, kind: str, class_weights: Tensor | None, focal_gamma: float
) -> Tensor:
    """CE on the active labeled utterances: plain, class-weighted ("balanced") or focal."""
    if kind == "ce":
        return masked_cross_entropy(logits, labels, active)
    if kind == "balanced":
        return poly_cross_entropy(logits, labels, active, alpha=0.0, class_weights=class_weights)
    keep = active & (labels != IGNORE_INDEX)
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    log_p = F.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return masked_mean(-((1.0 - log_p.exp()).clamp(min=0.0) ** focal_gamma) * log_p, keep)


def mrd_losses(
    z_multi: Tensor,
    z_text: Tensor,
    frozen_multi: Tensor,
    frozen_text: Tensor,
    labels: Tensor,
    valid: Tensor,
    active: Tensor,
    cfg: MRDWeights,
    class_weights: Tensor | None = None,
) -> dict[str, Tensor]:
    """The six unweighted MRD terms for logits [B, L, C] (rows are the same utterances in all four)."""
    return {
        "distill_multi": mutual_distillation(z_multi, z_text, active, cfg.temperature, cfg.kd_t2_scale),
        "distill_text": mutual_distillation(z_text, z_multi, active, cfg.temperature, cfg.kd_t2_scale),
        "ref_multi": refactoring_loss(z_multi, frozen_multi, valid),
        "ref_text": refactoring_loss(z_text, frozen_text, valid),
        "cls_multi": classification_loss(z_multi, labels, active, cfg.cls_loss, class_weights, cfg.focal_gamma),
        "cls_text": classification_loss(z_text, labels, active, cfg.cls_loss, class_weights, cfg.focal_gamma),
    }


def total_mrd_loss(terms: Mapping[str, Tensor], cfg: MRDWeights) -> Tensor:
    """alpha, beta on MIC; gamma, delta on ILC; 1 on both classification terms (paper Eq. 15)."""
    weights = {"distill_multi": cfg.alpha, "distill_text": cfg.beta, "ref_multi": cfg.gamma, "ref_text": cfg.delta}
    total = terms["cls_multi"] + terms["cls_text"]
    for name, weight in weights.items():
        if weight:
            total = total + weight * terms[name]
    return total
