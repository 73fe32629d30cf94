"""The one training loop: selection on dev, early stopping, non-finite losses, batch weights, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.checkpoints import Checkpointer
from pipeline.training.loop import EpochEnd, LoopOptions, Task, fit


class Toy(Task):
    """Logistic regression on a fixed problem; dev "scores" follow a script so selection is predictable."""

    roles = ("model",)

    def __init__(self, dev_scores=(0.5, 0.7, 0.6, 0.6, 0.6, 0.9), poison_epoch: int | None = None) -> None:
        self.model = nn.Linear(3, 2)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.5)
        generator = torch.Generator().manual_seed(1)
        self.x = torch.randn(12, 3, generator=generator)
        self.y = (self.x[:, 0] > 0).long()
        self.dev_scores, self.poison_epoch = dev_scores, poison_epoch
        self.epoch = 0
        self.weights_after: dict[int, torch.Tensor] = {}

    def optimizers(self):
        return (self.optimizer,)

    def clip_groups(self):
        return (list(self.model.parameters()),)

    def begin_epoch(self, epoch: int) -> None:
        torch.manual_seed(100 + epoch)  # seeded per epoch: a resumed run draws what an uninterrupted one does
        self.epoch = epoch

    def batches(self, epoch: int):
        order = np.random.default_rng(epoch).permutation(len(self.y))
        for start in (0, 5):  # two batches of unequal size: 5 and 7 rows
            yield order[start : start + (5 if start == 0 else 7)]

    def forward(self, rows):
        return self.model(self.x[rows] + 0.01 * torch.randn(len(rows), 3))

    def objectives(self, rows, logits):
        loss = nn.functional.cross_entropy(logits, self.y[rows])
        if self.epoch == self.poison_epoch:
            loss = loss * float("nan")
        return loss, {"rows": float(len(rows))}

    def batch_weight(self, rows) -> float:
        return len(rows)

    def end_epoch(self, epoch: int, means: dict[str, float]) -> EpochEnd:
        self.weights_after[epoch] = self.model.weight.detach().clone()
        score = self.dev_scores[epoch - 1]
        return EpochEnd({"epoch": epoch, **means}, {"model": {"weighted_f1": score, "accuracy": score}})

    def state(self, role: str):
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def test_best_epoch_is_kept_and_patience_stops_the_run():
    fitted = fit(Toy, LoopOptions(epochs=6, seed=0, patience=3))
    best = fitted.best["model"]
    assert [r["epoch"] for r in fitted.history] == [1, 2, 3, 4, 5]  # 3 epochs without beating epoch 2
    assert best.epoch == 2 and best.scores == {"weighted_f1": 0.7, "accuracy": 0.7}
    assert torch.equal(best.state["weight"], fitted.task.weights_after[2])
    everything = fit(Toy, LoopOptions(epochs=6, seed=0))
    assert len(everything.history) == 6 and everything.best["model"].epoch == 6


def test_epoch_means_weigh_batches_by_their_weight():
    fitted = fit(Toy, LoopOptions(epochs=1, seed=0))
    assert fitted.history[0]["rows"] == pytest.approx((5 * 5 + 7 * 7) / 12)


def test_the_seed_fixes_every_draw():
    first, second = fit(Toy, LoopOptions(epochs=2, seed=3)), fit(Toy, LoopOptions(epochs=2, seed=3))
    assert torch.equal(first.task.model.weight, second.task.model.weight)
    assert not torch.equal(first.task.model.weight, fit(Toy, LoopOptions(epochs=2, seed=4)).task.model.weight)


def test_a_non_finite_loss_stops_with_where_and_what_to_do():
    options = LoopOptions(epochs=3, seed=0, where="seed 7", hint="lower train.lr")
    with pytest.raises(FloatingPointError, match=r"training loss became nan \(seed 7, epoch 2\); lower train\.lr"):
        fit(lambda: Toy(poison_epoch=2), options)


def test_clipping_bounds_each_step():
    free = fit(Toy, LoopOptions(epochs=1, seed=0))
    clipped = fit(Toy, LoopOptions(epochs=1, seed=0, grad_clip=1e-4))
    torch.manual_seed(0)  # the weights both runs start from
    start_weight = nn.Linear(3, 2).weight.detach()
    moved = (clipped.task.model.weight - start_weight).abs().max()
    assert moved < 2 * 0.5 * 1e-4 + 1e-7 < (free.task.model.weight - start_weight).abs().max()


def test_a_killed_run_resumes_from_its_last_epoch_to_the_same_weights(tmp_path):
    def saver(task: Toy) -> Checkpointer:
        return Checkpointer(tmp_path / "run", {"model": task.model}, {"optimizer": task.optimizer})

    reference = fit(Toy, LoopOptions(epochs=4, seed=0))

    class Killed(Toy):
        def begin_epoch(self, epoch: int) -> None:
            if epoch == 3:
                raise KeyboardInterrupt
            super().begin_epoch(epoch)

    with pytest.raises(KeyboardInterrupt):
        fit(Killed, LoopOptions(epochs=4, seed=0), checkpointer=saver)
    resumed = fit(Toy, LoopOptions(epochs=4, seed=0), checkpointer=saver)
    assert resumed.resumed_from == 2 and resumed.history == reference.history
    assert torch.equal(resumed.task.model.weight, reference.task.model.weight)
    assert resumed.best["model"].epoch == reference.best["model"].epoch == 2 and resumed.best["model"].state is None
    resumed.checkpointer.load_best()
    assert torch.equal(resumed.task.model.weight, reference.task.weights_after[2])
