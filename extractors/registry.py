"""Extractor registry keyed by the `name` in `params.yaml` (`features.<key>.name`).

Modules are imported on first use so building the audio extractor never pays for transformers.
Adding an extractor is one class plus one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from extractors.base import MODALITIES, Extractor, ExtractorConfigError

EXTRACTORS: dict[str, str] = {
    "minilm": "extractors.text_minilm:MiniLMExtractor",
    "roberta": "extractors.text_transformer:RobertaExtractor",
    "wav2vec2": "extractors.audio_wav2vec2:Wav2Vec2Extractor",
    "timesformer": "extractors.visual_timesformer:TimesformerExtractor",
    "opensmile": "extractors.audio_opensmile:OpenSmileExtractor",
    "densenet": "extractors.visual_densenet:DenseNetExtractor",
}


def extractor_class(name: Any) -> type[Extractor]:
    """The class registered under `name`; an unknown name lists the registered ones."""
    if name not in EXTRACTORS:
        raise ExtractorConfigError("name", f"unknown extractor {name!r}; allowed values: {', '.join(EXTRACTORS)}")
    module_name, class_name = EXTRACTORS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_extractor(config: Mapping[str, Any]) -> Extractor:
    """Build an extractor from its params block (`{modality, name, ...options}`)."""
    if not isinstance(config, Mapping):
        raise ExtractorConfigError("name", f"the extractor block must be a mapping, got {type(config).__name__}")
    if "name" not in config:
        raise ExtractorConfigError("name", f"missing; allowed values: {', '.join(EXTRACTORS)}")
    modality = config.get("modality")
    if modality is not None and modality not in MODALITIES:
        raise ExtractorConfigError("modality", f"is {modality!r}; allowed values: {', '.join(MODALITIES)}")
    return extractor_class(config["name"])(config)
