"""Speaker-KD hierarchical fusion: dialogue graphs, composite losses, distillation, fusion, trainer hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import IGNORE_INDEX, DialogueBatch, build_model
from models.kd_hierfusion import SpeakerKDHierFusion
from models.layers.composite_loss import (
    balanced_class_weights,
    distillation_loss,
    label_smoothing_loss,
    poly_cross_entropy,
    smoothed_targets,
)
from models.layers.contrastive import supervised_contrastive
from models.layers.dialogue_graph import batch_graph, dialogue_graph, knn_edges
from models.layers.hierarchical_fusion import fisher_ratio
from pipeline.training import trainer
from pipeline.training.config import ModelSpec, TrainConfig
from tests.fusion_helpers import CLASSES, DIMS, SUBSETS, clone, make_batch, objective, select, with_padding_garbage

TINY = {
    "teacher_dim": 8,
    "graph_dim": 8,
    "graph_heads": 2,
    "fusion_dim": 16,
    "fusion_heads": 4,
    "fusion_layers": 1,
    "fusion_ff": 32,
    "contrast_dim": 8,
    "experts": 2,
    "top_k": 1,
    "teacher_epochs": 2,
    "teacher_lr": 0.01,
}
ABLATIONS = {
    "fusion_loss": ({}, {"ce": 1.0, "comp": 0.0, "smooth": 0.0, "supcon": 0.0}),
    "kd": ({"distill_alpha": 1.0}, {}),
    "cross_attention": ({"use_cross_attention": False}, {}),
    "gates": ({"use_gates": False}, {}),
    "poly": ({"poly_alpha": 0.0}, {}),
    "contrastive": ({}, {"supcon": 0.0}),
    "students_discarded": ({"fusion_input": "raw"}, {}),
    "no_moe": ({"use_moe": False}, {}),
}


def kd(dims=DIMS, seed: int = 0, **hyper) -> SpeakerKDHierFusion:
    torch.manual_seed(seed)
    return build_model("kd_hierfusion", {"dropout": 0.0, "graph_dropout": 0.0, **TINY, **hyper}, dims, CLASSES)


def logits_of(net, batch: DialogueBatch) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        return net(batch).logits


# ---------------------------------------------------------------- graphs


def test_dialogue_graph_edges_window_knn_degree_and_self_loops():
    torch.manual_seed(0)
    lengths, window, k = [7, 3, 1], 2, 3
    batch = make_batch(lengths, dims={"text": 5})
    valid = batch.mask.clone()
    valid[0, 4] = False  # an absent utterance: no edge in or out
    graph = dialogue_graph(batch.features["text"], batch.speakers, valid, window=window, k=k)
    assert graph.edges.shape == (3, 7, 7)
    pair = valid.unsqueeze(1) & valid.unsqueeze(2)
    assert not (graph.edges & ~pair).any()  # only real, present utterances of the same dialogue
    eye = torch.eye(7, dtype=torch.bool)
    assert torch.equal(graph.edges[:, eye], valid)  # self-loops on every valid node
    near, _ = knn_edges(batch.features["text"], valid, k)
    n_valid = valid.sum(1)
    for b in range(3):
        assert (near[b].sum(-1) <= min(k, max(int(n_valid[b]) - 1, 0))).all()
        others = graph.edges[b] & ~near[b] & ~eye
        i, j = others.nonzero(as_tuple=True)
        assert ((i - j).abs() <= window).all()  # every non-kNN edge is temporal
    assert graph.edges[2, 0, 0] and graph.edges[2].sum() == 1  # a one-utterance dialogue: its self-loop
    same = batch.speakers[0, 0] == batch.speakers[0, 1]
    assert graph.weights[0, 1, 0] >= 2.0 + (0.5 if same else 0.0) - 1.0 - 1e-6  # 1 + tw (+0.5) (+cos >= -1)
    assert (graph.weights[~graph.edges] == 0).all()


def test_batch_graph_mixes_dialogues_as_the_authors_code_does():
    batch = make_batch([3, 3], dims={"text": 4})
    graph, flat = batch_graph(batch.features["text"], batch.mask, k=2)
    assert graph.edges.shape == (1, 6, 6) and flat.tolist() == [0, 1, 2, 3, 4, 5]
    assert graph.edges[0, 3, 2] and graph.edges[0, 2, 3]  # the chain runs across the dialogue boundary


# ---------------------------------------------------------------- losses


def test_poly_loss_matches_the_hand_example_and_reduces_to_ce():
    logits = torch.tensor([[[2.0, 0.0, -1.0]]])
    labels = torch.tensor([[0]])
    valid = torch.ones(1, 1, dtype=torch.bool)
    p0 = math.exp(2) / (math.exp(2) + 1 + math.exp(-1))
    ce = -math.log(p0)
    assert float(poly_cross_entropy(logits, labels, valid, 0.0, 1.2)) == pytest.approx(ce, abs=1e-6)
    expected = ce + 1.2 * (1 - p0) ** 2.2
    assert float(poly_cross_entropy(logits, labels, valid, 1.2, 1.2)) == pytest.approx(expected, abs=1e-6)


def test_weighted_ce_is_the_weighted_mean_and_padding_is_ignored():
    logits = torch.randn(2, 4, CLASSES)
    labels = torch.tensor([[0, 1, 2, IGNORE_INDEX], [1, 1, 0, 2]])
    valid = torch.tensor([[True, True, True, False], [True, True, False, False]])
    weights = torch.tensor([0.5, 2.0, 1.0])
    keep = valid & (labels != IGNORE_INDEX)
    expected = F.cross_entropy(logits[keep], labels[keep], weight=weights)
    assert float(poly_cross_entropy(logits, labels, valid, 0.0, 1.0, weights)) == pytest.approx(float(expected))


def test_balanced_class_weights():
    counts = torch.tensor([6.0, 3.0, 1.0])
    assert balanced_class_weights(counts).tolist() == pytest.approx([10 / 18, 10 / 9, 10 / 3])


def test_label_smoothing_targets_and_loss():
    targets = smoothed_targets(torch.tensor([1]), 4, 0.1)
    assert float(targets.sum()) == pytest.approx(1.0)
    assert targets[0].tolist() == pytest.approx([0.025, 0.925, 0.025, 0.025])
    logits = torch.randn(1, 1, 4)
    loss = label_smoothing_loss(logits, torch.tensor([[1]]), torch.ones(1, 1, dtype=torch.bool), 0.1)
    assert float(loss) == pytest.approx(float(-(targets * F.log_softmax(logits[0], -1)).sum()), abs=1e-6)


def test_distillation_is_alpha_ce_for_equal_logits_and_kl_scales_with_tau_squared():
    torch.manual_seed(0)
    student = torch.randn(1, 5, CLASSES)
    labels = torch.randint(0, CLASSES, (1, 5))
    valid = torch.ones(1, 5, dtype=torch.bool)
    ce = F.cross_entropy(student[0], labels[0])
    same = distillation_loss(student, student.clone(), labels, valid, valid, alpha=0.65, temperature=2.0)
    assert float(same) == pytest.approx(0.65 * float(ce), abs=1e-6)
    teacher = torch.randn(1, 5, CLASSES)
    for tau in (1.0, 3.0):
        kl = F.kl_div(F.log_softmax(student[0] / tau, -1), F.softmax(teacher[0] / tau, -1), reduction="batchmean")
        soft = distillation_loss(student, teacher, labels, valid, valid, alpha=0.0, temperature=tau)
        assert float(soft) == pytest.approx(tau**2 * float(kl), rel=1e-5)
    absent = torch.zeros_like(valid)  # no teacher: only the CE term is left
    only_ce = distillation_loss(student, teacher, labels, valid, absent, alpha=0.65, temperature=2.0)
    assert float(only_ce) == pytest.approx(0.65 * float(ce), abs=1e-6)


def test_supervised_contrastive_prefers_clustered_classes_and_skips_lonely_anchors():
    torch.manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    centres = torch.randn(3, 8) * 4
    clustered = centres[labels] + 0.1 * torch.randn(8, 8)
    shuffled = clustered[torch.randperm(8)]
    valid = torch.ones(8, dtype=torch.bool)
    a = supervised_contrastive(clustered, labels, valid, 8, 0.07, standard=True)
    b = supervised_contrastive(shuffled, labels, valid, 8, 0.07, standard=True)
    assert torch.isfinite(a) and float(a) < float(b)
    lonely = supervised_contrastive(clustered, torch.arange(8), valid, 8, 0.07, standard=True)
    assert float(lonely) == 0.0


def test_fisher_ratio_is_high_for_separated_classes():
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    mixed = torch.tensor([[0.0], [5.0], [0.1], [5.1]])
    assert float(fisher_ratio(separated, labels, 2)) > 100 * float(fisher_ratio(mixed, labels, 2))


# ---------------------------------------------------------------- the model


@pytest.mark.parametrize("inputs", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_every_modality_subset_runs_with_finite_named_losses(inputs):
    dims = {k: DIMS[k] for k in inputs}
    net = kd(dims)
    output = net(make_batch([4, 6, 1], dims=dims))
    assert output.logits.shape == (3, 6, CLASSES)
    expected = {"comp", "smooth", "supcon", "aux"}
    expected |= {"distill"} if len(inputs) > 1 or "text" not in inputs else set()
    expected |= {"teacher"} if "text" in inputs else set()
    assert set(output.aux_losses) == expected
    for name, term in output.aux_losses.items():
        assert term.dim() == 0 and torch.isfinite(term), name


def test_shapes_quality_range_and_gates():
    net = kd().eval()
    batch = make_batch([5, 3])
    batch.present["visual"][0, 2] = False
    with torch.no_grad():
        trace, rows, encoder_logits, valid = net.fuse(batch)
    n = int(batch.mask.sum())
    assert rows.numel() == n and trace.logits.shape == (n, CLASSES) and trace.fused.shape == (n, 16)
    assert trace.aux_logits.shape == (n, 3, CLASSES) and trace.gates.shape == (n, 3, 16)
    assert ((trace.quality >= 0.1) & (trace.quality <= 1.0)).all()
    assert ((trace.gates > 0) & (trace.gates < 1)).all()
    assert {k: v.shape for k, v in encoder_logits.items()} == {k: (2, 5, CLASSES) for k in DIMS}


def test_padding_never_leaks_into_real_utterances():
    net = kd()
    batch = make_batch([2, 6, 4], seed=3)
    clean, noisy = logits_of(net, batch), logits_of(net, with_padding_garbage(batch))
    assert torch.allclose(clean[batch.mask], noisy[batch.mask], atol=1e-5)
    assert (clean[~batch.mask] == 0).all()


def test_an_absent_modality_is_finite_and_its_values_never_matter():
    net = kd()
    batch = make_batch([5, 4], seed=4)
    batch.present["visual"][:] = False
    batch.present["audio"][0, 1] = False
    changed = clone(batch)
    changed.features["visual"] = torch.randn_like(changed.features["visual"]) * 100
    changed.features["audio"][0, 1] = 50.0
    first, second = logits_of(net, batch), logits_of(net, changed)
    assert torch.isfinite(first).all()
    assert torch.allclose(first, second, atol=1e-5)
    net.train()
    assert all(torch.isfinite(t) for t in net(batch).aux_losses.values())


def test_a_dialogue_scores_the_same_alone_and_inside_a_batch():
    net = kd()
    lengths = [5, 3, 6, 2, 4, 5, 3, 6, 2, 4, 5, 3, 6, 2, 4, 5]
    batch = make_batch(lengths, seed=5)
    together = logits_of(net, batch)
    alone = logits_of(net, select(batch, [2], 6))
    assert torch.allclose(together[2], alone[0], atol=1e-5)


def test_batch_knn_graph_is_not_batch_independent():
    """The authors' batch kNN graph mixes the dialogues of a batch; the default dialogue graph does not."""
    net = kd(graph_mode="batch_knn")
    batch = make_batch([5, 3, 6, 2, 4, 5, 3, 6], seed=5)
    together = logits_of(net, batch)
    alone = logits_of(net, select(batch, [2], 6))
    assert not torch.allclose(together[2], alone[0], atol=1e-5)


