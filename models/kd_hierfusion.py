"""Speaker-KD hierarchical fusion (Li, Funakoshi, Okumura, EACL Findings 2026): graph KD + five-stage fusion.

The active-speaker front end (LipSyncNet) runs upstream: the visual features it feeds are already
those of the chosen face. This model is the paper's §3.3-3.5:

- Graph encoders over each dialogue (edges: temporal window, same speaker, cosine kNN, self-loops;
  `models.layers.dialogue_graph`): a 4-layer multi-head GAT **teacher** on the teacher modality
  (text) and **students** on the others (audio: GraphConv, others: GAT).
- Knowledge distillation: phase 1 trains the teacher alone (`teacher_epochs`, its own optimiser, the
  class-weighted Poly CE) before the trainer's first epoch, keeps its last epoch or, with
  `teacher_selection: dev`, its best dev weighted F1 epoch (stopping after `teacher_patience` epochs
  without a gain, as the authors stop it on validation W-F1), then freezes it; phase 2 trains the
  students and the fusion jointly, each student with L_dis = a CE + (1 - a) tau^2 KL(teacher ||
  student). The phases need the trainer's `begin_epoch` hook; without it (or with
  `teacher_epochs: 0`) the teacher trains online with its own loss (`teacher`) and is distilled
  from, detached.
- The fusion (`models.layers.hierarchical_fusion`) consumes the encoders' embeddings, as the paper
  describes (`fusion_input: embed`); the authors' code discards the students and fuses the raw
  features (`fusion_input: raw`).
- The composite loss (`models.layers.composite_loss`), as named auxiliary terms the trainer weighs
  (`default_loss_weights`, overridable per model): `comp` = class-weighted CE + Poly term (0.8),
  `smooth` = label smoothing (0.2), `supcon` = supervised contrastive on a projection of h (0.1),
  `distill` = mean student L_dis (0.3), `aux` = mean CE of the per-modality heads that feed the
  quality estimate (0.2), `teacher` (1, online mode only). The trainer's plain CE is off (`ce: 0`).
  The synchronisation loss belongs to LipSyncNet's own training.

Balanced class weights and q_stats (a Fisher ratio per modality) come from the training split
through `begin_epoch`; prediction uses no labels and every dialogue is scored independently of the
rest of the batch (no batch statistics anywhere).

One job, the paper's model (its layers live in `models.layers`), which is why the module runs past
400 lines: the encoders' wiring, the two KD phases and the composite loss are its forward pass.

Ablation row (paper Table 3 / Table 5) -> params edit:
- w/o speaker identification  -> speaker.method: first_face   (front end: reruns speaker + visual features)
- w/o fusion loss (plain CE)   -> loss_weights: {ce: 1, comp: 0, smooth: 0, supcon: 0}
- w/o knowledge distillation   -> distill_alpha: 1.0   (students learn from the labels only)
- w/o cross-modal attention    -> use_cross_attention: false
- w/o adaptive gating          -> use_gates: false
- w/o polynomial loss          -> poly_alpha: 0
- w/o contrastive learning     -> loss_weights: {supcon: 0}
- text only (Table 5)          -> inputs: [text]
- audio only (Table 5)         -> inputs: [audio]
- visual only (Table 5)        -> inputs: [visual]
- the authors' code -> fusion_input: raw, graph_mode: batch_knn, use_moe: false, cross_alpha: 1.0, cross_beta: 0.2
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from sklearn.metrics import f1_score
from torch import Tensor, nn

from models.batch import IGNORE_INDEX, DialogueBatch, ModelOutput
from models.layers.checks import choice, divisible, flag, non_negative, positive_float, positive_int, probability
from models.layers.composite_loss import (
    balanced_class_weights,
    distillation_loss,
    label_smoothing_loss,
    poly_cross_entropy,
)
from models.layers.contrastive import supervised_contrastive
from models.layers.dialogue_graph import GraphEncoder, GraphLayerSpec, UtteranceGraph, batch_graph, dialogue_graph
from models.layers.distill import masked_cross_entropy
from models.layers.hierarchical_fusion import FusionTrace, HierarchicalFusion, fisher_ratio
from models.registry import register

TEACHER_SELECTIONS = ("last", "dev")  # phase 1 keeps its last epoch, or its best dev weighted F1 epoch

NAME = "kd_hierfusion"
GRAPH_MODES = ("dialogue", "batch_knn")
FUSION_INPUTS = ("embed", "raw")
KD_CE = ("plain", "poly")
CONVS = ("gat", "gcn")
# Per-modality graph defaults from the authors' config (kNN k, temporal weight); others get the last row.
GRAPH_DEFAULTS = {"text": (12, 1.65), "audio": (6, 0.53), "visual": (7, 1.0)}
OTHER_GRAPH = (6, 1.0)
INPUT_DROPOUT = {"text": 0.10}
OTHER_INPUT_DROPOUT = 0.05


def _per_modality(key: str, value: Any, modalities: list[str], default: Callable[[str], Any], check) -> dict[str, Any]:
    """A hyper-parameter given once for all modalities or as {modality: value}; unlisted ones use `default`."""
    if value is None:
        return {m: default(m) for m in modalities}
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(modalities))
        if unknown:
            raise ValueError(f"{NAME}: '{key}' names {unknown}, which are not inputs ({', '.join(modalities)})")
        return {m: check(f"{key}.{m}", value[m]) if m in value else default(m) for m in modalities}
    return {m: check(key, value) for m in modalities}


@register(NAME)
class SpeakerKDHierFusion(nn.Module):
    """Text GAT teacher, distilled audio/visual graph students, five-stage hierarchical fusion."""

    default_loss_weights = {
        "ce": 0.0,
        "comp": 0.8,
        "smooth": 0.2,
        "supcon": 0.1,
        "distill": 0.3,
        "aux": 0.2,
        "teacher": 1.0,
    }

    def __init__(
        self,
        input_dims: Mapping[str, int],
        num_classes: int,
        teacher: str = "text",
        encoders: Mapping[str, str] | None = None,
        teacher_dim: int | None = None,
        graph_dim: int = 256,
        graph_heads: int = 4,
        graph_dropout: float = 0.15,
        input_dropout: float | Mapping[str, float] | None = None,
        graph_mode: str = "dialogue",
        graph_window: int = 4,
        graph_k: int | Mapping[str, int] | None = None,
        temporal_weight: float | Mapping[str, float] | None = None,
        speaker_weight: float = 0.5,
        fusion_input: str = "embed",
        fusion_dim: int = 256,
        fusion_heads: int = 8,
        fusion_layers: int = 3,
        fusion_ff: int = 1024,
        dropout: float = 0.35,
        use_moe: bool = True,
        experts: int = 4,
        top_k: int = 2,
        use_gates: bool = True,
        use_cross_attention: bool = True,
        cross_alpha: float = 0.7,
        cross_beta: float = 0.3,
        pool_queries: int = 3,
        ensemble_heads: int = 3,
        poly_alpha: float = 1.2,
        poly_gamma: float = 1.2,
        smoothing: float = 0.1,
        class_weighting: bool = True,
        contrast_temperature: float = 0.07,
        contrast_dim: int = 128,
        distill_alpha: float = 0.65,
        distill_temperature: float = 2.0,
        kd_ce: str = "plain",
        teacher_epochs: int = 10,
        teacher_lr: float = 8e-5,
        teacher_weight_decay: float = 1e-3,
        teacher_selection: str = "last",
        teacher_patience: int | None = None,
    ) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError(f"{NAME}: needs at least one input")
        self.inputs = list(input_dims)
        self.num_classes = int(num_classes)
        if not isinstance(teacher, str):
            raise ValueError(f"{NAME}: 'teacher' must name an input, got {teacher!r}")
        self.teacher_key = teacher if teacher in input_dims else None
        self.students = [m for m in self.inputs if m != self.teacher_key]
        self.graph_mode = choice(NAME, "graph_mode", graph_mode, GRAPH_MODES)
        self.fusion_input = choice(NAME, "fusion_input", fusion_input, FUSION_INPUTS)
        self.kd_ce = choice(NAME, "kd_ce", kd_ce, KD_CE)
        self.class_weighting = flag(NAME, "class_weighting", class_weighting)
        if isinstance(graph_window, bool) or not isinstance(graph_window, int) or graph_window < 0:
            raise ValueError(f"{NAME}: 'graph_window' must be an integer >= 0, got {graph_window!r}")
        self.graph_window = graph_window
        self.poly_alpha = non_negative(NAME, "poly_alpha", poly_alpha)
        self.poly_gamma = non_negative(NAME, "poly_gamma", poly_gamma)
        self.smoothing = probability(NAME, "smoothing", smoothing)
        self.contrast_temperature = positive_float(NAME, "contrast_temperature", contrast_temperature)
        if not isinstance(distill_alpha, (int, float)) or not 0.0 <= distill_alpha <= 1.0:
            raise ValueError(f"{NAME}: 'distill_alpha' must be a number in [0, 1], got {distill_alpha!r}")
        self.distill_alpha = float(distill_alpha)
        self.distill_temperature = positive_float(NAME, "distill_temperature", distill_temperature)
        if isinstance(teacher_epochs, bool) or not isinstance(teacher_epochs, int) or teacher_epochs < 0:
            raise ValueError(f"{NAME}: 'teacher_epochs' must be an integer >= 0, got {teacher_epochs!r}")
        self.teacher_epochs = teacher_epochs
        self.teacher_lr = positive_float(NAME, "teacher_lr", teacher_lr)
        self.teacher_weight_decay = non_negative(NAME, "teacher_weight_decay", teacher_weight_decay)
        self.teacher_selection = choice(NAME, "teacher_selection", teacher_selection, TEACHER_SELECTIONS)
        self.teacher_patience = None if teacher_patience is None else positive_int(
            NAME, "teacher_patience", teacher_patience)
        self.teacher_history: list[float] = []  # the teacher's dev weighted F1 per phase-1 epoch (selection: dev)
        self.speaker_weight = non_negative(NAME, "speaker_weight", speaker_weight)

        graph_dim = positive_int(NAME, "graph_dim", graph_dim)
        graph_heads = positive_int(NAME, "graph_heads", graph_heads)
        graph_dropout = probability(NAME, "graph_dropout", graph_dropout)
        fusion_dim = positive_int(NAME, "fusion_dim", fusion_dim)
        divisible(NAME, "fusion_heads", fusion_dim, positive_int(NAME, "fusion_heads", fusion_heads))
        self.knn = _per_modality(
            "graph_k",
            graph_k,
            self.inputs,
            lambda m: GRAPH_DEFAULTS.get(m, OTHER_GRAPH)[0],
            lambda k, v: positive_int(NAME, k, v),
        )
        self.temporal = _per_modality(
            "temporal_weight",
            temporal_weight,
            self.inputs,
            lambda m: GRAPH_DEFAULTS.get(m, OTHER_GRAPH)[1],
            lambda k, v: float(v),
        )
        rates = _per_modality(
            "input_dropout",
            input_dropout,
            self.inputs,
            lambda m: INPUT_DROPOUT.get(m, OTHER_INPUT_DROPOUT),
            lambda k, v: probability(NAME, k, v),
        )
        self.input_dropout = nn.ModuleDict({m: nn.Dropout(rates[m]) for m in self.inputs})
        convs = _per_modality(
            "encoders",
            encoders,
            self.inputs,
            lambda m: "gcn" if m == "audio" else "gat",
            lambda k, v: choice(NAME, k, v, CONVS),
        )

        self.encoders = nn.ModuleDict()
        for m, dim in input_dims.items():
            if m == self.teacher_key:
                width = teacher_dim if teacher_dim is not None else (256 if dim >= 1024 else 192)
                width = positive_int(NAME, "teacher_dim", width)
                layers = [
                    GraphLayerSpec(width, graph_heads, True),
                    GraphLayerSpec(width, graph_heads, True),
                    GraphLayerSpec(width, graph_heads, False),
                    GraphLayerSpec(width, graph_heads, False),
                ]
                conv = "gat"
            elif convs[m] == "gcn":
                layers, conv = [GraphLayerSpec(graph_dim)] * 3, "gcn"
            else:
                half = max(1, graph_dim // 2)
                layers = [
                    GraphLayerSpec(half, graph_heads, True),
                    GraphLayerSpec(graph_dim, 2, True),
                    GraphLayerSpec(graph_dim, 1, True),
                ]
                conv = "gat"
            self.encoders[m] = GraphEncoder(int(dim), layers, conv, self.num_classes, graph_dropout)

        fusion_dims = (
            {m: self.encoders[m].output_dim for m in self.inputs}
            if self.fusion_input == "embed"
            else {m: int(d) for m, d in input_dims.items()}
        )
        self.fusion = HierarchicalFusion(
            fusion_dims,
            self.num_classes,
            dim=fusion_dim,
            heads=fusion_heads,
            layers=positive_int(NAME, "fusion_layers", fusion_layers),
            ff_dim=positive_int(NAME, "fusion_ff", fusion_ff),
            dropout=probability(NAME, "dropout", dropout),
            use_moe=flag(NAME, "use_moe", use_moe),
            experts=positive_int(NAME, "experts", experts),
            top_k=positive_int(NAME, "top_k", top_k),
            use_gates=flag(NAME, "use_gates", use_gates),
            use_cross_attention=flag(NAME, "use_cross_attention", use_cross_attention),
            cross_alpha=float(cross_alpha),
            cross_beta=float(cross_beta),
            pool_queries=positive_int(NAME, "pool_queries", pool_queries),
            ensemble_heads=positive_int(NAME, "ensemble_heads", ensemble_heads),
        )
        contrast_dim = positive_int(NAME, "contrast_dim", contrast_dim)
        self.contrast = nn.Sequential(nn.Linear(fusion_dim, fusion_dim), nn.ReLU(), nn.Linear(fusion_dim, contrast_dim))
        self.register_buffer("teacher_ready", torch.zeros(()))
        self.register_buffer("class_counts", torch.zeros(self.num_classes))

    # ------------------------------------------------------------ state

    @property
    def teacher_frozen(self) -> bool:
        return self.teacher_key is not None and bool(self.teacher_ready.item() > 0)

    def train(self, mode: bool = True) -> SpeakerKDHierFusion:
        """Train mode everywhere except a frozen teacher, which stays deterministic (no dropout)."""
        super().train(mode)
        if self.teacher_frozen:
            self.encoders[self.teacher_key].eval()
        return self

    def class_weights(self) -> Tensor | None:
        """Balanced weights from the training split's label counts, once `begin_epoch` has seen them."""
        if not self.class_weighting or float(self.class_counts.sum()) == 0:
            return None
        return balanced_class_weights(self.class_counts)

    # ------------------------------------------------------------ encoders

    def _graph(self, batch: DialogueBatch, key: str, valid: Tensor) -> UtteranceGraph | tuple[UtteranceGraph, Tensor]:
        features = batch.features[key]
        if self.graph_mode == "batch_knn":
            return batch_graph(features, valid, self.knn[key], self.temporal[key])
        return dialogue_graph(
            features, batch.speakers, valid, self.graph_window, self.knn[key], self.temporal[key], self.speaker_weight
        )

    def _encode_one(self, batch: DialogueBatch, key: str, valid: Tensor) -> tuple[Tensor, Tensor]:
        """(embedding [B, L, E], logits [B, L, C]) of one modality's graph encoder."""
        encoder = self.encoders[key]
        x = self.input_dropout[key](batch.features[key])
        graph = self._graph(batch, key, valid)
        if self.graph_mode == "dialogue":
            return encoder(x, graph, valid)
        graph, flat = graph
        size, steps = valid.shape
        nodes = x.reshape(size * steps, -1)[flat].unsqueeze(0)
        embed, logits = encoder(nodes, graph, torch.ones_like(flat, dtype=torch.bool).unsqueeze(0))
        out_embed = embed.new_zeros(size * steps, embed.shape[-1]).index_copy(0, flat, embed[0])
        out_logits = logits.new_zeros(size * steps, logits.shape[-1]).index_copy(0, flat, logits[0])
        return out_embed.view(size, steps, -1), out_logits.view(size, steps, -1)

    def encode(self, batch: DialogueBatch) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """(embeddings, logits, valid) per modality; the frozen teacher runs without gradients."""
        embeds, logits, valid = {}, {}, {}
        for key in self.inputs:
            valid[key] = batch.mask & batch.present[key]
            if key == self.teacher_key and self.teacher_frozen:
                with torch.no_grad():
                    embeds[key], logits[key] = self._encode_one(batch, key, valid[key])
            else:
                embeds[key], logits[key] = self._encode_one(batch, key, valid[key])
        return embeds, logits, valid

    def _fusion_inputs(self, batch: DialogueBatch, embeds: Mapping[str, Tensor], rows: Tensor) -> dict[str, Tensor]:
        """The per-utterance vectors [N, d] the fusion consumes, for the flat real positions `rows`."""
        out = {}
        for key in self.inputs:
            source = embeds[key] if self.fusion_input == "embed" else batch.features[key]
            if key == self.teacher_key:
                source = source.detach()  # the teacher learns from its own loss only
            out[key] = source.reshape(-1, source.shape[-1])[rows]
        return out

    def fuse(self, batch: DialogueBatch) -> tuple[FusionTrace, Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """(fusion trace over the real utterances, their flat positions, encoder logits, valid masks)."""
        embeds, logits, valid = self.encode(batch)
        rows = batch.mask.reshape(-1).nonzero().squeeze(-1)
        present = torch.stack([valid[k].reshape(-1)[rows] for k in self.inputs], dim=1)
        trace = self.fusion(self._fusion_inputs(batch, embeds, rows), present)
        return trace, rows, logits, valid

    # ------------------------------------------------------------ forward and losses

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        trace, rows, encoder_logits, valid = self.fuse(batch)
        size, steps = batch.mask.shape
        flat = trace.logits.new_zeros(size * steps, self.num_classes).index_copy(0, rows, trace.logits)
        logits = flat.view(size, steps, self.num_classes)
        return ModelOutput(logits=logits, aux_losses=self.losses(batch, logits, trace, rows, encoder_logits, valid))

    def losses(
        self,
        batch: DialogueBatch,
        logits: Tensor,
        trace: FusionTrace,
        rows: Tensor,
        encoder_logits: Mapping[str, Tensor],
        valid: Mapping[str, Tensor],
    ) -> dict[str, Tensor]:
        """The named composite-loss terms (unweighted; the trainer applies `loss_weights`)."""
        labels, mask = batch.labels, batch.mask
        weights = self.class_weights()
        terms = {
            "comp": poly_cross_entropy(logits, labels, mask, self.poly_alpha, self.poly_gamma, weights),
            "smooth": label_smoothing_loss(logits, labels, mask, self.smoothing),
        }
        flat_labels = labels.reshape(-1)[rows]
        labeled = flat_labels != IGNORE_INDEX
        projected = self.contrast(trace.fused)
        anchors = labeled & ((flat_labels.unsqueeze(0) == flat_labels.unsqueeze(1)) & labeled.unsqueeze(0)).sum(1).gt(1)
        terms["supcon"] = supervised_contrastive(
            projected, flat_labels, labeled, max(int(anchors.sum()), 1), self.contrast_temperature, standard=True
        )
        aux_terms = []
        for i, key in enumerate(self.inputs):
            present = valid[key].reshape(-1)[rows]
            if present.any():
                aux_terms.append(
                    masked_cross_entropy(
                        trace.aux_logits[:, i].unsqueeze(0), flat_labels.unsqueeze(0), present.unsqueeze(0)
                    )
                )
        terms["aux"] = torch.stack(aux_terms).mean() if aux_terms else logits.sum() * 0.0
        if self.students:
            teacher_logits = encoder_logits[self.teacher_key] if self.teacher_key else None
            teacher_valid = valid[self.teacher_key] if self.teacher_key else torch.zeros_like(mask)
            parts = []
            for key in self.students:
                hard = (
                    poly_cross_entropy(
                        encoder_logits[key], labels, valid[key], self.poly_alpha, self.poly_gamma, weights
                    )
                    if self.kd_ce == "poly"
                    else None
                )
                alpha = self.distill_alpha if teacher_logits is not None else 1.0
                parts.append(
                    distillation_loss(
                        encoder_logits[key],
                        teacher_logits if teacher_logits is not None else encoder_logits[key],
                        labels,
                        valid[key],
                        teacher_valid,
                        alpha,
                        self.distill_temperature,
                        hard,
                    )
                )
            terms["distill"] = torch.stack(parts).mean()
        if self.teacher_key is not None and not self.teacher_frozen:
            terms["teacher"] = self._teacher_loss(encoder_logits[self.teacher_key], labels, valid[self.teacher_key])
        return terms

    def _teacher_loss(self, logits: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
        return poly_cross_entropy(logits, labels, valid, self.poly_alpha, self.poly_gamma, self.class_weights())

    # ------------------------------------------------------------ trainer hook

    def begin_epoch(self, epoch: int, train_batches: Callable[[], Iterable[DialogueBatch]],
                    dev_batches: Callable[[], Iterable[DialogueBatch]] | None = None) -> None:
        """Before each training epoch: class counts (once), phase 1 teacher training (once), q_stats.

        `train_batches()` yields the training split's batches on the model's device, `dev_batches()`
        the dev split's, which only choose the teacher's epoch (`teacher_selection: dev`); test never
        reaches this hook.
        """
        if float(self.class_counts.sum()) == 0:
            self._count_classes(train_batches())
        if self.teacher_key is not None and not self.teacher_frozen and self.teacher_epochs > 0:
            if self.teacher_selection == "dev" and dev_batches is None:
                raise ValueError(f"{NAME}: teacher_selection 'dev' needs the dev split's batches")
            self._train_teacher(train_batches, dev_batches if self.teacher_selection == "dev" else None)
        self._update_quality_stats(train_batches())

    def _count_classes(self, batches: Iterable[DialogueBatch]) -> None:
        counts = torch.zeros_like(self.class_counts)
        for batch in batches:
            known = batch.labels[batch.mask & (batch.labels != IGNORE_INDEX)]
            counts += torch.bincount(known, minlength=self.num_classes).to(counts)
        self.class_counts.copy_(counts)

    def _train_teacher(self, train_batches: Callable[[], Iterable[DialogueBatch]],
                       dev_batches: Callable[[], Iterable[DialogueBatch]] | None) -> None:
        """Phase 1: the teacher alone on the class-weighted Poly CE, then frozen for good.

        With `dev_batches`, the teacher keeps the weights of its epoch with the best dev weighted F1
        and stops after `teacher_patience` epochs without a gain (the authors' early stopping on
        validation W-F1); without, it keeps its last epoch's weights.
        """
        encoder = self.encoders[self.teacher_key]
        optimiser = torch.optim.AdamW(encoder.parameters(), lr=self.teacher_lr, weight_decay=self.teacher_weight_decay)
        was_training = self.training
        best_score, best_state, since_best = -1.0, None, 0
        self.teacher_history = []
        for _ in range(self.teacher_epochs):
            self.train()
            for batch in train_batches():
                valid = batch.mask & batch.present[self.teacher_key]
                _, logits = self._encode_one(batch, self.teacher_key, valid)
                loss = self._teacher_loss(logits, batch.labels, valid)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
                optimiser.step()
            if dev_batches is None:
                continue
            score = self._teacher_weighted_f1(dev_batches())
            self.teacher_history.append(score)
            if score > best_score:
                best_score, since_best = score, 0
                best_state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
            else:
                since_best += 1
                if self.teacher_patience is not None and since_best >= self.teacher_patience:
                    break
        if best_state is not None:
            encoder.load_state_dict(best_state)
        encoder.zero_grad(set_to_none=True)
        self.teacher_ready.fill_(1.0)
        self.train(was_training)

    @torch.no_grad()
    def _teacher_weighted_f1(self, batches: Iterable[DialogueBatch]) -> float:
        """The teacher's weighted F1 over the labeled utterances of `batches`, in eval mode."""
        self.eval()
        truth, predicted = [], []
        for batch in batches:
            valid = batch.mask & batch.present[self.teacher_key] & (batch.labels != IGNORE_INDEX)
            _, logits = self._encode_one(batch, self.teacher_key, batch.mask & batch.present[self.teacher_key])
            truth.append(batch.labels[valid].cpu())
            predicted.append(logits.argmax(dim=-1)[valid].cpu())
        truth_all, predicted_all = torch.cat(truth).numpy(), torch.cat(predicted).numpy()
        if truth_all.size == 0:
            raise ValueError(f"{NAME}: the dev split has no labeled utterances to select the teacher on")
        return float(f1_score(truth_all, predicted_all, labels=range(self.num_classes), average="weighted",
                              zero_division=0))

    @torch.no_grad()
    def _update_quality_stats(self, batches: Iterable[DialogueBatch]) -> None:
        """q_stats: the Fisher ratio of each modality's projected features over the labeled train utterances."""
        was_training = self.training
        self.eval()
        tokens, presents, labels = [], [], []
        for batch in batches:
            embeds, _, valid = self.encode(batch)
            rows = (batch.mask & (batch.labels != IGNORE_INDEX)).reshape(-1).nonzero().squeeze(-1)
            present = torch.stack([valid[k].reshape(-1)[rows] for k in self.inputs], dim=1)
            tokens.append(self.fusion.project(self._fusion_inputs(batch, embeds, rows), present))
            presents.append(present)
            labels.append(batch.labels.reshape(-1)[rows])
        self.train(was_training)
        if not tokens:
            return
        token, present, label = torch.cat(tokens), torch.cat(presents), torch.cat(labels)
        ratios = [
            fisher_ratio(token[present[:, i], i], label[present[:, i]], self.num_classes)
            for i in range(len(self.inputs))
        ]
        self.fusion.set_quality_stats(torch.stack(ratios))
