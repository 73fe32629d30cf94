"""`merc predict` on the demo corpus's own dialogue videos: utterance boundaries, emotions, speed.

    python benchmarks/predict.py --workspace DIR [--model fusion_gru] [--dialogues N]
                                 [--out benchmarks/results]

DIR is a finished demo workspace (`make demo` in a clone), whose manifest holds the generator's
utterances, whose `boundaries` stage has learned, on its train and dev dialogues, which pauses end
an utterance, and whose `asr_lm` stage has modelled the words of its train transcripts. Each
dialogue video is handed to `merc predict` as a new recording: no transcript.

1. **Boundaries (audio only, no emotion model).** The share of test utterances whose start and end
   both lie within 0.3 s of a found segment, for the learned pause model and for plain voice-activity
   detection with its setting chosen on the dev dialogues by the same measure.
2. **Text source, chosen on dev.** Every dev dialogue through `merc predict` with PocketSphinx
   decoding with the project's language model of its train transcripts (`asr_lm` stage), with its
   wheel's generic model, and with no text (the text input masked); the one with the best dev
   accuracy is the one the comparison below is judged on. Test never takes part in a choice.
3. **Test accuracy.** Every test dialogue through `merc predict` with each text source, and with the
   generator's transcript (its cuts and text), beside the same model's accuracy on the pipeline's own
   cuts of those videos (`metrics/<model>/predictions.parquet`, mean over seeds). Two readings:
   *strict*, where an utterance counts only when a found segment matches both its ends within 0.3 s
   (otherwise wrong), and *by overlap*, where each utterance takes the emotion of the found segment
   overlapping it most (what a reader of the timeline sees). 95 % Wilson intervals.
4. **Speed.** Wall seconds over video seconds (the real-time factor) per dialogue, on this machine.

Writes `benchmarks/results/predict.json` (and the README's timeline picture, `docs/predict_timeline.png`,
from the first test dialogue) and prints the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from pipeline.manifest import read_manifest  # noqa: E402
from pipeline.media import read_audio  # noqa: E402
from pipeline.predict.boundaries import MODEL_PATH, BoundaryModel, matched, utterance_segments  # noqa: E402
from pipeline.predict.outputs import write_timelines  # noqa: E402
from pipeline.predict.run import PredictOptions, predict  # noqa: E402
from pipeline.predict.segments import SAMPLE_RATE, Segment, VadSettings, speech_segments  # noqa: E402
from pipeline.provenance import provenance  # noqa: E402
from pipeline.readme_tables import RENDERERS  # noqa: E402
from pipeline.training.metrics import wilson_interval  # noqa: E402

TOLERANCE = 0.3  # seconds, at both ends
# text source -> (--asr, --asr-lm): the offline recogniser with the project's language model of its train
# transcripts (`asr_lm` stage), with the wheel's generic one, and no text at all
TEXT_SOURCES = {"pocketsphinx+corpus-lm": ("pocketsphinx", "auto"), "pocketsphinx": ("pocketsphinx", "generic"),
                "none": ("none", "generic")}
GRID = {"threshold": (0.35, 0.5, 0.65), "min_silence": (0.1, 0.15, 0.2, 0.3), "merge_gap": (0.0, 0.15)}


def vad_tune(dialogues: dict[str, tuple[Path, pd.DataFrame]]) -> tuple[VadSettings, list[dict[str, Any]]]:
    """The plain-VAD grid setting matching the most dev utterances (ties: the first in grid order)."""
    audio = {d: read_audio(video, SAMPLE_RATE) for d, (video, _) in dialogues.items()}
    total = sum(len(rows) for _, rows in dialogues.values())
    rows, best, best_hits = [], VadSettings(), -1
    for values in itertools.product(*GRID.values()):
        settings = replace(VadSettings(), **dict(zip(GRID, values)))
        hits = sum(found(truth_spans(rows), speech_segments(audio[d], settings))
                   for d, (_, rows) in dialogues.items())
        rows.append({**dict(zip(GRID, values)), "matched": round(100 * hits / total, 1)})
        if hits > best_hits:
            best, best_hits = settings, hits
    return best, rows


def truth_spans(rows: pd.DataFrame) -> list[Segment]:
    return [Segment(a, b) for a, b in zip(rows.start, rows.end)]


def found(truth: list[Segment], segments: Sequence[Segment]) -> int:
    return sum(m is not None for m in matched(truth, segments, TOLERANCE))


def boundaries(dialogues: dict[str, tuple[Path, pd.DataFrame]], vad: VadSettings, pauses: BoundaryModel
               ) -> dict[str, Any]:
    """Test utterances found by plain VAD (dev-tuned) and by the learned pause model."""
    hits = {"vad": 0, "pauses": 0}
    total = 0
    for video, rows in dialogues.values():
        samples = read_audio(video, SAMPLE_RATE)
        truth = truth_spans(rows)
        total += len(truth)
        hits["vad"] += found(truth, speech_segments(samples, vad))
        hits["pauses"] += found(truth, utterance_segments(samples, pauses))
    return {name: accuracy(count, total) for name, count in hits.items()}


def accuracy(hits: float, total: int) -> dict[str, Any]:
    hits = round(hits)
    interval = wilson_interval(hits, total)
    return {"accuracy": round(100 * hits / total, 1) if total else None, "n": total, "hits": hits,
            "ci95": [round(100 * v, 1) for v in interval] if interval else None}


def by_overlap(truth: list[Segment], frame: pd.DataFrame) -> list[str | None]:
    """Per true utterance, the emotion of the found segment overlapping it most (None: none overlaps)."""
    out: list[str | None] = []
    for utterance in truth:
        overlap = (np.minimum(frame.end, utterance.end) - np.maximum(frame.start, utterance.start)).clip(lower=0)
        out.append(frame.emotion.iloc[int(overlap.argmax())] if len(frame) and overlap.max() > 0 else None)
    return out


def blind_run(workspace: Path, model: str, dialogues: dict[str, tuple[Path, pd.DataFrame]], source: str,
              scratch: Path, figure: Path | None = None) -> dict[str, Any]:
    """`merc predict` without a transcript on every dialogue: strict and by-overlap accuracy, speed."""
    strict = overlap = total = matched_total = 0
    speed = []
    for dialogue, (video, rows) in dialogues.items():
        started = time.perf_counter()
        asr, lm = TEXT_SOURCES[source]
        result = predict(PredictOptions(video, scratch / f"{dialogue}-{source}", model, asr=asr, asr_lm=lm,
                                        project=workspace))
        seconds = time.perf_counter() - started
        speed.append({"dialogue": dialogue, "seconds": round(seconds, 1), "duration": result.info["duration"],
                      "real_time_factor": round(seconds / result.info["duration"], 2)})
        if figure is not None and not figure.exists() and not result.frame.empty:
            figure.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(write_timelines(result.frame, result.labels, result.info["duration"], scratch)[0], figure)
        truth = truth_spans(rows)
        segments = [Segment(r.start, r.end) for r in result.frame.itertuples()]
        for label, index, emotion in zip(rows.label, matched(truth, segments, TOLERANCE),
                                         by_overlap(truth, result.frame)):
            total += 1
            overlap += int(emotion == label)
            if index is not None:
                matched_total += 1
                strict += int(result.frame.emotion.iloc[index] == label)
    return {"strict": accuracy(strict, total), "by_overlap": accuracy(overlap, total),
            "strict_on_found": accuracy(strict, matched_total), "segments": result.info["segments"],
            "speed": speed,
            "real_time_factor": {"mean": round(float(np.mean([s["real_time_factor"] for s in speed])), 2),
                                 "max": round(float(np.max([s["real_time_factor"] for s in speed])), 2)}}


def reference_runs(workspace: Path, model: str, dialogues: dict[str, tuple[Path, pd.DataFrame]], scratch: Path
                   ) -> dict[str, Any]:
    """The model on the pipeline's own cuts (mean over seeds) and `merc predict` given the transcript."""
    own = pd.read_parquet(workspace / "metrics" / model / "predictions.parquet")
    own_correct = (own.label == own.predicted).groupby(own.utt_id).mean()  # share of seeds right
    own_right = told_right = 0.0
    total = 0
    for dialogue, (video, rows) in dialogues.items():
        table = scratch / f"{dialogue}.csv"
        rows[["start", "end", "text"]].to_csv(table, index=False)
        told = predict(PredictOptions(video, scratch / f"{dialogue}-transcript", model, transcript=table,
                                      project=workspace))
        for row, given in zip(rows.itertuples(), told.frame.itertuples()):
            total += 1
            own_right += float(own_correct.get(row.utt_id, 0.0))
            told_right += int(given.emotion == row.label)
    return {"pipeline_cuts": accuracy(own_right, total), "predict_with_transcript": accuracy(told_right, total)}


