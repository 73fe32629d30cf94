"""Tiny synthetic dialogue batches and a training loop for the fusion-distillation model tests."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from models import IGNORE_INDEX, DialogueBatch, build_model

DIMS = {"text": 6, "audio": 5, "visual": 4}
CLASSES = 3
SUBSETS = [["text"], ["audio"], ["visual"], ["text", "audio"], ["text", "visual"], ["audio", "visual"], list(DIMS)]


def make_batch(lengths: list[int], seed: int = 0, dims: Mapping[str, int] = DIMS, speakers: int = 2) -> DialogueBatch:
    """Random dialogues padded to the longest; padding is zero, unlabeled and absent, like the real collate."""
    generator = torch.Generator().manual_seed(seed)
    size, steps = len(lengths), max(lengths)
    mask = torch.zeros(size, steps, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    features = {k: torch.randn(size, steps, d, generator=generator) * mask.unsqueeze(-1) for k, d in dims.items()}
    labels = torch.randint(0, CLASSES, (size, steps), generator=generator).masked_fill(~mask, IGNORE_INDEX)
    return DialogueBatch(
        features=features,
        present={k: mask.clone() for k in dims},
        mask=mask,
        speakers=torch.randint(0, speakers, (size, steps), generator=generator) * mask,
        labels=labels,
        utt_ids=[[f"d{i}/{t}" for t in range(n)] for i, n in enumerate(lengths)],
    )


def clone(batch: DialogueBatch) -> DialogueBatch:
    return DialogueBatch(
        features={k: v.clone() for k, v in batch.features.items()},
        present={k: v.clone() for k, v in batch.present.items()},
        mask=batch.mask.clone(),
        speakers=batch.speakers.clone(),
        labels=batch.labels.clone(),
        utt_ids=[list(ids) for ids in batch.utt_ids],
    )


def select(batch: DialogueBatch, rows: list[int], steps: int) -> DialogueBatch:
    """The given dialogues alone, cut to `steps` positions."""
    return DialogueBatch(
        features={k: v[rows, :steps] for k, v in batch.features.items()},
        present={k: v[rows, :steps] for k, v in batch.present.items()},
        mask=batch.mask[rows, :steps],
        speakers=batch.speakers[rows, :steps],
        labels=batch.labels[rows, :steps],
        utt_ids=[batch.utt_ids[r] for r in rows],
    )


def with_padding_garbage(batch: DialogueBatch, value: float = 1e3) -> DialogueBatch:
    """The same batch with large values written into every padded position."""
    noisy = clone(batch)
    for tensor in noisy.features.values():
        tensor[~noisy.mask] = value
    return noisy


def model(kind: str, dims: Mapping[str, int] = DIMS, seed: int = 0, **hyper) -> torch.nn.Module:
    torch.manual_seed(seed)
    params = {"kind": kind, "inputs": list(dims), "hidden": 8, "heads": 2, "dropout": 0.0} | hyper
    return build_model(kind, params, dict(dims), CLASSES)


def objective(net: torch.nn.Module, batch: DialogueBatch, weights: Mapping[str, float] | None = None):
    """The trainer's objective: cross-entropy on the logits + weighted auxiliary losses."""
    from pipeline.training.trainer import total_loss

    output = net(batch)
    defaults = dict(getattr(net, "default_loss_weights", {}))
    return total_loss(output, batch.labels, defaults | dict(weights or {}))[0], output


def train_steps(net: torch.nn.Module, batch: DialogueBatch, steps: int, lr: float = 0.01, **weights) -> list[float]:
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    net.train()
    for _ in range(steps):
        loss, _ = objective(net, batch, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def overfit_accuracy(net: torch.nn.Module, batch: DialogueBatch, steps: int, lr: float = 0.01) -> float:
    """Training accuracy (eval mode) reached within `steps` full-objective steps; stops at 100 %."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    labeled = batch.labels != IGNORE_INDEX
    accuracy = 0.0
    for step in range(steps):
        net.train()
        loss, _ = objective(net, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 9:
            net.eval()
            with torch.no_grad():
                predicted = net(batch).logits.argmax(-1)
            accuracy = float((predicted[labeled] == batch.labels[labeled]).float().mean())
            if accuracy == 1.0:
                break
    return accuracy


def tiny_dialogue_data(dims: Mapping[str, int] = DIMS, seed: int = 0):
    """A DialogueData whose text carries the label, with train and dev splits (for the real trainer)."""
    import numpy as np

    from pipeline.training.data import Dialogue, DialogueData, FeatureStats

    rng = np.random.default_rng(seed)
    splits: dict[str, list] = {}
    for split, count in (("train", 6), ("dev", 3)):
        for d in range(count):
            n = int(rng.integers(3, 7))
            labels = rng.integers(0, CLASSES, n)
            features = {k: rng.normal(size=(n, dim)).astype(np.float32) for k, dim in dims.items()}
            if "text" in features:
                features["text"][:, :CLASSES] += 3.0 * np.eye(CLASSES, dtype=np.float32)[labels]
            splits.setdefault(split, []).append(
                Dialogue(
                    dialogue_id=f"{split}{d}",
                    split=split,
                    utt_ids=[f"{split}{d}/{t}" for t in range(n)],
                    speakers=(np.arange(n) % 2).astype(np.int64),
                    labels=labels.astype(np.int64),
                    features=features,
                    present={k: np.ones(n, dtype=bool) for k in dims},
                )
            )
    stats = {k: FeatureStats(np.zeros(d, np.float32), np.ones(d, np.float32)) for k, d in dims.items()}
    return DialogueData(
        inputs=list(dims),
        labels=[f"c{i}" for i in range(CLASSES)],
        input_dims=dict(dims),
        splits=splits,
        stats=stats,
    )
