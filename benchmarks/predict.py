"""`merc predict` on the demo corpus's own dialogue videos: utterance boundaries, emotions, speed.

    python benchmarks/predict.py --workspace DIR [--model fusion_gru] [--asr auto] [--dialogues N]
                                 [--out benchmarks/results]

DIR is a finished demo workspace (`make demo` in a clone), whose manifest holds the generator's
utterances. Each dialogue video is handed to `merc predict` as a new recording: no transcript, so
its utterances come from voice-activity detection and its text from the offline recogniser.

1. **VAD settings, chosen on dev.** For every setting of a small grid, the share of dev utterances
   whose start and end both lie within 0.3 s of a detected segment (audio only, no model). The best
   one is used on test; test never takes part in the choice.
2. **Test.** Every test dialogue through `merc predict` with that setting: the share of utterances
   matched within 0.3 s; emotion accuracy over all test utterances (an utterance with no matching
   segment counts as wrong) and over the matched ones, beside the same model's accuracy on the
   pipeline's own cuts of those videos (`metrics/<model>/predictions.parquet`, mean over seeds), and
   `merc predict` given the generator's transcript (its cuts and text) to separate what the
   segments and the recognised text each cost. Accuracies come with 95 % Wilson intervals.
3. **Speed.** Wall seconds over video seconds (the real-time factor) per dialogue, on this machine.

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
from pipeline.predict.outputs import write_timelines  # noqa: E402
from pipeline.predict.run import PredictOptions, predict  # noqa: E402
from pipeline.predict.segments import SAMPLE_RATE, Segment, VadSettings, speech_segments  # noqa: E402
from pipeline.provenance import provenance  # noqa: E402
from pipeline.readme_tables import RENDERERS  # noqa: E402
from pipeline.training.metrics import wilson_interval  # noqa: E402

TOLERANCE = 0.3  # seconds, at both ends
GRID = {"threshold": (0.35, 0.5, 0.65), "min_silence": (0.1, 0.15, 0.2, 0.3), "merge_gap": (0.0, 0.15)}


def matches(truth: pd.DataFrame, segments: Sequence[Segment]) -> list[int | None]:
    """Per truth utterance, the index of a segment whose both ends lie within TOLERANCE (None: none)."""
    found: list[int | None] = []
    for start, end in zip(truth.start, truth.end):
        hits = [i for i, s in enumerate(segments)
                if abs(s.start - start) <= TOLERANCE and abs(s.end - end) <= TOLERANCE]
        found.append(hits[0] if hits else None)
    return found


def tune(dialogues: dict[str, tuple[Path, pd.DataFrame]]) -> tuple[VadSettings, list[dict[str, Any]]]:
    """The grid setting matching the most dev utterances (ties: the first in grid order)."""
    audio = {d: read_audio(video, SAMPLE_RATE) for d, (video, _) in dialogues.items()}
    total = sum(len(rows) for _, rows in dialogues.values())
    rows, best, best_hits = [], VadSettings(), -1
    for values in itertools.product(*GRID.values()):
        settings = replace(VadSettings(), **dict(zip(GRID, values)))
        hits = sum(sum(m is not None for m in matches(rows, speech_segments(audio[d], settings)))
                   for d, (_, rows) in dialogues.items())
        rows.append({**dict(zip(GRID, values)), "matched": round(100 * hits / total, 1)})
        if hits > best_hits:
            best, best_hits = settings, hits
    return best, rows


def accuracy(hits: int, total: int) -> dict[str, Any]:
    interval = wilson_interval(hits, total)
    return {"accuracy": round(100 * hits / total, 1) if total else None, "n": total,
            "ci95": [round(100 * v, 1) for v in interval] if interval else None}


def evaluate(workspace: Path, model: str, dialogues: dict[str, tuple[Path, pd.DataFrame]], vad: VadSettings,
             asr: str, scratch: Path, figure: Path | None = None) -> dict[str, Any]:
    own = pd.read_parquet(workspace / "metrics" / model / "predictions.parquet")
    own = own[own.split == "test"]
    own_correct = (own.label == own.predicted).groupby(own.utt_id).mean()  # share of seeds right
    counts = {"matched": 0, "vad_right": 0, "vad_right_matched": 0, "transcript_right": 0, "own_right": 0.0}
    total, speed = 0, []
    for dialogue, (video, truth) in dialogues.items():
        started = time.perf_counter()
        blind = predict(PredictOptions(video, scratch / dialogue, model, asr=asr, project=workspace, vad=vad))
        seconds = time.perf_counter() - started
        speed.append({"dialogue": dialogue, "seconds": round(seconds, 1), "duration": blind.info["duration"],
                      "real_time_factor": round(seconds / blind.info["duration"], 2)})
        if figure is not None and not figure.exists() and not blind.frame.empty:
            figure.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(write_timelines(blind.frame, blind.labels, blind.info["duration"], scratch)[0], figure)
        segments = [Segment(r.start, r.end) for r in blind.frame.itertuples()]
        found = matches(truth, segments)
        srt = scratch / f"{dialogue}.csv"
        truth[["start", "end", "text"]].to_csv(srt, index=False)
        told = predict(PredictOptions(video, scratch / f"{dialogue}-transcript", model, transcript=srt,
                                      project=workspace, vad=vad))
        for row, index, given in zip(truth.itertuples(), found, told.frame.itertuples()):
            total += 1
            counts["own_right"] += float(own_correct.get(row.utt_id, 0.0))
            counts["transcript_right"] += int(given.emotion == row.label)
            if index is not None:
                counts["matched"] += 1
                right = int(blind.frame.emotion.iloc[index] == row.label)
                counts["vad_right"] += right
                counts["vad_right_matched"] += right
    return {
        "utterances": total,
        "boundaries_within_0.3s": accuracy(counts["matched"], total),
        "pipeline_cuts": accuracy(round(counts["own_right"]), total),
        "predict_with_transcript": accuracy(counts["transcript_right"], total),
        "predict_vad_asr": accuracy(counts["vad_right"], total),
        "predict_vad_asr_matched_only": accuracy(counts["vad_right_matched"], counts["matched"]),
        "speed": speed,
        "real_time_factor": {"mean": round(float(np.mean([s["real_time_factor"] for s in speed])), 2),
                             "max": round(float(np.max([s["real_time_factor"] for s in speed])), 2)},
        "recogniser": blind.info["segments"],
    }


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
    parser.add_argument("--asr", default="auto")
    parser.add_argument("--dialogues", type=int, default=None, help="at most this many dialogues per split")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results")
    parser.add_argument("--figure", type=Path, default=PROJECT / "docs" / "predict_timeline.png",
                        help="where the first test dialogue's first timeline is copied (README's picture)")
    options = parser.parse_args(argv)
    workspace = options.workspace.resolve()
    vad, grid = tune(split_dialogues(workspace, "dev", options.dialogues))
    test = split_dialogues(workspace, "test", options.dialogues)
    with tempfile.TemporaryDirectory(prefix="merc-predict-") as scratch:
        options.figure.unlink(missing_ok=True)
        result = evaluate(workspace, options.model, test, vad, options.asr, Path(scratch), options.figure)
    report = {**provenance({"model": options.model, "asr": options.asr, "tolerance_s": TOLERANCE}),
              "benchmark": "predict", "vad_chosen_on_dev": asdict(vad), "vad_grid_dev": grid, "test": result}
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "predict.json").write_text(json.dumps(report, indent=2) + "\n")
    print(RENDERERS["predict"](options.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
