"""MRD, Mutual Refinement Distillation: fine-tune two trained models of any backbone together.

A `refine.<name>` block names a trained multimodal model and its text-only twin (two `models`
blocks, e.g. `fusion_gru` and `text_gru`). For each seed k both are loaded from
`artifacts/models/<model>/seed<k>/`, frozen copies are kept as anchors, and both are fine-tuned on
L = alpha KL_T(text || multi) + beta KL_T(multi || text)            (MIC, teachers detached)
  + gamma |z_m - zbar_m|^2 + delta |z_t - zbar_t|^2                 (ILC, against the frozen copies)
  + CE(z_m) + CE(z_t)                                              (classification)
with weight decay as the L2 term, while a reverse curriculum (`pipeline.training.curriculum`) feeds
Difficult, then General, then Simple training utterances. Classification and MIC are averaged over
the curriculum's active utterances, ILC over all real ones. Each model keeps its own best epoch by
dev weighted F1; the outputs are `artifacts/models/<name>/` (the refined multimodal model) and
`artifacts/models/<name>_text/`, with the backbones' own config so `evaluate` scores them like any
model. Test labels are never read: categories use the training split (or out-of-fold predictions
over it), selection uses dev.

Ablation row (paper Table 5) -> params edit of the `refine.<name>` block:
- MRD (text-only model)  -> (the `<name>_text` output of every run)
- no-MIC                 -> alpha: 0, beta: 0
- no-ILC                 -> gamma: 0, delta: 0
- no-RCL                 -> curriculum: {mode: none}
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.batch import IGNORE_INDEX
from models.layers.composite_loss import balanced_class_weights, poly_cross_entropy
from models.layers.distill import logit_distillation, masked_cross_entropy
from models.layers.masking import masked_mean
from models.registry import build_model
from pipeline import paths
from pipeline.config import ConfigError, section
from pipeline.device import resolve_device
from pipeline.training.curriculum import Curriculum, pacing_ratio
from pipeline.training.data import Dialogue, DialogueData, collate, load_dialogue_data
from pipeline.training.trainer import (
    SELECTION_SCORES,
    ModelSpec,
    SeedResult,
    TrainConfig,
    code_version,
    deterministic_on_cpu,
    effective_loss_weights,
    feature_stats,
    fit_seed,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
    score_split,
    seed_everything,
    train_batch_source,
)

REFINE_BLOCK = "refine"
TEXT_SUFFIX = "_text"
CLS_LOSSES = ("ce", "balanced", "focal")
CURRICULUM_MODES = ("pool", "order", "none")
OOF_MODES = ("auto", "always", "never")
PROTOCOL = (
    "MRD fine-tuning from the dev-selected checkpoints of both input models, seed by seed; curriculum from the "
    "training split only; each refined model's epoch selected on its own dev weighted F1; test never seen"
)
EpochCallback = Callable[[int, dict[str, float]], None]


# ---------------------------------------------------------------- configuration


def _number(block: Mapping[str, Any], key: str, where: str, default: float, minimum: float = 0.0) -> float:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"params.yaml: '{where}.{key}' must be a number >= {minimum}, got {value!r}")
    return float(value)


def _whole(block: Mapping[str, Any], key: str, where: str, default: int, minimum: int = 1) -> int:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"params.yaml: '{where}.{key}' must be an integer >= {minimum}, got {value!r}")
    return value


def _option(block: Mapping[str, Any], key: str, where: str, default: str, allowed: Sequence[str]) -> str:
    value = block.get(key, default)
    if value not in allowed:
        raise ConfigError(f"params.yaml: '{where}.{key}' is {value!r}; allowed values: {', '.join(allowed)}")
    return str(value)


def _flag(block: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = block.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"params.yaml: '{where}.{key}' must be true or false, got {value!r}")
    return value


def _known_keys(block: Mapping[str, Any], where: str, allowed: Sequence[str]) -> None:
    unknown = sorted(set(block) - set(allowed))
    if unknown:
        raise ConfigError(
            f"params.yaml: '{where}' has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )


@dataclass(frozen=True)
class CurriculumConfig:
    """`refine.<name>.curriculum`: pool | order | none, linear pacing, out-of-fold categories, re-categorising."""

    mode: str = "pool"
    r0: float = 0.15
    step: int = 1
    oof: str = "auto"
    oof_folds: int = 5
    oof_threshold: float = 0.05
    dynamic: bool = False

    KEYS = ("mode", "r0", "step", "oof", "oof_folds", "oof_threshold", "dynamic")

    @classmethod
    def from_block(cls, block: Any, where: str) -> CurriculumConfig:
        block = {} if block is None else block
        if not isinstance(block, Mapping):
            raise ConfigError(f"params.yaml: '{where}' must be a mapping, got {block!r}")
        _known_keys(block, where, cls.KEYS)
        r0 = _number(block, "r0", where, 0.15)
        if not 0 < r0 <= 1:
            raise ConfigError(f"params.yaml: '{where}.r0' must be in (0, 1], got {r0!r}")
        threshold = _number(block, "oof_threshold", where, 0.05)
        if threshold > 1:
            raise ConfigError(f"params.yaml: '{where}.oof_threshold' must be in [0, 1], got {threshold!r}")
        return cls(
            mode=_option(block, "mode", where, "pool", CURRICULUM_MODES),
            r0=r0,
            step=_whole(block, "step", where, 1),
            oof=_option(block, "oof", where, "auto", OOF_MODES),
            oof_folds=_whole(block, "oof_folds", where, 5, minimum=2),
            oof_threshold=threshold,
            dynamic=_flag(block, "dynamic", where, False),
        )


@dataclass(frozen=True)
class MRDConfig:
    """One `refine.<name>` block (kind: mrd), validated by key."""

    name: str
    multimodal: str
    text: str
    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 3e-5
    temperature: float = 2.0
    alpha: float = 0.5
    beta: float = 0.5
    gamma: float = 0.5
    delta: float = 0.5
    kd_t2_scale: bool = False
    cls_loss: str = "ce"
    focal_gamma: float = 2.5
    backbone_aux: bool = False
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)

    KEYS = (
        "kind", "multimodal", "text", "epochs", "lr", "weight_decay", "temperature", "alpha", "beta", "gamma",
        "delta", "kd_t2_scale", "cls_loss", "focal_gamma", "backbone_aux", "curriculum",
    )  # fmt: skip

    @property
    def text_output(self) -> str:
        return f"{self.name}{TEXT_SUFFIX}"

    @classmethod
    def from_params(cls, params: Mapping[str, Any], name: str | None) -> MRDConfig:
        blocks = refinements(params)
        if name not in blocks:
            raise ConfigError(
                f"params.yaml: '{REFINE_BLOCK}' has no block {name!r}; configured: {', '.join(blocks) or '(none)'}"
            )
        where = f"{REFINE_BLOCK}.{name}"
        block = blocks[name]
        if not isinstance(block, Mapping):
            raise ConfigError(f"params.yaml: '{where}' must be a mapping")
        _known_keys(block, where, cls.KEYS)
        _option(block, "kind", where, "mrd", ("mrd",))
        models = section(params, "models")
        for role in ("multimodal", "text"):
            target = block.get(role)
            if target not in models:
                raise ConfigError(
                    f"params.yaml: '{where}.{role}' is {target!r}; it must name a trained model: {', '.join(models)}"
                )
        if block["multimodal"] == block["text"]:
            raise ConfigError(f"params.yaml: '{where}': multimodal and text must be two different models")
        for output in (name, f"{name}{TEXT_SUFFIX}"):
            if output in models:
                raise ConfigError(f"params.yaml: '{where}' writes model {output!r}, which 'models' already defines")
        temperature = _number(block, "temperature", where, 2.0)
        if temperature <= 0:
            raise ConfigError(f"params.yaml: '{where}.temperature' must be > 0, got {temperature!r}")
        lr = _number(block, "lr", where, 1e-4)
        if lr <= 0:
            raise ConfigError(f"params.yaml: '{where}.lr' must be > 0, got {lr!r}")
        return cls(
            name=str(name),
            multimodal=str(block["multimodal"]),
            text=str(block["text"]),
            epochs=_whole(block, "epochs", where, 10),
            lr=lr,
            weight_decay=_number(block, "weight_decay", where, 3e-5),
            temperature=temperature,
            alpha=_number(block, "alpha", where, 0.5),
            beta=_number(block, "beta", where, 0.5),
            gamma=_number(block, "gamma", where, 0.5),
            delta=_number(block, "delta", where, 0.5),
            kd_t2_scale=_flag(block, "kd_t2_scale", where, False),
            cls_loss=_option(block, "cls_loss", where, "ce", CLS_LOSSES),
            focal_gamma=_number(block, "focal_gamma", where, 2.5),
            backbone_aux=_flag(block, "backbone_aux", where, False),
            curriculum=CurriculumConfig.from_block(block.get("curriculum"), f"{where}.curriculum"),
        )

    def identity(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def refinements(params: Mapping[str, Any]) -> dict[str, Any]:
    """The `refine` block (refinement procedures over trained models), empty when absent."""
    blocks = params.get(REFINE_BLOCK) or {}
    if not isinstance(blocks, Mapping):
        raise ConfigError(f"params.yaml: '{REFINE_BLOCK}' must map names to refinement blocks")
    return dict(blocks)


def resolve_model_spec(params: Mapping[str, Any], name: str | None) -> ModelSpec:
    """The spec of a trained model: a `models` block, or one of a refinement's outputs.

    `<refine name>` is the refined multimodal model and `<refine name>_text` the refined text model;
    each has its input model's kind, inputs and hyper-parameters under its own name.
    """
    for key in refinements(params):
        if name in (key, f"{key}{TEXT_SUFFIX}"):
            cfg = MRDConfig.from_params(params, key)
            base = ModelSpec.from_params(params, cfg.multimodal if name == key else cfg.text)
            return dataclasses.replace(base, name=str(name))
    return ModelSpec.from_params(params, name)


# ---------------------------------------------------------------- losses


def mutual_distillation(student: Tensor, teacher: Tensor, active: Tensor, temperature: float, t2_scale: bool) -> Tensor:
    """KL(softmax(teacher / T) || softmax(student / T)) over active utterances; the teacher is detached.

    >= 0 and exactly 0 when the logits agree; multiplied by T^2 only with `t2_scale` (the paper has none).
    """
    kl = logit_distillation(teacher.detach(), student, active, temperature)  # includes T^2
    return kl if t2_scale else kl / temperature**2


def refactoring_loss(logits: Tensor, frozen: Tensor, valid: Tensor) -> Tensor:
    """Mean over valid utterances of the squared L2 distance to the frozen copy's output (summed over classes)."""
    return masked_mean((logits.float() - frozen.detach().float()).pow(2).sum(dim=-1), valid)