def test_phase_one_trains_the_teacher_then_freezes_it():
    net = kd()
    batch = make_batch([6, 5, 4], seed=6)
    before = {k: v.clone() for k, v in net.encoders["text"].state_dict().items()}
    net.train()
    net.begin_epoch(1, lambda: iter([batch]))
    assert net.teacher_frozen and not net.encoders["text"].training
    trained = {k: v.clone() for k, v in net.encoders["text"].state_dict().items()}
    assert any(not torch.equal(before[k], trained[k]) for k in before)  # phase 1 moved it
    labeled = batch.labels[batch.labels != IGNORE_INDEX]
    assert net.class_counts.tolist() == torch.bincount(labeled, minlength=CLASSES).float().tolist()
    assert (net.fusion.quality_stats > 0).all()
    student_before = {k: v.clone() for k, v in net.encoders["audio"].state_dict().items()}
    optimiser = torch.optim.AdamW(net.parameters(), lr=0.05, weight_decay=0.1)
    loss, output = objective(net, batch)
    assert "teacher" not in output.aux_losses
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    for k, v in net.encoders["text"].state_dict().items():
        assert torch.equal(v, trained[k]), k  # frozen: no gradient, no weight decay
    assert any(not torch.equal(v, student_before[k]) for k, v in net.encoders["audio"].state_dict().items())


