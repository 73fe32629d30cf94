"""LFVD: Language-Focused augmented transformer with Variational Distillation fusion (Zhu & Jiang, 2025).

Language is the dominant modality, audio and visual are auxiliaries:

1. Context encoding per modality: a Bi-GRU over the dialogue, then a DAG-ERC graph network over the
   real dialogue structure (speakers and utterance order from the batch).
2. LFA transformer: the dominant stream queries every auxiliary (cross-attention) and itself; the
   results are summed into a conversation matrix X^m. A learnable atmosphere token t0 is prepended
   and one more attention layer turns it into the conversation-atmosphere vector t (CEAR), which is
   added to every utterance of every modality.
3. Dual contrastive learning on the enhanced features: cross-modal (`contrastive_self`, Eq. 10)
   and supervised per modality (`contrastive_full`, Eq. 11).
4. Cross-modality variational distillation: each modality becomes a diagonal Gaussian; auxiliaries
   are distilled toward the dominant one and all toward N(0, I) (`distill_variational`, Eq. 13);
   fusion weights w^m = sigmoid(symmetric KL(q^m, q^l)) give x^f = sum_m w^m x^m + x^l.

Auxiliary losses and paper weights (gamma_1, gamma_2, gamma_3; the class defaults are IEMOCAP's):
IEMOCAP contrastive_self 3.5e-2, contrastive_full 5e-3, distill_variational 3e-3;
MELD contrastive_self 1.35e-3, contrastive_full 5e-3, distill_variational 3e-3 (`PAPER_LOSS_WEIGHTS`).
Paper optimiser settings: lr 6.2e-5 / 2.5e-4, weight decay 7e-3, batch 20 / 32 dialogues.

Choices the paper leaves open, each a hyper-parameter (default first): hidden 128 (d_x; paper-scale
512 IEMOCAP / 384 MELD), latent_dim = hidden, heads 4, ff_dim = 2 * hidden, dropout 0.3,
attention_dropout 0.1, dag_layers 2, dag_window 1, temperature 0.1, causal false (unidirectional GRU
and causal attention; the atmosphere vector then summarises the dialogue up to each utterance),
dominant text (falls back to the first input when absent), cross_residual kv|query (Eq. 6 adds
the key/value stream), language_stream literal|xm (the ambiguous transformer output: literal = the
DAG stream + t, so the LFA reaches prediction only through t; xm = the LFA's utterance rows + t),
fuse_on x|mu|z, kl_reduce_for_weights mean|sum, detach_teacher true (stop-gradient on the teacher in
the distillation KL), distill_prior true, self_include_positive false (true = standard InfoNCE),
supcon_standard false (true = SupCon denominator), logvar_clamp 8.

Ablation row -> params edit (Tables 4-6 and Fig. 2 of the paper):
- w/o LFA-Transformer        -> use_lfa: false
- w/o CEAR                   -> use_cear: false   (with language_stream: literal the LFA output is then
                                unused, i.e. the same network as w/o LFA; use language_stream: xm to keep it)
- w/o DL                     -> loss_weights: {contrastive_self: 0, contrastive_full: 0}
- w/o L_self / w/o L_full    -> loss_weights: {contrastive_self: 0} / {contrastive_full: 0}
- w/o CMVD                   -> fusion: add, loss_weights: {distill_variational: 0}
- w/o CMVD-Fusion            -> fusion: add
- w/o CMVD-Distillation (= w/o L_distillation) -> loss_weights: {distill_variational: 0}
- w/o L_all                  -> loss_weights: {contrastive_self: 0, contrastive_full: 0, distill_variational: 0}
- ours(A) / ours(V)          -> dominant: audio / dominant: visual
- Fig. 2 Add / Cat / Gate    -> fusion: add / cat / gate
- modality settings (Table 4) -> inputs: [text], [audio, visual], ...
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from models.batch import IGNORE_INDEX, DialogueBatch, ModelOutput
from models.layers.checks import choice, divisible, flag, positive_float, positive_int, probability
from models.layers.contrastive import cross_modal_contrastive, supervised_contrastive
from models.layers.graph import ContextGraphEncoder
from models.layers.masking import masked_mean, zero_invalid
from models.layers.transformer import LanguageFocusedBlock, ModalityGate, PostNormBlock, attention_mask
from models.layers.variational import (
    GaussianEncoder,
    gaussian_kl,
    reparameterize,
    standard_normal_kl,
    symmetric_kl,
)
from models.registry import register

NAME = "lfvd"
PAPER_LOSS_WEIGHTS: dict[str, dict[str, float]] = {
    "iemocap": {"contrastive_self": 3.5e-2, "contrastive_full": 5e-3, "distill_variational": 3e-3},
    "meld": {"contrastive_self": 1.35e-3, "contrastive_full": 5e-3, "distill_variational": 3e-3},
}
FUSIONS = ("vd", "add", "cat", "gate")
STREAMS = ("literal", "xm")
FUSE_ON = ("x", "mu", "z")
REDUCTIONS = ("mean", "sum")


class AtmosphereToken(nn.Module):
    """CEAR (Eq. 9): a learnable token t0 prepended to X^m, one post-norm attention layer, t = its output.

    Returns t [B, 1, d] (broadcast over utterances), or [B, L, d] when causal (t_i sees t0 and
    utterances up to i), and the utterance rows S_hat[:, 1:] when `rows` is asked for.
    """

    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.randn(dim) * 0.02)
        self.block = PostNormBlock(dim, heads, ff_dim, dropout, attention_dropout)

    def forward(self, conversation: Tensor, mask: Tensor, causal: bool, rows: bool) -> tuple[Tensor, Tensor | None]:
        size, steps, dim = conversation.shape
        token = self.token.expand(size, 1, dim)
        sequence = torch.cat([token, conversation], dim=1)
        key_valid = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        if causal:
            # query for utterance i is the token itself, allowed keys: t0 and utterances 0..i
            queries = token.expand(size, steps, dim)
            allowed = attention_mask(mask, key_valid)
            later = torch.arange(steps + 1, device=mask.device).unsqueeze(0) > torch.arange(
                1, steps + 1, device=mask.device
            ).unsqueeze(1)
            atmosphere = self.block(queries, sequence, allowed & ~later)
        else:
            query_valid = key_valid if rows else key_valid[:, :1]
            queries = sequence if rows else token
            outputs = self.block(queries, sequence, attention_mask(query_valid, key_valid))
            atmosphere = outputs[:, :1]
            if rows:
                return atmosphere, outputs[:, 1:]
            return atmosphere, None
        if rows:
            row_allowed = attention_mask(key_valid, key_valid, causal=True)
            return atmosphere, self.block(sequence, sequence, row_allowed)[:, 1:]
        return atmosphere, None


@register(NAME)
class LFVD(nn.Module):
    """Language-focused transformer, atmosphere vector, dual contrastive learning, variational distillation fusion."""

    default_loss_weights = PAPER_LOSS_WEIGHTS["iemocap"]

    def __init__(
        self,
        input_dims: Mapping[str, int],
        num_classes: int,
        hidden: int = 128,
        latent_dim: int | None = None,
        heads: int = 4,
        ff_dim: int | None = None,
        dropout: float = 0.3,
        attention_dropout: float = 0.1,
        dag_layers: int = 2,
        dag_window: int = 1,
        temperature: float = 0.1,
        causal: bool = False,
        dominant: str = "text",
        cross_residual: str = "kv",
        language_stream: str = "literal",
        use_lfa: bool = True,
        use_cear: bool = True,
        fusion: str = "vd",
        fuse_on: str = "x",
        kl_reduce_for_weights: str = "mean",
        detach_teacher: bool = True,
        distill_prior: bool = True,
        self_include_positive: bool = False,
        supcon_standard: bool = False,
        logvar_clamp: float = 8.0,
    ) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError(f"{NAME}: needs at least one input")
        hidden = positive_int(NAME, "hidden", hidden)
        latent = positive_int(NAME, "latent_dim", latent_dim) if latent_dim is not None else hidden
        heads = positive_int(NAME, "heads", heads)
        divisible(NAME, "heads", hidden, heads)
        ff_dim = positive_int(NAME, "ff_dim", ff_dim) if ff_dim is not None else 2 * hidden
        dropout = probability(NAME, "dropout", dropout)
        attention_dropout = probability(NAME, "attention_dropout", attention_dropout)
        self.temperature = positive_float(NAME, "temperature", temperature)
        self.causal = flag(NAME, "causal", causal)
        self.language_stream = choice(NAME, "language_stream", language_stream, STREAMS)
        self.use_lfa = flag(NAME, "use_lfa", use_lfa)
        self.use_cear = flag(NAME, "use_cear", use_cear)
        self.fusion = choice(NAME, "fusion", fusion, FUSIONS)
        self.fuse_on = choice(NAME, "fuse_on", fuse_on, FUSE_ON)
        self.kl_reduce = choice(NAME, "kl_reduce_for_weights", kl_reduce_for_weights, REDUCTIONS)
        self.detach_teacher = flag(NAME, "detach_teacher", detach_teacher)
        self.distill_prior = flag(NAME, "distill_prior", distill_prior)
        self.self_include_positive = flag(NAME, "self_include_positive", self_include_positive)
        self.supcon_standard = flag(NAME, "supcon_standard", supcon_standard)
        if not isinstance(dominant, str):
            raise ValueError(f"{NAME}: 'dominant' must name an input, got {dominant!r}")

        self.inputs = list(input_dims)
        self.dominant = dominant if dominant in input_dims else self.inputs[0]
        self.auxiliaries = [m for m in self.inputs if m != self.dominant]
        self.encoders = nn.ModuleDict(
            {
                m: ContextGraphEncoder(
                    int(d),
                    hidden,
                    positive_int(NAME, "dag_layers", dag_layers),
                    positive_int(NAME, "dag_window", dag_window),
                    dropout,
                    self.causal,
                )
                for m, d in input_dims.items()
            }
        )
        choice(NAME, "cross_residual", cross_residual, LanguageFocusedBlock.RESIDUALS)
        # without CEAR and with the literal stream the LFA output would reach nothing: it is not built
        lfa_used = self.use_lfa and (self.use_cear or self.language_stream == "xm")
        self.lfa = (
            LanguageFocusedBlock(
                hidden, heads, ff_dim, dropout, attention_dropout, len(self.auxiliaries), cross_residual
            )
            if lfa_used
            else None
        )
        self.atmosphere = (
            AtmosphereToken(hidden, heads, ff_dim, dropout, attention_dropout)
            if self.use_lfa and self.use_cear
            else None
        )
        clamp = positive_float(NAME, "logvar_clamp", logvar_clamp)
        self.gaussians = nn.ModuleDict({m: GaussianEncoder(hidden, latent, hidden, clamp) for m in self.inputs})
        fused_dim = hidden if self.fuse_on == "x" else latent
        self.concat = nn.Linear(fused_dim * len(self.inputs), fused_dim) if self.fusion == "cat" else None
        self.gate = ModalityGate(fused_dim, len(self.inputs), "softmax") if self.fusion == "gate" else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(fused_dim, num_classes)

    # -- stages ----------------------------------------------------------------------------------

    def context(self, batch: DialogueBatch) -> dict[str, Tensor]:
        """X^xi [B, L, d] from each modality's GRU + DAG encoder (absent utterances enter as zeros)."""
        return {
            m: self.encoders[m](
                zero_invalid(batch.features[m], batch.mask & batch.present[m]), batch.speakers, batch.mask
            )
            for m in self.inputs
        }

    def enhance(self, streams: dict[str, Tensor], valid: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        """LFA + CEAR: every stream plus the atmosphere vector t; the dominant stream as `language_stream` says."""
        if self.lfa is None:
            return streams
        allowed = {m: attention_mask(mask, valid[m], self.causal) for m in self.inputs}
        conversation = self.lfa(
            streams[self.dominant],
            allowed[self.dominant],
            [streams[m] for m in self.auxiliaries],
            [allowed[m] for m in self.auxiliaries],
        )
        if self.atmosphere is None:  # language_stream xm without CEAR: X^m is the dominant stream
            return {**streams, self.dominant: zero_invalid(conversation, mask)}
        rows_wanted = self.language_stream == "xm"
        atmosphere, rows = self.atmosphere(conversation, mask, self.causal, rows_wanted)
        enhanced = {m: streams[m] + atmosphere for m in self.inputs}
        if rows is not None:
            enhanced[self.dominant] = rows + atmosphere
        return {m: zero_invalid(v, mask) for m, v in enhanced.items()}

    def fusion_weights(self, gaussians: dict[str, tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        """w^m = sigmoid(symmetric KL(q^m, q^dominant)) [B, L] for each auxiliary, in [0.5, 1)."""
        mu_l, logvar_l = gaussians[self.dominant]
        weights = {}
        for m in self.auxiliaries:
            divergence = symmetric_kl(*gaussians[m], mu_l, logvar_l)
            divergence = divergence.mean(dim=-1) if self.kl_reduce == "mean" else divergence.sum(dim=-1)
            weights[m] = torch.sigmoid(divergence)
        return weights

    def fuse(
        self, values: dict[str, Tensor], gaussians: dict[str, tuple[Tensor, Tensor]], valid: dict[str, Tensor]
    ) -> Tensor:
        """x^f from the per-modality vectors; absent auxiliaries contribute nothing to their utterance."""
        present = {m: valid[m].unsqueeze(-1).to(values[m].dtype) for m in self.inputs}
        if self.fusion == "cat":
            return self.concat(torch.cat([values[m] * present[m] for m in self.inputs], dim=-1))
        if self.fusion == "gate":
            return self.gate([values[m] for m in self.inputs])
        fused = values[self.dominant]
        weights = self.fusion_weights(gaussians) if self.fusion == "vd" else {}
        for m in self.auxiliaries:
            weight = weights[m].unsqueeze(-1) if m in weights else 1.0
            fused = fused + weight * values[m] * present[m]
        return fused

    def distillation(self, gaussians: dict[str, tuple[Tensor, Tensor]], valid: dict[str, Tensor]) -> Tensor:
        """Eq. 13: sum over auxiliaries of KL(q^m || sg[q^dominant]) + sum over all of KL(q^m || N(0, I))."""
        mu_l, logvar_l = gaussians[self.dominant]
        if self.detach_teacher:
            mu_l, logvar_l = mu_l.detach(), logvar_l.detach()
        total = mu_l.sum() * 0.0
        for m in self.auxiliaries:
            kl = gaussian_kl(*gaussians[m], mu_l, logvar_l).sum(dim=-1)
            total = total + masked_mean(kl, valid[m] & valid[self.dominant])
        if self.distill_prior:
            for m in self.inputs:
                total = total + masked_mean(standard_normal_kl(*gaussians[m]).sum(dim=-1), valid[m])
        return total

    def contrastive(
        self, enhanced: dict[str, Tensor], valid: dict[str, Tensor], batch: DialogueBatch
    ) -> dict[str, Tensor]:
        """Both contrastive losses over the valid utterances of the whole batch."""
        mask = batch.mask
        count = int(mask.sum())
        flat = {m: enhanced[m][mask] for m in self.inputs}
        present = {m: valid[m][mask] for m in self.inputs}
        labels = batch.labels[mask]
        labeled = labels != IGNORE_INDEX
        losses = {
            "contrastive_full": sum(
                supervised_contrastive(
                    flat[m], labels, present[m] & labeled, count, self.temperature, self.supcon_standard
                )
                for m in self.inputs
            )
        }
        if len(self.inputs) > 1:
            losses["contrastive_self"] = cross_modal_contrastive(
                flat, present, count, self.temperature, self.self_include_positive
            )
        return losses

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        mask = batch.mask
        valid = {m: mask & batch.present[m] for m in self.inputs}
        enhanced = self.enhance(self.context(batch), valid, mask)
        gaussians = {m: self.gaussians[m](enhanced[m]) for m in self.inputs}
        if self.fuse_on == "x":
            values = enhanced
        elif self.fuse_on == "mu":
            values = {m: gaussians[m][0] for m in self.inputs}
        else:
            values = {m: reparameterize(*gaussians[m]) if self.training else gaussians[m][0] for m in self.inputs}
        fused = self.fuse(values, gaussians, valid)
        logits = self.classifier(self.dropout(fused))
        aux = self.contrastive(enhanced, valid, batch)
        aux["distill_variational"] = self.distillation(gaussians, valid)
        return ModelOutput(logits=zero_invalid(logits, mask), aux_losses=aux)