def classification_loss(
    logits: Tensor, labels: Tensor, active: Tensor, kind: str, class_weights: Tensor | None, focal_gamma: float
) -> Tensor:
    """CE on the active labeled utterances: plain, class-weighted ("balanced") or focal."""
    if kind == "ce":
        return masked_cross_entropy(logits, labels, active)
    if kind == "balanced":
        return poly_cross_entropy(logits, labels, active, alpha=0.0, class_weights=class_weights)
    keep = active & (labels != IGNORE_INDEX)
    safe = torch.where(keep, labels, torch.zeros_like(labels))
    log_p = F.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return masked_mean(-((1.0 - log_p.exp()).clamp(min=0.0) ** focal_gamma) * log_p, keep)


def mrd_losses(
    z_multi: Tensor,
    z_text: Tensor,
    frozen_multi: Tensor,
    frozen_text: Tensor,
    labels: Tensor,
    valid: Tensor,
    active: Tensor,
    cfg: MRDConfig,
    class_weights: Tensor | None = None,
) -> dict[str, Tensor]:
    """The six unweighted MRD terms for logits [B, L, C] (rows are the same utterances in all four)."""
    return {
        "distill_multi": mutual_distillation(z_multi, z_text, active, cfg.temperature, cfg.kd_t2_scale),
        "distill_text": mutual_distillation(z_text, z_multi, active, cfg.temperature, cfg.kd_t2_scale),
        "ref_multi": refactoring_loss(z_multi, frozen_multi, valid),
        "ref_text": refactoring_loss(z_text, frozen_text, valid),
        "cls_multi": classification_loss(z_multi, labels, active, cfg.cls_loss, class_weights, cfg.focal_gamma),
        "cls_text": classification_loss(z_text, labels, active, cfg.cls_loss, class_weights, cfg.focal_gamma),
    }


