"""DRKF: Decoupled Representations with Knowledge Fusion (Jiang et al., ACM MM 2025; "ORKF" in its tables).

An utterance-level speech + text classifier on frame/token sequences: every utterance of the
dialogue batch is an independent sample (no context, no speakers), so its logits never depend on
its neighbours. It reads the inputs listed in `sequence_inputs` (in the paper: wav2vec2 frames,
then RoBERTa tokens; the input order is the segment order) and:

1. Projects each sequence to `hidden` (a Linear when the step dim differs; the paper's encoders
   are already 1024-d).
2. Progressive augmentation (PA, a.k.a. PE): a residual autoencoder per modality gives an augmented
   copy of the sequence; `mse` keeps it close (element mean over real steps, summed over
   modalities) and `label_alignment` makes it predictive (the same fusion encoder + classifier on
   the augmented pair, cross-entropy = KL to the one-hot label).
3. Contrastive MI estimation on masked-mean pooled, projected vectors with tau = sigmoid(theta):
   per-modality NT-Xent between raw and augmented views plus one-directional InfoNCE between
   consecutive modalities (speech -> text), summed into `contrastive`.
4. Knowledge fusion: a BERT-style encoder over `[CLS] speech [SEP] text [SEP]` (learned special
   tokens, packed valid steps, attention mask, token types), a linear emotion classifier on CLS
   (the logits the trainer scores), and an emotion-discrimination head trained on mismatched pairs
   (speech of utterance i with text of utterance j != i, target 1 when their labels agree) within
   random groups of `ed_group_size` labeled utterances (`discrimination`).

Total loss (Eq. 21): CE + 0.2 mse + 1.0 label_alignment + 0.2 contrastive + 0.2 discrimination
(`default_loss_weights`; override per model with `loss_weights`). Aux losses are computed only in
training mode: inference runs the projection, the fusion encoder and the classifier, nothing else.

Choices the paper leaves open (default first; see the implementation spec): hidden 1024, layers 6,
heads 8, ff_dim 4 * hidden, dropout 0.1, max_positions 2800 (tail cut), ae_widths [256, 128, 64],
ae_blocks 5, temperature null (learned) or a fixed value, label_alignment fusion|unimodal,
ed_group_size 4 (the paper's batch), ed_include_matched false, ed_balance false (weight the
consistent class by the batch's inconsistent/consistent ratio), head_hidden 0 (linear heads; > 0
is an MLP with GELU), code_parity false (true: zero CLS/SEP, no attention mask, unpacked padded
segments, one token type, unmasked pooling, as the released code).

Ablation row (Table 4) -> params edit:
- 1 BME + FE_s            -> augmentation: none, discrimination: false, loss_weights: {contrastive: 0}
- 2 BME + CMIE + FE_s     -> augmentation: static, discrimination: false
- 3 BME + PCMI + FE_s     -> discrimination: false
- 4 BME + FE_s + ED       -> augmentation: none, loss_weights: {contrastive: 0}
- 5 BME + PCMI + FE_c + ED -> fusion: cross
- 6 full                  -> (defaults)
"augmentation: static" is plain CMIE: the augmented view is the raw sequence with a random
`static_drop` share of its steps left out of the pooled vector; no autoencoder, no mse or
label_alignment. Loss weights of 0 give the same objective as the switches but still compute the terms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.batch import IGNORE_INDEX, DialogueBatch, ModelOutput
from models.layers.checks import choice, divisible, flag, positive_int, probability
from models.layers.infonce import LearnedTemperature, info_nce, nt_xent
from models.layers.residual_autoencoder import ResidualAutoencoder
from models.layers.segment_encoder import CrossSegmentEncoder, SegmentEncoder, pack_segments
from models.registry import register

NAME = "drkf"
AUGMENTATIONS = ("autoencoder", "static", "none")
ALIGNMENTS = ("fusion", "unimodal")
FUSIONS = ("self", "cross")
PAPER_LOSS_WEIGHTS = {"mse": 0.2, "label_alignment": 1.0, "contrastive": 0.2, "discrimination": 0.2}


def step_mean(steps: Tensor, valid: Tensor) -> Tensor:
    """Mean of steps [N, T, D] over valid [N, T] steps; a row without valid steps gives zeros."""
    weights = valid.to(steps.dtype).unsqueeze(-1)
    return (steps * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def masked_step_mse(prediction: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Element-mean squared error over the valid steps [N, T] of [N, T, D] tensors (0 when none is valid)."""
    per_step = (prediction - target).pow(2).mean(dim=-1)
    kept = torch.where(valid, per_step, torch.zeros_like(per_step))
    return kept.sum() / valid.sum().clamp(min=1).to(per_step.dtype)


