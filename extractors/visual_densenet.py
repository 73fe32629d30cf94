"""DenseNet-121 face features: the pooled 1024-d penultimate activations, averaged over a face track.

No pretrained weights can be downloaded offline, so by default the network is randomly initialised
from `seed` (a fixed random feature map, reproducible across machines); `weights:` points to a local
torchvision-format state dict (`.pt`/`.pth` read with `weights_only=True`, or `.safetensors`) for
users who have one. `project_to: D` applies a fixed seeded Gaussian projection to D dimensions.
`input: full_frame` reads whole video frames instead of face crops (corpora without usable faces);
`sequence: true` also keeps the per-frame vectors ([frames, D]) the utterance vector averages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import problem, setting
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

FEATURE_DIM = 1024
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Checkpoints from old torchvision name dense-layer parts `norm.1`; today's modules say `norm1`.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def sample_indices(count: int, wanted: int) -> np.ndarray:
    """`wanted` indices spread evenly over `count` items (all of them when there are fewer)."""
    if count <= wanted:
        return np.arange(count)
    return np.linspace(0, count - 1, num=wanted).round().astype(int)


def read_state_dict(path: str) -> dict[str, Any]:
    """Tensors only: safetensors, or torch.load with weights_only=True (no pickle code execution)."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state: Any = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"expected a state dict, found {type(state).__name__}")
    clean = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        match = _LEGACY_KEY.match(key)
        clean[match.group(1) + match.group(2) if match else key] = value
    return clean


def _weights_problem(value: Any) -> str | None:
    """`weights:` is null or an existing state-dict file."""
    wrong = problem(value, str | None, {"non_empty": True})
    if wrong is None and value is not None and not Path(value).is_file():
        return f"state-dict file {value!r} not found"
    return wrong


@dataclass(frozen=True)
class DenseNetConfig:
    weights: str | None = setting(None, check=_weights_problem)
    seed: int = setting(0, min=0)
    image_size: int = setting(112, min=32)
    frames: int = setting(8, min=1)
    batch_size: int = setting(32, min=1, runtime=True)
    project_to: int | None = setting(None, min=1)
    device: str = device_setting()
    input: str = setting("face", choices=tuple(VISUAL_INPUTS), omit_default=True)
    dtype: str = setting("float32", choices=DTYPES, omit_default=True)
    sequence: bool = setting(False, omit_default=True)
    max_sequence: int = setting(64, min=1, omit_default=True)


class DenseNetExtractor(Extractor):
    name = "densenet"
    modality = "visual"
    Config = DenseNetConfig

    @property
    def consumes(self) -> str:  # type: ignore[override]
        return VISUAL_INPUTS[self.settings.input]

    @property
    def dim(self) -> int:
        return int(self.settings.project_to or FEATURE_DIM)

    @property
    def frame_budget(self) -> int:
        return int(self.settings.frames)

    def weight_paths(self) -> dict[str, Path]:
        weights = self.settings.weights
        return {"weights_file": Path(weights)} if weights else {}

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        self._network()

    def _network(self) -> tuple[Any, str]:
        weights, seed = self.settings.weights, int(self.settings.seed)
        device = resolve_device(self.settings.device)
        stamp = Path(weights).stat().st_mtime_ns if weights else None
        key = {"weights": weights, "stamp": stamp, "seed": seed, "device": device, "dtype": self.settings.dtype}
        dtype = self.settings.dtype
        return cached_model("densenet121", key, lambda: (self._load(weights, seed, device, dtype), device))

    @staticmethod
    def _load(weights: str | None, seed: int, device: str, dtype: str = "float32") -> Any:
        import torch
        import torchvision

        with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
            torch.manual_seed(seed)
            model = torchvision.models.densenet121(weights=None)
        if weights:
            try:
                state = read_state_dict(weights)
                features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
                if not features:
                    raise ValueError("no 'features.*' tensors (is this a densenet121 state dict?)")
                model.features.load_state_dict(features, strict=True)
            except Exception as error:  # any unreadable or mismatched file is the user's `weights` setting
                raise ExtractorConfigError("weights", f"cannot load {weights!r} into densenet121: {error}") from error
        return model.features.eval().to(device=device, dtype=torch_dtype(dtype, device))

    def _projection(self) -> np.ndarray | None:
        size = self.settings.project_to
        if not size:
            return None
        seed = int(self.settings.seed)

        def build() -> np.ndarray:
            rng = np.random.default_rng(seed)
            return (rng.standard_normal((FEATURE_DIM, size)) / np.sqrt(size)).astype(np.float32)

        return cached_model("densenet-projection", {"seed": seed, "size": size}, build)

    # -- work ----------------------------------------------------------------------------------

    def check(self, item: FramesItem) -> None:
        check_frames(item)

    def _prepare(self, frame: np.ndarray) -> Any:
        import torch
        import torch.nn.functional as F

        size = int(self.settings.image_size)
        image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div_(255.0).unsqueeze(0)
        if image.shape[-2:] != (size, size):
            image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return ((image - mean) / std)[0]

    def extract(self, items: Sequence[FramesItem]) -> np.ndarray:
        return self.extract_with_sequences(items)[0]

    def extract_with_sequences(self, items: Sequence[FramesItem]) -> tuple[np.ndarray, list[np.ndarray] | None]:
        import torch
        import torch.nn.functional as F

        wants = self.wants_sequence
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32), ([] if wants else None)
        network, device = self._network()
        dtype = next(network.parameters()).dtype
        images, owner = [], []
        for row, item in enumerate(items):
            self.check(item)
            for index in sample_indices(len(item.frames), int(self.settings.frames)):
                images.append(self._prepare(np.asarray(item.frames[index])))
                owner.append(row)
        pooled = []
        size = int(self.settings.batch_size)
        with torch.inference_mode():
            for start in range(0, len(images), size):
                batch = torch.stack(images[start : start + size]).to(device, dtype)
                maps = F.relu(network(batch))
                pooled.append(F.adaptive_avg_pool2d(maps, 1).flatten(1).float().cpu().numpy())
        per_image = np.concatenate(pooled)
        projection = self._projection()
        owner_index = np.asarray(owner)
        out = np.stack([per_image[owner_index == row].mean(axis=0) for row in range(len(items))]).astype(np.float32)
        out = out if projection is None else (out @ projection).astype(np.float32)
        if not wants:
            return out, None
        if projection is not None:
            per_image = per_image @ projection
        cap = int(self.settings.max_sequence)
        return out, [cap_sequence(per_image[owner_index == row], cap) for row in range(len(items))]
