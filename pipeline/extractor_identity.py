"""What makes an extractor's output what it is, for every cache and hash of its results.

An extractor's `output_config()` names its settings; weights read from a local file or folder can be
retrained in place under the same name, so the full content hash of each (`extractor.weight_paths()`)
joins the settings. Extractors do not hash files themselves: content hashing, remembered across runs,
belongs to the pipeline (`pipeline.file_hash`).
"""

from __future__ import annotations

from typing import Any

from extractors import Extractor
from pipeline.file_hash import tree_hash


def extractor_identity(extractor: Extractor) -> dict[str, Any]:
    """The extractor's output config plus `{name: content hash}` of each local weight file or folder."""
    weights = {name: tree_hash(path) for name, path in extractor.weight_paths().items()}
    return {**extractor.output_config(), **weights}
