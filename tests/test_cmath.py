"""CMATH: modality reconstruction, CMA-Transformer, variational fusion, hierarchical distillation."""

from __future__ import annotations

import pytest
import torch

from models import build_model
from models.cmath import PAPER_LOSS_WEIGHTS
from models.layers.transformer import sinusoidal_positions
from tests.fusion_helpers import (
    CLASSES,
    DIMS,
    SUBSETS,
    clone,
    make_batch,
    model,
    objective,
    overfit_accuracy,
    select,
    tiny_dialogue_data,
    train_steps,
    with_padding_garbage,
)

AUX = {"ce_unimodal", "reconstruction", "distill_feature", "distill_logit", "prior_kl"}


def cmath(dims=DIMS, **hyper) -> torch.nn.Module:
    return model("cmath", dims, **hyper)


@pytest.mark.parametrize("inputs", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_every_modality_subset_builds_runs_and_returns_finite_named_losses(inputs):
    dims = {k: DIMS[k] for k in inputs}
    net = cmath(dims)
    output = net(make_batch([4, 6], dims=dims))
    assert output.logits.shape == (2, 6, CLASSES)
    assert set(output.aux_losses) == AUX
    for name, term in output.aux_losses.items():
        assert term.dim() == 0 and torch.isfinite(term) and float(term.detach()) >= 0, name


def test_paper_loss_weights_are_the_class_defaults_and_cover_every_term():
    assert build_model("cmath", {}, DIMS, CLASSES).default_loss_weights == PAPER_LOSS_WEIGHTS["iemocap"]
    assert PAPER_LOSS_WEIGHTS["iemocap"]["distill_logit"] == 1.8 and PAPER_LOSS_WEIGHTS["meld"]["distill_logit"] == 1.2
    for weights in PAPER_LOSS_WEIGHTS.values():
        assert set(weights) == AUX and weights["prior_kl"] == 0.0


def test_reconstruction_shapes_identity_and_padding():
    net = cmath({"text": 8}, hidden=8).eval()
    batch = make_batch([3, 5], dims={"text": 8})
    codes, states, loss = net.encode(batch)
    assert codes["text"].shape == (2, 5, 8) and states["text"].shape == (2, 5, 8) and float(loss.detach()) > 0
    rebuilt = net.reconstruction["text"](batch.features["text"], batch.mask)[1]
    assert rebuilt.shape == (2, 5, 8)
    with torch.no_grad():  # d = d_m, k = 1, identity weights, zero bias: a perfect autoencoder
        for conv in (net.reconstruction["text"].encoder, net.reconstruction["text"].decoder):
            conv.weight.copy_(torch.eye(8).unsqueeze(-1))
            conv.bias.zero_()
        assert float(net.encode(batch)[2]) == 0.0


@pytest.mark.parametrize("kernel", [1, 3])
def test_padding_changes_no_valid_output_and_no_loss(kernel):
    net = cmath(kernel_size=kernel)
    batch = make_batch([3, 6], seed=1)
    noisy = with_padding_garbage(batch)
    net.train()  # losses with the reparameterisation noise drawn identically
    torch.manual_seed(5)
    reference = net(batch)
    torch.manual_seed(5)
    again = net(noisy)
    for name in AUX:
        torch.testing.assert_close(again.aux_losses[name], reference.aux_losses[name])
    torch.testing.assert_close(again.logits[batch.mask], reference.logits[batch.mask])
    net.eval()
    torch.testing.assert_close(net(noisy).logits[batch.mask], net(batch).logits[batch.mask])


def test_absent_modality_values_are_ignored():
    net = cmath().eval()
    batch = make_batch([4, 5], seed=2)
    batch.present["audio"][1, 2] = False
    batch.present["visual"][0] = False  # a whole dialogue without visual
    reference = net(batch)
    garbage = clone(batch)
    garbage.features["audio"][1, 2] = 1e3
    garbage.features["visual"][0] = -1e3
    output = net(garbage)
    torch.testing.assert_close(output.logits, reference.logits)
    for name in AUX:
        torch.testing.assert_close(output.aux_losses[name], reference.aux_losses[name])
    assert torch.isfinite(output.logits).all()


def test_dialogues_do_not_depend_on_the_rest_of_the_batch():
    net = cmath(kernel_size=3).eval()
    batch = make_batch([2, 7, 4], seed=3)
    with torch.no_grad():
        together = net(batch).logits
        for row, n in enumerate([2, 7, 4]):
            alone = net(select(batch, [row], n)).logits
            torch.testing.assert_close(together[row, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_speaker_and_position_are_shared_and_padding_speaker_is_zero():
    net = cmath().eval()
    batch = make_batch([3, 5], seed=4)
    codes, states, _ = net.encode(batch)
    differences = [states[m] - codes[m] for m in DIMS]
    for other in differences[1:]:
        torch.testing.assert_close(other, differences[0])
    padding_row = net.speaker.weight[net.max_speakers]
    assert torch.equal(padding_row, torch.zeros_like(padding_row))
    shared = net.context_embedding(batch)
    positions = sinusoidal_positions(5, net.hidden)
    torch.testing.assert_close(shared[0, 3:], positions[3:])  # padded slots: position only, no speaker


def test_each_centre_modality_has_its_own_parameters():
    net = cmath()
    layer = net.cma[0]
    pointers = {m: {p.data_ptr() for p in layer[m].parameters()} for m in DIMS}
    assert all(len(pointers[m]) == len(list(layer[m].parameters())) for m in DIMS)
    assert not (pointers["text"] & pointers["audio"]) and not (pointers["audio"] & pointers["visual"])
    assert len(layer["text"].cross_blocks) == 2
    assert len(cmath(layers=2).cma) == 2


def test_variational_fusion_is_deterministic_in_eval_and_sampled_in_training():
    net = cmath()
    batch = make_batch([4, 6], seed=5)
    net.eval()
    with torch.no_grad():
        first, second = net(batch).logits, net(batch).logits
        assert torch.equal(first, second)
        augmented = net.augment(net.encode(batch)[1], {m: batch.mask for m in DIMS}, batch.mask)
        mus = [net.gaussians[m](augmented[m])[0] for m in DIMS]
        expected = net.fused_classifier(torch.stack(mus).mean(0))
        torch.testing.assert_close(first[batch.mask], expected[batch.mask])
    net.train()
    torch.manual_seed(0)
    one = net(batch).logits
    torch.manual_seed(1)
    other = net(batch).logits
    assert not torch.allclose(one[batch.mask], other[batch.mask])
    loss = torch.nn.functional.cross_entropy(one[batch.mask], batch.labels[batch.mask])
    sigma_head = net.gaussians["text"].log_variance[0].weight
    (grad,) = torch.autograd.grad(loss, sigma_head)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("detach", [True, False])
def test_detached_teacher_receives_no_distillation_gradient(detach):
    net = cmath(detach_teacher=detach).train()
    batch = make_batch([4, 6], seed=6)
    torch.manual_seed(0)
    output = net(batch)
    teacher = list(net.gaussians.parameters()) + list(net.fused_classifier.parameters())
    for name in ("distill_feature", "distill_logit"):
        grads = torch.autograd.grad(output.aux_losses[name], teacher, retain_graph=True, allow_unused=True)
        total = sum(float(g.abs().sum()) for g in grads if g is not None)
        assert (total == 0.0) if detach else (total > 0.0), name


def test_every_parameter_learns_from_the_full_objective():
    net = cmath().train()
    batch = make_batch([4, 6], seed=7)
    loss, _ = objective(net, batch)
    loss.backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, f"{name} has no gradient"
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    assert torch.equal(net.speaker.weight.grad[net.max_speakers], torch.zeros(8))  # the padding slot stays zero


def test_ablation_switches_change_the_network():
    no_mr = cmath(modality_reconstruction=False)
    output = no_mr(make_batch([3, 4]))
    assert "reconstruction" not in output.aux_losses
    assert isinstance(no_mr.reconstruction["text"].encoder, torch.nn.Linear)
    no_cma = cmath(cma_transformer=False).eval()
    assert len(no_cma.cma) == 0
    batch = make_batch([3, 4])
    states = no_cma.encode(batch)[1]
    assert no_cma.augment(states, {m: batch.mask for m in DIMS}, batch.mask) is states  # H'_m = H_m
    for gate in ("sigmoid_concat", "mean"):
        assert cmath(gate=gate)(batch).logits.shape == (2, 4, CLASSES)
    for rule in ("mean_var", "poe"):
        assert torch.isfinite(cmath(sigma_fusion=rule)(batch).logits).all()
    assert cmath(kernel_size={"text": 3}, activation="gelu")(batch).logits.shape == (2, 4, CLASSES)
    assert torch.isfinite(cmath(initial_logvar=-4.0, kd_temperature=2.0)(batch).logits).all()


@pytest.mark.parametrize(
    ("hyper", "message"),
    [
        ({"gate": "max"}, "'gate' is 'max'; allowed values: softmax, sigmoid_concat, mean"),
        ({"sigma_fusion": "min"}, "sigma_fusion"),
        ({"kernel_size": 2}, "odd"),
        ({"kernel_size": {"speech": 3}}, "speech"),
        ({"hidden": 10, "heads": 4}, "heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"detach_teacher": "yes"}, "detach_teacher"),
        ({"initial_logvar": "low"}, "initial_logvar"),
    ],
)
def test_bad_hyper_parameters_fail_by_name(hyper, message):
    with pytest.raises(ValueError, match=message):
        cmath(**hyper)


def test_same_seed_gives_identical_training():
    batch = make_batch([4, 6, 3], seed=8)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(train_steps(cmath(dropout=0.3, seed=1), batch, 3))
    assert runs[0] == runs[1]


def test_overfits_a_tiny_batch():
    net = cmath(hidden=16, heads=2, seed=0)
    accuracy = overfit_accuracy(net, make_batch([6, 8, 5], seed=9), steps=200, lr=0.01)
    assert accuracy == 1.0


def test_trainer_weights_losses_by_paper_defaults_then_train_then_model_block():
    from pipeline.config import ConfigError
    from pipeline.training.config import ModelSpec, TrainConfig
    from pipeline.training.trainer import effective_loss_weights, fit_seed

    train = {"seeds": [0], "epochs": 2, "patience": 2, "batch_dialogues": 3, "lr": 0.01, "weight_decay": 0.0,
             "grad_clip": 5.0, "device": "cpu", "loss_weights": {"distill_feature": 0.5, "distill_logit": 0.7}}
    block = {"kind": "cmath", "inputs": ["text", "audio"], "hidden": 8, "heads": 2,
             "loss_weights": {"distill_logit": 0, "prior_kl": 0.01}}
    spec = ModelSpec.from_params({"models": {"cm": block}}, "cm")
    cfg = TrainConfig.from_params(train)
    assert spec.loss_weights == {"distill_logit": 0.0, "prior_kl": 0.01}
    weights = effective_loss_weights(cmath(), spec, cfg)
    assert weights == {"ce_unimodal": 1.0, "reconstruction": 1.0, "distill_feature": 0.5, "distill_logit": 0.0,
                       "prior_kl": 0.01}
    data = tiny_dialogue_data({"text": 6, "audio": 5})
    result = fit_seed(spec, data, cfg, seed=0)
    assert result.epochs_run == 2 and 0.0 <= result.dev["weighted_f1"] <= 1.0
    logged = result.history[0]
    assert "train_distill_logit" not in logged and "train_prior_kl" in logged and "train_reconstruction" in logged
    with pytest.raises(ConfigError, match="models.cm.loss_weights.prior_kl"):
        ModelSpec.from_params({"models": {"cm": block | {"loss_weights": {"prior_kl": -1}}}}, "cm")
