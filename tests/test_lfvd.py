"""LFVD: DAG context encoders, the language-focused transformer, the atmosphere vector, variational distillation."""

from __future__ import annotations

import pytest
import torch

from models import build_model
from models.lfvd import PAPER_LOSS_WEIGHTS
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

AUX = {"contrastive_self", "contrastive_full", "distill_variational"}


def lfvd(dims=DIMS, **hyper) -> torch.nn.Module:
    hyper = {"attention_dropout": 0.0} | hyper
    return model("lfvd", dims, **hyper)


def value(tensor: torch.Tensor) -> float:
    return float(tensor.detach())


@pytest.mark.parametrize("inputs", SUBSETS, ids=["+".join(s) for s in SUBSETS])
def test_every_modality_subset_builds_runs_and_returns_finite_named_losses(inputs):
    dims = {k: DIMS[k] for k in inputs}
    net = lfvd(dims)
    output = net(make_batch([4, 6], dims=dims))
    assert output.logits.shape == (2, 6, CLASSES)
    expected = AUX if len(inputs) > 1 else AUX - {"contrastive_self"}  # no pair of modalities to contrast
    assert set(output.aux_losses) == expected
    for name, term in output.aux_losses.items():
        assert term.dim() == 0 and torch.isfinite(term), name
    assert value(output.aux_losses["distill_variational"]) >= 0


def test_dominant_modality_falls_back_to_the_first_input():
    assert lfvd({"audio": 5, "visual": 4}).dominant == "audio"
    assert lfvd(dominant="visual").dominant == "visual"
    assert lfvd(dominant="visual").auxiliaries == ["text", "audio"]


def test_paper_loss_weights_are_the_class_defaults():
    assert build_model("lfvd", {}, DIMS, CLASSES).default_loss_weights == PAPER_LOSS_WEIGHTS["iemocap"]
    for weights in PAPER_LOSS_WEIGHTS.values():
        assert set(weights) == AUX
    assert PAPER_LOSS_WEIGHTS["meld"]["contrastive_self"] == 1.35e-3


def test_context_streams_have_the_model_width_and_zero_padding():
    net = lfvd().eval()
    batch = make_batch([7, 3], seed=1)
    streams = net.context(batch)
    for m in DIMS:
        assert streams[m].shape == (2, 7, 8)
        assert torch.equal(streams[m][1, 3:], torch.zeros(4, 8))


def test_atmosphere_vector_is_added_to_every_utterance_of_every_modality():
    net = lfvd().eval()
    batch = make_batch([5, 3], seed=2)
    valid = {m: batch.mask for m in DIMS}
    with torch.no_grad():
        streams = net.context(batch)
        enhanced = net.enhance(streams, valid, batch.mask)
    atmosphere = (enhanced["text"] - streams["text"])[0, :5]
    assert not torch.allclose(atmosphere[0], torch.zeros(8))
    for m in DIMS:
        difference = enhanced[m] - streams[m]
        for row, n in enumerate([5, 3]):
            torch.testing.assert_close(difference[row, :n], difference[row, :1].expand(n, 8))
        torch.testing.assert_close(difference[0, 0], atmosphere[0])  # the same t for every modality


def test_padding_changes_no_valid_output_no_atmosphere_and_no_loss():
    net = lfvd()
    batch = make_batch([3, 6], seed=3)
    noisy = with_padding_garbage(batch)
    net.eval()
    reference, again = net(batch), net(noisy)
    torch.testing.assert_close(again.logits[batch.mask], reference.logits[batch.mask])
    for name in AUX:
        torch.testing.assert_close(again.aux_losses[name], reference.aux_losses[name])
    valid = {m: batch.mask for m in DIMS}
    with torch.no_grad():
        t_ref = net.enhance(net.context(batch), valid, batch.mask)["audio"] - net.context(batch)["audio"]
        t_noisy = net.enhance(net.context(noisy), valid, batch.mask)["audio"] - net.context(noisy)["audio"]
    torch.testing.assert_close(t_noisy[batch.mask], t_ref[batch.mask])


def test_absent_modality_values_are_ignored():
    net = lfvd().eval()
    batch = make_batch([4, 5], seed=4)
    batch.present["audio"][1, 2] = False
    batch.present["visual"][0] = False
    reference = net(batch)
    garbage = clone(batch)
    garbage.features["audio"][1, 2] = 1e3
    garbage.features["visual"][0] = -1e3
    output = net(garbage)
    torch.testing.assert_close(output.logits, reference.logits)
    for name in AUX:
        torch.testing.assert_close(output.aux_losses[name], reference.aux_losses[name])


