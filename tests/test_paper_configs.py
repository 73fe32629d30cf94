"""The paper configs (`configs/<paper>/<corpus>.yaml`): each one, merged over params.yaml, passes the check
every stage runs first, and builds its paper's model at the sizes the paper (or its spec) states.

The expected sizes below are written out from the specs, not read from the files, so a config whose size
drifts from the paper fails here. Models are built at the papers' own feature dims and never trained.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from models.layers.dialogue_graph import DenseGATConv, DenseGraphConv
from models.layers.hierarchical_fusion import ExpertProjection, PreNormEncoderLayer
from models.layers.residual_autoencoder import ResidualAutoencoder
from models.layers.transformer import FeedForward, MultiHeadAttention
from models.registry import build_model, get_model_class
from pipeline.config import load_params, merge_params
from pipeline.params_check import check_params
from pipeline.training.config import ModelSpec, TrainConfig
from pipeline.training.mrd.config import MRDConfig
from pipeline.training.optimisers import parameter_groups
from tests.conftest import PROJECT

CONFIGS = PROJECT / "configs"
FILES = sorted(CONFIGS.rglob("*.yaml"))
MELD_CLASSES = 7

# The papers' feature dims per corpus (each spec's section 2): the models are built at these.
TRIMODAL = {  # CMATH, LFVD, MRD: RoBERTa-large, openSMILE (IS10 on IEMOCAP, the 300-d vector on MELD), denseface
    "iemocap": {"text": 1024, "audio": 1582, "visual": 342},
    "meld": {"text": 1024, "audio": 300, "visual": 342},
}
DRKF_DIMS = {"audio_seq": 1024, "text_seq": 1024}  # wav2vec2-large frames, RoBERTa-large tokens
KD_DIMS = {"text": 768, "audio": 1024, "visual": 768}  # projected RoBERTa mask state, wav2vec2 mean, TimeSformer


def read_config(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.safe_load(handle)


def merged_params(path: Path) -> dict[str, Any]:
    return merge_params(load_params(PROJECT / "params.yaml"), read_config(path))


def missing_keys(base: Any, block: Any, where: str = "") -> list[str]:
    """Keys of `base` (recursively) that `block` leaves unset: they would leak in from params.yaml."""
    if not isinstance(base, Mapping) or not isinstance(block, Mapping):
        return []
    missing = []
    for key, value in base.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in block:
            missing.append(path)
        else:
            missing.extend(missing_keys(value, block[key], path))
    return missing


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def attention_shapes(module: nn.Module) -> list[tuple[int, int]]:
    """(width, heads) of every multi-head attention inside `module`."""
    return [(m.query.in_features, m.heads) for m in module.modules() if isinstance(m, MultiHeadAttention)]


def feed_forward_shapes(module: nn.Module) -> list[tuple[int, int]]:
    """(width, inner width) of every feed-forward block inside `module`."""
    return [(m.net[0].in_features, m.net[0].out_features) for m in module.modules() if isinstance(m, FeedForward)]


def num_classes(params: Mapping[str, Any]) -> int:
    dataset = params["dataset"]
    return len(dataset["iemocap"]["labels"]) if dataset["name"] == "iemocap" else MELD_CLASSES


# ------------------------------------------------------------------ per-paper size checks


def cmath_sizes(hidden: int, speakers: int) -> Callable[[nn.Module, Mapping[str, int], int], None]:
    """CMATH spec section 3 / 5: d = hidden, 4 heads, d_ff = d, one CMA layer per centre modality, k_m = 1."""

    def check(model: nn.Module, dims: Mapping[str, int], classes: int) -> None:
        assert model.hidden == hidden
        for m, d in dims.items():
            encoder, decoder = model.reconstruction[m].encoder, model.reconstruction[m].decoder
            assert isinstance(encoder, nn.Conv1d) and (encoder.in_channels, encoder.out_channels) == (d, hidden)
            assert encoder.kernel_size == (1,) and decoder.out_channels == d
            mean = model.gaussians[m].mean
            assert (mean[0].in_features, mean[0].out_features, mean[2].out_features) == (hidden, hidden, hidden)
        assert len(model.cma) == 1 and set(model.cma[0]) == set(dims)
        shapes = attention_shapes(model.cma)
        assert set(shapes) == {(hidden, 4)} and len(shapes) == 3 * len(dims)  # self + 2 cross per centre
        assert set(feed_forward_shapes(model.cma)) == {(hidden, hidden)}
        assert (model.speaker.num_embeddings, model.speaker.embedding_dim) == (speakers + 1, hidden)
        assert model.dropout.p == 0.5
        assert model.fused_classifier.out_features == classes

    return check


def lfvd_sizes(hidden: int) -> Callable[[nn.Module, Mapping[str, int], int], None]:
    """LFVD spec section 3 table: d_r = d_x = d_z = hidden, 8 heads, d_ff = 2 d_x, L_g = 2, omega = 1, tau 0.1."""

    def check(model: nn.Module, dims: Mapping[str, int], classes: int) -> None:
        for m, d in dims.items():
            encoder = model.encoders[m]
            assert encoder.gru.bidirectional and (encoder.gru.input_size, encoder.gru.hidden_size) == (d, hidden // 2)
            assert len(encoder.graph.gru_context) == 2 and encoder.graph.window == 1
            assert encoder.graph.output.in_features == 3 * hidden  # [H^0 | H^1 | H^2] -> d_x
            assert model.gaussians[m].mean[-1].out_features == hidden
        shapes = attention_shapes(model)
        assert set(shapes) == {(hidden, 8)} and len(shapes) == 4  # language self + 2 cross + atmosphere
        assert set(feed_forward_shapes(model)) == {(hidden, 2 * hidden)}
        assert model.temperature == 0.1 and model.dropout.p == 0.3
        assert (model.classifier.in_features, model.classifier.out_features) == (hidden, classes)

    return check


def drkf_sizes(model: nn.Module, dims: Mapping[str, int], classes: int) -> None:
    """DRKF spec sections 3.2-3.6: the parameter counts of the released code's modules."""
    encoder = model.encoder
    assert len(encoder.blocks) == 6
    assert set(attention_shapes(encoder)) == {(1024, 8)}
    assert set(feed_forward_shapes(encoder)) == {(1024, 4096)}
    assert encoder.position.num_embeddings == 2800
    assert count(encoder.blocks) == 75_577_344  # "6 layers = 75.6 M" (6 BERT layers at 1024 / 4096)
    assert abs(count(encoder) - 78.4e6) < 0.1e6  # "with position and type embeddings, about 78.4 M"
    for key in dims:
        autoencoder = model.autoencoders[key]
        assert isinstance(autoencoder, ResidualAutoencoder)
        assert sum(isinstance(m, nn.Linear) for m in autoencoder.modules()) == 32  # 5 blocks x 6 + 2 transition
        assert count(autoencoder) == 5_139_520  # "Each AE has 5,139,520 parameters"
        assert isinstance(model.projections[key], nn.Identity)  # the encoders' 1024-d steps need no projection
        head = model.projection_heads[key]
        assert (head[0].in_features, head[0].out_features, head[2].out_features) == (1024, 1024, 1024)
    assert (model.classifier.in_features, model.classifier.out_features) == (1024, classes)
    assert model.discriminator.out_features == 2
    assert model.ed_group_size == 4