def discrimination_pairs(labels: Tensor, include_matched: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """All ordered pairs (i, j), i != j (and i == j when `include_matched`) of M labels.

    Returns (first, second, consistent): pair p takes the first modality from utterance first[p] and
    the others from second[p]; consistent[p] = 1 when their labels are equal.
    """
    count = labels.shape[0]
    first, second = torch.meshgrid(
        torch.arange(count, device=labels.device), torch.arange(count, device=labels.device), indexing="ij"
    )
    keep = torch.ones_like(first, dtype=torch.bool) if include_matched else first != second
    first, second = first[keep], second[keep]
    return first, second, (labels[first] == labels[second]).long()


def grouped_pairs(
    labels: Tensor, group_size: int, include_matched: bool, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """`discrimination_pairs` within random groups of `group_size` utterances (the paper's batches of 4)."""
    order = torch.randperm(labels.shape[0], generator=generator, device="cpu").to(labels.device)
    firsts, seconds, targets = [], [], []
    for start in range(0, len(order), group_size):
        members = order[start : start + group_size]
        first, second, consistent = discrimination_pairs(labels[members], include_matched)
        firsts.append(members[first])
        seconds.append(members[second])
        targets.append(consistent)
    if not firsts:
        empty = labels.new_zeros(0)
        return empty, empty, empty
    return torch.cat(firsts), torch.cat(seconds), torch.cat(targets)


def _head(dim: int, out: int, hidden: int, dropout: float) -> nn.Module:
    if hidden == 0:
        return nn.Linear(dim, out)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out))