def split_dialogues(workspace: Path, split: str, limit: int | None) -> dict[str, tuple[Path, pd.DataFrame]]:
    manifest = read_manifest(workspace / "data" / "manifest.parquet")
    root = manifest.root if manifest.root.is_absolute() else workspace / manifest.root
    frame = manifest.frame[manifest.frame.split == split].sort_values(["dialogue_id", "turn"])
    chosen = sorted(frame.dialogue_id.unique())[:limit]
    return {d: (root / rows.media.iloc[0], rows.reset_index(drop=True))
            for d, rows in frame[frame.dialogue_id.isin(chosen)].groupby("dialogue_id")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True, help="a finished demo workspace (make demo)")
    parser.add_argument("--model", default="fusion_gru")
    parser.add_argument("--dialogues", type=int, default=None, help="at most this many dialogues per split")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results")
    parser.add_argument("--figure", type=Path, default=PROJECT / "docs" / "predict_timeline.png",
                        help="where the first test dialogue's first timeline is copied (README's picture)")
    options = parser.parse_args(argv)
    workspace = options.workspace.resolve()
    origin = provenance({"model": options.model, "tolerance_s": TOLERANCE, "text_sources": list(TEXT_SOURCES)})
    pauses = BoundaryModel.load(workspace / MODEL_PATH)
    if pauses is None:
        raise SystemExit(f"{workspace / MODEL_PATH}: the boundaries stage learned no pause model")
    dev = split_dialogues(workspace, "dev", options.dialogues)
    test = split_dialogues(workspace, "test", options.dialogues)
    vad, grid = vad_tune(dev)
    with tempfile.TemporaryDirectory(prefix="merc-predict-") as scratch:
        dev_runs = {asr: blind_run(workspace, options.model, dev, asr, Path(scratch)) for asr in TEXT_SOURCES}
        chosen = max(TEXT_SOURCES, key=lambda asr: dev_runs[asr]["strict"]["hits"])  # ties: the first
        options.figure.unlink(missing_ok=True)
        test_runs = {asr: blind_run(workspace, options.model, test, asr, Path(scratch),
                                    options.figure if asr == chosen else None) for asr in TEXT_SOURCES}
        references = reference_runs(workspace, options.model, test, Path(scratch))
    report = {**origin,  # taken before the run: the run rewrites the README's picture
              "benchmark": "predict",
              "dev": {"pause_model": pauses.dev, "vad_chosen": asdict(vad), "vad_grid": grid,
                      "text_source_chosen": chosen,
                      "accuracy": {asr: {k: run[k] for k in ("strict", "by_overlap")}
                                   for asr, run in dev_runs.items()}},
              "test": {"boundaries_within_0.3s": boundaries(test, vad, pauses), **references,
                       "speech_alone": test_runs, "text_source": chosen,
                       "real_time_factor": test_runs[chosen]["real_time_factor"]}}
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "predict.json").write_text(json.dumps(report, indent=2) + "\n")
    print(RENDERERS["predict"](options.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
