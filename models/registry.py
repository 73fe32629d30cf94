"""Model registry: `models.<name>.kind` in params.yaml names a class registered here.

Every module in the `models` package is imported on first lookup, so adding a model is one new
file with `@register("kind")` on its class; no central list to keep in sync. A module that fails to
import does not break the others: its error is shown when nothing answers the requested kind.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

# Keys of a `models.<name>` block that describe wiring or training, not the network: never passed to a constructor.
NON_HYPER_KEYS = (
    "kind",
    "inputs",
    "loss_weights",
    "train",  # per-model overrides of the shared train block (TrainConfig.for_model)
    "sequence_inputs",  # inputs loaded with their frame/token `sequence` column (pipeline.training.data)
    "max_sequence_length",
    "sequence_overflow",
    "speaker_normalise",  # inputs centred per speaker within each dialogue (pipeline.training.data)
    "folds",  # evaluation protocol, e.g. leave-one-session-out (pipeline.training.folds)
    "fold_dev_fraction",
)
_SKIP_MODULES = {"batch", "registry"}

_REGISTRY: dict[str, type[nn.Module]] = {}
_IMPORT_ERRORS: dict[str, str] = {}
_DISCOVERED = False


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make the model buildable as `kind: <name>`."""

    def decorate(cls: type[nn.Module]) -> type[nn.Module]:
        existing = _REGISTRY.get(name)
        identity = (cls.__module__, cls.__qualname__)
        if existing is not None and (existing.__module__, existing.__qualname__) != identity:
            raise ValueError(f"model kind {name!r} is registered twice ({existing.__module__}, {cls.__module__})")
        _REGISTRY[name] = cls
        return cls

    return decorate


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    package = importlib.import_module("models")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in _SKIP_MODULES:
            continue
        try:
            importlib.import_module(f"models.{info.name}")
        except Exception as error:  # one broken model file must not hide the working ones
            _IMPORT_ERRORS[info.name] = f"{type(error).__name__}: {error}"
    _DISCOVERED = True


def registered() -> list[str]:
    """Names of every model kind that can be built."""
    _discover()
    return sorted(_REGISTRY)


def get_model_class(kind: str) -> type[nn.Module]:
    _discover()
    if kind not in _REGISTRY:
        message = f"unknown model kind {kind!r}; registered kinds: {', '.join(sorted(_REGISTRY)) or '(none)'}"
        if _IMPORT_ERRORS:
            broken = "; ".join(f"models/{name}.py: {err}" for name, err in sorted(_IMPORT_ERRORS.items()))
            message += f" (modules that failed to import: {broken})"
        raise ValueError(message)
    return _REGISTRY[kind]


def hyper_parameters(model_params: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor keywords of a `models.<name>` block (everything but kind and inputs)."""
    return {k: v for k, v in model_params.items() if k not in NON_HYPER_KEYS}


def check_hyper_parameters(kind: str, model_params: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor keywords of a block, failing by name on keys the model does not accept."""
    cls = get_model_class(kind)
    hyper = hyper_parameters(model_params)
    signature = inspect.signature(cls.__init__)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return hyper
    accepted = [
        name
        for name, p in signature.parameters.items()
        if name not in ("self", "input_dims", "num_classes")
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        raise ValueError(
            f"model kind {kind!r} does not accept hyper-parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or '(none)'}"
        )
    return hyper


def build_model(
    kind: str, model_params: Mapping[str, Any], input_dims: Mapping[str, int], num_classes: int
) -> nn.Module:
    """Construct `kind` as `cls(input_dims, num_classes, **hyper)`; unknown hyper-parameters fail by name."""
    hyper = check_hyper_parameters(kind, model_params)
    return get_model_class(kind)(dict(input_dims), int(num_classes), **hyper)