def kd_sizes(model: nn.Module, dims: Mapping[str, int], classes: int) -> None:
    """Speaker-KD spec section 4.1 (graph encoders) and Table 4 / section 4.3 (fusion)."""
    teacher = model.encoders["text"]
    assert [(c.out_dim, c.heads, c.concat) for c in teacher.convs] == [
        (192, 4, True), (192, 4, True), (192, 4, False), (192, 4, False)]  # 768-d text: h = 192, 4 heads
    assert all(isinstance(c, DenseGATConv) for c in teacher.convs) and teacher.output_dim == 192
    audio = model.encoders["audio"]
    assert [type(c) for c in audio.convs] == [DenseGraphConv] * 3
    assert [c.output_dim for c in audio.convs] == [256, 256, 256]
    visual = model.encoders["visual"]
    assert [(c.out_dim, c.heads, c.concat) for c in visual.convs] == [(128, 4, True), (256, 2, True), (256, 1, True)]
    assert [c.output_dim for c in visual.convs] == [512, 512, 256]
    assert all(encoder.dropout.p == 0.15 for encoder in model.encoders.values())
    fusion = model.fusion
    assert set(attention_shapes(fusion)) == {(256, 8)}
    assert sum(isinstance(m, PreNormEncoderLayer) for m in fusion.modules()) == 3
    assert set(feed_forward_shapes(fusion)) == {(256, 1024)}
    experts = [m for m in fusion.modules() if isinstance(m, ExpertProjection)]
    assert len(experts) == len(dims) and all(len(e.experts) == 4 and e.top_k == 2 for e in experts)
    assert tuple(fusion.pool_queries.shape) == (3, 256) and len(fusion.heads) == 3
    # the paper's "KD & fusion parts with 3M parameters" cannot hold at Table 4's sizes: two stages alone exceed it
    assert count(fusion.encoder) + count(fusion.cross) > 3e6
    assert all(head.out_features == classes for head in fusion.heads)
    assert model.contrast[-1].out_features == 128
    assert (model.poly_alpha, model.poly_gamma, model.smoothing) == (1.2, 1.2, 0.1)
    assert (model.distill_alpha, model.distill_temperature, model.contrast_temperature) == (0.65, 2.0, 0.07)
    assert (model.teacher_lr, model.teacher_weight_decay) == (8e-5, 1e-3)
    assert (model.teacher_selection, model.teacher_patience) == ("dev", 10)  # early stopping on validation W-F1


