"""TimeSformer video features on the active speaker's face track (or on full frames).

`frames` images are sampled uniformly over the utterance's track (short tracks repeat frames by the
same uniform index sampling, never random padding), resized so the short side is the model's input
size, centre-cropped and normalised with the checkpoint's image-processor statistics (0.45 / 0.225
for the Kinetics checkpoints). The output is the mean of every output token, CLS included (768-d
for timesformer-base, as the speaker-KD paper pools it); `sequence: true` also keeps one vector per
sampled frame (the mean of that frame's patch tokens). Hugging Face interpolates the time
embeddings when `frames` differs from the checkpoint's own frame count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import setting
from extractors.base import (
    DTYPES,
    VISUAL_INPUTS,
    Extractor,
    ExtractorConfigError,
    FramesItem,
    cached_model,
    cap_sequence,
    check_frames,
    device_setting,
    resolve_device,
    torch_dtype,
)
from extractors.hf import auto_model, load_offline, source_paths

DEFAULT_MEAN = (0.45, 0.45, 0.45)
DEFAULT_STD = (0.225, 0.225, 0.225)


def uniform_indices(count: int, wanted: int) -> np.ndarray:
    """`wanted` indices spread evenly over `count` frames, repeating frames when there are fewer."""
    return np.linspace(0, count - 1, num=wanted).round().astype(int)


@dataclass
class _Video:
    model: Any
    device: str
    dtype: Any
    image_size: int
    patches: int  # patch tokens per frame
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hidden: int


@dataclass(frozen=True)
class TimesformerConfig:
    model: str = setting("facebook/timesformer-base-finetuned-k400", non_empty=True)
    input: str = setting("face", choices=tuple(VISUAL_INPUTS))
    frames: int = setting(8, min=1)
    image_size: int | None = setting(None, min=16)
    batch_size: int = setting(4, min=1, runtime=True)
    device: str = device_setting()
    dtype: str = setting("float32", choices=DTYPES)
    sequence: bool = False
    max_sequence: int = setting(64, min=1)


class TimesformerExtractor(Extractor):
    name = "timesformer"
    modality = "visual"
    Config = TimesformerConfig

    @property
    def consumes(self) -> str:  # type: ignore[override]
        return VISUAL_INPUTS[self.settings.input]

    def weight_paths(self) -> dict[str, Path]:
        return source_paths(self.settings.model)

    @property
    def frame_budget(self) -> int:
        return int(self.settings.frames)

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        self._video()

    @property
    def dim(self) -> int:
        return self._video().hidden

    def _video(self) -> _Video:
        source = str(self.settings.model)
        device = resolve_device(self.settings.device)
        key = {"source": source, "device": device, "dtype": self.settings.dtype}
        video = cached_model("hf-video", key, lambda: self._load(source, device))
        wanted = self.settings.image_size
        if wanted is not None and wanted != video.image_size:
            raise ExtractorConfigError(
                "image_size", f"is {wanted} but {source!r} takes {video.image_size}x{video.image_size} frames; "
                f"use null or {video.image_size}"
            )
        return video

    def _load(self, source: str, device: str) -> _Video:
        from transformers import AutoImageProcessor

        model = auto_model(source)
        config = model.config
        if not hasattr(config, "num_frames") or not hasattr(config, "patch_size"):
            kind = type(model).__name__
            raise ExtractorConfigError("model", f"{source!r} is a {kind}, not a TimeSformer-style model")
        try:
            processor = load_offline(lambda s: AutoImageProcessor.from_pretrained(s, local_files_only=True), source,
                                     what="image processor")
            mean, std = tuple(processor.image_mean), tuple(processor.image_std)
        except ExtractorConfigError:
            mean, std = DEFAULT_MEAN, DEFAULT_STD  # the Kinetics TimeSformer statistics
        dtype = torch_dtype(self.settings.dtype, device)
        model.eval().to(device=device, dtype=dtype)
        size = int(config.image_size)
        return _Video(model=model, device=device, dtype=dtype, image_size=size,
                      patches=(size // int(config.patch_size)) ** 2, mean=mean, std=std,
                      hidden=int(config.hidden_size))

    # -- work ----------------------------------------------------------------------------------

    def check(self, item: FramesItem) -> None:
        check_frames(item)

    def _clip(self, item: FramesItem, video: _Video) -> Any:
        """[T, 3, S, S]: sampled frames, short side resized to S, centre-cropped, normalised."""
        import torch
        import torch.nn.functional as F

        size = video.image_size
        mean = torch.tensor(video.mean).view(1, 3, 1, 1)
        std = torch.tensor(video.std).view(1, 3, 1, 1)
        images = []
        for index in uniform_indices(len(item.frames), self.frame_budget):
            frame = np.ascontiguousarray(item.frames[index])
            image = torch.from_numpy(frame).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)
            height, width = image.shape[-2:]
            scale = size / min(height, width)
            resized = (max(size, round(height * scale)), max(size, round(width * scale)))
            if resized != (height, width):
                image = F.interpolate(image, size=resized, mode="bilinear", align_corners=False, antialias=True)
            top, left = (resized[0] - size) // 2, (resized[1] - size) // 2
            images.append(image[..., top : top + size, left : left + size])
        return ((torch.cat(images) - mean) / std)

    def extract(self, items: Sequence[FramesItem]) -> np.ndarray:
        return self.extract_with_sequences(items)[0]

    def extract_with_sequences(self, items: Sequence[FramesItem]) -> tuple[np.ndarray, list[np.ndarray] | None]:
        import torch

        video = self._video()
        wants = self.wants_sequence
        for item in items:
            self.check(item)
        out = np.zeros((len(items), video.hidden), dtype=np.float32)
        sequences: list[np.ndarray] = []
        size = int(self.settings.batch_size)
        for start in range(0, len(items), size):  # every clip has `frames` frames: no padding to sort away
            batch = torch.stack([self._clip(item, video) for item in items[start : start + size]])
            with torch.inference_mode():
                tokens = video.model(pixel_values=batch.to(video.device, video.dtype)).last_hidden_state.float()
            out[start : start + len(batch)] = tokens.mean(dim=1).cpu().numpy()
            if wants:
                frames = self.frame_budget
                patches = tokens[:, 1:].reshape(len(batch), video.patches, frames, video.hidden)  # patch-major
                per_frame = patches.mean(dim=1).cpu().numpy()
                sequences.extend(cap_sequence(clip, int(self.settings.max_sequence)) for clip in per_frame)
        return out, (sequences if wants else None)
