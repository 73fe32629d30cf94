"""DRKF: its blocks (residual AE, NT-Xent/InfoNCE, packed fusion encoder, pair shuffling), the model's
masking and utterance independence, gradient routing, ablation switches, and leave-one-session-out."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as skm

from models import IGNORE_INDEX, DialogueBatch, build_model
from models.drkf import discrimination_pairs, grouped_pairs, masked_step_mse
from models.layers.infonce import LearnedTemperature, info_nce, nt_xent
from models.layers.residual_autoencoder import ResidualAutoencoder
from models.layers.segment_encoder import pack_segments
from pipeline import paths
from pipeline.config import ConfigError
from pipeline.hooks import RecordingHook
from pipeline.runner import PlainRunner
from pipeline.stages import evaluate as evaluate_stage
from pipeline.stages import train as train_stage
from pipeline.training.config import ModelSpec, TrainConfig
from pipeline.training.data import load_dialogue_data
from pipeline.training.metrics import classification_scores, unweighted_accuracy
from pipeline.training.splits import session_folds
from pipeline.training.trainer import DialogueTask, effective_loss_weights, total_loss
from tests.test_sequence_batches import LABELS, write_sequence_corpus

DIMS = {"audio": 5, "text": 6}
CLASSES = 3
SMALL = {"hidden": 16, "layers": 1, "heads": 2, "ff_dim": 32, "ae_widths": [8, 4, 2], "ae_blocks": 2, "dropout": 0.0}


def sequence_batch(lengths: list[int], seed: int = 0, dims: dict[str, int] = DIMS, steps: int = 6) -> DialogueBatch:
    """Dialogues of utterances with random-length step sequences; padding (utterances and steps) is zero."""
    g = torch.Generator().manual_seed(seed)
    size, length = len(lengths), max(lengths)
    mask = torch.zeros(size, length, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    sequences, sequence_mask = {}, {}
    for k, d in dims.items():
        counts = torch.randint(1, steps + 1, (size, length), generator=g)
        valid = (torch.arange(steps) < counts.unsqueeze(-1)) & mask.unsqueeze(-1)
        sequences[k] = torch.randn(size, length, steps, d, generator=g) * valid.unsqueeze(-1)
        sequence_mask[k] = valid
    labels = torch.randint(0, CLASSES, (size, length), generator=g).masked_fill(~mask, IGNORE_INDEX)
    return DialogueBatch(
        features={k: torch.zeros(size, length, 2) for k in dims},
        present={k: mask.clone() for k in dims},
        mask=mask,
        speakers=torch.zeros(size, length, dtype=torch.long),
        labels=labels,
        utt_ids=[[f"d{i}/{t}" for t in range(n)] for i, n in enumerate(lengths)],
        sequences=sequences,
        sequence_mask=sequence_mask,
    )


def clone(batch: DialogueBatch) -> DialogueBatch:
    return DialogueBatch(
        features={k: v.clone() for k, v in batch.features.items()},
        present={k: v.clone() for k, v in batch.present.items()},
        mask=batch.mask.clone(),
        speakers=batch.speakers.clone(),
        labels=batch.labels.clone(),
        utt_ids=[list(i) for i in batch.utt_ids],
        sequences={k: v.clone() for k, v in batch.sequences.items()},
        sequence_mask={k: v.clone() for k, v in batch.sequence_mask.items()},
    )


def alone(batch: DialogueBatch, row: int, col: int) -> DialogueBatch:
    """Utterance (row, col) as a batch of its own, its steps cut to its own lengths (no foreign padding)."""
    steps = {k: max(int(v[row, col].sum()), 1) for k, v in batch.sequence_mask.items()}
    return DialogueBatch(
        features={k: v[row : row + 1, col : col + 1] for k, v in batch.features.items()},
        present={k: v[row : row + 1, col : col + 1] for k, v in batch.present.items()},
        mask=batch.mask[row : row + 1, col : col + 1],
        speakers=batch.speakers[row : row + 1, col : col + 1],
        labels=batch.labels[row : row + 1, col : col + 1],
        utt_ids=[[batch.utt_ids[row][col]]],
        sequences={k: v[row : row + 1, col : col + 1, : steps[k]] for k, v in batch.sequences.items()},
        sequence_mask={k: v[row : row + 1, col : col + 1, : steps[k]] for k, v in batch.sequence_mask.items()},
    )


def drkf(dims: dict[str, int] = DIMS, seed: int = 0, **hyper) -> torch.nn.Module:
    torch.manual_seed(seed)
    params = {"kind": "drkf", "inputs": list(dims)} | SMALL | hyper
    return build_model("drkf", params, dims, CLASSES)


def objective(model, batch, **weights):
    output = model(batch)
    return total_loss(output, batch.labels, model.default_loss_weights | weights)[0], output


# ---------------------------------------------------------------- residual autoencoder


def test_residual_autoencoder_matches_the_paper_size_and_is_position_wise():
    ae = ResidualAutoencoder(1024)
    assert sum(isinstance(m, torch.nn.Linear) for m in ae.modules()) == 32
    assert sum(p.numel() for p in ae.parameters()) == 5_139_520
    torch.manual_seed(0)
    small = ResidualAutoencoder(12, (16, 12, 8), blocks=5)
    x = torch.randn(2, 7, 12)
    out = small(x)
    assert out.shape == (2, 7, 12)
    changed = x.clone()
    changed[:, 4:] = 1e3  # "padding" positions
    torch.testing.assert_close(small(changed)[:, :4], out[:, :4])
    out.pow(2).sum().backward()
    for encoder, decoder in zip(small.encoders, small.decoders):  # the gradient reaches every block
        assert encoder[0].weight.grad.abs().sum() > 0 and decoder[-1].weight.grad.abs().sum() > 0


def test_zeroed_decoders_reduce_the_autoencoder_to_its_transition():
    ae = ResidualAutoencoder(12, (6, 4, 2), blocks=5)
    with torch.no_grad():
        for decoder in ae.decoders:
            decoder[-1].weight.zero_()
            decoder[-1].bias.zero_()
    x = torch.randn(3, 5, 12)
    torch.testing.assert_close(ae(x), ae.transition(x))


# ---------------------------------------------------------------- contrastive estimators and losses


def test_nt_xent_and_info_nce_reference_values():
    m = 4
    same = torch.ones(m, 8)
    assert float(nt_xent(same, same, 0.5)) == pytest.approx(math.log(2 * m - 1), abs=1e-5)
    assert float(info_nce(same, same, 0.5)) == pytest.approx(math.log(m), abs=1e-5)
    basis = torch.eye(8)[:m]
    assert float(nt_xent(basis, basis, 0.05)) < 1e-3
    assert float(info_nce(basis, basis, 0.05)) < 1e-3
    for _ in range(3):
        a, b = torch.randn(m, 8), torch.randn(m, 8)
        for value in (nt_xent(a, b, 0.3), info_nce(a, b, 0.3)):
            assert torch.isfinite(value) and float(value) >= 0
    tau = LearnedTemperature()
    assert float(tau().detach()) == pytest.approx(1 / (1 + math.exp(-1.0)))
    with torch.no_grad():
        tau.logit.fill_(40.0)
    assert 0 < float(tau().detach()) <= 1
    assert float(LearnedTemperature(fixed=0.07)()) == pytest.approx(0.07)


def test_label_alignment_is_cross_entropy_and_mse_ignores_padding():
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 1, 2])
    one_hot = F.one_hot(labels, 4).float()
    log_p = F.log_softmax(logits, dim=-1)
    kl = (one_hot * (torch.log(one_hot.clamp(min=1e-30)) - log_p)).sum(-1).mean()  # 0 log 0 = 0
    assert float(kl) == pytest.approx(float(F.cross_entropy(logits, labels)), abs=1e-6)
    x = torch.randn(2, 4, 3)
    valid = torch.tensor([[True, True, False, False], [True, False, False, False]])
    assert float(masked_step_mse(x, x.clone(), valid)) == 0.0
    assert float(masked_step_mse(x, x + 1, valid)) > 0
    moved = x.clone()
    moved[~valid] += 50
    assert float(masked_step_mse(moved, x, valid)) == 0.0


# ---------------------------------------------------------------- pair shuffling


def test_discrimination_pairs_follow_the_paper():
    first, second, consistent = discrimination_pairs(torch.tensor([0, 0, 1, 2]))
    assert len(first) == 12 and not (first == second).any()
    positives = {(int(i), int(j)) for i, j, c in zip(first, second, consistent) if c}
    assert positives == {(0, 1), (1, 0)}
    assert len(discrimination_pairs(torch.tensor([0, 0, 1, 2]), include_matched=True)[0]) == 16
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    first, second, consistent = grouped_pairs(labels, 4, False)
    assert len(first) == 12 + 12 + 2  # groups of 4, 4 and 2
    assert torch.equal(consistent, (labels[first] == labels[second]).long())


def test_a_discrimination_pair_takes_audio_from_i_and_text_from_j():
    model = drkf().train()
    seen = {}
    original = model.fuse

    def spy(steps, valid):
        seen.setdefault("calls", []).append([s.detach().clone() for s in steps])
        return original(steps, valid)

    model.fuse = spy
    batch = sequence_batch([4], seed=3)
    torch.manual_seed(1)
    model(batch)
    audio = model.projections["audio"](batch.sequences["audio"][batch.mask]).detach()
    text = model.projections["text"](batch.sequences["text"][batch.mask]).detach()
    pair_call = seen["calls"][-1]  # matched, augmented, then the discrimination pairs
    audio_valid = batch.sequence_mask["audio"][batch.mask].unsqueeze(-1)
    text_valid = batch.sequence_mask["text"][batch.mask].unsqueeze(-1)
    assert len(pair_call[0]) == 12
    found = set()
    for p in range(12):
        i = [k for k in range(4) if torch.allclose(pair_call[0][p], (audio * audio_valid)[k])]
        j = [k for k in range(4) if torch.allclose(pair_call[1][p], (text * text_valid)[k])]
        assert len(i) == 1 and len(j) == 1
        found.add((i[0], j[0]))
    assert found == {(i, j) for i in range(4) for j in range(4) if i != j}  # one group of 4: every mismatched pair


# ---------------------------------------------------------------- fusion encoder


def test_packing_writes_valid_steps_contiguously_and_truncates():
    a = torch.arange(1, 5, dtype=torch.float32).view(1, 4, 1).expand(2, 4, 1).clone()
    t = torch.arange(10, 13, dtype=torch.float32).view(1, 3, 1).expand(2, 3, 1).clone()
    va = torch.tensor([[True, True, False, False], [True, True, True, True]])
    vt = torch.tensor([[True, False, False], [True, True, True]])
    cls, sep = torch.tensor([100.0]), torch.tensor([-1.0])
    tokens, valid, types = pack_segments([a, t], [va, vt], cls, sep, 2800)
    assert tokens.shape == (2, 3 + 4 + 3, 1)
    assert tokens[0, :, 0].tolist()[:6] == [100, 1, 2, -1, 10, -1] and valid[0].tolist() == [True] * 6 + [False] * 4
    assert types[0, :6].tolist() == [0, 0, 0, 0, 1, 1]
    assert tokens[1, :, 0].tolist() == [100, 1, 2, 3, 4, -1, 10, 11, 12, -1] and valid[1].all()
    cut, cut_valid, _ = pack_segments([a, t], [va, vt], cls, sep, 5)
    assert cut.shape[1] == 5 and cut[1, :, 0].tolist() == [100, 1, 2, 3, 4]


def test_an_utterance_scores_the_same_alone_or_batched_with_longer_ones():
    model = drkf().eval()
    batch = sequence_batch([3, 5, 2], seed=4, steps=7)
    with torch.no_grad():
        together = model(batch).logits
        fused = model.fuse(*model._sequences(batch))
        assert fused.shape == (10, 16)
        for row, n in enumerate([3, 5, 2]):
            for col in range(n):
                single = model(alone(batch, row, col)).logits[0, 0]
                torch.testing.assert_close(single, together[row, col], atol=1e-5, rtol=0)
        # the released code's layout (padded segments, no mask) lets the batch's padding change a prediction
        parity = drkf(code_parity=True).eval()
        shifts = [(parity(alone(batch, r, 0)).logits[0, 0] - parity(batch).logits[r, 0]).abs().max() for r in range(3)]
        assert max(shifts) > 1e-4


def test_neighbours_padding_and_absent_modalities_do_not_leak():
    model = drkf().eval()
    batch = sequence_batch([4, 2], seed=5)
    with torch.no_grad():
        reference = model(batch).logits
        noisy = clone(batch)
        noisy.sequences["audio"][~noisy.sequence_mask["audio"]] = 1e3  # padded steps and utterances
        noisy.sequences["text"][0, 1] += 5.0  # a neighbour changes
        out = model(noisy).logits
        unchanged = batch.mask.clone()
        unchanged[0, 1] = False
        torch.testing.assert_close(out[unchanged], reference[unchanged], atol=1e-5, rtol=0)
        assert not torch.allclose(out[0, 1], reference[0, 1])
        assert not out[~batch.mask].any()  # padding positions hold zero logits

        absent = clone(batch)
        absent.present["text"][0, 0] = False
        garbage = clone(absent)
        garbage.sequences["text"][0, 0] = 7.0
        torch.testing.assert_close(model(garbage).logits, model(absent).logits, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- gradients, inference path, determinism


def _grads(model, loss) -> dict[str, bool]:
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    parts = {"autoencoders": model.autoencoders, "projection_heads": model.projection_heads,
             "discriminator": model.discriminator, "classifier": model.classifier}
    return {name: any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
            for name, m in parts.items()}


def test_gradient_routing_of_each_loss_term():
    model = drkf().train()
    batch = sequence_batch([4, 4], seed=6)
    output = model(batch)
    ce = F.cross_entropy(output.logits[batch.mask], batch.labels[batch.mask])
    for term in (ce, output.aux_losses["discrimination"]):
        grads = _grads(model, term)
        assert not grads["autoencoders"] and not grads["projection_heads"]
    assert _grads(model, output.aux_losses["discrimination"])["discriminator"]
    assert _grads(model, output.aux_losses["mse"])["autoencoders"]
    grads = _grads(model, output.aux_losses["contrastive"])
    assert grads["projection_heads"] and grads["autoencoders"]
    assert model.temperature.logit.grad is not None
    grads = _grads(model, output.aux_losses["label_alignment"])
    assert grads["autoencoders"] and grads["classifier"]


def test_inference_never_runs_training_only_parts():
    model = drkf().eval()
    called = []
    for name in ("autoencoders", "projection_heads", "discriminator"):
        for part in getattr(model, name).modules():
            part.register_forward_hook(lambda *_, name=name: called.append(name))
    with torch.no_grad():
        output = model(sequence_batch([3, 2], seed=7))
    assert called == [] and output.aux_losses == {}
    model.train()
    model(sequence_batch([3, 2], seed=7))
    assert {"autoencoders", "projection_heads", "discriminator"} <= set(called)


def test_training_steps_are_deterministic_for_a_seed():
    def run() -> list[float]:
        model = drkf(seed=11, dropout=0.1).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        batch = sequence_batch([4, 3], seed=8)
        torch.manual_seed(5)
        losses = []
        for _ in range(3):
            loss, _ = objective(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        return losses

    assert run() == run()


# ---------------------------------------------------------------- switches, subsets, overfitting


@pytest.mark.parametrize(
    ("hyper", "terms"),
    [
        ({}, {"mse", "label_alignment", "contrastive", "discrimination"}),
        ({"augmentation": "none", "discrimination": False}, {"contrastive"}),  # row 1 (+ contrastive weight 0)
        ({"augmentation": "static", "discrimination": False}, {"contrastive"}),  # row 2: plain CMIE
        ({"discrimination": False}, {"mse", "label_alignment", "contrastive"}),  # row 3
        ({"augmentation": "none"}, {"contrastive", "discrimination"}),  # row 4
        ({"fusion": "cross"}, {"mse", "label_alignment", "contrastive", "discrimination"}),  # row 5
        ({"label_alignment": "unimodal", "head_hidden": 8, "ed_balance": True, "temperature": 0.1},
         {"mse", "label_alignment", "contrastive", "discrimination"}),
        ({"code_parity": True}, {"mse", "label_alignment", "contrastive", "discrimination"}),
    ],
)
def test_ablation_switches_give_their_loss_terms(hyper, terms):
    model = drkf(**hyper).train()
    output = model(sequence_batch([4, 3], seed=9))
    assert set(output.aux_losses) == terms
    assert all(torch.isfinite(v) for v in output.aux_losses.values())
    if hyper.get("augmentation") == "none":
        assert model.autoencoders is None
    if hyper.get("discrimination") is False:
        assert model.discriminator is None


@pytest.mark.parametrize("dims", [{"audio": 5}, {"text": 6}, {"text": 6, "audio": 5}])
def test_modality_subsets(dims):
    model = drkf(dims).train()
    batch = sequence_batch([3, 2], seed=10, dims=dims)
    output = model(batch)
    assert output.logits.shape == (2, 3, CLASSES)
    assert ("discrimination" in output.aux_losses) == (len(dims) > 1)


def test_bad_hyper_parameters_fail_by_name():
    with pytest.raises(ValueError, match="'augmentation'.*autoencoder, static, none"):
        drkf(augmentation="vae")
    with pytest.raises(ValueError, match="'fusion: cross' needs two"):
        drkf({"text": 6}, fusion="cross")
    with pytest.raises(ValueError, match="'ae_widths'"):
        drkf(ae_widths=[])
    with pytest.raises(ValueError, match="sequence_inputs"):
        batch = sequence_batch([2])
        batch.sequences.pop("text")
        drkf()(batch)


def test_tiny_batch_overfits():
    model = drkf(seed=1)
    batch = sequence_batch([6, 6], seed=12)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    labeled = batch.labels != IGNORE_INDEX
    accuracy = 0.0
    for step in range(150):
        model.train()
        loss, _ = objective(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 9:
            model.eval()
            with torch.no_grad():
                predicted = model(batch).logits.argmax(-1)
            accuracy = float((predicted[labeled] == batch.labels[labeled]).float().mean())
            if accuracy == 1.0:
                break
    assert accuracy == 1.0


def test_paper_loss_weights_are_the_default_and_the_block_overrides_them():
    params = {"models": {"d": {"kind": "drkf", "inputs": ["a"], "sequence_inputs": ["a"],
                               "loss_weights": {"contrastive": 0}}},
              "train": {"seeds": [0], "epochs": 1, "patience": 1, "batch_dialogues": 1, "lr": 0.1,
                        "weight_decay": 0, "grad_clip": None, "device": "cpu"}}
    spec = ModelSpec.from_params(params, "d")
    weights = effective_loss_weights(drkf({"a": 4}), spec, TrainConfig.from_params(params["train"]))
    assert weights == {"mse": 0.2, "label_alignment": 1.0, "contrastive": 0.0, "discrimination": 0.2}


# ---------------------------------------------------------------- metrics and leave-one-session-out


def test_unweighted_accuracy_is_mean_recall():
    truth = [0, 0, 0, 0, 1, 1, 2, 2, 2, 3]
    predicted = [0, 0, 1, 0, 1, 2, 2, 2, 0, 3]
    recalls = [3 / 4, 1 / 2, 2 / 3, 1.0]
    assert unweighted_accuracy(truth, predicted, 4) == pytest.approx(np.mean(recalls))
    assert unweighted_accuracy(truth, predicted, 4) == pytest.approx(skm.balanced_accuracy_score(truth, predicted))
    scores = classification_scores(truth, predicted, list("abcd"))
    assert scores["accuracy"] == pytest.approx(7 / 10)
    assert scores["weighted_f1"] == pytest.approx(skm.f1_score(truth, predicted, average="weighted"))


def _sessions_manifest(ids: list[str]) -> pd.DataFrame:
    """Two utterances per dialogue; `session` as an IEMOCAP-style adapter writes it (`Ses01F_impro00` -> Ses01)."""
    return pd.DataFrame({"dialogue_id": [d for d in ids for _ in range(2)],
                         "session": [d[:5] for d in ids for _ in range(2)]})


def test_session_folds_test_every_dialogue_once_and_select_on_other_sessions():
    ids = [f"Ses{s:02d}{g}_impro{d:02d}" for s in (1, 2, 3) for g in "FM" for d in range(5)]
    folds = session_folds(_sessions_manifest(ids), 0.1)
    assert [f.held_out for f in folds] == ["Ses01", "Ses02", "Ses03"]
    tested = [d for f in folds for d in f.dialogues("test")]
    assert sorted(tested) == sorted(ids)
    for fold in folds:
        assert all(d.startswith(fold.held_out) for d in fold.dialogues("test"))
        assert len(fold.dialogues("dev")) == 2 and not any(d.startswith(fold.held_out) for d in fold.dialogues("dev"))
    assert session_folds(_sessions_manifest(ids), 0.1)[0].split_of == folds[0].split_of  # deterministic
    # the first fold's dev dialogues as the session regex on dialogue ids chose them (same seeded shuffle)
    assert folds[0].dialogues("dev") == ["Ses02F_impro04", "Ses03M_impro04"]


def test_session_folds_read_the_manifests_session_column_only():
    ids = [f"talk{d}" for d in range(6)]
    manifest = pd.DataFrame({"dialogue_id": ids, "session": ["a", "a", "b", "b", "c", "c"]})
    assert [f.held_out for f in session_folds(manifest, 0.2)] == ["a", "b", "c"]
    assert session_folds(manifest, 0.2)[1].dialogues("test") == ["talk2", "talk3"]
    with pytest.raises(ConfigError, match=r"models\.m\.folds.*no `session` column"):
        session_folds(manifest.drop(columns="session"), 0.1, "m")
    with pytest.raises(ConfigError, match=r"models\.m\.folds.*no session.*talk6"):
        session_folds(pd.concat([manifest, pd.DataFrame({"dialogue_id": ["talk6"], "session": [None]})]), 0.1, "m")
    with pytest.raises(ConfigError, match="two or more sessions"):
        session_folds(manifest.assign(session="a"), 0.1, "m")


def _stage_params(**block) -> dict:
    model = {"kind": "drkf", "inputs": ["audio_seq", "text_seq"], "sequence_inputs": ["audio_seq", "text_seq"],
             "max_sequence_length": 6} | SMALL | {"hidden": 16, "ed_group_size": 4} | block
    return {
        "models": {"drkf": model},
        "train": {"seeds": [0], "epochs": 6, "patience": 6, "batch_dialogues": 2, "lr": 0.003,
                  "weight_decay": 0.01, "grad_clip": 5.0, "device": "cpu", "loss_weights": {}},
    }


def _runner() -> PlainRunner:
    return PlainRunner(workers=1, hook=RecordingHook())


def test_train_and_evaluate_drkf_on_sequence_features(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_sequence_corpus(tmp_path)
    params = _stage_params()
    summary = train_stage.run(params, _runner(), "drkf")
    assert summary["missing_features"] == {"audio_seq": 2, "text_seq": 0}
    config = json.loads((paths.MODELS_DIR / "drkf" / "seed0" / "config.json").read_text())
    assert config["input_dims"] == {"audio_seq": 5, "text_seq": 7} and "text_seq:sequence" in config["feature_stats"]
    history = json.loads((paths.MODELS_DIR / "drkf" / "seed0" / "history.json").read_text())
    assert {"train_mse", "train_contrastive", "train_discrimination", "train_label_alignment"} <= set(history[0])
    evaluate_stage.run(params, _runner(), "drkf")
    result = json.loads((paths.METRICS_DIR / "drkf" / "eval.json").read_text())
    assert result["test"]["accuracy"]["mean"] > result["majority_baseline"]["accuracy"]  # both sequences carry it


def test_leave_one_session_out_trains_a_model_per_session_and_averages_folds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_sequence_corpus(tmp_path)
    params = _stage_params(folds="session", fold_dev_fraction=0.25)
    params["train"]["epochs"] = 2
    summary = train_stage.run(params, _runner(), "drkf")
    assert summary["folds"] == 3
    folders = sorted(p.name for p in (paths.MODELS_DIR / "drkf").iterdir())
    assert folders == ["fold-Ses01", "fold-Ses02", "fold-Ses03"]
    config = json.loads((paths.MODELS_DIR / "drkf" / "fold-Ses02" / "seed0" / "config.json").read_text())
    assert config["fold"]["held_out"] == "Ses02" and not any(d.startswith("Ses02") for d in config["fold"]["dev"])
    train_report = json.loads((paths.METRICS_DIR / "drkf" / "train.json").read_text())
    counts = train_report["per_fold"]["Ses01"]["class_counts"]
    assert sum(counts["test"].values()) == 20 and set(counts["train"]) == set(LABELS)

    summary = evaluate_stage.run(params, _runner(), "drkf")
    report = json.loads((paths.METRICS_DIR / "drkf" / "eval.json").read_text())
    assert report["folds"] == ["Ses01", "Ses02", "Ses03"] and "leave-one-session-out" in report["protocol"]
    assert report["params"]["models"]["drkf"]["folds"] == "session" and report["command"].endswith("evaluate drkf")
    for name in ("accuracy", "weighted_f1", "unweighted_accuracy"):
        per_fold = [report["per_fold"][f]["test"][name]["mean"] for f in report["folds"]]
        assert report["test"][name]["mean"] == pytest.approx(np.mean(per_fold))
    predictions = pd.read_parquet(paths.METRICS_DIR / "drkf" / "predictions.parquet")
    test = predictions[predictions["split"] == "test"]
    assert len(test) == 60 and test["utt_id"].is_unique  # every utterance tested exactly once (one seed)
    assert (test["utt_id"].str[:5] == test["fold"]).all()  # ... by the fold that held its session out
    seed_fold = test[test["fold"] == "Ses03"]
    fold_scores = report["per_seed"][0]["folds"]["Ses03"]["test"]
    assert fold_scores["accuracy"] == pytest.approx((seed_fold["label"] == seed_fold["predicted"]).mean())
    assert (paths.PLOTS_DIR / "drkf" / "confusion.png").exists()


def test_utterance_batches_hold_the_set_number_of_train_utterances(tmp_path, monkeypatch):
    """`train.batch_utterances: 4` (the paper's M) draws 4 utterances per step, each train utterance once an epoch."""
    monkeypatch.chdir(tmp_path)
    write_sequence_corpus(tmp_path)
    params = _stage_params(train={"batch_utterances": 4})
    spec = ModelSpec.from_params(params, "drkf")
    cfg = TrainConfig.for_model(params, "drkf")
    data = load_dialogue_data(list(spec.inputs), **spec.sequences.loader_kwargs())
    task = DialogueTask(spec, data, cfg, seed=0, device="cpu")
    batches = list(task.batches(1))
    train_utts = [u for d in data.split("train") for u in d.utt_ids]
    drawn = [ids[0] for batch in batches for ids in batch.utt_ids]
    assert all(batch.mask.shape == (len(batch.utt_ids), 1) for batch in batches)
    assert [len(b.utt_ids) for b in batches[:-1]] == [4] * (len(batches) - 1) and len(batches[-1].utt_ids) <= 4
    assert sorted(drawn) == sorted(train_utts) and drawn != train_utts  # every train utterance once, shuffled
    summary = train_stage.run(params, _runner(), "drkf")  # and the stage trains with them
    history = json.loads((paths.MODELS_DIR / "drkf" / "seed0" / "history.json").read_text())
    assert summary["seeds"] == 1 and len(history) >= 1 and math.isfinite(history[0]["train_loss"])


def test_utterance_batches_are_refused_for_a_model_that_reads_context():
    params = {"models": {"gru": {"kind": "context_gru", "inputs": ["text"], "train": {"batch_utterances": 4}}},
              "train": _stage_params()["train"]}
    with pytest.raises(ConfigError, match=r"models\.gru\.train\.batch_utterances.*reads dialogue context"):
        TrainConfig.for_model(params, "gru")
    assert TrainConfig.for_model(_stage_params(train={"batch_utterances": 4}), "drkf").batch_utterances == 4
