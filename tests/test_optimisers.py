"""`train.optimizer`, `train.lr_groups` and `train.warmup_steps`: the papers' optimisers, selectable."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.config import ConfigError
from pipeline.training.config import TrainConfig
from pipeline.training.optimisers import build_optimiser, parameter_groups, warmup

BASE = {"seeds": [0], "epochs": 1, "patience": 1, "batch_dialogues": 2, "lr": 0.01, "weight_decay": 0.1}


def decay_step(kind: str) -> float:
    """A weight of 1 after one step of a loss with zero gradient: only weight decay moves it."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    optimiser = build_optimiser(model, kind, lr=0.01, weight_decay=0.1)
    (model.weight * 0.0).sum().backward()
    optimiser.step()
    return float(model.weight.detach())


def test_adam_couples_the_decay_to_the_gradient_and_adamw_does_not():
    # Adam: the gradient becomes 0.1 * w, normalised by its own moments -> a full step of lr.
    assert decay_step("adam") == pytest.approx(1.0 - 0.01, abs=1e-6)
    # AdamW: no gradient, so no Adam step; only the decoupled decay lr * wd * w.
    assert decay_step("adamw") == pytest.approx(1.0 - 0.01 * 0.1, abs=1e-6)
    # SGD: plain L2, lr * wd * w.
    assert decay_step("sgd") == pytest.approx(1.0 - 0.01 * 0.1, abs=1e-6)


class TwoParts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        self.head = nn.Linear(2, 1)


def test_lr_groups_give_each_part_its_rate_by_the_longest_prefix():
    model = TwoParts()
    groups = parameter_groups(model, 0.001, {"encoder": 1e-5, "encoder.1": 1e-4})
    by_lr = {group["lr"]: len(group["params"]) for group in groups}
    assert by_lr == {1e-5: 2, 1e-4: 2, 0.001: 2}  # encoder.0 (w, b), encoder.1 (w, b), head (w, b)
    assert sum(by_lr.values()) == len(list(model.parameters()))
    with pytest.raises(ConfigError, match=r"train\.lr_groups.*'decoder'.*encoder, head"):
        parameter_groups(model, 0.001, {"decoder": 1e-5})
    with pytest.raises(ConfigError, match=r"train\.lr_groups.*'enc'"):  # a prefix is a whole name part
        parameter_groups(model, 0.001, {"enc": 1e-5})


def test_warmup_rises_linearly_to_the_set_rate():
    model = nn.Linear(1, 1)
    optimiser = build_optimiser(model, "adamw", lr=0.1, weight_decay=0.0)
    schedule = warmup(optimiser, 4)
    rates = []
    for _ in range(6):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    assert rates == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert warmup(optimiser, 0) is None


def test_train_block_checks_the_new_keys_and_keeps_old_caches_valid():
    plain = TrainConfig.from_params(BASE)
    assert plain.optimizer == "adamw" and "optimizer" not in plain.cache_identity()
    tuned = TrainConfig.from_params({**BASE, "optimizer": "adam", "lr_groups": {"encoder": 1e-5}, "warmup_steps": 10})
    assert tuned.cache_identity()["optimizer"] == "adam" and tuned.cache_identity()["warmup_steps"] == 10
    with pytest.raises(ConfigError, match=r"train\.optimizer.*adamw, adam, sgd"):
        TrainConfig.from_params({**BASE, "optimizer": "rmsprop"})
    with pytest.raises(ConfigError, match=r"train\.warmup_steps"):
        TrainConfig.from_params({**BASE, "warmup_steps": -1})
    with pytest.raises(ConfigError, match=r"train\.lr_groups"):
        TrainConfig.from_params({**BASE, "lr_groups": {"encoder": 0}})
