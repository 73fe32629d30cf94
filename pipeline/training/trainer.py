"""Fit a registered dialogue model once per seed: select on dev weighted F1, never look at test.

Per seed: seed everything, the `train.optimizer` (AdamW by default), gradient clipping, cross-entropy
on labeled utterances plus the model's auxiliary losses weighted by `train.loss_weights`, early
stopping on dev weighted F1, and the best-dev epoch's weights kept; `pipeline.training.loop.fit`
runs the epochs, `DialogueTask` says what one step of a dialogue model is.
`pipeline.training.cache` decides which seeds need this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from models.batch import IGNORE_INDEX, DialogueBatch, ModelOutput
from models.registry import build_model
from pipeline.device import resolve_device
from pipeline.training.config import ModelSpec, TrainConfig
from pipeline.training.data import Dialogue, DialogueData, iter_batches, single_utterances
from pipeline.training.loop import EpochEnd, LoopOptions, Task, copy_state, fit
from pipeline.training.metrics import classification_scores
from pipeline.training.optimisers import build_optimiser, warmup

SELECTION_SCORES = ("accuracy", "weighted_f1", "macro_f1")
EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class SeedResult:
    """A finished seed: the best-dev weights, when they were reached, and the learning curve."""

    seed: int
    best_epoch: int
    epochs_run: int
    dev: dict[str, float]
    history: list[dict[str, float]]
    state: dict[str, torch.Tensor]
    cached: bool = False

    def summary(self) -> dict[str, Any]:
        return {"seed": self.seed, "best_epoch": self.best_epoch, "epochs_run": self.epochs_run, "dev": self.dev}


def effective_loss_weights(model: nn.Module, spec: ModelSpec, cfg: TrainConfig) -> dict[str, float]:
    """Weights of the auxiliary losses: the model class's `default_loss_weights` (its paper's values),
    overridden by `train.loss_weights`, overridden by the model block's `loss_weights`; unnamed = 1.0."""
    return {**getattr(model, "default_loss_weights", {}), **cfg.loss_weights, **spec.loss_weights}


