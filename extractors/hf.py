"""Loading Hugging Face checkpoints offline, the same way for every extractor.

A `model:` value is a hub id (found only if already in the local Hugging Face cache) or a local
folder laid out like a hub snapshot; both go through `from_pretrained(..., local_files_only=True)`,
so a tiny folder built in a test takes the same path as `roberta-large` on a user's machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from extractors.base import ExtractorConfigError

T = TypeVar("T")


def local_folder(source: str) -> Path | None:
    """The folder a `model:` value names, or None for a hub id."""
    path = Path(source).expanduser()
    return path if path.is_dir() else None


def source_paths(source: str | None) -> dict[str, Path]:
    """`{"model_files": folder}` for a local folder (its content keys the caches), else nothing for a hub id."""
    folder = local_folder(source) if source else None
    return {"model_files": folder} if folder is not None else {}


def load_offline(load: Callable[[str], T], source: str, field: str = "model", what: str = "model") -> T:
    """Call `load(source)` (a `from_pretrained` with local_files_only) and turn a miss into a config
    error that names the field and says how to fix it."""
    try:
        return load(source)
    except (OSError, ValueError, KeyError) as error:
        raise ExtractorConfigError(
            field,
            f"cannot load the {what} of {source!r} offline (give a local folder or a model already in the "
            f"Hugging Face cache): {error}",
        ) from error


def auto_model(source: str, field: str = "model") -> Any:
    from transformers import AutoModel

    return load_offline(lambda s: AutoModel.from_pretrained(s, local_files_only=True), source, field)


def hidden_layers(model: Any) -> int:
    """Number of transformer layers (hidden_states has one more entry: the embeddings)."""
    return int(getattr(model.config, "num_hidden_layers", 0) or 0)
