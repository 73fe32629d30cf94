"""Classification losses of the speaker-KD hierarchical-fusion model (Li et al., EACL Findings 2026).

All take logits [B, L, C], labels [B, L] and a [B, L] mask of utterances that count, and average
over those utterances only, so padding and absent modalities never reach a loss.

- `poly_cross_entropy`: L_comp = CE_w + alpha (1 - p_y)^(1 + gamma) (Eq. 19; PolyLoss). The CE may
  carry class weights (weighted mean, as `F.cross_entropy(weight=...)`); the poly term is unweighted.
- `label_smoothing_loss`: -sum_c q_c log p_c with q = 1 - eps + eps/C on the label, eps/C elsewhere.
- `distillation_loss`: alpha CE(student) + (1 - alpha) tau^2 KL(teacher || student) (Eq. 10, 21-22).
- `balanced_class_weights`: w_c = N / (C n_c), scikit-learn's "balanced".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.batch import IGNORE_INDEX
from models.layers.distill import logit_distillation, masked_cross_entropy
from models.layers.masking import masked_mean


def _labeled(labels: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    keep = valid & (labels != IGNORE_INDEX)
    return keep, torch.where(keep, labels, torch.zeros_like(labels))


def balanced_class_weights(counts: Tensor) -> Tensor:
    """w_c = N / (C n_c); a class never seen gets weight 0 (it has no term to weigh)."""
    counts = counts.float()
    total, classes = counts.sum(), counts.numel()
    return torch.where(counts > 0, total / (classes * counts.clamp(min=1)), torch.zeros_like(counts))


def poly_cross_entropy(
    logits: Tensor,
    labels: Tensor,
    valid: Tensor,
    alpha: float = 1.2,
    gamma: float = 1.2,
    class_weights: Tensor | None = None,
) -> Tensor:
    """CE (class-weighted mean when weights are given) + alpha * mean (1 - p_y)^(1 + gamma)."""
    keep, safe = _labeled(labels, valid)
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_p_y = log_p.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    if class_weights is None:
        ce = masked_mean(-log_p_y, keep)
    else:
        w = torch.where(keep, class_weights.to(log_p.dtype)[safe], torch.zeros_like(log_p_y))
        ce = (-log_p_y * w).sum() / w.sum().clamp(min=1e-12)
    if alpha == 0:
        return ce
    poly = (1.0 - log_p_y.exp()).clamp(min=0.0).pow(1.0 + gamma)
    return ce + alpha * masked_mean(poly, keep)


def smoothed_targets(labels: Tensor, num_classes: int, epsilon: float) -> Tensor:
    """q [..., C]: 1 - eps + eps/C at the label, eps/C elsewhere (labels must be valid class indices)."""
    one_hot = F.one_hot(labels, num_classes).float()
    return one_hot * (1.0 - epsilon) + epsilon / num_classes


def label_smoothing_loss(logits: Tensor, labels: Tensor, valid: Tensor, epsilon: float = 0.1) -> Tensor:
    """Mean over labeled utterances of -sum_c q_c log p_c."""
    keep, safe = _labeled(labels, valid)
    targets = smoothed_targets(safe, logits.shape[-1], epsilon)
    per_position = -(targets * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    return masked_mean(per_position, keep)


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    student_valid: Tensor,
    teacher_valid: Tensor,
    alpha: float = 0.65,
    temperature: float = 2.0,
    hard_loss: Tensor | None = None,
) -> Tensor:
    """alpha * CE(student, y) + (1 - alpha) * tau^2 KL(softmax(teacher/tau) || softmax(student/tau)).

    The teacher is detached. Where the teacher modality is absent only the CE applies (the authors'
    alpha = 1 for teacher-less batches). `hard_loss` replaces the plain CE (e.g. the Poly CE).
    """
    hard = masked_cross_entropy(student_logits, labels, student_valid) if hard_loss is None else hard_loss
    if alpha >= 1.0:
        return hard
    soft = logit_distillation(teacher_logits.detach(), student_logits, student_valid & teacher_valid, temperature)
    return alpha * hard + (1.0 - alpha) * soft