def total_loss(
    output: ModelOutput, labels: torch.Tensor, loss_weights: Mapping[str, float]
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy on labeled utterances + weighted auxiliary losses (weight 0 = term left out).

    The cross-entropy is weighted by `loss_weights["ce"]` (1.0 unless listed): a model whose own
    classification loss replaces it (e.g. a Poly or label-smoothed CE among its auxiliary terms)
    sets `ce: 0` in its `default_loss_weights`. It is still logged.
    """
    logits = output.logits.float()
    labeled = labels != IGNORE_INDEX
    if labeled.any():
        ce = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX
        )
    else:
        ce = logits.sum() * 0.0
    parts = {"ce": float(ce.detach())}
    ce_weight = loss_weights.get("ce", 1.0)
    loss = ce * ce_weight if ce_weight != 0 else logits.sum() * 0.0
    for name, term in output.aux_losses.items():
        weight = loss_weights.get(name, 1.0)
        if weight == 0:
            continue
        loss = loss + weight * term.float()
        parts[name] = float(term.detach())
    return loss, parts


@torch.no_grad()
def dialogue_logits(
    model: nn.Module, dialogues: Sequence[Dialogue], inputs: Sequence[str], batch_dialogues: int, device: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """utt_ids, true labels (IGNORE_INDEX where unlabeled) and class logits [N, C] of every utterance."""
    model.eval()
    utt_ids: list[str] = []
    truth: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    for batch in iter_batches(dialogues, inputs, batch_dialogues):
        output = model(batch.to(device)).logits.float().cpu().numpy()
        for row, ids in enumerate(batch.utt_ids):
            utt_ids.extend(ids)
            truth.append(batch.labels[row, : len(ids)].numpy())
            logits.append(output[row, : len(ids)])
    if not utt_ids:
        return [], np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return utt_ids, np.concatenate(truth), np.concatenate(logits)


def predict_dialogues(
    model: nn.Module, dialogues: Sequence[Dialogue], inputs: Sequence[str], batch_dialogues: int, device: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """utt_ids, true labels (IGNORE_INDEX where unlabeled) and predicted classes of every utterance."""
    utt_ids, truth, logits = dialogue_logits(model, dialogues, inputs, batch_dialogues, device)
    return utt_ids, truth, logits.argmax(axis=-1) if utt_ids else np.zeros(0, dtype=np.int64)


def score_split(
    model: nn.Module, data: DialogueData, split: str, batch_dialogues: int, device: str
) -> dict[str, Any]:
    _, truth, predicted = predict_dialogues(model, data.split(split), data.inputs, batch_dialogues, device)
    labeled = truth != IGNORE_INDEX
    if not labeled.any():
        raise ValueError(f"the {split} split has no labeled utterances to score")
    return classification_scores(truth[labeled], predicted[labeled], data.labels)


def train_batch_source(
    data: DialogueData, batch_dialogues: int, device: str, seed: int
) -> Callable[[], Iterator[DialogueBatch]]:
    """Shuffled passes over the TRAIN split only, on `device`, for a model's `begin_epoch` hook.

    A model may define `begin_epoch(epoch, train_batches, dev_batches)`; the trainer calls it in train
    mode before each epoch. The passes draw from their own seeded generator, so the main loop's batch
    order is the same with or without the hook; `dev_batch_source` gives the dev split in order, for
    selection only, and test never reaches the hook.
    """
    rng = np.random.default_rng([seed, 1])

    def batches() -> Iterator[DialogueBatch]:
        for batch in iter_batches(data.split("train"), data.inputs, batch_dialogues, rng):
            yield batch.to(device)

    return batches


def dev_batch_source(data: DialogueData, batch_dialogues: int, device: str) -> Callable[[], Iterator[DialogueBatch]]:
    """The dev split in order, on `device`: what a model's `begin_epoch` hook may select a phase on."""

    def batches() -> Iterator[DialogueBatch]:
        for batch in iter_batches(data.split("dev"), data.inputs, batch_dialogues):
            yield batch.to(device)

    return batches


class DialogueTask(Task):
    """One seed of one dialogue model: shuffled train batches, cross-entropy + weighted auxiliary
    losses, dev scores after every epoch. Built right after seeding, so initial weights follow the seed."""

    roles = ("model",)

    def __init__(self, spec: ModelSpec, data: DialogueData, cfg: TrainConfig, seed: int, device: str) -> None:
        self.data, self.cfg, self.device = data, cfg, device
        self.model = build_model(spec.kind, spec.params, data.input_dims, len(data.labels)).to(device)
        self.optimizer = build_optimiser(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum,
                                         cfg.lr_groups)
        self.warmup = warmup(self.optimizer, cfg.warmup_steps)
        self.loss_weights = effective_loss_weights(self.model, spec, cfg)
        self.rng = np.random.default_rng(seed)
        self.model_hook = getattr(self.model, "begin_epoch", None)
        self.train_source = train_batch_source(data, cfg.batch_dialogues, device, seed)
        self.dev_source = dev_batch_source(data, cfg.batch_dialogues, device)
        # what one training batch holds: `batch_dialogues` whole dialogues, or `batch_utterances` utterances
        self.train_units = data.split("train") if cfg.batch_utterances is None else single_utterances(
            data.split("train"))
        self.batch_size = cfg.batch_dialogues if cfg.batch_utterances is None else cfg.batch_utterances

    def optimizers(self) -> Sequence[torch.optim.Optimizer]:
        return (self.optimizer,)

    def schedulers(self) -> Sequence[Any]:
        return () if self.warmup is None else (self.warmup,)

    def clip_groups(self) -> Sequence[Sequence[torch.Tensor]]:
        return (list(self.model.parameters()),)

    def begin_epoch(self, epoch: int) -> None:
        self.model.train()
        if callable(self.model_hook):  # optional model hook: train-split statistics, pre-training phases
            self.model_hook(epoch, self.train_source, self.dev_source)

    def batches(self, epoch: int) -> Iterator[DialogueBatch]:
        for batch in iter_batches(self.train_units, self.data.inputs, self.batch_size, self.rng):
            yield batch.to(self.device)

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        return self.model(batch)

    def objectives(self, batch: DialogueBatch, output: ModelOutput) -> tuple[torch.Tensor, dict[str, float]]:
        return total_loss(output, batch.labels, self.loss_weights)

    def end_epoch(self, epoch: int, means: dict[str, float]) -> EpochEnd:
        dev = score_split(self.model, self.data, "dev", self.cfg.batch_dialogues, self.device)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": means.pop("loss")}
        record.update({f"train_{name}": value for name, value in means.items()})
        record.update({f"dev_{name}": dev[name] for name in SELECTION_SCORES})
        return EpochEnd(record, {"model": {name: dev[name] for name in SELECTION_SCORES}})

    def state(self, role: str) -> dict[str, torch.Tensor]:
        return copy_state(self.model)


def fit_seed(
    spec: ModelSpec, data: DialogueData, cfg: TrainConfig, seed: int, on_epoch: EpochCallback | None = None
) -> SeedResult:
    """Train one seed on the train split; keep the weights of the epoch with the best dev weighted F1."""
    if not data.split("train"):
        raise ValueError("no train dialogues in the manifest")
    if not data.split("dev"):
        raise ValueError("no dev dialogues in the manifest: model selection needs a dev split")
    device = resolve_device(cfg.device, "train.device")
    options = LoopOptions(
        epochs=cfg.epochs, device=device, seed=seed, deterministic=True, grad_clip=cfg.grad_clip, amp=cfg.amp,
        patience=cfg.patience, where=f"seed {seed}", hint="lower train.lr or check the features",
    )
    fitted = fit(lambda: DialogueTask(spec, data, cfg, seed, device), options,
                 on_epoch=None if on_epoch is None else lambda record: on_epoch(seed, record))
    best = fitted.best["model"]
    return SeedResult(seed, best.epoch, len(fitted.history), best.scores, fitted.history, best.state or {})
