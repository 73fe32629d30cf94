"""What every corpus adapter returns: the utterance manifest, its root, the class order, and the
rows it had to drop (with reasons) so nothing disappears silently."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.ledger import Failure


@dataclass
class CorpusManifest:
    frame: pd.DataFrame  # columns pipeline.schema.MANIFEST_COLUMNS (+ optional truth columns)
    root: Path  # media paths in `frame.media` are relative to this folder
    labels: list[str]  # class order: index i of a model's logits is labels[i]
    failures: list[Failure] = field(default_factory=list)  # stage "prepare"
    # rows left out on purpose, not failures (e.g. IEMOCAP labels outside the class set): reason -> count
    excluded: dict[str, int] = field(default_factory=dict)
