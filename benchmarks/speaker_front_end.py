"""Does the active-speaker choice matter downstream? Speaker methods compared on the demo corpus.

In a git + DVC workspace (`benchmarks/workspace.py`: the committed `params.yaml`, nothing in your
checkout touched; fresh, or reused with --workdir), for each `speaker.method` in turn: edit the param
and `dvc repro evaluate@<model>` (default model:
`visual_gru`, a dialogue GRU over the face features alone). DVC reruns only `speaker`,
`features@visual` and that model's train/evaluate; the other stages run once. Reports, per method,
the speaker stage's agreement with the demo generator's true speaker on utterances with two or more
faces, its reasons, and the model's test/dev weighted F1 (mean ± std over `train.seeds`, selected on
dev).

    python benchmarks/speaker_front_end.py [--methods lipsyncnet first_face ...] [--model visual_gru]
                                          [--workdir DIR] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.workspace import prepare_workspace, run_measured, stages_run, write_params  # noqa: E402
from pipeline.provenance import provenance, write_result  # noqa: E402

DEFAULT_METHODS = ["auto", "lipsyncnet", "mouth_motion", "fused", "largest_face", "first_face"]


def speaker_agreement(workdir: Path) -> dict[str, Any]:
    """Share of multi-face utterances whose chosen track is the generator's speaker, and the reasons."""
    code = ("import json; from pipeline.speaker_truth import truth_agreement; from pipeline.tables import read_frame; "
            "c = read_frame('data/speaker.parquet'); "
            "print(json.dumps({**truth_agreement(c), 'reasons': c.reason.value_counts().to_dict()}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def model_scores(workdir: Path, model: str) -> dict[str, Any]:
    result = json.loads((workdir / "metrics" / model / "eval.json").read_text())
    pick = {}
    for split in ("test", "dev"):
        for metric in ("weighted_f1", "accuracy"):
            block = result[split][metric]
            std = block.get("std")  # None with a single seed
            pick[f"{split}_{metric}"] = {"mean": round(100 * block["mean"], 1),
                                         "std": None if std is None else round(100 * std, 1)}
    return pick


def _cell(score: dict[str, Any]) -> str:
    """`mean ± std`, or the mean alone for a single seed."""
    return f"{score['mean']:.1f}" if score["std"] is None else f"{score['mean']:.1f} ± {score['std']:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    parser.add_argument("--model", default="visual_gru", help="a key of params.models to train on each front end")
    parser.add_argument("--workdir", default=None,
                        help="workspace to create or reuse (default: a temporary folder); DVC reruns what is stale")
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. train.seeds=[0,1]")
    parser.add_argument("--out", default=str(PROJECT / "benchmarks" / "results"))
    options = parser.parse_args()
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="merc-speaker-"))
    params = prepare_workspace(workdir, options.set)
    if options.model not in params["models"]:
        parser.error(f"--model {options.model!r} is not in params.models ({', '.join(params['models'])})")
    origin = provenance(params)  # as of the start; each method then edits speaker.method in the workspace

    rows = []
    for method in options.methods:
        edited = {**params, "speaker": {**params["speaker"], "method": method}}
        write_params(workdir, edited, f"speaker.method={method}")
        seconds, _, output, *_ = run_measured(["dvc", "repro", f"evaluate@{options.model}"], workdir)
        reran = stages_run(output)
        row = {"method": method, **speaker_agreement(workdir), **model_scores(workdir, options.model),
               "seconds": round(seconds, 1), "stages_run": reran}
        rows.append(row)
        print(f"{method:<14} agreement {row['truth_agreement']}  test W-F1 {_cell(row['test_weighted_f1'])}"
              f"  ({seconds:.0f} s, {len(reran)} stages)", flush=True)

    print(f"\n{'method':<14} {'agreement':>10} {'test W-F1':>14} {'test acc':>14} {'dev W-F1':>14}")
    for row in rows:
        cells = [_cell(row[k]) for k in ("test_weighted_f1", "test_accuracy", "dev_weighted_f1")]
        agreement = "-" if row["truth_agreement"] is None else f"{100 * row['truth_agreement']:.1f}%"
        print(f"{row['method']:<14} {agreement:>10} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14}")
    result = {
        **origin, "benchmark": "speaker_front_end", "model": options.model,
        "model_config": params["models"][options.model], "seeds": params["train"]["seeds"], "rows": rows,
        "overrides": options.set,
    }
    path = write_result(options.out, "speaker_front_end.json", result)
    print(f"\nwritten to {path}; workspace kept at {workdir}")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"total {time.perf_counter() - started:.0f} s")
    sys.exit(code)
