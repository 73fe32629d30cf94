"""A table assembled from cached parts is written byte for byte like a fresh one (resume changes no md5)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.tables import write_atomic


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_table_read_back_from_parquet_writes_the_same_bytes_as_the_fresh_table(tmp_path):
    vectors = np.random.default_rng(0).random((6, 4), dtype=np.float32)
    fresh = pa.table({
        "utt_id": [f"d/{i}" for i in range(6)],
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 4),
        "frames": pa.array([[1.0, 2.0]] * 6, pa.list_(pa.float32())),
    })
    write_atomic(fresh, tmp_path / "fresh.parquet", {"stage": "x"})
    part = tmp_path / "part.parquet"
    write_atomic(fresh.slice(0, 3), part, {"failures": []})
    assembled = pa.concat_tables([pq.read_table(part), fresh.slice(3)], promote_options="permissive")
    write_atomic(assembled, tmp_path / "resumed.parquet", {"stage": "x"})
    assert pq.read_table(tmp_path / "resumed.parquet").equals(pq.read_table(tmp_path / "fresh.parquet"))
    assert _md5(tmp_path / "resumed.parquet") == _md5(tmp_path / "fresh.parquet")
