"""Reading `params.yaml` and failing fast, by key name, on bad configuration.

Blocks are declared as dataclasses and checked by `core.config.parse_block`; `choice` and `positive`
check one value the same way, for code that reads a single key.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from core.config import ConfigError, problem

__all__ = ["ConfigError", "choice", "load_params", "merge_params", "positive", "section"]


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: parameters file not found (run from the project root)")
    with path.open() as handle:
        params = yaml.safe_load(handle) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return params


def merge_params(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in key by key: mappings merge, any other value replaces. How a
    paper's params file (`configs/<paper>/<corpus>.yaml`) is laid over `params.yaml`."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_params(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def section(params: Mapping[str, Any], dotted_key: str) -> Any:
    """Return `params[a][b]...` for `a.b...`, naming the first missing key on failure."""
    node: Any = params
    walked: list[str] = []
    for part in dotted_key.split("."):
        walked.append(part)
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"params.yaml: missing key '{'.'.join(walked)}'")
        node = node[part]
    return node


def choice(value: Any, key: str, allowed: Iterable[str]) -> str:
    """Check that `value` is one of `allowed`, else fail naming the key and the allowed values."""
    return _checked(value, key, str, choices=tuple(allowed))


def positive(value: Any, key: str) -> float:
    return _checked(value, key, float, positive=True)


def _checked(value: Any, key: str, kind: Any, **rules: Any) -> Any:
    detail = problem(value, kind, rules)
    if detail is not None:
        raise ConfigError.at(key, detail)
    return value
