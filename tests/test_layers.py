"""Shared building blocks of the fusion-distillation models: attention, gates, Gaussians, losses, the DAG."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import IGNORE_INDEX
from models.layers.contrastive import cross_modal_contrastive, supervised_contrastive
from models.layers.distill import feature_distillation, logit_distillation, masked_cross_entropy
from models.layers.graph import ContextGraphEncoder, DAGNetwork, dag_edges
from models.layers.masking import masked_mean, masked_mse
from models.layers.transformer import (
    CrossModalAugmentedBlock,
    LanguageFocusedBlock,
    ModalityGate,
    MultiHeadAttention,
    attention_mask,
    sinusoidal_positions,
)
from models.layers.variational import (
    GaussianEncoder,
    fuse_gaussians,
    gaussian_kl,
    reparameterize,
    standard_normal_kl,
    symmetric_kl,
)


def lengths_mask(lengths: list[int]) -> torch.Tensor:
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    return mask


# ---------------------------------------------------------------- masking


def test_masked_reductions_ignore_invalid_positions_even_non_finite_ones():
    values = torch.tensor([[1.0, 3.0, float("inf")], [5.0, float("nan"), 0.0]])
    valid = torch.tensor([[True, True, False], [True, False, False]])
    assert float(masked_mean(values, valid)) == pytest.approx(3.0)
    empty = masked_mean(values.clone().requires_grad_(), torch.zeros_like(valid))
    assert float(empty.detach()) == 0.0
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    b2 = b.clone()
    b2[~valid] = 1e6
    assert torch.equal(masked_mse(a, b, valid), masked_mse(a, b2, valid))
    assert float(masked_mse(a, a, valid)) == 0.0


# ---------------------------------------------------------------- attention


def test_sinusoidal_table_matches_the_formula():
    table = sinusoidal_positions(7, 10)
    for i, k in [(0, 0), (3, 1), (6, 4)]:
        assert float(table[i, 2 * k]) == pytest.approx(math.sin(i / 10000 ** (2 * k / 10)), abs=1e-6)
        assert float(table[i, 2 * k + 1]) == pytest.approx(math.cos(i / 10000 ** (2 * k / 10)), abs=1e-6)
    assert sinusoidal_positions(4, 5).shape == (4, 5)


def test_attention_mask_valid_keys_and_causal():
    mask = lengths_mask([3, 2])
    allowed = attention_mask(mask, mask)
    assert allowed.shape == (2, 3, 3)
    assert not allowed[1, :, 2].any() and allowed[0].all()
    causal = attention_mask(mask, mask, causal=True)
    assert torch.equal(causal[0], torch.tril(torch.ones(3, 3, dtype=torch.bool)))


def test_attention_with_no_valid_key_is_zero_and_has_finite_gradients():
    torch.manual_seed(0)
    attention = MultiHeadAttention(8, 2)
    query = torch.randn(2, 3, 8, requires_grad=True)
    key = torch.randn(2, 4, 8, requires_grad=True)
    key_valid = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out = attention(query, key, attention_mask(lengths_mask([3, 3]), key_valid))
    torch.testing.assert_close(out[1], attention.output.bias.expand(3, 8))  # nothing attended: only the bias
    out.sum().backward()
    assert torch.isfinite(query.grad).all() and torch.isfinite(key.grad).all()
    assert torch.equal(key.grad[:, 2:], torch.zeros_like(key.grad[:, 2:]))  # masked keys receive nothing


def test_gate_weights_are_a_convex_combination_and_identity_on_equal_inputs():
    torch.manual_seed(0)
    gate = ModalityGate(6, 3, "softmax")
    candidates = [torch.randn(2, 4, 6) for _ in range(3)]
    weights = gate.weights(candidates)
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(0), torch.ones(2, 4, 6))
    same = torch.randn(2, 4, 6)
    torch.testing.assert_close(gate([same, same, same]), same)
    assert torch.equal(ModalityGate(6, 1)([same]), same)
    torch.testing.assert_close(ModalityGate(6, 3, "mean")(candidates), torch.stack(candidates).mean(0))
    assert ModalityGate(6, 3, "sigmoid_concat")(candidates).shape == (2, 4, 6)
    with pytest.raises(ValueError, match="gate.*allowed values: softmax, sigmoid_concat, mean"):
        ModalityGate(6, 3, "max")


def test_cma_block_shape_and_padding_never_reaches_valid_outputs():
    torch.manual_seed(0)
    block = CrossModalAugmentedBlock(8, 2, 8, 0.0, auxiliaries=2).eval()
    mask = lengths_mask([5, 3])
    allowed = attention_mask(mask, mask)
    centre, aux1, aux2 = (torch.randn(2, 5, 8) for _ in range(3))
    out = block(centre, allowed, [aux1, aux2], [allowed, allowed])
    assert out.shape == (2, 5, 8)
    noisy = [t.clone() for t in (centre, aux1, aux2)]
    for t in noisy:
        t[1, 3:] = 50.0
    again = block(noisy[0], allowed, noisy[1:], [allowed, allowed])
    torch.testing.assert_close(again[mask], out[mask])
    alone = CrossModalAugmentedBlock(8, 2, 8, 0.0, auxiliaries=0)
    assert alone(centre, allowed, [], []).shape == (2, 5, 8)
    assert not any(p.requires_grad for p in alone.gate.parameters())  # one candidate: no gate to learn


def test_lfa_block_is_permutation_equivariant_without_positions():
    torch.manual_seed(0)
    block = LanguageFocusedBlock(8, 2, 16, 0.0, 0.0, auxiliaries=2).eval()
    mask = lengths_mask([5])
    allowed = attention_mask(mask, mask)
    streams = [torch.randn(1, 5, 8) for _ in range(3)]
    out = block(streams[0], allowed, streams[1:], [allowed, allowed])
    order = torch.tensor([3, 0, 4, 1, 2])
    permuted = [s[:, order] for s in streams]
    again = block(permuted[0], allowed, permuted[1:], [allowed, allowed])
    torch.testing.assert_close(again, out[:, order])
    with pytest.raises(ValueError, match="cross_residual"):
        LanguageFocusedBlock(8, 2, 16, 0.0, 0.0, 1, cross_residual="value")


# ---------------------------------------------------------------- Gaussians


def test_kl_divergences_match_torch_distributions():
    torch.manual_seed(0)
    mu_p, mu_q, lv_p, lv_q = (torch.randn(4, 6) for _ in range(4))
    p = torch.distributions.Normal(mu_p, torch.exp(0.5 * lv_p))
    q = torch.distributions.Normal(mu_q, torch.exp(0.5 * lv_q))
    torch.testing.assert_close(gaussian_kl(mu_p, lv_p, mu_q, lv_q), torch.distributions.kl_divergence(p, q))
    assert (gaussian_kl(mu_p, lv_p, mu_q, lv_q) >= 0).all()
    assert float(gaussian_kl(mu_p, lv_p, mu_p, lv_p).abs().max()) == 0.0
    assert float(standard_normal_kl(torch.zeros(3), torch.zeros(3)).abs().max()) == 0.0
    torch.testing.assert_close(
        standard_normal_kl(mu_p, lv_p), gaussian_kl(mu_p, lv_p, torch.zeros_like(mu_p), torch.zeros_like(lv_p))
    )
    torch.testing.assert_close(symmetric_kl(mu_p, lv_p, mu_q, lv_q), symmetric_kl(mu_q, lv_q, mu_p, lv_p))


def test_gaussian_encoder_clamps_log_variance():
    encoder = GaussianEncoder(4, 3, logvar_clamp=2.0)
    with torch.no_grad():
        encoder.log_variance[2].bias.fill_(100.0)
        mu, logvar = encoder(torch.randn(5, 4))
    assert mu.shape == logvar.shape == (5, 3)
    assert float(logvar.max()) == 2.0
    x = torch.randn(5, 4)
    torch.manual_seed(0)
    unit = GaussianEncoder(4, 3)
    torch.manual_seed(0)
    quiet = GaussianEncoder(4, 3, initial_logvar=-4.0)
    with torch.no_grad():
        torch.testing.assert_close(quiet(x)[1], unit(x)[1] - 4.0)  # only the starting variance differs
        torch.testing.assert_close(quiet(x)[0], unit(x)[0])


def test_fusing_gaussians_by_each_rule_and_only_over_present_modalities():
    torch.manual_seed(0)
    mus = [torch.randn(2, 3, 4) for _ in range(3)]
    logvars = [torch.randn(2, 3, 4) for _ in range(3)]
    sigmas = torch.stack([torch.exp(0.5 * lv) for lv in logvars])
    mu, logvar = fuse_gaussians(mus, logvars)
    torch.testing.assert_close(mu, torch.stack(mus).mean(0))
    torch.testing.assert_close(torch.exp(0.5 * logvar), sigmas.mean(0))
    _, logvar_mean = fuse_gaussians(mus, logvars, rule="mean_var")
    torch.testing.assert_close(logvar_mean.exp(), sigmas.pow(2).sum(0) / 9)
    mu_poe, logvar_poe = fuse_gaussians(mus, logvars, rule="poe")
    precision = (1 / sigmas.pow(2)).sum(0)
    torch.testing.assert_close(logvar_poe.exp(), 1 / precision)
    torch.testing.assert_close(mu_poe, (torch.stack(mus) / sigmas.pow(2)).sum(0) / precision)
    present = torch.ones(3, 2, 3, dtype=torch.bool)
    present[2, 0, 1] = False  # third modality absent at one utterance
    present[:, 1, 2] = False  # nothing present: every modality counts
    mu_w, _ = fuse_gaussians(mus, logvars, present)
    torch.testing.assert_close(mu_w[0, 1], (mus[0][0, 1] + mus[1][0, 1]) / 2)
    torch.testing.assert_close(mu_w[1, 2], mu[1, 2])
    with pytest.raises(ValueError, match="sigma_fusion"):
        fuse_gaussians(mus, logvars, rule="median")


def test_reparameterised_sample_is_random_and_differentiable():
    mu = torch.zeros(2000, 2, requires_grad=True)
    logvar = torch.full((2000, 2), math.log(4.0), requires_grad=True)
    sample = reparameterize(mu, logvar)
    assert float(sample.detach().std()) == pytest.approx(2.0, rel=0.1)
    sample.sum().backward()
    assert mu.grad is not None and logvar.grad.abs().sum() > 0


# ---------------------------------------------------------------- distillation losses


def test_distillation_losses_are_zero_on_agreement_and_skip_padding():
    torch.manual_seed(0)
    valid = lengths_mask([4, 2])
    teacher, student = torch.randn(2, 4, 5), torch.randn(2, 4, 5)
    assert float(logit_distillation(teacher, teacher, valid)) == pytest.approx(0.0, abs=1e-7)
    kl = logit_distillation(teacher, student, valid)
    log_student, log_teacher = F.log_softmax(student[valid], -1), F.log_softmax(teacher[valid], -1)
    reference = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    torch.testing.assert_close(kl, reference)
    assert float(kl) > 0
    noisy = student.clone()
    noisy[~valid] = 1e4
    torch.testing.assert_close(logit_distillation(teacher, noisy, valid), kl)
    assert float(logit_distillation(teacher, student, valid, temperature=4.0)) > 0
    assert float(feature_distillation(teacher, teacher, valid)) == 0.0


def test_masked_cross_entropy_matches_torch_on_labeled_utterances():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 3)
    labels = torch.tensor([[0, 2, IGNORE_INDEX, 1], [1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    valid = lengths_mask([4, 2])
    keep = valid & (labels != IGNORE_INDEX)
    torch.testing.assert_close(masked_cross_entropy(logits, labels, valid), F.cross_entropy(logits[keep], labels[keep]))


# ---------------------------------------------------------------- contrastive losses


def numpy_self_loss(x: np.ndarray, y: np.ndarray, tau: float) -> float:
    """Eq. 10 for one ordered pair, written out with loops."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(x)):
        numerator = math.exp(xn[i] @ yn[i] / tau)
        denominator = sum(math.exp(xn[i] @ yn[j] / tau) for j in range(len(x)) if j != i)
        total -= math.log(numerator / denominator)
    return total / len(x)


