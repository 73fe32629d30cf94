"""Fit a registered model once per seed: select on dev, never look at test, cache by content.

Per seed: seed everything, AdamW, gradient clipping, cross-entropy on labeled utterances plus the
model's auxiliary losses weighted by `train.loss_weights`, early stopping on dev weighted F1, and the
best-dev epoch's weights kept. Finished seeds live in `.cache/train/<key>/seed<k>/`, keyed by the
full content hashes of the manifest and input feature files, the model and train params and the
code fingerprint of this module, the model's module and every project module they import, so DVC
rerunning a text-only model after an audio swap restores its checkpoints instead of retraining,
and any edit to the code a model is trained with retrains it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.batch import IGNORE_INDEX, DialogueBatch, ModelOutput
from models.registry import build_model, get_model_class
from pipeline import paths
from pipeline.cache import stable_hash
from pipeline.code_fingerprint import code_fingerprint
from pipeline.device import resolve_device
from pipeline.file_hash import file_hash
from pipeline.training.config import ModelSpec, TrainConfig
from pipeline.training.data import (
    Dialogue,
    DialogueData,
    FeatureStats,
    iter_batches,
    load_dialogue_data,
)
from pipeline.training.metrics import classification_scores
from pipeline.training.splits import Fold

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
SELECTION_SCORES = ("accuracy", "weighted_f1", "macro_f1")
EpochCallback = Callable[[int, dict[str, float]], None]


# ---------------------------------------------------------------- one seed


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
def predict_dialogues(
    model: nn.Module, dialogues: Sequence[Dialogue], inputs: Sequence[str], batch_dialogues: int, device: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """utt_ids, true labels (IGNORE_INDEX where unlabeled) and predicted classes of every utterance."""
    model.eval()
    utt_ids: list[str] = []
    truth: list[np.ndarray] = []
    predicted: list[np.ndarray] = []
    for batch in iter_batches(dialogues, inputs, batch_dialogues):
        output = model(batch.to(device))
        best = output.logits.argmax(dim=-1).cpu().numpy()
        for row, ids in enumerate(batch.utt_ids):
            utt_ids.extend(ids)
            truth.append(batch.labels[row, : len(ids)].numpy())
            predicted.append(best[row, : len(ids)])
    if not utt_ids:
        return [], np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return utt_ids, np.concatenate(truth), np.concatenate(predicted)


def score_split(
    model: nn.Module, data: DialogueData, split: str, batch_dialogues: int, device: str
) -> dict[str, Any]:
    _, truth, predicted = predict_dialogues(model, data.split(split), data.inputs, batch_dialogues, device)
    labeled = truth != IGNORE_INDEX
    if not labeled.any():
        raise ValueError(f"the {split} split has no labeled utterances to score")
    return classification_scores(truth[labeled], predicted[labeled], data.labels)


def _autocast(device: str, enabled: bool):
    if not enabled:
        return nullcontext()
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.float16 if kind == "cuda" else torch.bfloat16)


def train_batch_source(
    data: DialogueData, batch_dialogues: int, device: str, seed: int
) -> Callable[[], Iterator[DialogueBatch]]:
    """Shuffled passes over the TRAIN split only, on `device`, for a model's `begin_epoch` hook.

    A model may define `begin_epoch(epoch, train_batches)`; the trainer calls it in train mode before
    each epoch. The passes draw from their own seeded generator, so the main loop's batch order is
    the same with or without the hook, and dev and test never reach it.
    """
    rng = np.random.default_rng([seed, 1])

    def batches() -> Iterator[DialogueBatch]:
        for batch in iter_batches(data.split("train"), data.inputs, batch_dialogues, rng):
            yield batch.to(device)

    return batches


def fit_seed(
    spec: ModelSpec, data: DialogueData, cfg: TrainConfig, seed: int, on_epoch: EpochCallback | None = None
) -> SeedResult:
    """Train one seed on the train split; keep the weights of the epoch with the best dev weighted F1."""
    if not data.split("train"):
        raise ValueError("no train dialogues in the manifest")
    if not data.split("dev"):
        raise ValueError("no dev dialogues in the manifest: model selection needs a dev split")
    device = resolve_device(cfg.device, "train.device")
    on_cpu = torch.device(device).type == "cpu"
    with deterministic_on_cpu(device):
        seed_everything(seed)
        model = build_model(spec.kind, spec.params, data.input_dims, len(data.labels)).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_weights = effective_loss_weights(model, spec, cfg)
        scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and not on_cpu)
        rng = np.random.default_rng(seed)
        history: list[dict[str, float]] = []
        best_f1, best_epoch, best_state, best_dev, waited = -1.0, 0, None, {}, 0
        begin_epoch = getattr(model, "begin_epoch", None)
        train_source = train_batch_source(data, cfg.batch_dialogues, device, seed)
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            if callable(begin_epoch):  # optional model hook: train-split statistics, pre-training phases
                begin_epoch(epoch, train_source)
            sums: dict[str, float] = {}
            batches = 0
            for batch in iter_batches(data.split("train"), data.inputs, cfg.batch_dialogues, rng):
                batch = batch.to(device)
                with _autocast(device, cfg.amp):
                    output = model(batch)
                loss, parts = total_loss(output, batch.labels, loss_weights)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training loss became {float(loss)} (seed {seed}, epoch {epoch}); "
                        "lower train.lr or check the features"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                parts["loss"] = float(loss.detach())
                for name, value in parts.items():
                    sums[name] = sums.get(name, 0.0) + value
                batches += 1
            dev = score_split(model, data, "dev", cfg.batch_dialogues, device)
            record = {"epoch": epoch, "train_loss": sums.pop("loss") / batches}
            record.update({f"train_{name}": value / batches for name, value in sums.items()})
            record.update({f"dev_{name}": dev[name] for name in SELECTION_SCORES})
            history.append(record)
            if on_epoch is not None:
                on_epoch(seed, record)
            if dev["weighted_f1"] > best_f1:
                best_f1, best_epoch, waited = dev["weighted_f1"], epoch, 0
                best_dev = {name: dev[name] for name in SELECTION_SCORES}
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
    return SeedResult(seed, best_epoch, len(history), best_dev, history, best_state or {})


# ---------------------------------------------------------------- checkpoints


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


def write_json(path: str | Path, value: Any) -> Path:
    """Write JSON atomically, creating the folder (metrics files are read by `dvc metrics show`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, value)
    return path