def test_dialogue_logits_do_not_depend_on_the_rest_of_the_batch():
    net = lfvd().eval()
    batch = make_batch([2, 7, 4], seed=5, speakers=3)
    with torch.no_grad():
        together = net(batch).logits
        for row, n in enumerate([2, 7, 4]):
            alone = net(select(batch, [row], n)).logits
            torch.testing.assert_close(together[row, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_causal_model_never_looks_ahead():
    batch = make_batch([6], seed=6)
    later = clone(batch)
    for tensor in later.features.values():
        tensor[0, 4:] = torch.randn(2, tensor.shape[-1])
    for stream in ("literal", "xm"):
        net = lfvd(causal=True, language_stream=stream).eval()
        with torch.no_grad():
            torch.testing.assert_close(net(later).logits[0, :4], net(batch).logits[0, :4])
            assert not torch.allclose(net(later).logits[0, 4:], net(batch).logits[0, 4:])
    bidirectional = lfvd().eval()
    with torch.no_grad():
        assert not torch.allclose(bidirectional(later).logits[0, :4], bidirectional(batch).logits[0, :4])


def test_fusion_weights_lie_in_half_to_one_and_are_half_when_distributions_match():
    net = lfvd().eval()
    batch = make_batch([4, 6], seed=7)
    with torch.no_grad():
        enhanced = net.enhance(net.context(batch), {m: batch.mask for m in DIMS}, batch.mask)
        gaussians = {m: net.gaussians[m](enhanced[m]) for m in DIMS}
        weights = net.fusion_weights(gaussians)
        for w in weights.values():
            assert ((w >= 0.5) & (w < 1.0)).all()
        matched = net.fusion_weights({m: gaussians["text"] for m in DIMS})
        for w in matched.values():
            assert torch.equal(w, torch.full_like(w, 0.5))


def test_add_fusion_is_the_plain_sum():
    net = lfvd(fusion="add").eval()
    values = {m: torch.randn(2, 3, 8) for m in DIMS}
    valid = {m: torch.ones(2, 3, dtype=torch.bool) for m in DIMS}
    fused = net.fuse(values, {}, valid)
    assert torch.equal(fused, values["text"] + values["audio"] + values["visual"])


def test_distillation_teacher_gets_no_gradient_with_stop_gradient():
    batch = make_batch([4, 6], seed=8)
    for detach in (True, False):
        net = lfvd(detach_teacher=detach, distill_prior=False).train()
        loss = net(batch).aux_losses["distill_variational"]
        teacher = list(net.gaussians["text"].parameters())
        grads = torch.autograd.grad(loss, teacher, allow_unused=True)
        total = sum(float(g.abs().sum()) for g in grads if g is not None)
        assert (total == 0.0) if detach else (total > 0.0)
    net = lfvd(distill_prior=True)
    (grad,) = torch.autograd.grad(net(batch).aux_losses["distill_variational"], net.gaussians["text"].mean[2].weight)
    assert grad.abs().sum() > 0  # the prior term reaches the teacher's distribution too


def test_every_parameter_learns_from_the_full_objective():
    net = lfvd().train()
    batch = make_batch([5, 7], seed=9)
    loss, output = objective(net, batch)
    assert torch.isfinite(loss)
    loss.backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None, f"{name} has no gradient"
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_ablation_switches_change_the_network():
    batch = make_batch([3, 5], seed=10)
    no_lfa = lfvd(use_lfa=False)
    assert no_lfa.lfa is None and no_lfa.atmosphere is None
    no_cear = lfvd(use_cear=False)
    assert no_cear.lfa is None and no_cear.atmosphere is None  # literal stream: nothing would read the LFA
    no_cear_xm = lfvd(use_cear=False, language_stream="xm").eval()
    assert no_cear_xm.lfa is not None and no_cear_xm.atmosphere is None
    literal, xm = lfvd(seed=3).eval(), lfvd(seed=3, language_stream="xm").eval()
    with torch.no_grad():
        assert not torch.allclose(literal(batch).logits, xm(batch).logits)
    for hyper in (
        {"fusion": "cat"},
        {"fusion": "gate"},
        {"fuse_on": "mu", "latent_dim": 6},
        {"fuse_on": "z"},
        {"kl_reduce_for_weights": "sum"},
        {"cross_residual": "query"},
        {"self_include_positive": True, "supcon_standard": True},
        {"dag_layers": 1, "dag_window": 2},
    ):
        output = lfvd(**hyper).train()(batch)
        assert output.logits.shape == (2, 5, CLASSES) and torch.isfinite(output.logits).all(), hyper
        assert all(torch.isfinite(v) for v in output.aux_losses.values()), hyper
    for net in (no_lfa, no_cear, no_cear_xm):
        assert net(batch).logits.shape == (2, 5, CLASSES)


@pytest.mark.parametrize(
    ("hyper", "message"),
    [
        ({"fusion": "mul"}, "'fusion' is 'mul'; allowed values: vd, add, cat, gate"),
        ({"language_stream": "rows"}, "language_stream"),
        ({"fuse_on": "h"}, "fuse_on"),
        ({"cross_residual": "value"}, "cross_residual"),
        ({"kl_reduce_for_weights": "max"}, "kl_reduce_for_weights"),
        ({"dag_window": 0}, "dag_window"),
        ({"temperature": 0}, "temperature"),
        ({"hidden": 10, "heads": 4}, "heads"),
    ],
)
def test_bad_hyper_parameters_fail_by_name(hyper, message):
    with pytest.raises(ValueError, match=message):
        lfvd(**hyper)


def test_same_seed_gives_identical_training():
    batch = make_batch([4, 6, 3], seed=11)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(train_steps(lfvd(dropout=0.3, seed=1), batch, 3))
    assert runs[0] == runs[1]


def test_overfits_a_tiny_batch():
    net = lfvd(hidden=16, heads=2, seed=0)
    accuracy = overfit_accuracy(net, make_batch([6, 8], seed=12), steps=200, lr=0.01)
    assert accuracy == 1.0


def test_trains_through_the_shared_trainer_with_its_paper_weights():
    from pipeline.training.config import ModelSpec, TrainConfig
    from pipeline.training.trainer import fit_seed

    train = {"seeds": [0], "epochs": 2, "patience": 2, "batch_dialogues": 3, "lr": 0.01, "weight_decay": 0.0,
             "grad_clip": 5.0, "device": "cpu", "loss_weights": {}}
    block = {"kind": "lfvd", "inputs": ["text", "visual"], "hidden": 8, "heads": 2}
    spec = ModelSpec.from_params({"models": {"lf": block}}, "lf")
    result = fit_seed(spec, tiny_dialogue_data({"text": 6, "visual": 4}), TrainConfig.from_params(train), seed=0)
    assert result.epochs_run == 2 and set(result.state)
    assert {"train_contrastive_self", "train_contrastive_full", "train_distill_variational"} <= set(result.history[0])
