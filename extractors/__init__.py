"""Feature extractors: one small class per extractor, built from its `params.yaml` block.

This package never imports `pipeline/` or `flows/`: it maps in-memory inputs to vectors, and the
`features` stage handles files, caching and failure records around it.
"""

from extractors.base import (
    BadInput,
    Extractor,
    ExtractorConfigError,
    FramesItem,
    TextItem,
    WaveformItem,
)
from extractors.registry import EXTRACTORS, build_extractor, extractor_class

__all__ = [
    "EXTRACTORS",
    "BadInput",
    "Extractor",
    "ExtractorConfigError",
    "FramesItem",
    "TextItem",
    "WaveformItem",
    "build_extractor",
    "extractor_class",
]