def save_checkpoint(directory: Path, result: SeedResult, config: Mapping[str, Any]) -> None:
    """Write `model.safetensors` (no pickle), `config.json` and `history.json` into a fresh folder, atomically."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {k: v.contiguous() for k, v in result.state.items()}
    save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    _write_json(tmp / CONFIG_FILE, {**config, "seed": result.seed, **result.summary()})
    _write_json(tmp / HISTORY_FILE, result.history)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train the model first (dvc repro train@<model>)")
    return json.loads(path.read_text())


def load_checkpoint(directory: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained model from its folder: the config names kind, params and input dims."""
    config = read_checkpoint_config(directory)
    input_dims = {key: int(config["input_dims"][key]) for key in config["inputs"]}  # inputs fix the fusion order
    model = build_model(config["kind"], config["model_params"], input_dims, len(config["labels"]))
    model.load_state_dict(load_file(str(Path(directory) / WEIGHTS_FILE), device="cpu"))
    return model.to(device).eval(), config


def feature_stats(config: Mapping[str, Any]) -> dict[str, FeatureStats]:
    """The train-split standardisation stored in a checkpoint config."""
    return {key: FeatureStats.from_json(value) for key, value in config["feature_stats"].items()}


def _load_seed_result(directory: Path) -> SeedResult | None:
    try:
        config = read_checkpoint_config(directory)
        history = json.loads((directory / HISTORY_FILE).read_text())
        if not (directory / WEIGHTS_FILE).exists():
            return None
    except (OSError, ValueError):
        return None
    return SeedResult(
        config["seed"], config["best_epoch"], config["epochs_run"], config["dev"], history, {}, cached=True
    )


