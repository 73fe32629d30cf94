"""One checkpoint format for everything the project trains, and `Checkpointer` for resumable runs.

A checkpoint is a folder: `<name>.safetensors` per set of weights (no pickle), `config.json` (what
rebuilds and explains them), optional JSON documents such as `history.json`, and optional `<name>.pt`
for optimiser or scheduler state (tensors and numbers only, read with `torch.load(weights_only=True)`).
A folder is written into a temporary sibling and swapped in whole, so a killed run leaves the old
checkpoint or the new one, never half of one. Dialogue models (`artifacts/models/<name>/seed<k>/`),
LipSyncNet (`artifacts/lipsyncnet/`) and the text encoder's per-epoch checkpoints all use it.

`Checkpointer` keeps a run's `last/` checkpoint (weights + optimiser state, to resume after the
last finished epoch) and its `best/` one (the dev-selected weights) under one folder, in the spirit
of SpeechBrain's `Checkpointer`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".pt"
WEIGHTS_METADATA = {"format": "pt"}

Weights = nn.Module | Mapping[str, torch.Tensor]


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    os.replace(tmp, path)


def write_json(path: str | Path, value: Any) -> Path:
    """Write JSON atomically, creating the folder (metrics files are read by `dvc metrics show`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, value)
    return path


def _save_weights(weights: Weights, path: Path) -> None:
    if isinstance(weights, nn.Module):  # tied parameters are stored once (safetensors refuses shared tensors)
        save_model(weights, str(path), metadata=dict(WEIGHTS_METADATA))
    else:
        save_file({k: v.contiguous() for k, v in weights.items()}, str(path), metadata=dict(WEIGHTS_METADATA))


def save_checkpoint(folder: str | Path, weights: Mapping[str, Weights], config: Mapping[str, Any],
                    documents: Mapping[str, Any] | None = None, states: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint folder whole: `weights` by name, `config.json`, JSON `documents`, `states` (`.pt`)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, value in weights.items():
            _save_weights(value, tmp / f"{name}{WEIGHTS_SUFFIX}")
        _write_json(tmp / CONFIG_FILE, dict(config))
        for name, value in (documents or {}).items():
            _write_json(tmp / f"{name}.json", value)
        for name, value in (states or {}).items():
            torch.save(value, tmp / f"{name}{STATE_SUFFIX}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the previous checkpoint stays as it was
        raise
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def read_config(folder: str | Path, hint: str = "") -> dict[str, Any]:
    """A checkpoint's `config.json`; FileNotFoundError naming the file and `hint` (how to make it) otherwise."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found{': ' + hint if hint else ''}")
    return json.loads(path.read_text())


def read_document(folder: str | Path, name: str) -> Any:
    return json.loads((Path(folder) / f"{name}.json").read_text())


def weights_path(folder: str | Path, name: str = "model") -> Path:
    return Path(folder) / f"{name}{WEIGHTS_SUFFIX}"


def load_weights(folder: str | Path, name: str = "model") -> dict[str, torch.Tensor]:
    """One set of weights as CPU tensors."""
    return load_file(str(weights_path(folder, name)), device="cpu")


def load_module(folder: str | Path, build: Callable[[dict[str, Any]], nn.Module], device: str = "cpu",
                hint: str = "", name: str = "model") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a module from its checkpoint: `build(config)` makes it, the weights fill it; eval mode on `device`."""
    config = read_config(folder, hint)
    if not weights_path(folder, name).is_file():
        raise FileNotFoundError(f"{weights_path(folder, name)} not found{': ' + hint if hint else ''}")
    module = build(config)
    module.load_state_dict(load_weights(folder, name))
    return module.to(device).eval(), config


class Checkpointer:
    """A training run's `last/` and `best/` checkpoints under one folder, for resuming after a kill.

    `modules` are saved as weights (`best/` keeps only these), `states` (optimisers, schedulers:
    anything with `state_dict`/`load_state_dict`) only in `last/`. `meta` (e.g. the history so far)
    travels as `last/config.json` and is what `recover` returns.
    """

    def __init__(self, folder: str | Path, modules: Mapping[str, nn.Module],
                 states: Mapping[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.modules = dict(modules)
        self.states = dict(states or {})

    @property
    def last(self) -> Path:
        return self.folder / "last"

    @property
    def best(self) -> Path:
        return self.folder / "best"

    def save(self, meta: Mapping[str, Any], best: bool) -> None:
        """Checkpoint after an epoch: `best/` first when it improved, then `last/`, whose arrival commits both."""
        if best:
            save_checkpoint(self.best, self.modules, meta)
        save_checkpoint(self.last, self.modules, meta, states={k: v.state_dict() for k, v in self.states.items()})

    def recover(self, device: str = "cpu") -> dict[str, Any] | None:
        """Restore modules and states from `last/` and return its meta; None (and a clean folder) when
        there is none or it cannot be read, so a damaged checkpoint is retrained, never trusted."""
        if not (self.last / CONFIG_FILE).is_file():
            return None
        try:
            meta = read_config(self.last)
            for name, module in self.modules.items():
                load_model(module, str(weights_path(self.last, name)), device=device)
            for name, stateful in self.states.items():
                saved = torch.load(self.last / f"{name}{STATE_SUFFIX}", map_location=device, weights_only=True)
                stateful.load_state_dict(saved)
        except Exception as error:  # noqa: BLE001 - any damage means: start over
            self.discard(f"ignoring unreadable checkpoint in {self.folder}: {error}")
            return None
        return meta

    def load_best(self, device: str = "cpu") -> None:
        """Fill the modules with the weights of the best epoch."""
        for name, module in self.modules.items():
            load_model(module, str(weights_path(self.best, name)), device=device)

    def discard(self, reason: str) -> None:
        log.warning(f"[checkpoint] {reason}")
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
