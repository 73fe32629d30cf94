"""MRD over one pair of trained models, seed by seed: the `MRDTask` the training loop runs, and the outputs.

For each seed both models are loaded from their dev-selected checkpoints, frozen copies are kept as
anchors, and both are fine-tuned together (`models.layers.mutual_distill`) on the curriculum's
active utterances; each keeps its own best epoch by dev weighted F1. The outputs are written with
the backbones' own config under the refined names, so `evaluate` scores them like any model.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from models.batch import DialogueBatch
from models.layers.composite_loss import balanced_class_weights
from models.layers.mutual_distill import mrd_losses, total_mrd_loss
from pipeline import paths
from pipeline.config import ConfigError
from pipeline.device import resolve_device
from pipeline.training.cache import code_version
from pipeline.training.config import ModelSpec, TrainConfig
from pipeline.training.loop import EpochEnd, LoopOptions, Task, copy_state, fit
from pipeline.training.model_checkpoints import load_checkpoint, read_checkpoint_config, save_seed
from pipeline.training.mrd.config import REFINE_BLOCK, MRDConfig
from pipeline.training.mrd.curriculum import Curriculum, categorise_training_split, initial_curriculum, pacing_ratio
from pipeline.training.mrd.pairs import PairedData, load_model_data
from pipeline.training.trainer import (
    SELECTION_SCORES,
    EpochCallback,
    SeedResult,
    dev_batch_source,
    effective_loss_weights,
    score_split,
    train_batch_source,
)

PROTOCOL = (
    "MRD fine-tuning from the dev-selected checkpoints of both input models, seed by seed; curriculum from the "
    "training split only; each refined model's epoch selected on its own dev weighted F1; test never seen"
)


@dataclass
class RefinedSeed:
    """A seed's two refined models (each selected on its own dev score) and its curriculum."""

    multi: SeedResult
    text: SeedResult
    curriculum: dict[str, Any]


def _frozen_copy(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model).eval()
    for parameter in twin.parameters():
        parameter.requires_grad_(False)
    return twin


def _dialogue_order(
    pair: PairedData, curriculum: Curriculum, pool: set[str], mode: str, rng: np.random.Generator
) -> list[int]:
    """Train dialogues for an epoch: those with an active utterance, shuffled ("order": hardest first)."""
    dialogues = pair.multi.split("train")
    if mode == "order":
        priority = [curriculum.dialogue_priority(d.utt_ids) for d in dialogues]
        ties = rng.permutation(len(dialogues))
        return sorted(range(len(dialogues)), key=lambda i: (-priority[i][0], -priority[i][1], ties[i]))
    keep = [i for i, d in enumerate(dialogues) if any(u in pool for u in d.utt_ids)]
    return [keep[i] for i in rng.permutation(len(keep))]


