"""Per-utterance losses for self-distillation: student cross-entropy, feature and prediction matching.

All reduce over valid utterances only (a [B, L] mask) and average, so padding contributes nothing
and a loss weight means the same thing whatever the batch or dialogue length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.batch import IGNORE_INDEX
from models.layers.masking import masked_mean, masked_mse


def masked_cross_entropy(logits: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
    """Mean cross-entropy over valid, labeled utterances (logits [B, L, C], labels [B, L])."""
    keep = valid & (labels != IGNORE_INDEX)
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    per_position = F.cross_entropy(logits.transpose(1, 2).float(), safe, reduction="none")
    return masked_mean(per_position, keep)


def feature_distillation(student: Tensor, teacher: Tensor, valid: Tensor) -> Tensor:
    """Mean squared distance between student and teacher representations [B, L, D] (low-level distillation)."""
    return masked_mse(student, teacher, valid)


def logit_distillation(
    teacher_logits: Tensor, student_logits: Tensor, valid: Tensor, temperature: float = 1.0
) -> Tensor:
    """KL(teacher || student) over classes, averaged over valid utterances (high-level distillation).

    Computed from log-softmax for stability: >= 0, and exactly 0 when the predictions match. With a
    temperature T != 1 the KL is multiplied by T^2 so its gradient scale does not depend on T.
    """
    log_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    per_position = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)
    return masked_mean(per_position, valid) * temperature**2