# ---------------------------------------------------------------- all seeds, with the content cache


def code_version(kind: str) -> str:
    """Fingerprint of the code a trained model depends on: this module and the model's module (the
    registry imports it by name), with every project module either imports."""
    return code_fingerprint(__name__, get_model_class(kind).__module__)


def feature_fingerprints(inputs: Sequence[str]) -> dict[str, str]:
    """Full content hash of each input feature file."""
    return {key: file_hash(paths.features_path(key)) for key in inputs}


def cache_key(spec: ModelSpec, cfg: TrainConfig, fingerprints: Mapping[str, str], fold: Fold | None = None) -> str:
    """Content key of a model's training run: manifest, its own input files, params and code (and fold)."""
    identity = {
        "manifest": file_hash(paths.MANIFEST),
        "features": dict(fingerprints),
        "model": {"name": spec.name, **spec.params},
        "train": cfg.cache_identity(),
        "code": code_version(spec.kind),
    }
    if fold is not None:
        identity["fold"] = fold.identity()
    return stable_hash(identity, 24)


@dataclass
class TrainOutcome:
    spec: ModelSpec
    data: DialogueData
    results: list[SeedResult]
    cache_dir: Path | None


def checkpoint_config(spec: ModelSpec, cfg: TrainConfig, data: DialogueData, fingerprints: Mapping[str, str]) -> dict:
    """Everything needed to rebuild, check and explain a checkpoint, next to its weights."""
    return {
        "model": spec.name,
        "kind": spec.kind,
        "model_params": spec.params,
        "inputs": list(spec.inputs),
        "input_dims": data.input_dims,
        "labels": data.labels,
        "feature_stats": {k: s.to_json() for k, s in data.stats.items()},
        "features": {
            k: {"fingerprint": fingerprints[k], "metadata": data.feature_meta.get(k, {})} for k in spec.inputs
        },
        "train": cfg.cache_identity(),
        "code_version": code_version(spec.kind),
        "selection": "best epoch by dev weighted F1",
    }


def train_model(
    spec: ModelSpec,
    cfg: TrainConfig,
    on_epoch: EpochCallback | None = None,
    on_seed: Callable[[SeedResult], None] | None = None,
    use_cache: bool = True,
    cache_root: Path | None = None,
    out_dir: Path | None = None,
    fold: Fold | None = None,
) -> TrainOutcome:
    """Train (or restore from the content cache) every seed and write `artifacts/models/<name>/seed<k>/`.

    A restored seed replays its stored learning curve through `on_epoch`, so logs look the same
    whether a seed was trained now or before. With a `fold`, its splits replace the manifest's.
    """
    fingerprints = feature_fingerprints(spec.inputs)
    split_of = fold.split_of if fold is not None else None
    data = load_dialogue_data(spec.inputs, split_of=split_of, **spec.sequences.loader_kwargs())
    config = checkpoint_config(spec, cfg, data, fingerprints)
    if fold is not None:
        config["fold"] = fold.identity()
    key = cache_key(spec, cfg, fingerprints, fold)
    cache_dir = (cache_root or paths.CACHE_DIR / "train") / key if use_cache else None
    out_dir = out_dir or paths.MODELS_DIR / spec.name
    shutil.rmtree(out_dir, ignore_errors=True)
    results = []
    for seed in cfg.seeds:
        seed_dir = out_dir / f"seed{seed}"
        cached = _load_seed_result(cache_dir / f"seed{seed}") if cache_dir is not None else None
        if cached is not None:
            if on_epoch is not None:
                for record in cached.history:
                    on_epoch(seed, record)
            shutil.copytree(cache_dir / f"seed{seed}", seed_dir)
            result = cached
        else:
            result = fit_seed(spec, data, cfg, seed, on_epoch)
            if cache_dir is not None:
                save_checkpoint(cache_dir / f"seed{seed}", result, config)
            save_checkpoint(seed_dir, result, config)
            result.state = {}  # written; do not hold every seed's weights in memory
        results.append(result)
        if on_seed is not None:
            on_seed(result)
    return TrainOutcome(spec, data, results, cache_dir)