def total_mrd_loss(terms: Mapping[str, Tensor], cfg: MRDConfig) -> Tensor:
    """alpha, beta on MIC; gamma, delta on ILC; 1 on both classification terms (paper Eq. 15)."""
    weights = {"distill_multi": cfg.alpha, "distill_text": cfg.beta, "ref_multi": cfg.gamma, "ref_text": cfg.delta}
    total = terms["cls_multi"] + terms["cls_text"]
    for name, weight in weights.items():
        if weight:
            total = total + weight * terms[name]
    return total


# ---------------------------------------------------------------- data for a pair of models


@dataclass
class PairedData:
    """The two models' data (each standardised with its own checkpoint's stats), dialogue by dialogue."""

    multi: DialogueData
    text: DialogueData

    def __post_init__(self) -> None:
        for split in set(self.multi.splits) | set(self.text.splits):
            ids_m = [d.utt_ids for d in self.multi.split(split)]
            ids_t = [d.utt_ids for d in self.text.split(split)]
            if ids_m != ids_t:
                raise ValueError(f"the two models' {split} dialogues differ: were they trained on one manifest?")
        if self.multi.labels != self.text.labels:
            raise ValueError(f"label sets differ: {self.multi.labels} vs {self.text.labels}")

    def batches(self, indices: Sequence[int], size: int, split: str = "train"):
        """(multimodal batch, text batch) pairs over the given dialogue indices of `split`."""
        dialogues_m, dialogues_t = self.multi.split(split), self.text.split(split)
        for start in range(0, len(indices), size):
            chunk = indices[start : start + size]
            yield (
                collate([dialogues_m[i] for i in chunk], self.multi.inputs),
                collate([dialogues_t[i] for i in chunk], self.text.inputs),
            )