def numpy_full_loss(x: np.ndarray, labels: list[int], tau: float) -> float:
    """Eq. 11 for one modality: positives same label, denominator over the negatives."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    total = 0.0
    for i in range(len(x)):
        positives = [p for p in range(len(x)) if p != i and labels[p] == labels[i]]
        negatives = [k for k in range(len(x)) if labels[k] != labels[i]]
        if not positives or not negatives:
            continue
        denominator = sum(math.exp(xn[i] @ xn[k] / tau) for k in negatives)
        total -= sum(math.log(math.exp(xn[i] @ xn[p] / tau) / denominator) for p in positives) / len(positives)
    return total / len(x)


def test_contrastive_losses_match_a_hand_written_reference():
    x = np.array([[1.0, 0.0], [0.6, 0.8], [-0.5, 0.5]])
    y = np.array([[0.9, 0.1], [0.0, 1.0], [-1.0, 0.2]])
    tau = 0.5
    feats = {"a": torch.tensor(x, dtype=torch.float32), "b": torch.tensor(y, dtype=torch.float32)}
    present = {k: torch.ones(3, dtype=torch.bool) for k in feats}
    expected = numpy_self_loss(x, y, tau) + numpy_self_loss(y, x, tau)
    assert float(cross_modal_contrastive(feats, present, 3, tau)) == pytest.approx(expected, rel=1e-5)
    labels = [0, 0, 1]
    got = supervised_contrastive(feats["a"], torch.tensor(labels), torch.ones(3, dtype=torch.bool), 3, tau)
    assert float(got) == pytest.approx(numpy_full_loss(x, labels, tau), rel=1e-5)


def test_contrastive_losses_behave_as_specified():
    torch.manual_seed(0)
    n = 12
    base = torch.randn(n, 8)
    aligned = {"a": base, "b": base.clone(), "c": base.clone()}
    independent = {k: torch.randn(n, 8) for k in "abc"}
    present = {k: torch.ones(n, dtype=torch.bool) for k in "abc"}
    loss_aligned = cross_modal_contrastive(aligned, present, n)
    loss_random = cross_modal_contrastive(independent, present, n)
    assert torch.isfinite(loss_aligned) and float(loss_aligned) < float(loss_random)
    scaled = {k: 3.0 * v for k, v in independent.items()}
    torch.testing.assert_close(cross_modal_contrastive(scaled, present, n), loss_random)
    assert float(cross_modal_contrastive(aligned, present, n, include_positive=True)) > 0
    assert float(cross_modal_contrastive({"a": base[:1], "b": base[:1]}, present, 1)) == 0.0  # N < 2

    labels = torch.randint(0, 3, (n,))
    valid = torch.ones(n, dtype=torch.bool)
    full = supervised_contrastive(base, labels, valid, n)
    torch.testing.assert_close(supervised_contrastive(base * 5.0, labels, valid, n), full)
    assert torch.isfinite(full)
    distinct = supervised_contrastive(base, torch.arange(n), valid, n)
    assert float(distinct) == 0.0  # no anchor has a positive
    standard = supervised_contrastive(base, labels, valid, n, standard=True)
    assert float(standard) > 0


def test_contrastive_losses_skip_absent_and_unlabeled_utterances():
    torch.manual_seed(0)
    feats = {"a": torch.randn(6, 4), "b": torch.randn(6, 4)}
    present = {"a": torch.tensor([True] * 5 + [False]), "b": torch.ones(6, dtype=torch.bool)}
    loss = cross_modal_contrastive(feats, present, 6)
    moved = {"a": feats["a"].clone(), "b": feats["b"]}
    moved["a"][5] = 100.0
    torch.testing.assert_close(cross_modal_contrastive(moved, present, 6), loss)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    valid = torch.tensor([True, True, True, True, True, False])
    full = supervised_contrastive(feats["a"], labels, valid, 6)
    torch.testing.assert_close(supervised_contrastive(moved["a"], labels, valid, 6), full)


# ---------------------------------------------------------------- DAG


def test_dag_edges_follow_speakers_and_window():
    speakers = torch.tensor([[0, 1, 0, 1, 1]])  # A B A B B
    mask = torch.ones(1, 5, dtype=torch.bool)
    edges, same = dag_edges(speakers, mask, window=1)
    predecessors = {i: set(torch.nonzero(edges[0, i]).flatten().tolist()) for i in range(5)}
    assert predecessors == {0: set(), 1: {0}, 2: {0, 1}, 3: {1, 2}, 4: {3}}
    assert bool(same[0, 4, 3]) and not bool(same[0, 4, 2]) and not bool(same[0, 2, 1])  # relation types
    edges2, _ = dag_edges(speakers, mask, window=2)
    assert set(torch.nonzero(edges2[0, 4]).flatten().tolist()) == {1, 2, 3}
    padded, _ = dag_edges(torch.tensor([[0, 1, 0]]), torch.tensor([[True, True, False]]))
    assert not padded[0, 2].any() and not padded[:, :, 2].any()


def test_dag_is_causal_pads_with_zeros_and_trains_every_part():
    torch.manual_seed(0)
    network = DAGNetwork(6, 8, layers=2).eval()
    speakers = torch.tensor([[0, 1, 0, 1, 1, 0, 0], [1, 0, 1, 0, 0, 0, 0]])
    mask = lengths_mask([7, 3])
    x = torch.randn(2, 7, 6)
    out = network(x, speakers, mask)
    assert out.shape == (2, 7, 8)
    assert torch.equal(out[1, 3:], torch.zeros(4, 8))
    changed = x.clone()
    changed[0, 4:] = torch.randn(3, 6)  # later utterances change
    changed[1, 3:] = 9.0  # padding changes
    again = network(changed, speakers, mask)
    torch.testing.assert_close(again[0, :4], out[0, :4])
    torch.testing.assert_close(again[1], out[1])
    assert not torch.allclose(again[0, 4:], out[0, 4:])
    network.train()
    network(x, speakers, mask).sum().backward()
    for name in ("input.weight", "gru_context.0.weight_ih", "gru_update.1.weight_hh", "relation_same.0.weight",
                 "relation_other.1.weight", "score_key.0.weight", "output.weight"):
        grad = dict(network.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_context_graph_encoder_shapes_and_padding():
    torch.manual_seed(0)
    mask = lengths_mask([7, 3])
    x = torch.randn(2, 7, 5) * mask.unsqueeze(-1)
    speakers = torch.randint(0, 2, (2, 7)) * mask
    for causal in (False, True):
        encoder = ContextGraphEncoder(5, 8, causal=causal).eval()
        out = encoder(x, speakers, mask)
        assert out.shape == (2, 7, 8) and torch.equal(out[1, 3:], torch.zeros(4, 8))
        noisy = x.clone()
        noisy[1, 3:] = 7.0
        torch.testing.assert_close(encoder(noisy, speakers, mask), out)
    causal_encoder = ContextGraphEncoder(5, 8, causal=True).eval()
    later = x.clone()
    later[0, 5:] = torch.randn(2, 5)
    torch.testing.assert_close(causal_encoder(later, speakers, mask)[0, :5], causal_encoder(x, speakers, mask)[0, :5])
