"""Self-supervised speech features from the wav2vec 2.0 family (wav2vec2, HuBERT, WavLM, data2vec).

Any hub name or local folder that `AutoModel` opens as a wav2vec2-style model works. The output is
one transformer layer (`layer: -1`, the last) or a fixed weighted average of several (`layer: [..]`
with optional `layer_weights`, uniform by default; nothing is learned), mean-pooled over the valid
frames, or kept as a frame sequence (`sequence: true`, ~50 frames/s, capped by `max_sequence`).

Inputs are normalised as the checkpoint's feature extractor says (zero mean, unit variance for most).
Utterances longer than `chunk_seconds` are split into equal chunks whose frames are pooled together
(a duration-weighted mean), so one mis-cut minute-long clip cannot exhaust memory. Models with a
layer-normalised feature encoder take padded batches with an attention mask (sorted by duration);
group-normalised ones (wav2vec2-base) normalise over the whole padded input, so they run one
utterance at a time and the numbers never depend on batch composition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import ConfigError, setting
from extractors.base import (
    DTYPES,
    BadInput,
    Extractor,
    ExtractorConfigError,
    WaveformItem,
    cached_model,
    cap_sequence,
    check_waveform,
    device_setting,
    length_batches,
    resolve_device,
    torch_dtype,
)
from extractors.hf import auto_model, hidden_layers, load_offline, source_paths


@dataclass
class _Speech:
    model: Any
    device: str
    dtype: Any
    normalize: bool
    uses_mask: bool  # layer-norm feature encoder: padded batches with an attention mask are exact
    hidden: int
    layers: int


@dataclass(frozen=True)
class Wav2Vec2Config:
    model: str = setting("facebook/wav2vec2-large-robust", non_empty=True)
    layer: int | list[int] = setting(-1, non_empty=True)
    layer_weights: Any = None  # null or one non-negative weight per layer: checked with `layer` below
    chunk_seconds: float = setting(30.0, above=0.5)
    batch_size: int = setting(8, min=1, runtime=True)
    batch_seconds: float = setting(160.0, above=0.0, runtime=True)
    device: str = device_setting()
    dtype: str = setting("float32", choices=DTYPES)
    sequence: bool = False
    max_sequence: int = setting(500, min=1)

    def __post_init__(self) -> None:
        weights = self.layer_weights
        if weights is None:
            return
        valid = isinstance(weights, list) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights
        )
        if not valid or len(weights) != len(self.layers) or sum(weights) <= 0:
            raise ConfigError.at(
                "layer_weights",
                f"must be null or {len(self.layers)} non-negative numbers (one per layer), got {weights!r}",
            )

    @property
    def layers(self) -> list[int]:
        """`layer` as a list (one integer or several)."""
        return list(self.layer) if isinstance(self.layer, list) else [self.layer]


class Wav2Vec2Extractor(Extractor):
    name = "wav2vec2"
    modality = "audio"
    consumes = "waveform"
    Config = Wav2Vec2Config

    def weight_paths(self) -> dict[str, Path]:
        return source_paths(self.settings.model)

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        self._speech()

    @property
    def dim(self) -> int:
        return self._speech().hidden

    def _speech(self) -> _Speech:
        source = str(self.settings.model)
        device = resolve_device(self.settings.device)
        key = {"source": source, "device": device, "dtype": self.settings.dtype}
        speech = cached_model("hf-speech", key, lambda: self._load(source, device))
        for layer in self.settings.layers:
            if not -(speech.layers + 1) <= layer <= speech.layers:
                raise ExtractorConfigError(
                    "layer", f"{layer} is out of range for {source!r}: it has layers 0..{speech.layers} "
                    f"(0 = input to the first transformer layer, -1 = last)"
                )
        return speech

    def _load(self, source: str, device: str) -> _Speech:
        from transformers import AutoFeatureExtractor

        model = auto_model(source)
        if not hasattr(model, "_get_feat_extract_output_lengths"):
            raise ExtractorConfigError("model", f"{source!r} is a {type(model).__name__}, not a wav2vec2-family model")
        layer_norm = getattr(model.config, "feat_extract_norm", "group") == "layer"
        try:
            processor = load_offline(lambda s: AutoFeatureExtractor.from_pretrained(s, local_files_only=True), source,
                                     what="feature extractor")
            normalize = bool(getattr(processor, "do_normalize", True))
        except ExtractorConfigError:
            normalize = True  # the wav2vec2 default when a folder has no preprocessor_config.json
        dtype = torch_dtype(self.settings.dtype, device)
        model.eval().to(device=device, dtype=dtype)
        return _Speech(model=model, device=device, dtype=dtype, normalize=normalize, uses_mask=layer_norm,
                       hidden=int(model.config.hidden_size), layers=hidden_layers(model))

    # -- inputs --------------------------------------------------------------------------------

    def frames_for(self, samples: int) -> int:
        """Encoder frames the model produces for `samples` input samples."""
        import torch

        return int(self._speech().model._get_feat_extract_output_lengths(torch.tensor(samples)))

    def check(self, item: WaveformItem) -> None:
        samples = check_waveform(item)
        if item.sample_rate != 16_000:
            raise BadInput(f"wav2vec2 needs 16 kHz audio, got {item.sample_rate} Hz")
        if self.frames_for(samples.size) < 1:
            raise BadInput(f"audio too short for wav2vec2 ({samples.size / item.sample_rate:.3f} s)")

    def chunks(self, samples: np.ndarray) -> list[np.ndarray]:
        """Equal chunks no longer than `chunk_seconds` (equal, so no tiny tail is left over)."""
        limit = int(float(self.settings.chunk_seconds) * 16_000)
        count = -(-samples.size // limit)
        return [part for part in np.array_split(samples, count)]

    def _prepare(self, samples: np.ndarray, normalize: bool) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if normalize:  # Wav2Vec2FeatureExtractor's zero-mean unit-variance normalisation
            samples = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
        return samples.astype(np.float32, copy=False)

    # -- model ---------------------------------------------------------------------------------

    def _layer_mix(self, outputs: Any) -> Any:
        layers = self.settings.layers
        if layers == [-1]:
            return outputs.last_hidden_state
        weights = self.settings.layer_weights or [1.0] * len(layers)
        total = float(sum(weights))
        mixed = None
        for layer, weight in zip(layers, weights):
            part = outputs.hidden_states[layer].float() * (float(weight) / total)
            mixed = part if mixed is None else mixed + part
        return mixed

    def extract(self, items: Sequence[WaveformItem]) -> np.ndarray:
        return self.extract_with_sequences(items)[0]

    def extract_with_sequences(self, items: Sequence[WaveformItem]) -> tuple[np.ndarray, list[np.ndarray] | None]:
        import torch

        speech = self._speech()
        wants = self.wants_sequence
        for item in items:
            self.check(item)
        pieces: list[tuple[int, np.ndarray]] = [
            (row, self._prepare(part, speech.normalize))
            for row, item in enumerate(items)
            for part in self.chunks(np.asarray(item.samples, dtype=np.float32))
        ]
        frames: list[np.ndarray | None] = [None] * len(pieces)
        lengths = [len(samples) for _, samples in pieces]
        if speech.uses_mask:
            budget = int(float(self.settings.batch_seconds) * 16_000)
            batches = length_batches(lengths, int(self.settings.batch_size), budget)
        else:
            batches = [[index] for index in range(len(pieces))]
        need_all = self.settings.layers != [-1]
        for batch in batches:
            width = max(lengths[i] for i in batch)
            values = torch.zeros((len(batch), width), dtype=torch.float32)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for k, index in enumerate(batch):
                values[k, : lengths[index]] = torch.from_numpy(pieces[index][1])
                mask[k, : lengths[index]] = 1
            inputs = {"input_values": values.to(speech.device, speech.dtype)}
            if speech.uses_mask:
                inputs["attention_mask"] = mask.to(speech.device)
            with torch.inference_mode():
                outputs = speech.model(**inputs, output_hidden_states=need_all)
                hidden = self._layer_mix(outputs).float().cpu().numpy()
            valid = speech.model._get_feat_extract_output_lengths(torch.tensor([lengths[i] for i in batch]))
            for k, index in enumerate(batch):
                frames[index] = hidden[k, : int(valid[k])]
        out = np.zeros((len(items), speech.hidden), dtype=np.float32)
        sequences: list[np.ndarray] = []
        for row in range(len(items)):
            utterance = np.concatenate([frames[i] for i, (owner, _) in enumerate(pieces) if owner == row])
            out[row] = utterance.mean(axis=0)
            if wants:
                sequences.append(cap_sequence(utterance, int(self.settings.max_sequence)))
        return out, (sequences if wants else None)