def test_students_feed_the_fusion_by_default_and_not_in_the_code_faithful_mode():
    batch = make_batch([5, 4], seed=7)
    for mode, used in (("embed", True), ("raw", False)):
        net = kd(fusion_input=mode)
        net.train()
        output = net(batch)
        grads = torch.autograd.grad(
            output.aux_losses["comp"], list(net.encoders["audio"].parameters()), allow_unused=True
        )
        reached = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert reached is used, mode


def test_bad_hyper_parameters_fail_by_name():
    with pytest.raises(ValueError, match="graph_mode"):
        kd(graph_mode="shuffled")
    with pytest.raises(ValueError, match="fusion_input"):
        kd(fusion_input="both")
    with pytest.raises(ValueError, match="graph_k"):
        kd(graph_k={"depth": 3})
    with pytest.raises(ValueError, match="distill_alpha"):
        kd(distill_alpha=1.5)


def linear_text_batch(seed: int = 0) -> DialogueBatch:
    """512 utterances whose label is a linear function of the text vector; audio and visual are noise."""
    generator = torch.Generator().manual_seed(seed)
    batch = make_batch([16] * 32, seed=seed)
    projection = torch.randn(DIMS["text"], CLASSES, generator=generator)
    batch.labels = (batch.features["text"] @ projection).argmax(-1).masked_fill(~batch.mask, IGNORE_INDEX)
    return batch


