"""MRD, Mutual Refinement Distillation: fine-tune two trained models of any backbone together.

A `refine.<name>` block names a trained multimodal model and its text-only twin (two `models`
blocks, e.g. `fusion_gru` and `text_gru`). For each seed k both are loaded from
`artifacts/models/<model>/seed<k>/`, frozen copies are kept as anchors, and both are fine-tuned on
L = alpha KL_T(text || multi) + beta KL_T(multi || text)            (MIC, teachers detached)
  + gamma |z_m - zbar_m|^2 + delta |z_t - zbar_t|^2                 (ILC, against the frozen copies)
  + CE(z_m) + CE(z_t)                                              (classification)
with weight decay as the L2 term, while a reverse curriculum (`pipeline.training.mrd.curriculum`) feeds
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

The package: `config` (the `refine` block), `pairs` (both models' data side by side),
`curriculum` (categories, order, pacing, out-of-fold categories), `refine` (the per-seed task and the
outputs); the losses are `models.layers.mutual_distill`; the stage is `pipeline/stages/refine.py`.
"""

from pipeline.training.mrd.config import (
    REFINE_BLOCK,
    TEXT_SUFFIX,
    CurriculumConfig,
    MRDConfig,
    refinements,
    resolve_model_spec,
)
from pipeline.training.mrd.curriculum import categorise_training_split, initial_curriculum
from pipeline.training.mrd.pairs import PairedData, load_model_data
from pipeline.training.mrd.refine import PROTOCOL, RefinedSeed, RefineOutcome, refine, refine_seed

__all__ = [
    "PROTOCOL",
    "REFINE_BLOCK",
    "TEXT_SUFFIX",
    "CurriculumConfig",
    "MRDConfig",
    "PairedData",
    "RefineOutcome",
    "RefinedSeed",
    "categorise_training_split",
    "initial_curriculum",
    "load_model_data",
    "refine",
    "refine_seed",
    "refinements",
    "resolve_model_spec",
]