def load_model_data(
    spec: ModelSpec, config: Mapping[str, Any], split_of: Mapping[str, str] | None = None
) -> DialogueData:
    """A trained model's data with the standardisation stored in its checkpoint."""
    return load_dialogue_data(
        spec.inputs, stats=feature_stats(config), split_of=split_of, **spec.sequences.loader_kwargs()
    )


@torch.no_grad()
def utterance_logits(
    model: nn.Module, dialogues: Sequence[Dialogue], inputs: Sequence[str], batch_dialogues: int, device: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """utt_ids, labels and logits [N, C] of every real utterance, in dialogue order (eval mode)."""
    model.eval()
    ids, labels, logits = [], [], []
    for start in range(0, len(dialogues), batch_dialogues):
        batch = collate(dialogues[start : start + batch_dialogues], inputs)
        out = model(batch.to(device)).logits.float().cpu().numpy()
        for row, utts in enumerate(batch.utt_ids):
            ids.extend(utts)
            labels.append(batch.labels[row, : len(utts)].numpy())
            logits.append(out[row, : len(utts)])
    if not ids:
        return [], np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return ids, np.concatenate(labels), np.concatenate(logits)


def _per_utterance_ce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]


def build_curriculum(
    ids: Sequence[str], labels: np.ndarray, logits_m: np.ndarray, logits_t: np.ndarray, rng: np.random.Generator
) -> Curriculum:
    """Categories and order over the labeled utterances given both models' logits on them."""
    keep = labels != IGNORE_INDEX
    kept = [u for u, k in zip(ids, keep) if k]
    y, zm, zt = labels[keep], logits_m[keep], logits_t[keep]
    scores = _per_utterance_ce(zm, y) + _per_utterance_ce(zt, y) if len(y) else np.zeros(0)
    return Curriculum.build(kept, zm.argmax(1), zt.argmax(1), y, scores, rng)


