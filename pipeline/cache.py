"""Per-item part files that let a killed stage resume without losing or duplicating work.

DVC deletes a stage's outputs before rerunning it, so finished work lives outside them, in
`.cache/<stage>/<key>.parquet`, keyed by the item's inputs (full content hashes of its files, from
`pipeline.file_hash`), the stage config and the stage's code fingerprint (`pipeline.code_fingerprint`:
the stage module and every project module it imports). No version string is bumped by hand: editing
any code the stage runs, or any byte of an input, gives new keys. Parts are written atomically; the
stage assembles them into its DVC output at the end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import paths
from pipeline.ledger import Failure
from pipeline.tables import read_metadata, write_atomic


def stable_hash(value: Any, length: int = 16) -> str:
    """Hash of a JSON-able value that does not depend on key order."""
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


class PartCache:
    """Stores one Parquet part (plus its failures) per work item of a stage.

    `code` is the fingerprint of the code that computes a part, normally
    `code_fingerprint(__name__)` from the stage module.
    """

    def __init__(self, stage: str, config: Mapping[str, Any], code: str, root: Path | None = None) -> None:
        self.dir = (root or paths.CACHE_DIR) / stage.replace("@", "-")
        self.config_hash = stable_hash({"config": config, "code": code})

    def key(self, item_fingerprint: Any) -> str:
        return stable_hash({"item": item_fingerprint, "config": self.config_hash}, 24)

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.parquet"

    def load(self, key: str) -> tuple[pa.Table, list[Failure]] | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            table = pq.read_table(path)
            failures = [Failure(**f) for f in read_metadata(path).get("failures", [])]
        except Exception:  # a damaged part is recomputed, never trusted
            path.unlink(missing_ok=True)
            return None
        return table, failures

    def store(self, key: str, table: pa.Table, failures: list[Failure]) -> None:
        meta = {"failures": [f.__dict__ for f in failures]}
        write_atomic(table, self.path(key), meta)

    def get_or_compute(
        self, item_fingerprint: Any, compute: Callable[[], tuple[pa.Table, list[Failure]]]
    ) -> tuple[pa.Table, list[Failure]]:
        key = self.key(item_fingerprint)
        cached = self.load(key)
        if cached is not None:
            return cached
        table, failures = compute()
        self.store(key, table, failures)
        return table, failures
