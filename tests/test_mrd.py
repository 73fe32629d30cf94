"""MRD: mutual distillation, refactoring anchors, the reverse curriculum, and the refine/evaluate stages."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from models import IGNORE_INDEX
from models.layers import mutual_distill
from models.layers.mutual_distill import mutual_distillation
from pipeline import paths
from pipeline.config import ConfigError
from pipeline.stages import evaluate as evaluate_stage
from pipeline.stages import refine as refine_stage
from pipeline.stages import train as train_stage
from pipeline.training import mrd
from pipeline.training.config import ModelSpec, TrainConfig
from pipeline.training.model_checkpoints import load_checkpoint
from pipeline.training.mrd.curriculum import DIFFICULT, GENERAL, SIMPLE, Curriculum, categorize, pacing_ratio
from pipeline.training.mrd.refine import _frozen_copy
from tests.test_training import make_params, runner, write_corpus

CLASSES = 3


def mrd_params(seeds=None, **block) -> dict:
    params = make_params(seeds=seeds or [0])
    params["train"]["epochs"] = 4
    params["refine"] = {
        "mrd": {"kind": "mrd", "multimodal": "fusion_gru", "text": "text_gru", "epochs": 3, "lr": 0.003,
                "curriculum": {"r0": 0.4, "oof": "never"}} | block
    }  # fmt: skip
    return params


def cfg(**values) -> mrd.MRDConfig:
    return mrd.MRDConfig(name="mrd", multimodal="m", text="t", **values)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path)
    return tmp_path


@pytest.fixture
def trained(corpus):
    """The two input models, trained by the ordinary stage."""
    params = mrd_params()
    for name in ("text_gru", "fusion_gru"):
        train_stage.run(params, runner(), name)
    return params


def weights(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    return load_file(str(paths.MODELS_DIR / name / f"seed{seed}" / "model.safetensors"))


# ---------------------------------------------------------------- MIC


def test_mutual_distillation_is_zero_for_equal_logits_and_non_negative():
    torch.manual_seed(0)
    z = torch.randn(2, 4, CLASSES)
    valid = torch.ones(2, 4, dtype=torch.bool)
    terms = mutual_distill.mrd_losses(z, z.clone(), z, z, torch.zeros(2, 4, dtype=torch.long), valid, valid, cfg())
    assert abs(float(terms["distill_multi"])) < 1e-6 and abs(float(terms["distill_text"])) < 1e-6
    other = torch.randn(2, 4, CLASSES)
    assert float(mutual_distillation(z, other, valid, 2.0, False)) >= 0


def test_distillation_temperature_and_manual_value():
    student = torch.tensor([[[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]])
    teacher = torch.tensor([[[0.0, 2.0, 0.0], [1.0, -1.0, 0.0]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    p_t = F.softmax(teacher[0], -1)
    manual = (p_t * (p_t.log() - F.log_softmax(student[0], -1))).sum(-1).mean()
    assert float(mutual_distillation(student, teacher, valid, 1.0, False)) == pytest.approx(float(manual), abs=1e-6)
    hot = float(mutual_distillation(student, teacher, valid, 1000.0, False))
    assert hot < 1e-5
    scaled = float(mutual_distillation(student, teacher, valid, 3.0, True))
    assert scaled == pytest.approx(9 * float(mutual_distillation(student, teacher, valid, 3.0, False)), rel=1e-5)


def test_each_distillation_term_updates_only_its_student():
    torch.manual_seed(0)
    multi, text = nn.Linear(4, CLASSES), nn.Linear(4, CLASSES)
    x = torch.randn(1, 5, 4)
    valid = torch.ones(1, 5, dtype=torch.bool)
    for name, student, teacher in (("distill_multi", multi, text), ("distill_text", text, multi)):
        multi.zero_grad(set_to_none=True)
        text.zero_grad(set_to_none=True)
        z_m, z_t = multi(x), text(x)
        terms = mutual_distill.mrd_losses(
            z_m, z_t, z_m.detach(), z_t.detach(), torch.zeros(1, 5, dtype=torch.long), valid, valid, cfg()
        )
        terms[name].backward()
        assert all(p.grad is None or not p.grad.any() for p in teacher.parameters()), name
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters()), name


# ---------------------------------------------------------------- ILC


def test_refactoring_anchors():
    torch.manual_seed(0)
    model = nn.Linear(4, CLASSES)
    frozen = _frozen_copy(model)
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    x = torch.randn(1, 6, 4)
    labels = torch.randint(0, CLASSES, (1, 6))
    valid = torch.ones(1, 6, dtype=torch.bool)
    with torch.no_grad():
        assert float(mutual_distill.refactoring_loss(model(x), frozen(x), valid)) == 0.0
    snapshot = copy.deepcopy(frozen.state_dict())
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    F.cross_entropy(model(x)[0], labels[0]).backward()
    optimiser.step()
    assert float(mutual_distill.refactoring_loss(model(x), frozen(x), valid).detach()) > 0
    assert all(torch.equal(v, snapshot[k]) for k, v in frozen.state_dict().items())
    z, anchor = torch.randn(2, 3, CLASSES), torch.randn(2, 3, CLASSES)
    partial = torch.tensor([[True, True, False], [True, False, False]])
    by_hand = np.mean([float(((z[b, i] - anchor[b, i]) ** 2).sum()) for b, i in [(0, 0), (0, 1), (1, 0)]])
    assert float(mutual_distill.refactoring_loss(z, anchor, partial)) == pytest.approx(by_hand, rel=1e-6)


# ---------------------------------------------------------------- RCL


def test_categories_match_the_toy_example_and_partition_the_set():
    categories = categorize(np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0]), np.array([1, 1, 1, 1]))
    assert categories.tolist() == [SIMPLE, DIFFICULT, DIFFICULT, GENERAL]
    rng = np.random.default_rng(0)
    curriculum = Curriculum.build(["a", "b", "c", "d"], [1, 0, 1, 0], [1, 1, 0, 0], np.ones(4, int), np.zeros(4), rng)
    assert sorted(curriculum.order.tolist()) == [0, 1, 2, 3]
    assert [curriculum.categories[i] for i in curriculum.order] == [DIFFICULT, DIFFICULT, GENERAL, SIMPLE]
    assert curriculum.counts() == {"difficult": 2, "general": 1, "simple": 1}


def test_pacing_grows_the_pool_hardest_first():
    assert next(e for e in range(20) if pacing_ratio(e, 0.15, 1) == 1.0) == 6
    assert next(e for e in range(20) if pacing_ratio(e, 0.4, 1) == 1.0) == 2
    rng = np.random.default_rng(1)
    n = 40
    pred_m, pred_t, labels = rng.integers(0, 3, n), rng.integers(0, 3, n), rng.integers(0, 3, n)
    curriculum = Curriculum.build([f"u{i}" for i in range(n)], pred_m, pred_t, labels, rng.random(n), rng)
    sizes = [len(curriculum.pool(pacing_ratio(e, 0.15, 1))) for e in range(8)]
    assert sizes == sorted(sizes) and sizes[-1] == n
    first = curriculum.pool(pacing_ratio(0, 0.15, 1))
    difficult = {u for u, c in curriculum.category_of.items() if c == DIFFICULT}
    assert len(first) <= len(difficult) and first <= difficult
    for e in range(7):
        assert curriculum.pool(pacing_ratio(e, 0.15, 1)) <= curriculum.pool(pacing_ratio(e + 1, 0.15, 1))


def test_inactive_utterances_reach_neither_classification_nor_distillation():
    torch.manual_seed(0)
    z_m = torch.randn(1, 5, CLASSES, requires_grad=True)
    z_t = torch.randn(1, 5, CLASSES)
    labels = torch.tensor([[0, 1, 2, 0, 1]])
    valid = torch.ones(1, 5, dtype=torch.bool)
    active = torch.tensor([[True, True, False, True, False]])
    first = mutual_distill.mrd_losses(z_m, z_t, z_m.detach(), z_t, labels, valid, active, cfg())
    relabeled = labels.clone()
    relabeled[0, 2], relabeled[0, 4] = 1, 0
    second = mutual_distill.mrd_losses(z_m, z_t, z_m.detach(), z_t, relabeled, valid, active, cfg())
    for name in ("cls_multi", "cls_text", "distill_multi", "distill_text"):
        assert float(first[name].detach()) == float(second[name].detach()), name
    first["cls_multi"].backward()
    assert not z_m.grad[0, 2].any() and not z_m.grad[0, 4].any() and z_m.grad[0, 0].any()


def test_focal_and_balanced_classification_losses():
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]])
    labels = torch.tensor([[0, 1]])
    active = torch.ones(1, 2, dtype=torch.bool)
    p = F.softmax(logits[0], -1)[[0, 1], [0, 1]]
    focal = float(mutual_distill.classification_loss(logits, labels, active, "focal", None, 2.5))
    assert focal == pytest.approx(float((-((1 - p) ** 2.5) * p.log()).mean()), rel=1e-5)
    w = torch.tensor([1.0, 3.0, 1.0])
    balanced = float(mutual_distill.classification_loss(logits, labels, active, "balanced", w, 2.5))
    assert balanced == pytest.approx(float(F.cross_entropy(logits[0], labels[0], weight=w)), rel=1e-5)


# ---------------------------------------------------------------- configuration


def test_configuration_errors_name_the_key():
    params = mrd_params()
    params["refine"]["mrd"]["multimodal"] = "nope"
    with pytest.raises(ConfigError, match=r"refine\.mrd\.multimodal.*text_gru"):
        mrd.MRDConfig.from_params(params, "mrd")
    params = mrd_params(temprature=2.0)
    with pytest.raises(ConfigError, match="temprature"):
        mrd.MRDConfig.from_params(params, "mrd")
    params = mrd_params(curriculum={"mode": "easy_first"})
    with pytest.raises(ConfigError, match=r"refine\.mrd\.curriculum\.mode.*pool, order, none"):
        mrd.MRDConfig.from_params(params, "mrd")
    params = mrd_params()
    params["models"]["mrd_text"] = dict(params["models"]["text_gru"])
    with pytest.raises(ConfigError, match="mrd_text"):
        mrd.MRDConfig.from_params(params, "mrd")
    spec = mrd.resolve_model_spec(mrd_params(), "mrd_text")
    assert spec.name == "mrd_text" and spec.inputs == ("text",) and spec.kind == "context_gru"


# ---------------------------------------------------------------- end to end


def test_refine_writes_both_models_and_evaluate_scores_them(trained):
    params = trained
    before = {name: weights(name) for name in ("fusion_gru", "text_gru")}
    summary = refine_stage.run(params, runner(), "mrd")
    assert summary["outputs"] == ["mrd", "mrd_text"] and summary["out_of_fold"] == [False]
    report = json.loads((paths.METRICS_DIR / "mrd" / "train.json").read_text())
    assert report["refines"] == {"multimodal": "fusion_gru", "text": "text_gru"}
    counts = report["per_seed"][0]["curriculum"]["counts"]
    labeled_train = sum(1 for utt in _manifest_ids("train"))
    assert sum(counts.values()) == labeled_train  # every categorised utterance is a training one
    for name in ("fusion_gru", "text_gru"):  # the inputs are read, never written
        assert all(torch.equal(v, before[name][k]) for k, v in weights(name).items())
    refined, config = load_checkpoint(paths.MODELS_DIR / "mrd" / "seed0")
    assert config["refined_from"]["model"] == "fusion_gru" and config["inputs"] == ["text", "audio"]
    changed = weights("mrd")
    assert any(not torch.equal(changed[k], before["fusion_gru"][k]) for k in changed)
    for name in ("mrd", "mrd_text"):
        evaluate_stage.run(params, runner(), name)
        result = json.loads((paths.METRICS_DIR / name / "eval.json").read_text())
        assert 0.0 <= result["test"]["weighted_f1"]["mean"] <= 1.0


def _manifest_ids(split: str) -> list[str]:
    import pandas as pd

    frame = pd.read_parquet(paths.MANIFEST)
    return frame.loc[frame["split"] == split, "utt_id"].tolist()


def test_categories_use_training_utterances_only_and_out_of_fold_works(trained):
    params = trained
    cfg_ = mrd.MRDConfig.from_params(params, "mrd")
    train_cfg = TrainConfig.for_model(params, "fusion_gru")
    specs = (ModelSpec.from_params(params, "fusion_gru"), ModelSpec.from_params(params, "text_gru"))
    models, configs = zip(*(load_checkpoint(paths.MODELS_DIR / s.name / "seed0") for s in specs))
    pair = mrd.PairedData(*(mrd.load_model_data(s, c) for s, c in zip(specs, configs)))
    curriculum = mrd.categorise_training_split(pair, models, train_cfg, "cpu", np.random.default_rng(0))
    assert set(curriculum.utt_ids) == set(_manifest_ids("train"))
    oof_cfg = mrd.MRDConfig(**{**cfg_.__dict__, "curriculum": mrd.CurriculumConfig(oof="always", oof_folds=2)})
    short = TrainConfig(**{**train_cfg.__dict__, "epochs": 2})
    oof, info = mrd.initial_curriculum(oof_cfg, specs, pair, models, short, 0, np.random.default_rng(0))
    assert info["out_of_fold"] and set(oof.utt_ids) == set(_manifest_ids("train"))
    assert sum(info["counts"].values()) == len(oof.utt_ids)


def test_refinement_is_deterministic_and_blind_to_test_labels(trained, corpus):
    params = trained
    refine_stage.run(params, runner(), "mrd")
    first = {name: weights(name) for name in ("mrd", "mrd_text")}
    write_corpus(corpus, scramble_test=True)
    refine_stage.run(params, runner(), "mrd")
    for name, state in first.items():
        again = weights(name)
        for key in state:
            torch.testing.assert_close(again[key], state[key], rtol=0, atol=0)


def test_ablation_rows_run():
    torch.manual_seed(0)
    from tests.fusion_helpers import make_batch

    batch = make_batch([5, 4], dims={"text": 6})
    multi, text = nn.Linear(6, CLASSES), nn.Linear(6, CLASSES)
    frozen_m, frozen_t = _frozen_copy(multi), _frozen_copy(text)
    valid = batch.mask
    x = batch.features["text"]
    for row in (cfg(alpha=0, beta=0), cfg(gamma=0, delta=0), cfg()):
        terms = mutual_distill.mrd_losses(multi(x), text(x), frozen_m(x), frozen_t(x), batch.labels, valid, valid, row)
        total = mutual_distill.total_mrd_loss(terms, row)
        expected = terms["cls_multi"] + terms["cls_text"] + row.alpha * terms["distill_multi"]
        expected = (
            expected + row.beta * terms["distill_text"] + row.gamma * terms["ref_multi"] + row.delta * terms["ref_text"]
        )
        assert float(total.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def fit_pair(settings: mrd.MRDConfig, steps: int = 50) -> list[float]:
    """MRD's objective on 2 synthetic dialogues from a fresh pair (the anchors are their initial copies)."""
    from models import build_model
    from tests.fusion_helpers import make_batch

    torch.manual_seed(0)
    dims = {"text": 6, "audio": 4}
    batch = make_batch([6, 5], dims=dims)
    text_batch = copy.copy(batch)
    text_batch.features = {"text": batch.features["text"]}
    text_batch.present = {"text": batch.present["text"]}
    multi = build_model("context_gru", {"hidden": 16, "dropout": 0.0}, dims, CLASSES)
    text = build_model("context_gru", {"hidden": 16, "dropout": 0.0}, {"text": 6}, CLASSES)
    frozen_m, frozen_t = _frozen_copy(multi), _frozen_copy(text)
    optimiser = torch.optim.Adam([*multi.parameters(), *text.parameters()], lr=0.03)
    losses = []
    for _ in range(steps):
        terms = mutual_distill.mrd_losses(
            multi(batch).logits, text(text_batch).logits, frozen_m(batch).logits, frozen_t(text_batch).logits,
            batch.labels, batch.mask, batch.mask & (batch.labels != IGNORE_INDEX), settings,
        )  # fmt: skip
        loss = mutual_distill.total_mrd_loss(terms, settings)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    return losses


def test_total_loss_falls_on_two_dialogues():
    free = fit_pair(cfg(gamma=0.0, delta=0.0))  # mutual distillation + classification can overfit
    assert free[-1] < 0.5 * free[0]
    anchored = fit_pair(cfg())  # the refactoring anchors hold the logits near the initial copies by design
    assert anchored[-1] < 0.85 * anchored[0]


def test_every_documented_ablation_row_is_a_valid_refine_edit():
    from tests.test_kd_hierfusion import load_benchmark

    bench = load_benchmark()
    rows = bench.parse_ablation_rows(mrd.__doc__)
    assert [row["row"] for row in rows] == ["no-MIC", "no-ILC", "no-RCL"]
    for row in rows:
        params = mrd_params()
        params["refine"]["mrd"] = bench.merge(params["refine"]["mrd"], row["edit"])
        parsed = mrd.MRDConfig.from_params(params, "mrd")
        assert parsed.alpha + parsed.beta == 0 or parsed.gamma + parsed.delta == 0 or parsed.curriculum.mode == "none"
