"""The one checkpoint format: folders written whole, weights without pickle, optimiser state read with
weights_only, and `Checkpointer`'s last/best pair that a killed run resumes from."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from pipeline.checkpoints import (
    Checkpointer,
    load_module,
    load_weights,
    read_config,
    read_document,
    save_checkpoint,
    weights_path,
)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _build(config: dict) -> nn.Module:
    return nn.Sequential(nn.Linear(4, config["hidden"]), nn.ReLU(), nn.Linear(config["hidden"], 3))


def test_a_saved_module_is_rebuilt_from_its_folder_alone(tmp_path):
    net = _net()
    save_checkpoint(tmp_path / "ckpt", {"model": net}, {"hidden": 8}, documents={"history": [{"epoch": 1}]})
    rebuilt, config = load_module(tmp_path / "ckpt", _build)
    x = torch.randn(5, 4)
    assert torch.equal(rebuilt(x), net.eval()(x)) and config == {"hidden": 8}
    assert read_document(tmp_path / "ckpt", "history") == [{"epoch": 1}]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "history.json", "model.safetensors"]


def test_folders_written_before_the_format_was_shared_still_load(tmp_path):
    """LipSyncNet's and the trainer's earlier folders: raw safetensors (no metadata) and a config.json."""
    net = _net()
    folder = tmp_path / "old"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"hidden": 8, "architecture": "x"}, sort_keys=True))
    rebuilt, config = load_module(folder, _build)
    assert config["architecture"] == "x"
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in rebuilt.state_dict().items())


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "ckpt", {"model": _net(0)}, {"hidden": 8})
    before = load_weights(tmp_path / "ckpt")
    with pytest.raises(AttributeError):  # not tensors: fails after the first weights file is written
        save_checkpoint(tmp_path / "ckpt", {"model": _net(1), "head": {"w": [1.0, 2.0]}}, {"hidden": 8})
    after = load_weights(tmp_path / "ckpt")
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no half-written sibling left behind


def test_missing_files_name_the_path_and_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json not found: run the training stage"):
        read_config(tmp_path / "nothing", "run the training stage")
    save_checkpoint(tmp_path / "ckpt", {"model": _net()}, {"hidden": 8})
    weights_path(tmp_path / "ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors not found"):
        load_module(tmp_path / "ckpt", _build)


def _trained_pair(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    net = _net(seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=0.01)
    net(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    return net, optimizer


def test_checkpointer_recovers_weights_and_optimiser_state_of_the_last_epoch(tmp_path):
    net, optimizer = _trained_pair(0)
    saver = Checkpointer(tmp_path / "run", {"model": net}, {"optimizer": optimizer})
    saver.save({"history": [1]}, best=True)
    saver.save({"history": [1, 2]}, best=False)
    fresh, fresh_optimizer = _trained_pair(1)
    again = Checkpointer(tmp_path / "run", {"model": fresh}, {"optimizer": fresh_optimizer})
    assert again.recover() == {"history": [1, 2]}
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values()))
    state, expected = fresh_optimizer.state_dict()["state"], optimizer.state_dict()["state"]
    assert all(torch.equal(state[k]["exp_avg"], expected[k]["exp_avg"]) for k in expected)
    assert read_config(again.best) == {"history": [1]} and not (again.best / "optimizer.pt").exists()


def test_checkpointer_discards_a_damaged_checkpoint(tmp_path):
    net, optimizer = _trained_pair(0)
    saver = Checkpointer(tmp_path / "run", {"model": net}, {"optimizer": optimizer})
    saver.save({"history": [1]}, best=True)
    (saver.last / "optimizer.pt").write_bytes(b"not a checkpoint")
    assert saver.recover() is None
    assert list((tmp_path / "run").iterdir()) == []
