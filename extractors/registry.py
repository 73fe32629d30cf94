"""Extractor registry keyed by the `name` in `params.yaml` (`features.<key>.name`).

Adding an extractor is one file in this folder: a class with a class-level `name = "<name>"` is
found by reading the sources (no import), so building the audio extractor never pays for
transformers; the module is imported on first use.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from extractors.base import MODALITIES, Extractor, ExtractorConfigError


def _declared_names(path: Path) -> dict[str, str]:
    """`name -> "module:Class"` for each class in `path` that assigns a string to `name` in its body."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name) and statement.targets[0].id == "name"
                    and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)):
                found[statement.value.value] = f"extractors.{path.stem}:{node.name}"
    return found


def _discover() -> dict[str, str]:
    registry: dict[str, str] = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        for name, target in _declared_names(path).items():
            if name in registry:
                raise RuntimeError(f"extractor name {name!r} is declared twice: {registry[name]} and {target}")
            registry[name] = target
    return registry


EXTRACTORS: dict[str, str] = dict(sorted(_discover().items()))


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
