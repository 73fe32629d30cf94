"""`asr_lm`: a language model of this corpus's train transcripts for `merc predict`'s recogniser.

Without a transcript, `merc predict` recognises speech with PocketSphinx, whose bundled language
model knows broadcast news, not a corpus's conversations. This stage estimates a word-bigram model
(`pipeline.predict.language_model`) from the train split's transcripts only; `merc predict --asr
pocketsphinx` (and `auto`) uses it when the project has one. A text-free corpus gets none, and says so.

Outputs: `artifacts/asr_lm/words.arpa` (or `artifacts/asr_lm/none.json` with the reason) and
`metrics/asr_lm.json` (sentences, words, vocabulary, words outside the recogniser's dictionary).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from typing import Any

from core.config import parse_block, setting
from pipeline import paths
from pipeline.manifest import read_manifest
from pipeline.predict.language_model import MODEL_PATH, bigram_arpa, pocketsphinx_vocabulary
from pipeline.runner import Runner

STAGE = "asr_lm"
METRICS = paths.METRICS_DIR / "asr_lm.json"


@dataclass(frozen=True, kw_only=True)
class AsrLmConfig:
    """The `asr_lm` block: how much probability the bigrams give up to unseen word pairs."""

    discount: float = setting(0.5, above=0, below=1)


def run(params: dict[str, Any], runner: Runner | None = None, arg: str | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    config = parse_block(AsrLmConfig, params.get(STAGE) or {}, STAGE)
    frame = read_manifest().frame
    texts = frame.loc[frame.split == "train", "text"].dropna().astype(str).tolist()
    folder = MODEL_PATH.parent
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        arpa, counts = bigram_arpa(texts, pocketsphinx_vocabulary(), config.discount)
    except ValueError as error:
        metrics: dict[str, Any] = {"learned": False, "reason": f"train split: {error}"}
        (folder / "none.json").write_text(json.dumps(metrics, indent=2) + "\n")
    else:
        MODEL_PATH.write_text(arpa)
        metrics = {"learned": True, **counts}
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(metrics, indent=2) + "\n")
    return {"stage": STAGE, "seconds": round(time.perf_counter() - started, 2), **metrics}
