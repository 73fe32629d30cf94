"""LipSyncNet's checkpoint (`artifacts/lipsyncnet/`) in the project's one checkpoint format.

`model.safetensors` and a `config.json` holding the architecture (`LipSyncConfig`) plus what the
training stage adds (its settings, dev metrics, the scorer choice), so the speaker stage rebuilds
the network from the folder alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.lipsyncnet import LipSyncConfig, LipSyncNet
from pipeline.checkpoints import load_module, save_checkpoint

HINT = "no LipSyncNet checkpoint; run `python -m pipeline lipsync_train` or `dvc repro lipsync_train`"


def save_lipsyncnet(model: LipSyncNet, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the weights and `config.json` (the architecture plus `extra`, e.g. training facts)."""
    config = {"architecture": "lipsyncnet", "config": model.config.to_dict(), **(extra or {})}
    return save_checkpoint(folder, {"model": model}, config)


def load_lipsyncnet(folder: str | Path, device: str = "cpu") -> tuple[LipSyncNet, dict[str, Any]]:
    """Rebuild a saved LipSyncNet in eval mode; FileNotFoundError naming what is missing otherwise."""
    model, config = load_module(folder, lambda c: LipSyncNet(LipSyncConfig.from_dict(c["config"])), device, HINT)
    return model, config  # type: ignore[return-value]
