"""The `lipsync:` block as one typed settings object, read by `lipsync_train` and by the speaker stage.

Training (`pipeline.training.lipsync`), the choice of training tracks (`lipsync_train`) and scoring
(`speaker_select.LipSyncScorer`: `score`, `max_offset`, `search_offset`) all read this one parse,
so a value is checked once, by the same rule, whichever stage reads it first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.config import ConfigError, parse_block, setting
from core.device import device_problem
from models.lipsyncnet import SCORE_MODES, LipSyncConfig
from pipeline.lipsync_data import Augment

SPLITS = ("train", "dev", "test")
_FLOATS = ("dev_fraction", "min_coverage", "bootstrap_margin", "denoise_fraction", "relabel_margin", "lr",
           "weight_decay", "margin", "alpha", "multiway_weight", "foreign")


def _splits_problem(value: Any) -> str | None:
    if isinstance(value, list) and value and set(value) <= set(SPLITS):
        return None
    return f"must be a non-empty list drawn from {', '.join(SPLITS)}; got {value!r}"


def _model_problem(value: Any) -> str | None:
    try:
        LipSyncConfig.from_dict(dict(value or {}))
    except (TypeError, ValueError) as error:
        return f"holds LipSyncNet overrides: {error}"
    return None


@dataclass(frozen=True)
class LipSyncSettings:
    """Every key of `params.lipsync`, with the defaults the stages have always used."""

    device: str = setting("auto", check=device_problem)  # training and the speaker stage's scoring
    seed: int = setting(0, min=0)
    splits: list[str] = setting(factory=lambda: ["train"], check=_splits_problem)
    dev_fraction: float = setting(0.2, min=0, max=0.9)
    max_utterances: int = setting(3000, min=1)
    min_coverage: float = setting(0.8, min=0, max=1)
    bootstrap_margin: float = setting(0.2, min=0, max=2)
    rounds: int = setting(1, min=1, max=10)
    denoise_fraction: float = setting(0.3, min=0, max=0.9)
    relabel_margin: float = setting(0.1, min=0, max=2)
    steps: int = setting(300, min=0)
    batch_size: int = setting(64, min=2)
    lr: float = setting(1e-3, positive=True)
    weight_decay: float = setting(1e-4, min=0)
    margin: float = setting(1.5, positive=True)
    alpha: float = setting(0.7, min=0, max=1)
    multiway_weight: float = setting(0.5, min=0)
    min_shift: int = setting(5, min=1)
    max_shift: int = setting(15, min=1)
    foreign: float = setting(0.25, min=0, max=1)
    augment: Augment = field(default_factory=Augment)
    score: str = setting("sync", choices=SCORE_MODES)
    max_offset: int = setting(2, min=0)
    search_offset: int = setting(15, min=0)
    model: dict[str, Any] | None = setting(factory=dict, check=_model_problem)

    def __post_init__(self) -> None:
        for key in _FLOATS:
            object.__setattr__(self, key, float(getattr(self, key)))
        if self.min_shift > self.max_shift:
            raise ConfigError.at("max_shift", f"must be >= min_shift ({self.min_shift}), got {self.max_shift}")

    @classmethod
    def parse(cls, block: Mapping[str, Any] | None) -> LipSyncSettings:
        """The block (absent or null: every default), or ConfigError naming `lipsync.<key>`."""
        return parse_block(cls, {} if block is None else block, "lipsync")

    def on_device(self, device: str) -> LipSyncSettings:
        """The same settings with `device` resolved to a torch device (`auto` -> cpu or cuda)."""
        return dataclasses.replace(self, device=device)

    def model_config(self) -> LipSyncConfig:
        return LipSyncConfig.from_dict(dict(self.model or {}))

    def scoring(self) -> dict[str, Any]:
        """Keyword arguments of `LipSyncScorer`: how a track's sync profile becomes its score."""
        return {"max_offset": self.max_offset, "search_offset": self.search_offset, "score_mode": self.score}
