"""LipSyncNet: a two-stream audio-visual synchrony network that tells which face is talking.

A 3D-CNN embeds a short window of grey mouth crops, a 2D-CNN embeds the log-mel audio under the
same window, and both land as 256-d unit vectors in one space: close when the mouth moves with the
sound, far when it does not (Li et al., EACL Findings 2026, Eqs. 2-6). Unlike the authors' code,
the two windows always cover the same time span: `window` video frames at `fps` and
`window * mels_per_frame` audio frames at 100 Hz (5 frames = 0.2 s = 20 mel frames by default),
as in SyncNet. Everything here is plain torch/numpy so the stage code, the benchmark and tests
share one definition.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MEL_HOP_SECONDS = 0.010  # 100 audio frames per second
MEL_WINDOW_SECONDS = 0.025


@dataclass(frozen=True)
class LipSyncConfig:
    """Shapes and widths; saved next to the weights so a checkpoint rebuilds itself."""

    in_channels: int = 1
    mouth_height: int = 32
    mouth_width: int = 48
    window: int = 5  # video frames per window
    fps: float = 25.0  # video frame rate the windows assume (tracks are resampled to it)
    sample_rate: int = 16000
    n_mels: int = 40
    video_channels: tuple[int, int, int] = (32, 64, 96)
    audio_channels: tuple[int, int, int] = (32, 64, 96)
    # (time, height, width) kernel of each 3D conv block, and the (frequency, time) kernel size of each 2D one
    video_kernels: tuple[tuple[int, int, int], ...] = ((3, 5, 5), (3, 3, 3), (3, 3, 3))
    audio_kernels: tuple[int, int, int] = (3, 3, 3)
    # bins the last pools keep: time bins (null: one per video frame of the window) and the mouth's spatial
    # bins per side; 1, 1 and 1 pool everything, as TalkNet and the spec's stack do
    video_time_bins: int | None = None
    video_space_bins: int = 2
    audio_time_bins: int | None = None
    hidden: int = 256
    embed_dim: int = 256
    dropout: float = 0.2

    def __post_init__(self) -> None:
        for name in ("video_channels", "audio_channels", "audio_kernels"):
            value = getattr(self, name)
            if len(value) != 3 or not all(isinstance(v, int) and v > 0 for v in value):
                raise ValueError(f"{name} must be 3 positive integers, got {list(value)}")
        kernels = self.video_kernels
        if len(kernels) != 3 or not all(len(k) == 3 and all(isinstance(v, int) and v > 0 for v in k) for k in kernels):
            raise ValueError(f"video_kernels must be 3 [time, height, width] triples of positive integers, "
                             f"got {[list(k) for k in kernels]}")
        if any(size % 2 == 0 for size in (*(v for k in kernels for v in k), *self.audio_kernels)):
            raise ValueError("every kernel size must be odd, so that padding keeps the window's frames aligned")
        for name in ("video_time_bins", "video_space_bins", "audio_time_bins"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive integer{' or null' if 'time' in name else ''}, "
                                 f"got {value!r}")

    @property
    def video_bins(self) -> tuple[int, int, int]:
        """(time, height, width) bins of the video stream's last pool."""
        time = self.window if self.video_time_bins is None else self.video_time_bins
        return (time, self.video_space_bins, self.video_space_bins)

    @property
    def audio_bins(self) -> int:
        """Time bins of the audio stream's last pool (frequency is pooled to one)."""
        return self.window if self.audio_time_bins is None else self.audio_time_bins

    @property
    def mels_per_frame(self) -> int:
        return int(round(1.0 / (self.fps * MEL_HOP_SECONDS)))

    @property
    def audio_window(self) -> int:
        return self.window * self.mels_per_frame

    def to_dict(self) -> dict[str, Any]:
        return {k: _lists(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LipSyncConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown LipSyncNet config key(s): {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        return cls(**{k: _tuples(v) for k, v in values.items()})


def _lists(value: Any) -> Any:
    return [_lists(v) for v in value] if isinstance(value, (list, tuple)) else value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _head(width: int, hidden: int, embed_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(hidden, embed_dim))


class LipSyncNet(nn.Module):
    """Video stream: [B, C, T, H, W] grey mouths in [0, 1]. Audio stream: [B, 1, n_mels, T * 4] log-mel.

    Each window of mouths is standardised on its own (mean 0, std 1 over its pixels), so lighting,
    skin tone and camera gain cannot identify the speaker; only the shape and motion of the mouth
    are left to match against the sound. Both streams keep coarse time bins up to their heads, so
    the embedding says *when* the mouth opened, not only *whether*.
    """

    def __init__(self, config: LipSyncConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LipSyncConfig()
        video: list[nn.Module] = []
        widths = (config.in_channels, *config.video_channels)
        for block, kernel in enumerate(config.video_kernels):
            video += [nn.Conv3d(widths[block], widths[block + 1], kernel, stride=(1, 2, 2),
                                padding=tuple(k // 2 for k in kernel), bias=False),
                      nn.BatchNorm3d(widths[block + 1]), nn.ReLU(inplace=True)]
        self.video = nn.Sequential(*video, nn.AdaptiveAvgPool3d(config.video_bins))
        audio: list[nn.Module] = []
        widths = (1, *config.audio_channels)
        for block, (kernel, stride) in enumerate(zip(config.audio_kernels, ((2, 1), (2, 1), (2, 2)))):
            audio += [nn.Conv2d(widths[block], widths[block + 1], kernel, stride=stride, padding=kernel // 2,
                                bias=False),
                      nn.BatchNorm2d(widths[block + 1]), nn.ReLU(inplace=True)]
        self.audio = nn.Sequential(*audio, nn.AdaptiveAvgPool2d((1, config.audio_bins)))
        video_width = config.video_channels[-1] * math.prod(config.video_bins)
        self.video_head = _head(video_width, config.hidden, config.embed_dim, config.dropout)
        self.audio_head = _head(config.audio_channels[-1] * config.audio_bins, config.hidden, config.embed_dim,
                                config.dropout)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def encode_video(self, mouths: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, embed_dim], unit length."""
        flat = mouths.flatten(1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1, 1)
        std = flat.std(dim=1).clamp_min(1e-3).view(-1, 1, 1, 1, 1)
        features = self.video((mouths - mean) / std).flatten(1)
        return F.normalize(self.video_head(features), dim=1)

    def encode_audio(self, mels: torch.Tensor) -> torch.Tensor:
        """[B, 1, n_mels, frames] -> [B, embed_dim], unit length."""
        return F.normalize(self.audio_head(self.audio(mels).flatten(1)), dim=1)

    def forward(self, mouths: torch.Tensor, mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_video(mouths), self.encode_audio(mels)

    @staticmethod
    def score(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Eq. 5: minus the Euclidean distance of the unit embeddings, in [-2, 0]."""
        return -torch.linalg.vector_norm(video - audio, dim=-1)


def sync_loss(d_pos: torch.Tensor, d_neg: torch.Tensor, margin: float = 1.5, alpha: float = 0.7
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eqs. 2-4: alpha * mean(max(0, m + d_pos - d_neg)) + (1 - alpha) * mean(d_pos)."""
    rank = torch.clamp(margin + d_pos - d_neg, min=0).mean()
    align = d_pos.mean()
    return alpha * rank + (1 - alpha) * align, {"rank": rank.detach(), "align": align.detach()}


def batch_sync_ce(video: torch.Tensor, audio_pos: torch.Tensor, audio_neg: torch.Tensor, scale: float = 5.0
                  ) -> torch.Tensor:
    """Multi-way sync loss over a batch: each mouth window must pick its own audio among all audio windows.

    The candidates are every in-sync and every shifted audio window of the batch (other times, other
    utterances, the same utterance shifted), so one step sees B * 2 - 1 negatives per window instead of
    one; the idea of syncnet_trainer's multi-way loss, taken across the batch.
    """
    candidates = torch.cat([audio_pos, audio_neg])
    logits = -torch.cdist(video, candidates) * scale
    return F.cross_entropy(logits, torch.arange(len(video), device=video.device))


# ---------------------------------------------------------------------------------------------------
# audio front end


def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """HTK-style triangular filters, [n_mels, n_fft // 2 + 1]."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (mel / 2595.0) - 1.0)

    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    bank = np.zeros((n_mels, len(bins)), dtype=np.float32)
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        rising = (bins - left) / max(centre - left, 1e-9)
        falling = (right - bins) / max(right - centre, 1e-9)
        bank[m] = np.clip(np.minimum(rising, falling), 0, None)
    return bank


def log_mel(audio: np.ndarray, sample_rate: int = 16000, n_mels: int = 40) -> np.ndarray:
    """[frames, n_mels] float32 at 100 frames/s, frame k centred on k * 10 ms; standardised per bin.

    Per-utterance mean/variance normalisation removes loudness and channel differences, so only
    how the sound changes over time carries over to the network.
    """
    hop = int(round(sample_rate * MEL_HOP_SECONDS))
    win = int(round(sample_rate * MEL_WINDOW_SECONDS))
    n_fft = 1 << (win - 1).bit_length()
    signal = torch.as_tensor(np.asarray(audio, dtype=np.float32).reshape(-1))
    frames = max(1, int(math.ceil(len(signal) / hop)))
    if len(signal) < n_fft:
        signal = F.pad(signal, (0, n_fft - len(signal)))
    spec = torch.stft(signal, n_fft=n_fft, hop_length=hop, win_length=win, window=torch.hann_window(win),
                      center=True, pad_mode="constant", return_complex=True).abs() ** 2
    mel = torch.as_tensor(_mel_filterbank(sample_rate, n_fft, n_mels)) @ spec
    out = torch.log(mel + 1e-6).T[:frames].numpy()
    out = (out - out.mean(axis=0)) / (out.std(axis=0) + 1e-5)
    return np.ascontiguousarray(out, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------
# scoring a whole track


@dataclass
class SyncProfile:
    """How well one track matches the audio at each tested offset (SyncNet-style diagnostics).

    `distances[i]` is the mean window distance with the audio shifted by `offsets[i]` video frames
    (positive: the audio is taken later than the mouth); NaN where no window fits that offset.
    `best_offset` minimises it; `confidence` is the median minus that minimum (SyncNet's offset
    confidence); `sync_score(m)` is the same dip measured only within +-m frames of sync.
    """

    offsets: np.ndarray
    distances: np.ndarray
    windows: int  # windows averaged at offset 0

    @property
    def best_index(self) -> int:
        return int(np.nanargmin(self.distances))

    @property
    def best_offset(self) -> int:
        return int(self.offsets[self.best_index])

    @property
    def best_distance(self) -> float:
        return float(self.distances[self.best_index])

    @property
    def confidence(self) -> float:
        return float(np.nanmedian(self.distances) - np.nanmin(self.distances))

    def distance_at(self, offset: int) -> float:
        return float(self.distances[int(np.flatnonzero(self.offsets == offset)[0])])

    def near(self, max_offset: int) -> float:
        """The smallest distance within +-`max_offset` frames of sync (absorbs a recording's small A/V offset)."""
        inside = np.abs(self.offsets) <= max_offset
        values = self.distances[inside]
        return float(np.nanmin(values)) if np.isfinite(values).any() else 2.0

    def sync_score(self, max_offset: int) -> float:
        """How far the track's distance dips near sync below its typical distance at every tested offset.

        A face that speaks the audio is close to it at sync and far elsewhere; a face that does not is
        about as far at every offset. Measuring the dip rather than the distance itself cancels what
        makes a face's embeddings far from every audio (appearance, pose, blur), so faces unlike the
        training faces are compared fairly.
        """
        return float(np.nanmedian(self.distances) - self.near(max_offset))


SCORE_MODES = ("sync", "distance")  # `sync_score` (the default) or minus the near-sync distance (Eq. 5)


def track_score(profile: SyncProfile, max_offset: int, mode: str = "sync") -> float:
    """A track's LipSyncNet score: higher means more likely the speaker."""
    return profile.sync_score(max_offset) if mode == "sync" else -profile.near(max_offset)


def pad_track(mouths: np.ndarray, window: int) -> np.ndarray:
    """Repeat the edge frames of a track shorter than one window (a sub-window track is still scored)."""
    if len(mouths) >= window:
        return mouths
    before = (window - len(mouths)) // 2
    return np.concatenate([np.repeat(mouths[:1], before, 0), mouths,
                           np.repeat(mouths[-1:], window - len(mouths) - before, 0)])


@torch.no_grad()
def video_windows(model: LipSyncNet, mouths: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Embeddings of every `window`-frame window at stride 1: [T - window + 1, D] for [T, H, W] mouths."""
    cfg = model.config
    clip = torch.as_tensor(pad_track(np.asarray(mouths), cfg.window), dtype=torch.float32)
    if clip.max() > 1.5:  # uint8 crops
        clip = clip / 255.0
    windows = clip.unfold(0, cfg.window, 1)  # [N, H, W, T]
    windows = windows.permute(0, 3, 1, 2).unsqueeze(1)  # [N, 1, T, H, W]
    device = next(model.parameters()).device
    return torch.cat([model.encode_video(windows[i:i + batch].to(device)) for i in range(0, len(windows), batch)])


@torch.no_grad()
def audio_windows(model: LipSyncNet, mel: np.ndarray, batch: int = 256) -> torch.Tensor:
    """Embeddings of audio windows starting at every video frame k (mel frames 4k .. 4k + 19): [K, D]."""
    cfg = model.config
    step, length = cfg.mels_per_frame, cfg.audio_window
    mel_t = torch.as_tensor(mel, dtype=torch.float32)
    if len(mel_t) < length:
        mel_t = F.pad(mel_t, (0, 0, 0, length - len(mel_t)))
    windows = mel_t.unfold(0, length, step)  # [K, n_mels, length]
    windows = windows.unsqueeze(1)
    device = next(model.parameters()).device
    return torch.cat([model.encode_audio(windows[i:i + batch].to(device)) for i in range(0, len(windows), batch)])


def sync_profile(video: torch.Tensor, audio: torch.Tensor, start: int, max_offset: int) -> SyncProfile:
    """Distances of video windows against audio windows at offsets -max_offset .. max_offset.

    `video[t]` is the window of the track's frames t..t+window-1, which sit at video-frame index
    `start + t` of the audio's timeline; `audio[k]` is the audio window starting at video-frame index
    k. Each offset averages every window that has audio at that offset: on a 3 s utterance a +-15
    frame search would otherwise keep only the middle 40 % of the windows for every offset.
    """
    offsets = np.arange(-max_offset, max_offset + 1)
    positions = start + np.arange(len(video))
    distances, at_zero = [], 0
    for delta in offsets:
        ok = (positions + delta >= 0) & (positions + delta < len(audio))
        if delta == 0:
            at_zero = int(ok.sum())
        if not ok.any():
            distances.append(np.nan)
            continue
        picked = audio[torch.as_tensor(positions[ok] + delta)]
        distances.append(float(torch.linalg.vector_norm(video[torch.as_tensor(ok)] - picked, dim=1).mean()))
    distances = np.asarray(distances, dtype=np.float64)
    if not np.isfinite(distances).any():  # no overlap at all: equally far everywhere
        distances = np.full(len(offsets), 2.0)
    return SyncProfile(offsets, distances, at_zero)
