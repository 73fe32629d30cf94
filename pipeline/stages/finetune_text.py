"""`finetune_text`: fine-tune the text encoder for emotion classification, as the seed papers do.

COSMIC-style RoBERTa features, TelME's prompt features and the speaker-KD paper all come from an
encoder first fine-tuned on the corpus's train split. This stage trains the encoder named in
`finetune_text.encoder` (an extractor block: name, model, pooling, context) plus a linear head on
exactly the inputs and pooling the extractor will use, picks the epoch with the best dev weighted
F1 (test is never read), and writes a model folder, `artifacts/text_encoder/`, that
`features.text.model` can point to.

Training runs in the project's one loop (`pipeline.training.loop`); each finished epoch is
checkpointed under `.cache/finetune_text/<key>/` (`pipeline.checkpoints.Checkpointer`: model, head,
optimiser, scheduler, history), keyed by the settings, the training data and the code fingerprint of this
module, the encoder's module and everything they import (`pipeline.code_fingerprint`): a killed run
resumes at the next epoch, and because shuffling and dropout are seeded per epoch the resumed run
ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import parse_block, setting
from core.device import device_problem
from extractors import ExtractorConfigError, build_extractor
from extractors.base import resolve_device
from extractors.text_transformer import TransformerTextExtractor
from pipeline import paths
from pipeline.cache import stable_hash
from pipeline.checkpoints import Checkpointer, weights_path, write_json
from pipeline.code_fingerprint import code_fingerprint
from pipeline.config import ConfigError, section
from pipeline.extractor_identity import extractor_identity
from pipeline.manifest import read_manifest
from pipeline.runner import Runner
from pipeline.text_items import text_items
from pipeline.training.loop import EpochEnd, LoopOptions, Task, fit
from pipeline.training.metrics import classification_scores

log = logging.getLogger(__name__)

STAGE = "finetune_text"
OUT_DIR = paths.ARTIFACTS / "text_encoder"
METRICS = paths.METRICS_DIR / "finetune_text.json"
PROTOCOL = "trained on the train split; epoch selected on dev weighted F1; test never read"


@dataclass(frozen=True)
class FinetuneConfig:
    """The `finetune_text` block: the encoder (validated by its extractor, `build_encoder`) and the
    training knobs, which `training()` lists for the cache key and the saved record."""

    encoder: dict[str, Any]
    epochs: int = setting(min=1)
    lr: float = setting(positive=True)
    weight_decay: float = setting(min=0)
    warmup: float = setting(min=0, max=1)
    batch_size: int = setting(min=1)
    grad_clip: float = setting(positive=True)
    seed: int = setting(min=0)
    device: str = setting("auto", check=device_problem)

    def __post_init__(self) -> None:
        for key in ("lr", "weight_decay", "warmup", "grad_clip"):
            object.__setattr__(self, key, float(getattr(self, key)))

    @classmethod
    def from_params(cls, block: Mapping[str, Any]) -> FinetuneConfig:
        return parse_block(cls, block, STAGE)

    def training(self) -> dict[str, Any]:
        """Every knob but the encoder, whose own config is recorded beside it."""
        return {key: value for key, value in asdict(self).items() if key != "encoder"}


def build_encoder(params: Mapping[str, Any]) -> TransformerTextExtractor:
    """The extractor whose inputs and pooling are trained; config problems name their params path."""
    block = section(params, "finetune_text.encoder")
    try:
        extractor = build_extractor(block)
    except ExtractorConfigError as error:
        raise ConfigError(f"params.yaml: 'finetune_text.encoder.{error.field}' {error.message}") from error
    if not isinstance(extractor, TransformerTextExtractor):
        raise ConfigError(f"params.yaml: 'finetune_text.encoder.name' is {extractor.name!r}, which is not a "
                          "transformer text extractor; allowed values: minilm, roberta")
    try:
        extractor.codec()
    except ExtractorConfigError as error:
        raise ConfigError(f"params.yaml: 'finetune_text.encoder.{error.field}' {error.message}") from error
    return extractor


# -- data ------------------------------------------------------------------------------------------


@dataclass
class Split:
    utt_ids: list[str]
    encoded: list[Any]
    labels: np.ndarray


def load_splits(extractor: TransformerTextExtractor) -> tuple[dict[str, Split], list[str], dict[str, int]]:
    """Encoded train and dev utterances with a known label and non-empty text; test is not read."""
    manifest = read_manifest()
    frame = manifest.frame
    labels = list(manifest.labels)
    index = {label: i for i, label in enumerate(labels)}
    usable = frame[frame.split.isin(["train", "dev"])]
    items = text_items(frame, set(usable.utt_id), extractor.context_turns, extractor.future_turns)
    splits: dict[str, Split] = {}
    skipped = {"unlabeled": 0, "empty_text": 0}
    for split in ("train", "dev"):
        rows = usable[usable.split == split].sort_values(["dialogue_id", "turn"], kind="stable")
        ids, encoded, targets = [], [], []
        for utt_id, label in zip(rows.utt_id, rows.label):
            item = items[utt_id]
            if label not in index:
                skipped["unlabeled"] += 1
                continue
            if not item.text.strip():
                skipped["empty_text"] += 1
                continue
            ids.append(utt_id)
            encoded.append(extractor.encode(item))
            targets.append(index[label])
        if not ids:
            raise ValueError(f"{STAGE}: the {split} split has no labelled utterances with text; "
                             "fine-tuning needs train to learn and dev to select the epoch")
        splits[split] = Split(ids, encoded, np.asarray(targets, dtype=np.int64))
    return splits, labels, skipped


def data_fingerprint(splits: Mapping[str, Split]) -> str:
    return stable_hash({name: [s.utt_ids, [e.ids for e in s.encoded], s.labels.tolist()] for name, s in splits.items()})


# -- training ---------------------------------------------------------------------------------------


@dataclass
class Trainee:
    """The encoder being trained, its classification head, optimiser and schedule."""

    model: Any
    head: Any
    optimizer: Any
    scheduler: Any
    device: str


def make_trainee(extractor: TransformerTextExtractor, cfg: FinetuneConfig, classes: int, steps: int,
                 device: str) -> Trainee:
    """Load the encoder and draw the head's initial weights (right after seeding), with AdamW and the schedule."""
    import torch

    from extractors.hf import auto_model

    try:
        model = auto_model(extractor.model_source())
    except ExtractorConfigError as error:
        raise ConfigError(f"params.yaml: 'finetune_text.encoder.{error.field}' {error.message}") from error
    head = torch.nn.Linear(int(model.config.hidden_size), classes)
    model.to(device).train()
    head.to(device).train()
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n or "norm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n or "norm" in n]
    groups = [{"params": decay + list(head.parameters()), "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    warm = int(round(cfg.warmup * steps))

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to zero
        if step < warm:
            return (step + 1) / max(1, warm)
        return max(0.0, (steps - step) / max(1, steps - warm))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return Trainee(model, head, optimizer, scheduler, device)


def logits_for(extractor: TransformerTextExtractor, trainee: Trainee, encoded: list[Any]) -> Any:
    batch = extractor.collate(encoded, trainee.device)
    outputs = extractor.run_model(trainee.model, batch)
    return trainee.head(extractor.pool_outputs(outputs, batch).float())


def predict(extractor: TransformerTextExtractor, trainee: Trainee, split: Split, batch_size: int) -> np.ndarray:
    import torch

    from extractors.base import length_batches

    trainee.model.eval()
    trainee.head.eval()
    predictions = np.zeros(len(split.utt_ids), dtype=np.int64)
    with torch.inference_mode():
        for rows in length_batches([len(e.ids) for e in split.encoded], batch_size):
            logits = logits_for(extractor, trainee, [split.encoded[r] for r in rows])
            predictions[rows] = logits.argmax(dim=1).cpu().numpy()
    return predictions


class FinetuneTask(Task):
    """Encoder + head on the train split, cross-entropy, dev scores per epoch, for `pipeline.training.loop.fit`.

    Shuffling and dropout are seeded per epoch, so a run resumed after a finished epoch ends with the
    same weights as an uninterrupted one.
    """

    roles = ("encoder",)

    def __init__(self, extractor: TransformerTextExtractor, trainee: Trainee, splits: Mapping[str, Split],
                 labels: list[str], cfg: FinetuneConfig) -> None:
        self.extractor, self.trainee, self.cfg, self.labels = extractor, trainee, cfg, labels
        self.train, self.dev = splits["train"], splits["dev"]
        self.order = np.zeros(0, dtype=np.int64)

    def optimizers(self) -> Sequence[Any]:
        return (self.trainee.optimizer,)

    def schedulers(self) -> Sequence[Any]:
        return (self.trainee.scheduler,)

    def clip_groups(self) -> Sequence[Sequence[Any]]:
        return ([p for group in self.trainee.optimizer.param_groups for p in group["params"]],)

    def begin_epoch(self, epoch: int) -> None:
        import torch

        epoch_seed = self.cfg.seed * 100_003 + epoch - 1
        torch.manual_seed(epoch_seed)
        self.order = np.random.default_rng(epoch_seed).permutation(len(self.train.utt_ids))
        self.trainee.model.train()
        self.trainee.head.train()

    def batches(self, epoch: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self.order), self.cfg.batch_size):
            yield self.order[start : start + self.cfg.batch_size]

    def forward(self, rows: np.ndarray) -> Any:
        return logits_for(self.extractor, self.trainee, [self.train.encoded[r] for r in rows])

    def objectives(self, rows: np.ndarray, logits: Any) -> tuple[Any, dict[str, float]]:
        import torch

        targets = torch.from_numpy(self.train.labels[rows]).to(self.trainee.device)
        return torch.nn.functional.cross_entropy(logits, targets), {}

    def batch_weight(self, rows: np.ndarray) -> float:
        return len(rows)  # the epoch's loss is a mean over utterances

    def end_epoch(self, epoch: int, means: dict[str, float]) -> EpochEnd:
        predicted = predict(self.extractor, self.trainee, self.dev, self.cfg.batch_size)
        scores = classification_scores(self.dev.labels, predicted, self.labels)
        record = {"epoch": epoch, "train_loss": means["loss"], "dev_weighted_f1": scores["weighted_f1"],
                  "dev_accuracy": scores["accuracy"], "dev_macro_f1": scores["macro_f1"]}
        return EpochEnd(record, {"encoder": {k: scores[k] for k in ("weighted_f1", "accuracy", "macro_f1")}})


def checkpointer(folder: Path) -> Callable[[FinetuneTask], Checkpointer]:
    """Each finished epoch: `last/` (encoder, head, optimiser, schedule), `best/` when dev improved."""

    def make(task: FinetuneTask) -> Checkpointer:
        trainee = task.trainee
        return Checkpointer(folder, {"model": trainee.model, "head": trainee.head},
                            {"optimizer": trainee.optimizer, "scheduler": trainee.scheduler})

    return make


def export(extractor: TransformerTextExtractor, saver: Checkpointer, device: str, report: dict[str, Any]) -> Path:
    """Write the best epoch as a Hugging Face folder (model + tokenizer + head), replacing OUT_DIR whole."""
    from transformers import AutoTokenizer

    saver.load_best(device)
    OUT_DIR.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".text_encoder.", dir=OUT_DIR.parent))
    try:
        saver.modules["model"].save_pretrained(staging)
        AutoTokenizer.from_pretrained(extractor.model_source(), local_files_only=True).save_pretrained(staging)
        shutil.copy(weights_path(saver.best, "head"), staging / "classifier_head.safetensors")
        (staging / "finetune.json").write_text(json.dumps(report, indent=2))
        shutil.rmtree(OUT_DIR, ignore_errors=True)
        staging.rename(OUT_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return OUT_DIR


# -- the stage ---------------------------------------------------------------------------------------


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    block = section(params, STAGE)
    cfg = FinetuneConfig.from_params(block)
    extractor = build_encoder(params)
    try:
        device = resolve_device(cfg.device)
    except ExtractorConfigError as error:
        raise ConfigError(f"params.yaml: 'finetune_text.device' {error.message}") from error
    splits, labels, skipped = load_splits(extractor)
    train, dev = splits["train"], splits["dev"]
    steps = cfg.epochs * math.ceil(len(train.utt_ids) / cfg.batch_size)
    encoder_config = {"modality": "text", **extractor_identity(extractor)}
    key = stable_hash({"encoder": encoder_config, "train": cfg.training() | {"device": None}, "labels": labels,
                       "data": data_fingerprint(splits),
                       "code": code_fingerprint(__name__, type(extractor).__module__)}, 24)
    folder = paths.CACHE_DIR / STAGE / key

    def setup() -> FinetuneTask:
        return FinetuneTask(extractor, make_trainee(extractor, cfg, len(labels), steps, device), splits, labels, cfg)

    def on_epoch(record: dict[str, Any]) -> None:
        runner.hook(STAGE, completed=record["epoch"], total=cfg.epochs)
        log.info(f"[{STAGE}] epoch {record['epoch']}/{cfg.epochs}: train loss {record['train_loss']:.4f}, "
                 f"dev weighted F1 {record['dev_weighted_f1']:.4f}")

    runner.hook(STAGE, completed=0, total=cfg.epochs)
    options = LoopOptions(epochs=cfg.epochs, device=device, seed=cfg.seed, grad_clip=cfg.grad_clip,
                          loss_name="fine-tuning loss")
    fitted = fit(setup, options, on_epoch=on_epoch, checkpointer=checkpointer(folder))
    best = fitted.best["encoder"]
    report = {
        "protocol": PROTOCOL,
        "encoder": encoder_config,
        "base_model": extractor.model_source(),
        "training": cfg.training(),
        "labels": labels,
        "train_utterances": len(train.utt_ids),
        "dev_utterances": len(dev.utt_ids),
        "skipped": skipped,
        "best_epoch": best.epoch or None,
        "best_dev_weighted_f1": best.score,
        "history": fitted.history,
        "resumed_from_epoch": fitted.resumed_from,
    }
    export(extractor, fitted.checkpointer, device, report)
    write_json(METRICS, {k: v for k, v in report.items() if k != "encoder"} | {"model_dir": str(OUT_DIR)})
    return {
        "model_dir": str(OUT_DIR),
        "best_epoch": report["best_epoch"],
        "dev_weighted_f1": round(best.score, 4),
        "train_utterances": len(train.utt_ids),
        "resumed_from_epoch": fitted.resumed_from,
        "seconds": round(time.perf_counter() - started, 2),
    }