class MRDTask(Task):
    """One seed of MRD: both models fine-tuned together on the curriculum's active utterances.

    Built right after seeding: the curriculum (and out-of-fold retraining, when it runs) draws from
    the seeded generator before the first epoch, exactly as the epochs' dialogue orders do after it.
    """

    roles = ("multi", "text")

    def __init__(self, cfg: MRDConfig, specs: tuple[ModelSpec, ModelSpec], pair: PairedData,
                 models: tuple[nn.Module, nn.Module], train_cfg: TrainConfig, seed: int, device: str,
                 fold_cfgs: tuple[TrainConfig, TrainConfig] | None) -> None:
        self.cfg, self.pair, self.train_cfg, self.device = cfg, pair, train_cfg, device
        self.rng = np.random.default_rng(seed)
        self.multi, self.text = (m.to(device) for m in models)
        self.frozen_multi, self.frozen_text = _frozen_copy(self.multi), _frozen_copy(self.text)
        self.curriculum, self.info = initial_curriculum(
            cfg, specs, pair, (self.multi, self.text), train_cfg, seed, self.rng, fold_cfgs
        )
        counts = torch.as_tensor(pair.multi.label_counts("train"), dtype=torch.float32, device=device)
        self.class_weights = balanced_class_weights(counts)
        self.optimisers = [
            torch.optim.Adam(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay) for m in (self.multi, self.text)
        ]
        self.aux_weights = [effective_loss_weights(m, s, train_cfg) for m, s in zip((self.multi, self.text), specs)]
        self.model_hooks = [getattr(m, "begin_epoch", None) for m in (self.multi, self.text)]
        self.sources = [train_batch_source(d, train_cfg.batch_dialogues, device, seed) for d in (pair.multi, pair.text)]
        self.dev_sources = [dev_batch_source(d, train_cfg.batch_dialogues, device) for d in (pair.multi, pair.text)]
        self.ratio, self.active_pool = 1.0, set()

    def optimizers(self) -> Sequence[torch.optim.Optimizer]:
        return self.optimisers

    def clip_groups(self) -> Sequence[Sequence[torch.Tensor]]:
        return [list(self.multi.parameters()), list(self.text.parameters())]

    def begin_epoch(self, epoch: int) -> None:
        rule = self.cfg.curriculum
        self.ratio = 1.0 if rule.mode != "pool" else pacing_ratio(epoch - 1, rule.r0, rule.step)
        self.active_pool = self.curriculum.pool(self.ratio)
        for model, hook, source, dev in zip((self.multi, self.text), self.model_hooks, self.sources, self.dev_sources):
            model.train()
            if callable(hook):
                hook(epoch, source, dev)

    def batches(self, epoch: int) -> Iterator[tuple[DialogueBatch, DialogueBatch]]:
        order = _dialogue_order(self.pair, self.curriculum, self.active_pool, self.cfg.curriculum.mode, self.rng)
        for batch_m, batch_t in self.pair.batches(order, self.train_cfg.batch_dialogues):
            yield batch_m.to(self.device), batch_t.to(self.device)

    def forward(self, batch: tuple[DialogueBatch, DialogueBatch]) -> tuple[Any, ...]:
        batch_m, batch_t = batch
        active = torch.tensor(
            [
                [u in self.active_pool for u in ids] + [False] * (batch_m.mask.shape[1] - len(ids))
                for ids in batch_m.utt_ids
            ],
            device=self.device,
        )
        out_m, out_t = self.multi(batch_m), self.text(batch_t)
        with torch.no_grad():
            anchor_m, anchor_t = self.frozen_multi(batch_m).logits, self.frozen_text(batch_t).logits
        return out_m, out_t, anchor_m, anchor_t, active

    def objectives(self, batch: tuple[DialogueBatch, DialogueBatch], output: tuple[Any, ...]
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch_m, _ = batch
        out_m, out_t, anchor_m, anchor_t, active = output
        terms = mrd_losses(
            out_m.logits, out_t.logits, anchor_m, anchor_t, batch_m.labels, batch_m.mask, active, self.cfg,
            self.class_weights,
        )  # fmt: skip
        loss = total_mrd_loss(terms, self.cfg)
        if self.cfg.backbone_aux:
            for out, weights in zip((out_m, out_t), self.aux_weights):
                for name, term in out.aux_losses.items():
                    if weights.get(name, 1.0):
                        loss = loss + weights.get(name, 1.0) * term.float()
        return loss, terms

    def end_epoch(self, epoch: int, means: dict[str, float]) -> EpochEnd:
        record: dict[str, Any] = {"epoch": epoch, "active_utterances": float(len(self.active_pool))}
        record.update({f"train_{name}": value for name, value in means.items()})
        dev_by_role: dict[str, dict[str, float]] = {}
        for role, model, data in (("multi", self.multi, self.pair.multi), ("text", self.text, self.pair.text)):
            dev = score_split(model, data, "dev", self.train_cfg.batch_dialogues, self.device)
            record.update({f"dev_{role}_{name}": dev[name] for name in SELECTION_SCORES})
            dev_by_role[role] = {n: dev[n] for n in SELECTION_SCORES}
        if self.cfg.curriculum.dynamic and self.ratio < 1.0:  # re-categorise with the models as they are now
            self.curriculum = categorise_training_split(
                self.pair, (self.multi, self.text), self.train_cfg, self.device, self.rng
            )
            self.info.setdefault("dynamic_counts", []).append(self.curriculum.counts())
        return EpochEnd(record, dev_by_role)

    def state(self, role: str) -> dict[str, torch.Tensor]:
        return copy_state(self.multi if role == "multi" else self.text)


def refine_seed(
    cfg: MRDConfig,
    specs: tuple[ModelSpec, ModelSpec],
    pair: PairedData,
    models: tuple[nn.Module, nn.Module],
    train_cfg: TrainConfig,
    seed: int,
    on_epoch: EpochCallback | None = None,
    fold_cfgs: tuple[TrainConfig, TrainConfig] | None = None,
) -> RefinedSeed:
    """Fine-tune both models with MRD; keep each one's best-dev epoch.

    `train_cfg` gives batch size, device and gradient clipping; `fold_cfgs` (default: `train_cfg`
    twice) the two backbones' own training settings for out-of-fold categories.
    """
    device = resolve_device(train_cfg.device, "train.device")
    options = LoopOptions(epochs=cfg.epochs, device=device, seed=seed, deterministic=True,
                          grad_clip=train_cfg.grad_clip, loss_name="MRD loss", where=f"seed {seed}")
    fitted = fit(lambda: MRDTask(cfg, specs, pair, models, train_cfg, seed, device, fold_cfgs), options,
                 on_epoch=None if on_epoch is None else lambda record: on_epoch(seed, record))
    results = {
        role: SeedResult(seed, best.epoch, len(fitted.history), best.scores, fitted.history, best.state or {})
        for role, best in fitted.best.items()
    }
    return RefinedSeed(results["multi"], results["text"], fitted.task.info)


@dataclass
class RefineOutcome:
    cfg: MRDConfig
    seeds: list[RefinedSeed]


def _refined_config(base: Mapping[str, Any], name: str, role: str, cfg: MRDConfig) -> dict[str, Any]:
    """The input model's checkpoint config (kind, params, inputs, stats) under the refined name, plus provenance."""
    config = {k: v for k, v in base.items() if k not in ("seed", "best_epoch", "epochs_run", "dev")}
    config.update(
        model=name,
        refined_from={
            "model": base["model"],
            "role": role,
            "partner": cfg.text if role == "multimodal" else cfg.multimodal,
        },
        refinement=cfg.identity(),
        refinement_code=code_version(config["kind"]),
        selection=f"best MRD epoch by this model's dev weighted F1 ({role})",
    )
    return config


def refine(
    params: Mapping[str, Any],
    name: str,
    on_epoch: EpochCallback | None = None,
    on_seed: Callable[[RefinedSeed], None] | None = None,
) -> RefineOutcome:
    """Run MRD for every `train.seeds` seed and write both refined models' checkpoints."""
    cfg = MRDConfig.from_params(params, name)
    fold_cfgs = (TrainConfig.for_model(params, cfg.multimodal), TrainConfig.for_model(params, cfg.text))
    train_cfg = fold_cfgs[0]  # seeds, batch size, device: the multimodal model's training settings
    if fold_cfgs[1].seeds != train_cfg.seeds:
        raise ConfigError(
            f"params.yaml: '{REFINE_BLOCK}.{name}': {cfg.multimodal} and {cfg.text} are trained with different seeds"
        )
    train_cfg.apply_threads()
    specs = (ModelSpec.from_params(params, cfg.multimodal), ModelSpec.from_params(params, cfg.text))
    for spec in specs:
        if getattr(spec, "folds", None) is not None:
            raise ConfigError(
                f"params.yaml: '{REFINE_BLOCK}.{name}': model {spec.name!r} is trained in folds; MRD needs one split"
            )
    device = resolve_device(train_cfg.device, "train.device")
    dirs = [paths.MODELS_DIR / spec.name for spec in specs]
    configs = [{seed: read_checkpoint_config(d / f"seed{seed}") for seed in train_cfg.seeds} for d in dirs]
    for spec, by_seed in zip(specs, configs):
        stats = {json.dumps(c["feature_stats"], sort_keys=True) for c in by_seed.values()}
        if len(stats) != 1 or any(list(c["inputs"]) != list(spec.inputs) for c in by_seed.values()):
            raise ValueError(
                f"the checkpoints of {spec.name} do not match params or each other: rerun train@{spec.name}"
            )
    first = train_cfg.seeds[0]
    pair = PairedData(load_model_data(specs[0], configs[0][first]), load_model_data(specs[1], configs[1][first]))
    out_multi, out_text = paths.MODELS_DIR / cfg.name, paths.MODELS_DIR / cfg.text_output
    for stale in (out_multi, out_text):  # a killed earlier run may have left half-written seed folders
        shutil.rmtree(stale, ignore_errors=True)
    outcomes = []
    for seed in train_cfg.seeds:
        model_m, _ = load_checkpoint(dirs[0] / f"seed{seed}", device)
        model_t, _ = load_checkpoint(dirs[1] / f"seed{seed}", device)
        result = refine_seed(cfg, specs, pair, (model_m, model_t), train_cfg, seed, on_epoch, fold_cfgs)
        save_seed(
            out_multi / f"seed{seed}", result.multi, _refined_config(configs[0][seed], cfg.name, "multimodal", cfg)
        )
        save_seed(
            out_text / f"seed{seed}", result.text, _refined_config(configs[1][seed], cfg.text_output, "text", cfg)
        )
        result.multi.state, result.text.state = {}, {}
        outcomes.append(result)
        if on_seed is not None:
            on_seed(result)
    return RefineOutcome(cfg, outcomes)