def out_of_fold_logits(
    specs: tuple[ModelSpec, ModelSpec],
    data: DialogueData,
    train_cfgs: tuple[TrainConfig, TrainConfig],
    seed: int,
    folds: int,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """K-fold (by dialogue) out-of-fold logits of both backbones over the training split.

    Each fold retrains both backbones from scratch with the ordinary trainer on the other folds
    (selected on dev) and predicts the held-out one; test dialogues keep playing "test" and are unused.
    """
    train = [d.dialogue_id for d in data.split("train")]
    if len(train) < folds:
        raise ValueError(f"{len(train)} training dialogues cannot be split into {folds} out-of-fold folds")
    rng = np.random.default_rng([seed, 17])
    chunks = np.array_split(rng.permutation(len(train)), folds)
    base = {d.dialogue_id: split for split, dialogues in data.splits.items() for d in dialogues}
    found: dict[str, dict[str, np.ndarray]] = {"multi": {}, "text": {}}
    labels_of: dict[str, int] = {}
    for chunk in chunks:
        held = {train[i] for i in chunk}
        split_of = {d: ("heldout" if d in held else s) for d, s in base.items()}
        for role, spec, train_cfg in zip(("multi", "text"), specs, train_cfgs):
            device = resolve_device(train_cfg.device, "train.device")
            fold_data = load_dialogue_data(spec.inputs, split_of=split_of, **spec.sequences.loader_kwargs())
            result = fit_seed(spec, fold_data, train_cfg, seed)
            model = build_model(spec.kind, spec.params, fold_data.input_dims, len(fold_data.labels)).to(device)
            model.load_state_dict(result.state)
            ids, labels, logits = utterance_logits(
                model, fold_data.split("heldout"), fold_data.inputs, train_cfg.batch_dialogues, device
            )
            found[role].update(zip(ids, logits))
            labels_of.update(zip(ids, labels.tolist()))
    ids = [u for d in data.split("train") for u in d.utt_ids]
    stack = lambda role: np.stack([found[role][u] for u in ids])  # noqa: E731
    return ids, np.array([labels_of[u] for u in ids], dtype=np.int64), stack("multi"), stack("text")


# ---------------------------------------------------------------- one seed


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
    with deterministic_on_cpu(device):
        seed_everything(seed)
        rng = np.random.default_rng(seed)
        multi, text = (m.to(device) for m in models)
        frozen_multi, frozen_text = _frozen_copy(multi), _frozen_copy(text)
        curriculum, info = initial_curriculum(cfg, specs, pair, (multi, text), train_cfg, seed, rng, fold_cfgs)
        counts = torch.as_tensor(pair.multi.label_counts("train"), dtype=torch.float32, device=device)
        class_weights = balanced_class_weights(counts)
        optimisers = [torch.optim.Adam(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay) for m in (multi, text)]
        aux_weights = [effective_loss_weights(m, s, train_cfg) for m, s in zip((multi, text), specs)]
        hooks = [getattr(m, "begin_epoch", None) for m in (multi, text)]
        sources = [train_batch_source(d, train_cfg.batch_dialogues, device, seed) for d in (pair.multi, pair.text)]
        best = {"multi": (-1.0, 0, {}, None), "text": (-1.0, 0, {}, None)}
        history: list[dict[str, float]] = []
        for epoch in range(cfg.epochs):
            ratio = (
                1.0 if cfg.curriculum.mode != "pool" else pacing_ratio(epoch, cfg.curriculum.r0, cfg.curriculum.step)
            )
            pool = curriculum.pool(ratio)
            for model, hook, source in zip((multi, text), hooks, sources):
                model.train()
                if callable(hook):
                    hook(epoch + 1, source)
            sums: dict[str, float] = {}
            steps = 0
            order = _dialogue_order(pair, curriculum, pool, cfg.curriculum.mode, rng)
            for batch_m, batch_t in pair.batches(order, train_cfg.batch_dialogues):
                batch_m, batch_t = batch_m.to(device), batch_t.to(device)
                active = torch.tensor(
                    [
                        [u in pool for u in ids] + [False] * (batch_m.mask.shape[1] - len(ids))
                        for ids in batch_m.utt_ids
                    ],
                    device=device,
                )
                out_m, out_t = multi(batch_m), text(batch_t)
                with torch.no_grad():
                    anchor_m, anchor_t = frozen_multi(batch_m).logits, frozen_text(batch_t).logits
                terms = mrd_losses(
                    out_m.logits, out_t.logits, anchor_m, anchor_t, batch_m.labels, batch_m.mask, active, cfg,
                    class_weights,
                )  # fmt: skip
                loss = total_mrd_loss(terms, cfg)
                if cfg.backbone_aux:
                    for out, weights in zip((out_m, out_t), aux_weights):
                        for name, term in out.aux_losses.items():
                            if weights.get(name, 1.0):
                                loss = loss + weights.get(name, 1.0) * term.float()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"MRD loss became {float(loss)} (seed {seed}, epoch {epoch + 1})")
                for optimiser in optimisers:
                    optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if train_cfg.grad_clip is not None:
                    for model in (multi, text):
                        nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
                for optimiser in optimisers:
                    optimiser.step()
                for name, value in {"loss": loss, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach())
                steps += 1
            record: dict[str, float] = {"epoch": epoch + 1, "active_utterances": float(len(pool))}
            record.update({f"train_{name}": value / max(steps, 1) for name, value in sums.items()})
            for role, model, data in (("multi", multi, pair.multi), ("text", text, pair.text)):
                dev = score_split(model, data, "dev", train_cfg.batch_dialogues, device)
                record.update({f"dev_{role}_{name}": dev[name] for name in SELECTION_SCORES})
                if dev["weighted_f1"] > best[role][0]:
                    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    best[role] = (dev["weighted_f1"], epoch + 1, {n: dev[n] for n in SELECTION_SCORES}, state)
            history.append(record)
            if on_epoch is not None:
                on_epoch(seed, record)
            if cfg.curriculum.dynamic and ratio < 1.0:
                curriculum = categorise_training_split(pair, (multi, text), train_cfg, device, rng)
                info.setdefault("dynamic_counts", []).append(curriculum.counts())
    results = {
        role: SeedResult(seed, best[role][1], len(history), best[role][2], history, best[role][3] or {})
        for role in ("multi", "text")
    }
    return RefinedSeed(results["multi"], results["text"], info)