def test_learns_a_linear_text_rule_to_95_percent_within_200_steps():
    net = kd(teacher_epochs=0)
    batch = linear_text_batch()
    optimiser = torch.optim.AdamW(net.parameters(), lr=0.01)
    labeled = batch.labels != IGNORE_INDEX
    accuracy = 0.0
    for step in range(200):
        net.train()
        loss, _ = objective(net, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 20 == 19:
            predicted = logits_of(net, batch).argmax(-1)
            accuracy = float((predicted[labeled] == batch.labels[labeled]).float().mean())
            if accuracy >= 0.95:
                break
    assert accuracy >= 0.95


@pytest.mark.parametrize("row", list(ABLATIONS))
def test_every_ablation_switch_runs_and_trains(row):
    hyper, weights = ABLATIONS[row]
    net = kd(**hyper)
    batch = make_batch([6, 5, 4, 6], seed=8)
    net.begin_epoch(1, lambda: iter([batch]))
    optimiser = torch.optim.AdamW(net.parameters(), lr=0.01)
    losses = []
    for _ in range(25):
        net.train()
        loss, _ = objective(net, batch, weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_the_trainer_runs_phase_one_uses_the_paper_weights_and_reloads_exactly(tmp_path):
    from tests.fusion_helpers import tiny_dialogue_data

    data = tiny_dialogue_data()
    spec = ModelSpec(
        "kd", "kd_hierfusion", tuple(DIMS), {"kind": "kd_hierfusion", "inputs": list(DIMS), **TINY}
    )
    cfg = TrainConfig(
        seeds=(0,), epochs=3, patience=3, batch_dialogues=3, lr=0.01, weight_decay=0.0, grad_clip=1.0, device="cpu"
    )
    result = trainer.fit_seed(spec, data, cfg, 0)
    first = result.history[0]
    assert {"train_comp", "train_smooth", "train_supcon", "train_distill", "train_aux"} <= set(first)
    assert "train_teacher" not in first  # phase 1 ran in the hook before the first epoch
    parts = {k[len("train_") :]: v for k, v in first.items() if k.startswith("train_") and k != "train_loss"}
    weights = SpeakerKDHierFusion.default_loss_weights
    assert first["train_loss"] == pytest.approx(sum(weights[k] * v for k, v in parts.items()), rel=1e-4)
    assert float(result.state["teacher_ready"]) == 1.0
    counts = sum(np.bincount(d.labels, minlength=CLASSES) for d in data.split("train"))
    assert result.state["class_counts"].tolist() == counts.tolist()  # train split only
    reloaded = kd()
    reloaded.load_state_dict(result.state)
    assert reloaded.teacher_frozen
    batch = make_batch([4, 3], seed=9)
    twin = kd()
    twin.load_state_dict(result.state)
    assert torch.equal(logits_of(reloaded, batch), logits_of(twin, batch))


def load_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "ablations.py"
    spec = importlib.util.spec_from_file_location("ablations_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_documented_ablation_row_is_a_valid_params_edit():
    import models.kd_hierfusion as module
    from models.registry import check_hyper_parameters

    bench = load_benchmark()
    rows = bench.parse_ablation_rows(module.__doc__)
    assert len(rows) == 11 and all(row["edit"] is not None for row in rows)
    base = {"kind": "kd_hierfusion", "inputs": list(DIMS), **TINY}
    for row in rows:
        if any("." in key for key in row["edit"]):  # the front-end row edits the pipeline, not the model
            assert row["edit"] == {"speaker.method": "first_face"}
            continue
        block = bench.merge(base, row["edit"])
        check_hyper_parameters("kd_hierfusion", block)
        dims = {k: DIMS[k] for k in block["inputs"]}
        weights = block.get("loss_weights", {})
        net = build_model("kd_hierfusion", block, dims, CLASSES)
        loss, _ = objective(net, make_batch([4, 3], dims=dims), weights)
        assert torch.isfinite(loss), row["row"]


def test_a_dev_selected_teacher_keeps_its_best_dev_epoch_and_stops_on_patience():
    """Dev labels follow a shifted rule, so the better the teacher fits train, the worse it scores on dev."""
    train = linear_text_batch()
    dev = clone(train)
    dev.labels = torch.where(train.labels == IGNORE_INDEX, train.labels, (train.labels + 1) % CLASSES)
    hyper = {"teacher_epochs": 8, "teacher_lr": 0.03}

    last = kd(**hyper)
    last.begin_epoch(1, lambda: iter([train]), lambda: iter([dev]))
    chosen = kd(**hyper, teacher_selection="dev")
    chosen.begin_epoch(1, lambda: iter([train]), lambda: iter([dev]))
    history = chosen.teacher_history
    assert len(history) == 8 and max(history) > history[-1]
    assert chosen._teacher_weighted_f1([dev]) == pytest.approx(max(history))  # the best dev epoch's weights
    assert last._teacher_weighted_f1([dev]) == pytest.approx(history[-1])  # same run, last epoch kept
    assert chosen.teacher_frozen

    patient = kd(**hyper, teacher_selection="dev", teacher_patience=2)
    patient.begin_epoch(1, lambda: iter([train]), lambda: iter([dev]))
    best = int(np.argmax(patient.teacher_history))
    assert len(patient.teacher_history) == min(8, best + 3) < 8
    with pytest.raises(ValueError, match="teacher_selection 'dev' needs the dev split"):
        kd(**hyper, teacher_selection="dev").begin_epoch(1, lambda: iter([train]))
    with pytest.raises(ValueError, match="teacher_selection"):
        kd(teacher_selection="test")


def test_the_trainer_selects_the_teacher_on_the_dev_split_only(monkeypatch):
    from tests.fusion_helpers import tiny_dialogue_data

    data = tiny_dialogue_data()
    seen: list[str] = []
    score = SpeakerKDHierFusion._teacher_weighted_f1

    def recording(self, batches):
        batches = list(batches)
        seen.extend(u for batch in batches for ids in batch.utt_ids for u in ids)
        return score(self, batches)

    monkeypatch.setattr(SpeakerKDHierFusion, "_teacher_weighted_f1", recording)
    block = {"kind": "kd_hierfusion", "inputs": list(DIMS), **TINY, "teacher_selection": "dev"}
    spec = ModelSpec("kd", "kd_hierfusion", tuple(DIMS), block)
    cfg = TrainConfig(seeds=(0,), epochs=1, patience=1, batch_dialogues=3, lr=0.01, weight_decay=0.0,
                      grad_clip=1.0, device="cpu")
    trainer.fit_seed(spec, data, cfg, 0)
    dev = [u for d in data.split("dev") for u in d.utt_ids]
    assert seen == dev * TINY["teacher_epochs"]  # every teacher epoch scored on dev, in order, nothing else
