"""Reading and writing the utterance manifest, the table every stage starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline import paths
from pipeline.schema import MANIFEST_COLUMNS, require_columns
from pipeline.tables import read_frame, read_metadata, write_frame


@dataclass
class Manifest:
    frame: pd.DataFrame
    root: Path  # corpus root; `frame.media` is relative to it
    labels: list[str]  # class order
    dataset: str
    media: bool = True  # False: a text-only corpus (`dataset.media: false`), no media was checked or cut

    def media_path(self, relative: str) -> Path:
        return resolve_media(self.root, relative)


class MediaOutsideRoot(ValueError):
    """A manifest path points outside the corpus root (e.g. `../../etc/passwd`)."""


def resolve_media(root: Path, relative: str) -> Path:
    """Join a manifest media path to the root, refusing paths that escape it."""
    root = Path(root).resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise MediaOutsideRoot(f"media path {relative!r} leaves the corpus root {root}")
    return candidate


def write_manifest(frame: pd.DataFrame, root: Path, labels: list[str], dataset: str,
                   path: Path = paths.MANIFEST, media: bool = True) -> Path:
    """Sorted by split, dialogue and turn; a text-only corpus is marked `media: false` in the metadata."""
    require_columns(frame, MANIFEST_COLUMNS, "manifest")
    frame = frame.sort_values(["split", "dialogue_id", "turn"], kind="stable").reset_index(drop=True)
    meta = {"dataset": dataset, "root": str(root), "labels": list(labels)} | ({} if media else {"media": False})
    return write_frame(frame, path, meta)


def read_manifest(path: Path = paths.MANIFEST) -> Manifest:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro prepare` first")
    frame = read_frame(path)
    require_columns(frame, MANIFEST_COLUMNS, str(path))
    meta = read_metadata(path)
    return Manifest(frame=frame, root=Path(meta["root"]), labels=list(meta["labels"]), dataset=meta["dataset"],
                    media=bool(meta.get("media", True)))