def categorise_training_split(
    pair: PairedData, models: tuple[nn.Module, nn.Module], train_cfg: TrainConfig, device: str, rng: np.random.Generator
) -> Curriculum:
    """Curriculum from both models' current predictions on the TRAIN split (labeled utterances only)."""
    ids, labels, logits_m = utterance_logits(
        models[0], pair.multi.split("train"), pair.multi.inputs, train_cfg.batch_dialogues, device
    )
    _, _, logits_t = utterance_logits(
        models[1], pair.text.split("train"), pair.text.inputs, train_cfg.batch_dialogues, device
    )
    return build_curriculum(ids, labels, logits_m, logits_t, rng)


def initial_curriculum(
    cfg: MRDConfig,
    specs: tuple[ModelSpec, ModelSpec],
    pair: PairedData,
    models: tuple[nn.Module, nn.Module],
    train_cfg: TrainConfig,
    seed: int,
    rng: np.random.Generator,
    fold_cfgs: tuple[TrainConfig, TrainConfig] | None = None,
) -> tuple[Curriculum, dict[str, Any]]:
    """Categories from the pre-trained pair on the training split, or out-of-fold when that is nearly all Simple."""
    device = resolve_device(train_cfg.device, "train.device")
    curriculum = categorise_training_split(pair, models, train_cfg, device, rng)
    info: dict[str, Any] = {"in_sample_counts": curriculum.counts(), "out_of_fold": False}
    rule = cfg.curriculum
    wanted = rule.oof == "always" or (rule.oof == "auto" and curriculum.difficult_share() < rule.oof_threshold)
    if wanted and cfg.curriculum.mode != "none":
        cfgs = fold_cfgs or (train_cfg, train_cfg)
        ids, labels, logits_m, logits_t = out_of_fold_logits(specs, pair.multi, cfgs, seed, rule.oof_folds)
        curriculum = build_curriculum(ids, labels, logits_m, logits_t, rng)
        info["out_of_fold"] = True
        for model in models:
            model.train()
    info["counts"] = curriculum.counts()
    info["difficult_share"] = curriculum.difficult_share()
    return curriculum, info


# ---------------------------------------------------------------- all seeds, outputs, the stage


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
        save_checkpoint(
            out_multi / f"seed{seed}", result.multi, _refined_config(configs[0][seed], cfg.name, "multimodal", cfg)
        )
        save_checkpoint(
            out_text / f"seed{seed}", result.text, _refined_config(configs[1][seed], cfg.text_output, "text", cfg)
        )
        result.multi.state, result.text.state = {}, {}
        outcomes.append(result)
        if on_seed is not None:
            on_seed(result)
    return RefineOutcome(cfg, outcomes)
