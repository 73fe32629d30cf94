"""The model registry and the dialogue-context GRU baseline."""

from __future__ import annotations

import pytest
import torch

from models import IGNORE_INDEX, DialogueBatch, ModelOutput, build_model, registered
from models.registry import check_hyper_parameters

DIMS = {"text": 6, "audio": 3}
CLASSES = 4


def make_batch(lengths: list[int], seed: int = 0, dims: dict[str, int] = DIMS) -> DialogueBatch:
    """Random dialogues padded to the longest; padding left at zero like the real collate."""
    generator = torch.Generator().manual_seed(seed)
    size, steps = len(lengths), max(lengths)
    mask = torch.zeros(size, steps, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    features = {k: torch.randn(size, steps, d, generator=generator) * mask.unsqueeze(-1) for k, d in dims.items()}
    labels = torch.randint(0, CLASSES, (size, steps), generator=generator).masked_fill(~mask, IGNORE_INDEX)
    return DialogueBatch(
        features=features,
        present={k: mask.clone() for k in dims},
        mask=mask,
        speakers=torch.randint(0, 2, (size, steps), generator=generator) * mask,
        labels=labels,
        utt_ids=[[f"d{i}/{t}" for t in range(n)] for i, n in enumerate(lengths)],
    )


def select(batch: DialogueBatch, rows: list[int], steps: int) -> DialogueBatch:
    """The given dialogues alone, cut to `steps` positions."""
    return DialogueBatch(
        features={k: v[rows, :steps] for k, v in batch.features.items()},
        present={k: v[rows, :steps] for k, v in batch.present.items()},
        mask=batch.mask[rows, :steps],
        speakers=batch.speakers[rows, :steps],
        labels=batch.labels[rows, :steps],
        utt_ids=[batch.utt_ids[r] for r in rows],
    )


def gru(**hyper) -> torch.nn.Module:
    torch.manual_seed(0)
    params = {"kind": "context_gru", "inputs": list(DIMS), "hidden": 8, "dropout": 0.0} | hyper
    return build_model("context_gru", params, DIMS, CLASSES).eval()


def test_registry_lists_kinds_and_rejects_unknown_ones():
    assert "context_gru" in registered()
    with pytest.raises(ValueError, match="context_gru") as error:
        build_model("no_such_model", {}, DIMS, CLASSES)
    assert "no_such_model" in str(error.value)


def test_unknown_hyper_parameter_fails_by_name():
    with pytest.raises(ValueError, match="hiden") as error:
        check_hyper_parameters("context_gru", {"kind": "context_gru", "inputs": ["text"], "hiden": 64})
    assert "hidden" in str(error.value)  # the accepted names are listed
    assert check_hyper_parameters("context_gru", {"kind": "x", "inputs": ["t"], "hidden": 4}) == {"hidden": 4}


def test_output_shape_and_batch_to_device():
    batch = make_batch([3, 5])
    output = gru()(batch.to("cpu"))
    assert isinstance(output, ModelOutput)
    assert output.logits.shape == (2, 5, CLASSES)
    assert output.aux_losses == {}


def test_dialogue_outputs_do_not_depend_on_the_rest_of_the_batch():
    model = gru()
    batch = make_batch([2, 7, 4], seed=1)
    with torch.no_grad():
        together = model(batch).logits
        for row, n in enumerate([2, 7, 4]):
            alone = model(select(batch, [row], n)).logits
            torch.testing.assert_close(together[row, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_padding_and_absent_values_never_leak():
    model = gru()
    batch = make_batch([3, 6], seed=2)
    with torch.no_grad():
        reference = model(batch).logits
        # garbage in padded positions
        noisy = make_batch([3, 6], seed=2)
        for key in noisy.features:
            noisy.features[key][0, 3:] = 1e3
        torch.testing.assert_close(model(noisy).logits[0, :3], reference[0, :3])
        # garbage behind present=False only changes nothing when the value is flagged absent
        absent = make_batch([3, 6], seed=2)
        absent.present["audio"][1, 2] = False
        baseline = model(absent).logits
        absent.features["audio"][1, 2] = 1e3
        torch.testing.assert_close(model(absent).logits, baseline)
        # extra padding columns change nothing either
        wider = make_batch([3, 6], seed=2)
        pad = {k: torch.full((2, 3, d), 7.0) for k, d in DIMS.items()}
        wider.features = {k: torch.cat([v, pad[k]], dim=1) for k, v in wider.features.items()}
        wider.present = {k: torch.cat([v, torch.zeros(2, 3, dtype=torch.bool)], 1) for k, v in wider.present.items()}
        wider.mask = torch.cat([wider.mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
        wider.speakers = torch.cat([wider.speakers, torch.zeros(2, 3, dtype=torch.long)], dim=1)
        logits = model(wider).logits
    torch.testing.assert_close(logits[0, :3], reference[0, :3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1, :6], reference[1, :6], atol=1e-5, rtol=1e-5)


def test_single_input_is_the_text_only_baseline():
    model = build_model("context_gru", {"hidden": 8}, {"text": 6}, CLASSES)
    batch = make_batch([4], dims={"text": 6})
    assert model(batch).logits.shape == (1, 4, CLASSES)


def test_tiny_model_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = build_model("context_gru", {"hidden": 16, "dropout": 0.0}, DIMS, CLASSES)
    batch = make_batch([5, 8, 3], seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    labeled = batch.labels != IGNORE_INDEX
    accuracy = 0.0
    for _ in range(300):
        logits = model(batch).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, CLASSES), batch.labels.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy = float((logits.argmax(-1)[labeled] == batch.labels[labeled]).float().mean())
        if accuracy == 1.0:
            break
    assert accuracy == 1.0