def backbone_sizes(hidden: int, dropout: float) -> Callable[[nn.Module, Mapping[str, int], int], None]:
    """MRD's stand-in for CMERC's text encoder (MRD spec section 3.2): a 2-layer BiGRU of D_g / 2 per direction."""

    def check(model: nn.Module, dims: Mapping[str, int], classes: int) -> None:
        gru = model.gru
        assert gru.bidirectional and (gru.num_layers, gru.hidden_size) == (2, hidden)
        assert model.dropout.p == dropout
        assert model.classifier.out_features == classes

    return check


def train(optimizer: str, lr: float, weight_decay: float, batch: int, epochs: int, grad_clip: float | None,
          seeds: int, lr_groups: Mapping[str, float] | None = None, batch_utterances: int | None = None
          ) -> dict[str, Any]:
    return {"optimizer": optimizer, "lr": lr, "weight_decay": weight_decay, "batch_dialogues": batch,
            "epochs": epochs, "grad_clip": grad_clip, "seeds": seeds, "lr_groups": dict(lr_groups or {}),
            "batch_utterances": batch_utterances}


KD_TRAIN = train("adamw", 4e-5, 1e-3, 8, 30, 1.0, 5,
                 {"encoders.text": 8e-5, "encoders.audio": 6e-5, "encoders.visual": 6e-5})
KD_LOSSES = {"ce": 0.0, "comp": 0.8, "smooth": 0.2, "supcon": 0.1, "distill": 0.3, "aux": 0.2, "teacher": 1.0}
DRKF_LOSSES = {"ce": 1.0, "mse": 0.2, "label_alignment": 1.0, "contrastive": 0.2, "discrimination": 0.2}


def cmath_losses(gamma_2: float) -> dict[str, float]:
    return {"ce_unimodal": 1.0, "reconstruction": 1.0, "distill_feature": 1.0, "distill_logit": gamma_2,
            "prior_kl": 0.0}


def mrd_models(hidden: int, dropout: float, epochs: int) -> dict[str, dict[str, Any]]:
    setting = train("adam", 1e-4, 3e-5, 16, epochs, None, 5)
    check = backbone_sizes(hidden, dropout)
    return {name: {"train": setting, "losses": {}, "check": check} for name in ("mrd_base_multimodal", "mrd_base_text")}


# file -> classes, and per model block: its train settings, loss weights and size check (specs sections 4-5)
PAPERS: dict[str, dict[str, Any]] = {
    "cmath/iemocap": {"classes": 6, "models": {"cmath": {
        "train": train("adam", 3e-3, 1e-5, 16, 150, None, 5), "losses": cmath_losses(1.8),
        "check": cmath_sizes(500, 2)}}},
    "cmath/meld": {"classes": 7, "models": {"cmath": {
        "train": train("adam", 2e-4, 1e-5, 4, 50, None, 5), "losses": cmath_losses(1.2),
        "check": cmath_sizes(400, 9)}}},
    "lfvd/iemocap": {"classes": 6, "models": {"lfvd": {
        "train": train("adam", 6.2e-5, 7e-3, 20, 100, 5.0, 5),
        "losses": {"contrastive_self": 3.5e-2, "contrastive_full": 5e-3, "distill_variational": 3e-3},
        "check": lfvd_sizes(512)}}},
    "lfvd/meld": {"classes": 7, "models": {"lfvd": {
        "train": train("adam", 2.5e-4, 7e-3, 32, 80, 5.0, 5),
        "losses": {"contrastive_self": 1.35e-3, "contrastive_full": 5e-3, "distill_variational": 3e-3},
        "check": lfvd_sizes(384)}}},
    "drkf/iemocap": {"classes": 4, "models": {"drkf": {
        "train": train("adamw", 1e-5, 0.01, 1, 100, None, 1, batch_utterances=4), "losses": DRKF_LOSSES,
        "check": drkf_sizes}}},
    "drkf/meld": {"classes": 7, "models": {"drkf": {
        "train": train("adamw", 1e-5, 0.01, 1, 100, None, 3, batch_utterances=4), "losses": DRKF_LOSSES,
        "check": drkf_sizes}}},
    "kd_hierfusion/iemocap": {"classes": 6, "models": {"kd_hierfusion": {
        "train": KD_TRAIN, "losses": KD_LOSSES, "check": kd_sizes}}},
    "kd_hierfusion/meld": {"classes": 7, "models": {"kd_hierfusion": {
        "train": KD_TRAIN, "losses": KD_LOSSES, "check": kd_sizes}}},
    "mrd/iemocap": {"classes": 6, "models": mrd_models(256, 0.5, 80),
                    "refine": {"epochs": 10, "cls_loss": "balanced", "r0": 0.15}},
    "mrd/meld": {"classes": 7, "models": mrd_models(512, 0.4, 40),
                 "refine": {"epochs": 5, "cls_loss": "focal", "r0": 0.4}},
}


