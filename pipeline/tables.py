"""Parquet I/O shared by every stage: atomic writes, schema metadata, feature matrices."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

META_KEY = b"merc"


def _canonical_type(kind: pa.DataType) -> pa.DataType:
    """The same type with every list's child field named `item`, Arrow's default."""
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(pa.field("item", _canonical_type(kind.value_type), kind.value_field.nullable), kind.list_size)
    if pa.types.is_large_list(kind):
        return pa.large_list(pa.field("item", _canonical_type(kind.value_type), kind.value_field.nullable))
    if pa.types.is_list(kind):
        return pa.list_(pa.field("item", _canonical_type(kind.value_type), kind.value_field.nullable))
    return kind


def canonical_schema(table: pa.Table) -> pa.Table:
    """Parquet reads list children back as `element`, fresh arrays call them `item`: one name for both,
    so a table assembled from cached parts is byte for byte the file a fresh run writes."""
    fields = [field.with_type(_canonical_type(field.type)) for field in table.schema]
    schema = pa.schema(fields, metadata=table.schema.metadata)
    return table if schema.equals(table.schema, check_metadata=True) else table.cast(schema)


def write_atomic(table: pa.Table, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a Parquet file through a temporary name so a killed process never leaves half a file."""
    path = Path(path)
    table = canonical_schema(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    if metadata is not None:
        existing = dict(table.schema.metadata or {})
        existing[META_KEY] = json.dumps(metadata, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(existing)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_frame(frame: pd.DataFrame, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
    return write_atomic(pa.Table.from_pandas(frame, preserve_index=False), path, metadata)


def read_metadata(path: str | Path) -> dict[str, Any]:
    schema = pq.read_schema(path)
    raw = (schema.metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def read_frame(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()


def vector_table(
    utt_ids: Sequence[str],
    vectors: np.ndarray,
    sequences: Sequence[np.ndarray] | None = None,
) -> pa.Table:
    """Feature rows: `utt_id`, `vector` as fixed_size_list<float32>[D], optional `sequence` [T, D'] rows."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(utt_ids) != len(vectors):
        raise ValueError(f"vectors must be [N, D] with N={len(utt_ids)}, got {vectors.shape}")
    dim = vectors.shape[1]
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    columns: dict[str, pa.Array] = {
        "utt_id": pa.array(list(utt_ids), type=pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
    }
    if sequences is not None:
        seq_type = pa.list_(pa.list_(pa.float32()))
        columns["sequence"] = pa.array([np.asarray(s, dtype=np.float32).tolist() for s in sequences], type=seq_type)
    return pa.table(columns)


def read_vectors(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Return utterance ids and the [N, D] float32 matrix, zero-copy where Arrow allows."""
    table = pq.read_table(path, columns=["utt_id", "vector"])
    utt_ids = table.column("utt_id").to_pylist()
    column = table.column("vector").combine_chunks()
    dim = column.type.list_size
    if len(column) == 0:
        return utt_ids, np.zeros((0, dim), dtype=np.float32)
    matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return utt_ids, matrix


SEQUENCE_OVERFLOW = ("truncate", "subsample")


def cap_steps(sequence: np.ndarray, max_length: int | None, overflow: str = "truncate") -> np.ndarray:
    """At most `max_length` steps of a [T, D] sequence: the first ones, or evenly spaced ones over all of it."""
    if max_length is None or len(sequence) <= max_length:
        return sequence
    if overflow == "truncate":
        return sequence[:max_length]
    if overflow == "subsample":
        return sequence[np.linspace(0, len(sequence) - 1, max_length).round().astype(np.int64)]
    raise ValueError(f"sequence overflow must be one of {', '.join(SEQUENCE_OVERFLOW)}, got {overflow!r}")


def read_sequences(
    path: str | Path, max_length: int | None = None, overflow: str = "truncate"
) -> dict[str, np.ndarray]:
    """Utterance id -> its `sequence` as float32 [T, D]; rows whose sequence is null are left out.

    Decoded from the Arrow buffers in one pass rather than through Python lists, so frame-level
    audio features of a whole corpus load in seconds. `max_length` caps T (see `cap_steps`).
    """
    table = pq.read_table(path, columns=["utt_id", "sequence"])
    utt_ids = table.column("utt_id").to_pylist()
    column = table.column("sequence").combine_chunks()
    lengths = pc.list_value_length(column).fill_null(-1).to_numpy(zero_copy_only=False)
    steps = column.flatten()
    widths = pc.list_value_length(steps).fill_null(-1).to_numpy(zero_copy_only=False)
    if widths.size and (widths != widths[0]).any():
        raise ValueError(f"{path}: the steps of the `sequence` column differ in width (or are null)")
    dim = int(widths[0]) if widths.size else 0
    values = steps.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    frames = values.reshape(len(steps), dim)
    starts = np.concatenate([[0], np.cumsum(np.maximum(lengths, 0))])
    return {
        utt: cap_steps(frames[starts[row] : starts[row] + n], max_length, overflow)
        for row, (utt, n) in enumerate(zip(utt_ids, lengths))
        if n >= 0
    }


def concat_tables(tables: Sequence[pa.Table], schema: pa.Schema | None = None) -> pa.Table:
    tables = [t for t in tables if t is not None]
    if not tables:
        if schema is None:
            raise ValueError("no tables and no schema to build an empty one")
        return schema.empty_table()
    return pa.concat_tables(tables, promote_options="default")