@register(NAME)
class DRKF(nn.Module):
    """Residual-AE augmentation, contrastive MI estimation, a self-attention fusion encoder, EC and ED heads."""

    requires_sequences = True
    utterance_level = True  # scores each utterance alone: `train.batch_utterances` may batch utterances
    default_loss_weights = PAPER_LOSS_WEIGHTS

    def __init__(
        self,
        input_dims: Mapping[str, int],
        num_classes: int,
        hidden: int = 1024,
        layers: int = 6,
        heads: int = 8,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        max_positions: int = 2800,
        ae_widths: Sequence[int] = (256, 128, 64),
        ae_blocks: int = 5,
        augmentation: str = "autoencoder",
        static_drop: float = 0.2,
        label_alignment: str = "fusion",
        fusion: str = "self",
        discrimination: bool = True,
        ed_group_size: int = 4,
        ed_include_matched: bool = False,
        ed_balance: bool = False,
        temperature: float | None = None,
        head_hidden: int = 0,
        code_parity: bool = False,
    ) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError(f"{NAME}: needs at least one input sequence")
        hidden = positive_int(NAME, "hidden", hidden)
        heads = positive_int(NAME, "heads", heads)
        divisible(NAME, "heads", hidden, heads)
        ff_dim = positive_int(NAME, "ff_dim", ff_dim) if ff_dim is not None else 4 * hidden
        dropout = probability(NAME, "dropout", dropout)
        attention_dropout = probability(
            NAME, "attention_dropout", dropout if attention_dropout is None else attention_dropout
        )
        self.max_positions = positive_int(NAME, "max_positions", max_positions)
        if self.max_positions < 2 * len(input_dims) + 1:
            raise ValueError(f"{NAME}: 'max_positions' ({max_positions}) leaves no room for the CLS and SEP tokens")
        self.augmentation = choice(NAME, "augmentation", augmentation, AUGMENTATIONS)
        self.static_drop = probability(NAME, "static_drop", static_drop)
        self.label_alignment = choice(NAME, "label_alignment", label_alignment, ALIGNMENTS)
        self.fusion = choice(NAME, "fusion", fusion, FUSIONS)
        self.code_parity = flag(NAME, "code_parity", code_parity)
        self.ed_group_size = positive_int(NAME, "ed_group_size", ed_group_size)
        self.ed_include_matched = flag(NAME, "ed_include_matched", ed_include_matched)
        self.ed_balance = flag(NAME, "ed_balance", ed_balance)
        if isinstance(head_hidden, bool) or not isinstance(head_hidden, int) or head_hidden < 0:
            raise ValueError(f"{NAME}: 'head_hidden' must be an integer >= 0, got {head_hidden!r}")
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                        or temperature <= 0):
            raise ValueError(f"{NAME}: 'temperature' must be null (learned) or a number > 0, got {temperature!r}")
        if not isinstance(ae_widths, Sequence) or not ae_widths or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in ae_widths
        ):
            raise ValueError(f"{NAME}: 'ae_widths' must be a non-empty list of positive integers, got {ae_widths!r}")

        self.inputs = list(input_dims)
        self.hidden = hidden
        self.discrimination = flag(NAME, "discrimination", discrimination) and len(self.inputs) > 1
        self.projections = nn.ModuleDict(
            {k: nn.Identity() if int(d) == hidden else nn.Linear(int(d), hidden) for k, d in input_dims.items()}
        )
        if self.fusion == "self":
            self.encoder: nn.Module = SegmentEncoder(
                hidden, positive_int(NAME, "layers", layers), heads, ff_dim, dropout, attention_dropout,
                self.max_positions, 1 if self.code_parity else len(self.inputs),
            )
        else:
            if len(self.inputs) < 2:
                raise ValueError(f"{NAME}: 'fusion: cross' needs two or more inputs, got {self.inputs}")
            self.encoder = CrossSegmentEncoder(
                hidden, len(self.inputs), positive_int(NAME, "layers", layers), heads, ff_dim, dropout,
                attention_dropout, self.max_positions,
            )
        self.cls_token = nn.Parameter(torch.randn(hidden) * 0.02, requires_grad=not self.code_parity)
        self.sep_token = nn.Parameter(torch.randn(hidden) * 0.02, requires_grad=not self.code_parity)
        if self.code_parity:
            nn.init.zeros_(self.cls_token)
            nn.init.zeros_(self.sep_token)
        self.classifier = _head(hidden, num_classes, head_hidden, dropout)
        self.discriminator = _head(hidden, 2, head_hidden, dropout) if self.discrimination else None
        self.autoencoders = (
            nn.ModuleDict(
                {k: ResidualAutoencoder(hidden, ae_widths, positive_int(NAME, "ae_blocks", ae_blocks))
                 for k in self.inputs}
            )
            if self.augmentation == "autoencoder"
            else None
        )
        self.aligners = (
            nn.ModuleDict({k: nn.Linear(hidden, num_classes) for k in self.inputs})
            if self.augmentation == "autoencoder" and self.label_alignment == "unimodal"
            else None
        )
        contrastive = self.augmentation != "none" or len(self.inputs) > 1
        self.projection_heads = (
            nn.ModuleDict(
                {k: nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)) for k in self.inputs}
            )
            if contrastive
            else None
        )
        self.temperature = LearnedTemperature(1.0, None if temperature is None else float(temperature))

    # ------------------------------------------------------------ inputs

    def _sequences(self, batch: DialogueBatch) -> tuple[list[Tensor], list[Tensor]]:
        """Per input: projected steps [N, T, H] of the N real utterances and their valid steps [N, T]."""
        steps, valid = [], []
        for key in self.inputs:
            if key not in batch.sequences:
                raise ValueError(
                    f"{NAME} reads frame/token sequences, but the batch has none for input '{key}': "
                    "list it under the model's `sequence_inputs`"
                )
            keep = batch.sequence_mask[key][batch.mask] & batch.present[key][batch.mask].unsqueeze(-1)
            projected = self.projections[key](batch.sequences[key][batch.mask])
            steps.append(torch.where(keep.unsqueeze(-1), projected, torch.zeros_like(projected)))
            valid.append(keep)
        return steps, valid

    def _pool(self, steps: Tensor, valid: Tensor) -> Tensor:
        return steps.mean(dim=1) if self.code_parity else step_mean(steps, valid)

    # ------------------------------------------------------------ fusion

    def fuse(self, steps: Sequence[Tensor], valid: Sequence[Tensor]) -> Tensor:
        """The fused vector [N, H] of N samples (the CLS output of the fusion encoder)."""
        if self.fusion == "cross":
            return self.encoder(steps, valid)
        if self.code_parity:  # padded segments side by side, all attended to, one token type
            full = [torch.ones_like(v) for v in valid]
            tokens, token_valid, _ = pack_segments(steps, full, self.cls_token, self.sep_token, self.max_positions)
            types = torch.zeros_like(token_valid, dtype=torch.long)
            return self.encoder(tokens, token_valid, types, masked=False)[:, 0]
        tokens, token_valid, types = pack_segments(steps, valid, self.cls_token, self.sep_token, self.max_positions)
        return self.encoder(tokens, token_valid, types)[:, 0]

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        steps, valid = self._sequences(batch)
        flat_logits = self.classifier(self.fuse(steps, valid))
        size, length = batch.mask.shape
        logits = flat_logits.new_zeros(size, length, flat_logits.shape[-1])
        logits = logits.index_put(batch.mask.nonzero(as_tuple=True), flat_logits)
        aux = self._aux_losses(steps, valid, batch.labels[batch.mask]) if self.training else {}
        return ModelOutput(logits=logits, aux_losses=aux)

    # ------------------------------------------------------------ training objectives

    def _augmented_views(self, steps: list[Tensor], valid: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Augmented steps and the steps each augmented view pools over."""
        if self.augmentation == "autoencoder":
            return [self.autoencoders[k](s) for k, s in zip(self.inputs, steps)], valid
        kept = []
        for keep in valid:
            dropped = keep & (torch.rand(keep.shape, device=keep.device) >= self.static_drop)
            kept.append(torch.where(dropped.any(dim=1, keepdim=True), dropped, keep))
        return steps, kept

    def _contrastive(
        self, steps: list[Tensor], valid: list[Tensor], views: list[Tensor] | None, view_valid: list[Tensor] | None
    ) -> Tensor | None:
        tau = self.temperature()
        raw = [self.projection_heads[k](self._pool(s, v)) for k, s, v in zip(self.inputs, steps, valid)]
        present = [v.any(dim=1) for v in valid]
        terms: list[Tensor] = []
        if views is not None:
            for k, view, keep, has in zip(self.inputs, views, view_valid, present):
                if int(has.sum()) >= 2:
                    augmented = self.projection_heads[k](self._pool(view, keep))
                    terms.append(nt_xent(raw[self.inputs.index(k)][has], augmented[has], tau))
        for a in range(len(self.inputs) - 1):  # speech -> text (consecutive inputs), one direction
            both = present[a] & present[a + 1]
            if int(both.sum()) >= 2:
                terms.append(info_nce(raw[a][both], raw[a + 1][both], tau))
        return torch.stack(terms).sum() if terms else None

    def _discrimination(self, steps: list[Tensor], valid: list[Tensor], labels: Tensor) -> Tensor | None:
        labeled = (labels != IGNORE_INDEX).nonzero(as_tuple=True)[0]
        first, second, consistent = grouped_pairs(labels[labeled], self.ed_group_size, self.ed_include_matched)
        if first.numel() == 0:
            return None
        first, second = labeled[first], labeled[second]
        pair_steps = [steps[0][first]] + [s[second] for s in steps[1:]]
        pair_valid = [valid[0][first]] + [v[second] for v in valid[1:]]
        logits = self.discriminator(self.fuse(pair_steps, pair_valid)).float()
        weight = None
        if self.ed_balance:
            positives = consistent.sum().clamp(min=1)
            ratio = ((consistent.numel() - consistent.sum()) / positives).float().clamp(min=1.0)
            weight = torch.stack([torch.ones_like(ratio), ratio])
        return F.cross_entropy(logits, consistent, weight=weight)

    def _aux_losses(self, steps: list[Tensor], valid: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        aux: dict[str, Tensor] = {}
        labeled = labels != IGNORE_INDEX
        views = view_valid = None
        if self.augmentation != "none":
            views, view_valid = self._augmented_views(steps, valid)
        if self.augmentation == "autoencoder":
            aux["mse"] = torch.stack([masked_step_mse(a, s, v) for a, s, v in zip(views, steps, valid)]).sum()
            if labeled.any():
                aux["label_alignment"] = self._label_alignment(views, valid, labels, labeled)
        if self.projection_heads is not None:
            contrastive = self._contrastive(steps, valid, views, view_valid)
            if contrastive is not None:
                aux["contrastive"] = contrastive
        if self.discriminator is not None:
            discrimination = self._discrimination(steps, valid, labels)
            if discrimination is not None:
                aux["discrimination"] = discrimination
        return aux

    def _label_alignment(self, views: list[Tensor], valid: list[Tensor], labels: Tensor, labeled: Tensor) -> Tensor:
        """CE of the augmented prediction (= KL(one-hot label || prediction), Eq. 11)."""
        target = labels[labeled]
        if self.label_alignment == "fusion":
            fused = self.fuse([v[labeled] for v in views], [m[labeled] for m in valid])
            return F.cross_entropy(self.classifier(fused).float(), target)
        total = []
        for key, view, keep in zip(self.inputs, views, valid):
            has = keep[labeled].any(dim=1)
            if has.any():
                pooled = self._pool(view[labeled][has], keep[labeled][has])
                total.append(F.cross_entropy(self.aligners[key](pooled).float(), target[has]))
        return torch.stack(total).sum() if total else views[0].sum() * 0.0