def key(path: Path) -> str:
    return path.relative_to(CONFIGS).with_suffix("").as_posix()


def input_dims(path: Path, inputs: list[str]) -> dict[str, int]:
    paper, corpus = key(path).split("/")
    table = {"drkf": DRKF_DIMS, "kd_hierfusion": KD_DIMS}.get(paper, TRIMODAL[corpus])
    return {name: table[name] for name in inputs}


def test_every_config_file_has_its_paper_expectations():
    assert FILES, "no files under configs/"
    assert sorted(key(p) for p in FILES) == sorted(PAPERS)


@pytest.mark.parametrize("path", FILES, ids=key)
def test_config_merged_over_params_passes_the_stages_check(path):
    config = read_config(path)
    assert path.read_text().startswith("#"), "a config starts with its header comment (targets, protocol, use)"
    assert set(config) <= {"dataset", "models", "refine"}, "a paper config sets the dataset, its models, refine"
    params = merged_params(path)
    check_params(params)
    for name, block in config["models"].items():
        TrainConfig.for_model(params, name)  # the train stage parses the model's overrides with the shared block
        assert set(block["inputs"]) <= set(params["features"]), f"{name} reads a feature key params.yaml lacks"
    for name in config.get("refine", {}):
        MRDConfig.from_params(params, name)


@pytest.mark.parametrize("path", FILES, ids=key)
def test_model_blocks_are_complete_so_merging_and_replacing_agree(path):
    config, base = read_config(path), load_params(PROJECT / "params.yaml")
    for section in ("models", "refine"):
        for name, block in config.get(section, {}).items():
            leaked = missing_keys(base.get(section, {}).get(name), block)
            assert not leaked, f"{section}.{name} leaves {leaked} to params.yaml"


@pytest.mark.parametrize("path", FILES, ids=key)
def test_models_build_at_the_paper_sizes(path):
    torch.manual_seed(0)
    params, expected = merged_params(path), PAPERS[key(path)]
    classes = num_classes(params)
    assert classes == expected["classes"]
    config = read_config(path)
    assert set(config["models"]) == set(expected["models"])
    for name, paper in expected["models"].items():
        spec = ModelSpec.from_params(params, name)
        model = build_model(spec.kind, spec.params, input_dims(path, list(spec.inputs)), classes)
        paper["check"](model, input_dims(path, list(spec.inputs)), classes)

        cfg = TrainConfig.for_model(params, name)
        got = {field: getattr(cfg, field) for field in paper["train"] if field != "seeds"}
        assert got == {k: v for k, v in paper["train"].items() if k != "seeds"}, name
        assert len(cfg.seeds) == paper["train"]["seeds"], name
        parameter_groups(model, cfg.lr, cfg.lr_groups, f"models.{name}.train")  # every prefix names parameters

        assert spec.loss_weights == paper["losses"], name
        known = {"ce", *getattr(get_model_class(spec.kind), "default_loss_weights", {})}
        assert set(spec.loss_weights) <= known, f"{name}: loss weights {set(spec.loss_weights) - known} name no loss"


@pytest.mark.parametrize("path", [p for p in FILES if "refine" in PAPERS[key(p)]], ids=key)
def test_mrd_refinement_uses_the_papers_weights_and_the_run_scripts_settings(path):
    params, expected = merged_params(path), PAPERS[key(path)]["refine"]
    cfg = MRDConfig.from_params(params, "mrd")
    assert (cfg.alpha, cfg.beta, cfg.gamma, cfg.delta, cfg.temperature) == (0.5, 0.5, 0.5, 0.5, 2.0)  # MRD section 5
    assert (cfg.lr, cfg.weight_decay, cfg.kd_t2_scale) == (1e-4, 3e-5, False)
    assert (cfg.epochs, cfg.cls_loss, cfg.curriculum.r0) == (expected["epochs"], expected["cls_loss"], expected["r0"])
    assert cfg.curriculum.mode == "pool" and cfg.focal_gamma == 2.5
    # refinement runs with the multimodal backbone's batch and seeds; both backbones share the seeds
    multi, text = (TrainConfig.for_model(params, name) for name in (cfg.multimodal, cfg.text))
    assert multi.batch_dialogues == 16 and multi.seeds == text.seeds
