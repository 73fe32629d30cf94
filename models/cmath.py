"""CMATH: Cross-Modality Augmented Transformer with Hierarchical variational distillation (Zhu et al., 2024).

A conversation-level fusion model in four stages:

1. Modality reconstruction: per modality a 1-D convolution over the utterance axis maps d_m -> d
   and a second one maps back; `reconstruction` keeps the compressed code informative. Speaker
   embeddings and sinusoidal utterance positions (the same for every modality) are added.
2. CMA-Transformer: one block per modality as *centre*; the centre attends to itself and to each
   auxiliary modality, and a gate fuses the branches into an augmented representation H'_m.
3. Variational fusion: each H'_m becomes a diagonal Gaussian; the Gaussians are averaged and a
   reparameterised sample (the mean in eval mode) is the fused representation H'_x.
4. Hierarchical distillation: the fused teacher guides each unimodal student at the feature level
   (`distill_feature`, MSE) and the prediction level (`distill_logit`, KL(teacher || student)); the
   unimodal classifiers also get cross-entropy (`ce_unimodal`). The logits are the fused head's.

Auxiliary losses (the trainer adds CE on the logits and weights these by `loss_weights`):
`ce_unimodal` (1), `reconstruction` (1), `distill_feature` (gamma_1), `distill_logit` (gamma_2),
`prior_kl` (0: the paper has no KL-to-prior term; a small weight such as 0.01 stops sigma collapsing).
Paper weights: IEMOCAP gamma_1 = 1.0, gamma_2 = 1.8; MELD gamma_1 = 1.0, gamma_2 = 1.2
(`PAPER_LOSS_WEIGHTS`; the class defaults are IEMOCAP's). Paper sizes: hidden 500 (IEMOCAP) /
400 (MELD); lr 3e-3 / 2e-4; batch 16 / 4 dialogues.

Choices the paper leaves open, each a hyper-parameter (default first):
kernel_size 1 (int, or {modality: k}; odd), heads 4, ff_dim = hidden, layers 1, activation relu|gelu,
dropout 0.5, gate softmax|sigmoid_concat|mean, sigma_fusion mean_std|mean_var|poe, logvar_clamp 10,
initial_logvar 0 (where the variance head starts: 0 = sigma about 1; -4 = a quieter start),
detach_teacher false, kd_temperature 1, max_speakers 9 (speaker slots per dialogue; later
speakers share the last slot). Eval mode uses H'_x = mu_x (deterministic).

Ablation row -> params edit (Table 4 and Table 5 of the paper):
- w/o MR                -> modality_reconstruction: false   (a Linear per modality, no reconstruction loss)
- w/o CMA-T             -> cma_transformer: false           (H'_m = H_m)
- w/o LLD               -> loss_weights: {distill_feature: 0}
- w/o HLD               -> loss_weights: {distill_logit: 0}
- w/o HD                -> loss_weights: {distill_feature: 0, distill_logit: 0}
- modality settings T, A, V, T+A, T+V, A+V -> inputs: [text], [audio], ..., [audio, visual]
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from models.batch import DialogueBatch, ModelOutput
from models.layers.checks import choice, divisible, flag, number, positive_float, positive_int, probability
from models.layers.distill import feature_distillation, logit_distillation, masked_cross_entropy
from models.layers.masking import masked_mean, masked_mse, zero_invalid
from models.layers.transformer import (
    ACTIVATIONS,
    GATES,
    CrossModalAugmentedBlock,
    attention_mask,
    sinusoidal_positions,
)
from models.layers.variational import (
    SIGMA_FUSION,
    GaussianEncoder,
    fuse_gaussians,
    reparameterize,
    standard_normal_kl,
)
from models.registry import register

NAME = "cmath"
PAPER_LOSS_WEIGHTS: dict[str, dict[str, float]] = {
    "iemocap": {
        "ce_unimodal": 1.0,
        "reconstruction": 1.0,
        "distill_feature": 1.0,
        "distill_logit": 1.8,
        "prior_kl": 0.0,
    },
    "meld": {"ce_unimodal": 1.0, "reconstruction": 1.0, "distill_feature": 1.0, "distill_logit": 1.2, "prior_kl": 0.0},
}


class ModalityReconstruction(nn.Module):
    """Conv1d d_m -> d over utterances, and (when reconstructing) Conv1d d -> d_m back.

    Padded utterances are zeroed before each convolution, so with kernel > 1 padding cannot reach a
    real utterance. Without reconstruction it is one Linear(d_m, d) ("w/o MR").
    """

    def __init__(self, in_dim: int, dim: int, kernel: int, reconstruct: bool) -> None:
        super().__init__()
        self.reconstruct = reconstruct
        if reconstruct:
            self.encoder: nn.Module = nn.Conv1d(in_dim, dim, kernel, padding=kernel // 2)
            self.decoder: nn.Module | None = nn.Conv1d(dim, in_dim, kernel, padding=kernel // 2)
        else:
            self.encoder = nn.Linear(in_dim, dim)
            self.decoder = None

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """features [B, L, d_m] (zero where absent) -> code [B, L, d], reconstruction [B, L, d_m] or None."""
        features = zero_invalid(features, mask)
        if self.decoder is None:
            return zero_invalid(self.encoder(features), mask), None
        code = zero_invalid(self.encoder(features.transpose(1, 2)).transpose(1, 2), mask)
        rebuilt = self.decoder(code.transpose(1, 2)).transpose(1, 2)
        return code, rebuilt


@register(NAME)
class CMATH(nn.Module):
    """Cross-modality augmented transformer + variational fusion + hierarchical self-distillation."""

    default_loss_weights = PAPER_LOSS_WEIGHTS["iemocap"]

    def __init__(
        self,
        input_dims: Mapping[str, int],
        num_classes: int,
        hidden: int = 128,
        heads: int = 4,
        ff_dim: int | None = None,
        layers: int = 1,
        dropout: float = 0.5,
        activation: str = "relu",
        kernel_size: int | Mapping[str, int] = 1,
        max_speakers: int = 9,
        modality_reconstruction: bool = True,
        cma_transformer: bool = True,
        gate: str = "softmax",
        sigma_fusion: str = "mean_std",
        logvar_clamp: float = 10.0,
        initial_logvar: float = 0.0,
        detach_teacher: bool = False,
        kd_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError(f"{NAME}: needs at least one input")
        hidden = positive_int(NAME, "hidden", hidden)
        heads = positive_int(NAME, "heads", heads)
        divisible(NAME, "heads", hidden, heads)
        ff_dim = positive_int(NAME, "ff_dim", ff_dim) if ff_dim is not None else hidden
        layers = positive_int(NAME, "layers", layers)
        dropout = probability(NAME, "dropout", dropout)
        choice(NAME, "activation", activation, ACTIVATIONS)
        self.max_speakers = positive_int(NAME, "max_speakers", max_speakers)
        self.reconstruct = flag(NAME, "modality_reconstruction", modality_reconstruction)
        self.use_cma = flag(NAME, "cma_transformer", cma_transformer)
        choice(NAME, "gate", gate, GATES)
        self.sigma_fusion = choice(NAME, "sigma_fusion", sigma_fusion, SIGMA_FUSION)
        self.detach_teacher = flag(NAME, "detach_teacher", detach_teacher)
        self.kd_temperature = positive_float(NAME, "kd_temperature", kd_temperature)
        kernels = self._kernels(kernel_size, input_dims)

        self.inputs = list(input_dims)
        self.hidden = hidden
        self.reconstruction = nn.ModuleDict(
            {m: ModalityReconstruction(int(d), hidden, kernels[m], self.reconstruct) for m, d in input_dims.items()}
        )
        self.speaker = nn.Embedding(self.max_speakers + 1, hidden, padding_idx=self.max_speakers)
        self.dropout = nn.Dropout(dropout)
        others = len(self.inputs) - 1
        self.cma = nn.ModuleList(
            nn.ModuleDict(
                {
                    m: CrossModalAugmentedBlock(hidden, heads, ff_dim, dropout, others, gate, activation)
                    for m in self.inputs
                }
            )
            for _ in range(layers if self.use_cma else 0)
        )
        self.gaussians = nn.ModuleDict(
            {
                m: GaussianEncoder(
                    hidden,
                    hidden,
                    logvar_clamp=positive_float(NAME, "logvar_clamp", logvar_clamp),
                    initial_logvar=number(NAME, "initial_logvar", initial_logvar),
                )
                for m in self.inputs
            }
        )
        self.classifiers = nn.ModuleDict({m: nn.Linear(hidden, num_classes) for m in self.inputs})
        self.fused_classifier = nn.Linear(hidden, num_classes)

    @staticmethod
    def _kernels(kernel_size: int | Mapping[str, int], input_dims: Mapping[str, int]) -> dict[str, int]:
        if isinstance(kernel_size, Mapping):
            unknown = sorted(set(kernel_size) - set(input_dims))
            if unknown:
                raise ValueError(f"{NAME}: 'kernel_size' names {unknown}, which are not inputs ({list(input_dims)})")
            kernels = {m: kernel_size.get(m, 1) for m in input_dims}
        else:
            kernels = dict.fromkeys(input_dims, kernel_size)
        for m, k in kernels.items():
            positive_int(NAME, f"kernel_size.{m}", k)
            if k % 2 == 0:
                raise ValueError(f"{NAME}: 'kernel_size' for {m} must be odd (same-length padding), got {k}")
        return kernels

    # -- stages ----------------------------------------------------------------------------------

    def context_embedding(self, batch: DialogueBatch) -> Tensor:
        """S + P [B, L, d]: speaker embedding (zero on padding) plus sinusoidal utterance position."""
        slots = batch.speakers.clamp(min=0, max=self.max_speakers - 1)
        slots = torch.where(batch.mask, slots, torch.full_like(slots, self.max_speakers))
        positions = sinusoidal_positions(batch.mask.shape[1], self.hidden, batch.mask.device)
        return self.speaker(slots) + positions.unsqueeze(0)

    def encode(self, batch: DialogueBatch) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor | None]:
        """Compressed codes U'_m, the inputs H_m = dropout(U'_m + S + P), and the reconstruction loss."""
        shared = self.context_embedding(batch)
        codes: dict[str, Tensor] = {}
        states: dict[str, Tensor] = {}
        losses = []
        for m in self.inputs:
            valid = batch.mask & batch.present[m]
            features = zero_invalid(batch.features[m], valid)
            code, rebuilt = self.reconstruction[m](features, batch.mask)
            if rebuilt is not None:
                losses.append(masked_mse(rebuilt, features, valid))
            codes[m] = code
            states[m] = self.dropout(code + shared)
        return codes, states, (sum(losses) if losses else None)

    def augment(self, states: dict[str, Tensor], valid: dict[str, Tensor], mask: Tensor) -> dict[str, Tensor]:
        """H'_m: every CMA layer runs once per centre modality on the previous layer's outputs."""
        allowed = {m: attention_mask(mask, valid[m]) for m in self.inputs}
        for layer in self.cma:
            states = {
                c: layer[c](
                    states[c],
                    allowed[c],
                    [states[j] for j in self.inputs if j != c],
                    [allowed[j] for j in self.inputs if j != c],
                )
                for c in self.inputs
            }
        return states

    def forward(self, batch: DialogueBatch) -> ModelOutput:
        mask = batch.mask
        valid = {m: mask & batch.present[m] for m in self.inputs}
        _, states, reconstruction = self.encode(batch)
        augmented = self.augment(states, valid, mask)

        gaussians = {m: self.gaussians[m](augmented[m]) for m in self.inputs}
        presence = torch.stack([valid[m] for m in self.inputs])
        mu_x, logvar_x = fuse_gaussians(
            [gaussians[m][0] for m in self.inputs], [gaussians[m][1] for m in self.inputs], presence, self.sigma_fusion
        )
        fused = reparameterize(mu_x, logvar_x) if self.training else mu_x
        logits = self.fused_classifier(self.dropout(fused))
        student_logits = {m: self.classifiers[m](self.dropout(augmented[m])) for m in self.inputs}

        teacher = fused.detach() if self.detach_teacher else fused
        teacher_logits = logits.detach() if self.detach_teacher else logits
        aux = {
            "ce_unimodal": sum(masked_cross_entropy(student_logits[m], batch.labels, valid[m]) for m in self.inputs),
            "distill_feature": sum(feature_distillation(augmented[m], teacher, valid[m]) for m in self.inputs),
            "distill_logit": sum(
                logit_distillation(teacher_logits, student_logits[m], valid[m], self.kd_temperature)
                for m in self.inputs
            ),
            "prior_kl": sum(masked_mean(standard_normal_kl(*gaussians[m]).sum(dim=-1), valid[m]) for m in self.inputs),
        }
        if reconstruction is not None:
            aux["reconstruction"] = reconstruction
        return ModelOutput(logits=zero_invalid(logits, mask), aux_losses=aux)
