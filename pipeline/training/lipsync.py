"""LipSyncNet training (`train_model`) and its label-free evaluation, for `lipsync_train`.

Training is a fixed number of steps of sampled (mouth window, in-sync audio, out-of-sync audio)
batches, run by the project's one training loop (`pipeline.training.loop`): the ranking + alignment
loss of LipSyncNet plus an optional multi-way term, AdamW with a one-cycle schedule. Evaluation
needs no labels: how often in-sync audio is closer than out-of-sync audio, and how often the offset
search finds a shift injected on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from models.lipsyncnet import (
    LipSyncConfig,
    LipSyncNet,
    audio_windows,
    batch_sync_ce,
    sync_loss,
    sync_profile,
    video_windows,
)
from pipeline.config import ConfigError
from pipeline.device import resolve_device
from pipeline.lipsync_data import PairSampler, TrackSeries
from pipeline.lipsync_settings import LipSyncSettings
from pipeline.training.loop import EpochEnd, LoopOptions, Task, fit

DEV_PAIRS = 1024
OFFSET_SHIFTS = (-10, -5, 0, 5, 10)


def _tensor(array: np.ndarray, device: str | torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def one_cycle(optimiser: torch.optim.Optimizer, lr: float, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One cycle over `steps` with a 10 % warm-up of at least two steps (torch's OneCycleLR divides by
    zero when the warm-up rounds to none); a constant rate when there are too few steps for a cycle."""
    if steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=max(0.1, 2 / steps))


class LipSyncTask(Task):
    """Fixed-step LipSyncNet training for `pipeline.training.loop.fit`: one pass of `steps` sampled
    batches of (mouth window, in-sync audio, out-of-sync audio), no dev selection."""

    def __init__(self, series: list[TrackSeries], mels: Mapping[str, np.ndarray], config: LipSyncConfig,
                 options: LipSyncSettings, model: LipSyncNet | None,
                 progress: Callable[[int, int], None] | None) -> None:
        self.options, self.progress = options, progress
        self.model = (model or LipSyncNet(config)).to(options.device)
        self.sampler = PairSampler(series, dict(mels), config.window, config.mels_per_frame, options.min_shift,
                                   options.max_shift, options.foreign, options.augment, options.seed)
        if not len(self.sampler):
            raise ConfigError("lipsync: no positive window to train on (positives must be at least "
                              f"{config.window} frames long)")
        self.optimiser = torch.optim.AdamW(self.model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        self.schedule = one_cycle(self.optimiser, options.lr, options.steps)
        self.stats: dict[str, float] = {}
        self.model.train()

    def optimizers(self) -> Sequence[torch.optim.Optimizer]:
        return (self.optimiser,)

    def schedulers(self) -> Sequence[Any]:
        return (self.schedule,)

    def batches(self, epoch: int) -> Iterator[Any]:
        for _ in range(self.options.steps):
            yield self.sampler.sample(self.options.batch_size)

    def forward(self, batch: Any) -> tuple[torch.Tensor, ...]:
        device = self.options.device
        video = self.model.encode_video(_tensor(batch.video, device))
        audio_pos = self.model.encode_audio(_tensor(batch.audio_pos, device))
        audio_neg = self.model.encode_audio(_tensor(batch.audio_neg, device))
        d_pos = torch.linalg.vector_norm(video - audio_pos, dim=1)
        d_neg = torch.linalg.vector_norm(video - audio_neg, dim=1)
        return video, audio_pos, audio_neg, d_pos, d_neg

    def objectives(self, batch: Any, output: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, float]]:
        video, audio_pos, audio_neg, d_pos, d_neg = output
        loss, parts = sync_loss(d_pos, d_neg, self.options.margin, self.options.alpha)
        if self.options.multiway_weight:
            loss = loss + self.options.multiway_weight * batch_sync_ce(video, audio_pos, audio_neg)
        self.stats = {"loss": float(loss.detach()), "rank": float(parts["rank"]), "align": float(parts["align"]),
                      "pair_accuracy": float((d_pos < d_neg).float().mean())}
        return loss, {}

    def end_batch(self, index: int) -> None:
        if self.progress is not None and index % 10 == 0:
            self.progress(index, self.options.steps)

    def end_epoch(self, epoch: int, means: dict[str, float]) -> EpochEnd:
        return EpochEnd({"epoch": epoch, **self.stats})


def train_model(series: list[TrackSeries], mels: Mapping[str, np.ndarray], config: LipSyncConfig,
                options: LipSyncSettings, model: LipSyncNet | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[LipSyncNet, dict[str, float]]:
    """Train (or keep training) a LipSyncNet on positive series; returns it in eval mode and last-step stats."""
    options = options.on_device(resolve_device(options.device, "lipsync.device"))  # `auto` -> cpu or cuda
    fitted = fit(lambda: LipSyncTask(series, mels, config, options, model, progress),
                 LoopOptions(epochs=1, device=options.device, seed=options.seed, loss_name="LipSyncNet loss"))
    return fitted.task.model.eval(), fitted.task.stats


# evaluation without labels: sync accuracy on sampled pairs, recovery of injected offsets


@torch.no_grad()
def pair_accuracy(model: LipSyncNet, series: list[TrackSeries], mels: Mapping[str, np.ndarray],
                  options: LipSyncSettings, pairs: int = DEV_PAIRS) -> float | None:
    """Share of (in-sync, out-of-sync) pairs where the in-sync audio is closer: the dev sync accuracy."""
    cfg, device = model.config, next(model.parameters()).device
    sampler = PairSampler(series, dict(mels), cfg.window, cfg.mels_per_frame, options.min_shift, options.max_shift,
                          options.foreign, None, seed=12345)
    if not len(sampler):
        return None
    hits = 0
    for start in range(0, pairs, 256):
        batch = sampler.sample(min(256, pairs - start))
        video = model.encode_video(_tensor(batch.video, device))
        d_pos = torch.linalg.vector_norm(video - model.encode_audio(_tensor(batch.audio_pos, device)), dim=1)
        d_neg = torch.linalg.vector_norm(video - model.encode_audio(_tensor(batch.audio_neg, device)), dim=1)
        hits += int((d_pos < d_neg).sum())
    return hits / pairs


def offset_recovery(model: LipSyncNet, series: list[TrackSeries], mels: Mapping[str, np.ndarray],
                    search: int = 12) -> float | None:
    """Share of injected A/V shifts (+-0, 5, 10 frames) that the offset search finds within +-1 frame."""
    found = []
    for s in series:
        if len(s.mouths) < 2 * search + 10:
            continue
        video = video_windows(model, s.mouths)
        audio = audio_windows(model, mels[s.utt_id])
        for shift in OFFSET_SHIFTS:
            profile = sync_profile(video, audio, s.start + shift, search)
            found.append(abs(profile.best_offset + shift) <= 1)
    return float(np.mean(found)) if found else None
