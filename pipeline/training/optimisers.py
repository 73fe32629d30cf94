"""The optimisers and learning-rate layouts the papers train with, built from the `train` block.

- `optimizer: adamw` (default) decouples weight decay from the gradient (Loshchilov & Hutter);
  `adam` adds `weight_decay * w` to the gradient before the moment estimates (coupled L2, what
  `torch.optim.Adam(weight_decay=...)` does and what LFVD's code uses); `sgd` is SGD with `momentum`.
- `lr_groups: {prefix: lr}` gives the parameters whose name starts with `prefix` their own learning
  rate (the longest matching prefix wins), e.g. a pre-trained encoder trained slower than the heads,
  as the speaker-KD model does. A prefix that names no parameter is a configuration error.
- `warmup_steps: N` raises every group's rate linearly from 1/N of its value to all of it over the
  first N optimiser steps.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from core.config import ConfigError

OPTIMISERS = ("adamw", "adam", "sgd")


def build_optimiser(model: nn.Module, kind: str, lr: float, weight_decay: float, momentum: float = 0.9,
                    lr_groups: Mapping[str, float] | None = None, where: str = "train") -> torch.optim.Optimizer:
    """The optimiser over `model`'s trainable parameters, one group per learning rate."""
    if kind not in OPTIMISERS:
        raise ConfigError(f"params.yaml: '{where}.optimizer' is {kind!r}; allowed values: {', '.join(OPTIMISERS)}")
    groups = parameter_groups(model, lr, lr_groups or {}, where)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def parameter_groups(model: nn.Module, lr: float, lr_groups: Mapping[str, float], where: str = "train"
                     ) -> list[dict]:
    """Parameters grouped by learning rate: the longest `lr_groups` prefix of each name, else `lr`."""
    by_prefix: dict[str | None, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        prefix = max((p for p in lr_groups if name == p or name.startswith(p.rstrip(".") + ".")), key=len,
                     default=None)
        by_prefix.setdefault(prefix, []).append(parameter)
    unused = [p for p in lr_groups if p not in by_prefix]
    if unused:
        tops = sorted({name.split(".")[0] for name, _ in model.named_parameters()})
        raise ConfigError(f"params.yaml: '{where}.lr_groups' names {unused[0]!r}, which is no parameter prefix "
                          f"of this model; its top-level parts: {', '.join(tops)}")
    return [{"params": params, "lr": lr if prefix is None else float(lr_groups[prefix])}
            for prefix, params in by_prefix.items()]


def warmup(optimiser: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Linear warm-up over `steps` optimiser steps (None for 0: no schedule)."""
    if steps <= 0:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(1.0, (step + 1) / steps))
