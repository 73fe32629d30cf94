"""The one training loop: dialogue models, MRD, the text encoder and LipSyncNet are all a `Task` run by `fit`.

`fit` seeds (`seed_everything`) and then builds the task, so the task's weights and every random
draw it makes follow from the seed. Per batch: the task's forward pass (under autocast with `amp`),
its objectives, a stop with a readable error when the loss is not finite, zeroed gradients, backward
through a gradient scaler, optional clipping per parameter group, a step of every optimiser and then
of every scheduler. Per epoch: the task's record (train means, dev scores), the per-epoch hook, the
best epoch per selected role by dev weighted F1 (its weights kept in memory, or in a `Checkpointer`'s
`best/`), early stopping after `patience` epochs without improvement, and with a `Checkpointer` a run
that resumes after its last finished epoch. SpeechBrain's `Brain.fit` has the same shape.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.checkpoints import Checkpointer

SELECTION_KEY = "weighted_f1"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def deterministic_on_cpu(device: str) -> Iterator[None]:
    """Deterministic kernels while training on the CPU, so a seed reruns bit for bit; restored afterwards."""
    if torch.device(device).type != "cpu":
        yield
        return
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def autocast(device: str, enabled: bool):
    """Mixed precision for the forward pass: float16 on CUDA, bfloat16 elsewhere; a no-op when off."""
    if not enabled:
        return nullcontext()
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.float16 if kind == "cuda" else torch.bfloat16)


def copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of a module's weights (the best epoch's, kept while training goes on)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


@dataclass(frozen=True)
class LoopOptions:
    """How `fit` runs a task; `where` and `hint` complete the message of a non-finite loss."""

    epochs: int
    device: str = "cpu"
    seed: int | None = None
    deterministic: bool = False  # deterministic CPU kernels (`deterministic_on_cpu`)
    grad_clip: float | None = None
    amp: bool = False
    patience: int | None = None  # early stopping on the task's first role; None: every epoch runs
    loss_name: str = "training loss"
    where: str = ""
    hint: str = ""


@dataclass
class Best:
    """A role's best epoch so far by dev weighted F1 (`state` is None when a Checkpointer holds it)."""

    score: float = -1.0
    epoch: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    state: dict[str, torch.Tensor] | None = None


@dataclass
class EpochEnd:
    """What a task reports after an epoch: the history record and, per selected role, its dev scores."""

    record: dict[str, Any]
    dev: dict[str, dict[str, float]] = field(default_factory=dict)


class Task:
    """What `fit` trains. Subclasses set `roles` (the models selected on dev, none for fixed-step
    training) and override the methods below; the loop calls them in this order."""

    roles: tuple[str, ...] = ()

    def optimizers(self) -> Sequence[torch.optim.Optimizer]:
        raise NotImplementedError

    def schedulers(self) -> Sequence[Any]:
        """Stepped after every optimiser step."""
        return ()

    def clip_groups(self) -> Sequence[Sequence[torch.Tensor]]:
        """Parameter groups whose gradient norm is clipped separately (when `grad_clip` is set)."""
        return ()

    def begin_epoch(self, epoch: int) -> None:
        """Train mode, per-epoch seeding, model hooks (`epoch` counts from 1)."""

    def batches(self, epoch: int) -> Iterable[Any]:
        raise NotImplementedError

    def forward(self, batch: Any) -> Any:
        raise NotImplementedError

    def objectives(self, batch: Any, output: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
        """The loss to minimise and named parts to average over the epoch (floats or tensors)."""
        raise NotImplementedError

    def batch_weight(self, batch: Any) -> float:
        """How much a batch counts in the epoch means (1: a mean over batches)."""
        return 1

    def end_batch(self, index: int) -> None:
        """After the `index`-th (from 1) optimiser step of an epoch, e.g. to report progress."""

    def end_epoch(self, epoch: int, means: dict[str, float]) -> EpochEnd:
        raise NotImplementedError

    def state(self, role: str) -> dict[str, torch.Tensor]:
        """A copy of `role`'s weights, kept when it reaches a new best epoch."""
        raise NotImplementedError


@dataclass
class FitResult:
    task: Any
    history: list[dict[str, Any]]
    best: dict[str, Best]
    resumed_from: int = 0  # epochs restored from a checkpoint
    checkpointer: Checkpointer | None = None


def _recovered(meta: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Best], int]:
    best = {role: Best(**value) for role, value in meta["best"].items()}
    return list(meta["history"]), best, int(meta["waited"])


def fit(setup: Callable[[], Task], options: LoopOptions,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        checkpointer: Callable[[Task], Checkpointer] | None = None) -> FitResult:
    """Seed, build the task with `setup`, and train it (see the module docstring).

    With `checkpointer`, each epoch is saved (best weights in its `best/`, not in memory) and a run
    resumes after the last epoch it finished.
    """
    guard = deterministic_on_cpu(options.device) if options.deterministic else nullcontext()
    with guard:
        if options.seed is not None:
            seed_everything(options.seed)
        task = setup()
        saver = checkpointer(task) if checkpointer is not None else None
        meta = saver.recover(options.device) if saver is not None else None
        if meta is not None:
            history, best, waited = _recovered(meta)
        else:
            history, best, waited = [], {role: Best() for role in task.roles}, 0
        resumed_from = len(history)
        optimizers, schedulers = task.optimizers(), task.schedulers()
        on_cuda = torch.device(options.device).type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=options.amp and on_cuda)
        for epoch in range(resumed_from + 1, options.epochs + 1):
            if options.patience is not None and waited >= options.patience:
                break
            task.begin_epoch(epoch)
            sums: dict[str, float] = {}
            count: float = 0
            for index, batch in enumerate(task.batches(epoch), 1):
                with autocast(options.device, options.amp):
                    output = task.forward(batch)
                loss, parts = task.objectives(batch, output)
                if not torch.isfinite(loss):
                    where = f"{options.where}, " if options.where else ""
                    hint = f"; {options.hint}" if options.hint else ""
                    raise FloatingPointError(
                        f"{options.loss_name} became {float(loss.detach())} ({where}epoch {epoch}){hint}"
                    )
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if options.grad_clip is not None:
                    for optimizer in optimizers:
                        scaler.unscale_(optimizer)
                    for group in task.clip_groups():
                        nn.utils.clip_grad_norm_(group, options.grad_clip)
                for optimizer in optimizers:
                    scaler.step(optimizer)
                scaler.update()
                for scheduler in schedulers:
                    scheduler.step()
                weight = task.batch_weight(batch)
                for name, value in {"loss": loss, **parts}.items():
                    value = float(value.detach()) if isinstance(value, torch.Tensor) else value
                    sums[name] = sums.get(name, 0.0) + weight * value
                count += weight
                task.end_batch(index)
            end = task.end_epoch(epoch, {name: total / max(count, 1) for name, total in sums.items()})
            history.append(end.record)
            improved = False
            for role, scores in end.dev.items():
                if scores[SELECTION_KEY] > best[role].score:
                    state = task.state(role) if saver is None else None
                    best[role] = Best(scores[SELECTION_KEY], epoch, dict(scores), state)
                    improved = improved or role == task.roles[0]
            waited = 0 if improved else waited + 1
            if on_epoch is not None:
                on_epoch(end.record)
            if saver is not None:
                kept = {role: {"score": b.score, "epoch": b.epoch, "scores": b.scores} for role, b in best.items()}
                saver.save({"history": history, "best": kept, "waited": waited}, improved)
    return FitResult(task, history, best, resumed_from, saver)
