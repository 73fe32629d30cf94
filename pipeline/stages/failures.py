"""`failures`: merge every stage's ledger into `data/failures.parquet`, the table a user reads."""

from __future__ import annotations

from typing import Any

from pipeline.ledger import merge_ledgers
from pipeline.runner import Runner


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    merged = merge_ledgers()
    by_stage = merged.groupby("stage").size().to_dict() if len(merged) else {}
    return {"failures": len(merged), "by_stage": {str(k): int(v) for k, v in by_stage.items()}}
