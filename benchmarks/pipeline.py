"""Per-stage cost of the whole pipeline on the demo corpus: seconds, utterances per second, peak memory.

Copies the project into a fresh git + DVC workspace (so nothing in your checkout is touched and no
cache is reused), then runs every stage of `dvc.yaml` in dependency order with
`dvc repro --single-item <stage>`, watching the stage's process tree for its peak resident memory.

    python benchmarks/pipeline.py [--out benchmarks/results] [--workdir /tmp/merc-bench] [--set key=value ...]

Seconds include DVC's own overhead per call (about half a second).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.workspace import measure_stages, prepare_workspace  # noqa: E402
from pipeline.provenance import provenance, write_result  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(PROJECT / "benchmarks" / "results"))
    parser.add_argument("--workdir", default=None, help="workspace to create (default: a temporary folder)")
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. dataset.demo.dialogues=10")
    options = parser.parse_args()
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="merc-bench-"))
    if workdir.exists() and any(workdir.iterdir()):
        parser.error(f"--workdir {workdir} is not empty: every stage must run from nothing to be measured")
    params = prepare_workspace(workdir, options.set)
    # as of the start: the checkout may change while the run goes on; the corpus is rendered from params
    origin = provenance(params)
    rows, utterances, total = measure_stages(workdir)
    print(f"\n{'stage':<28} {'seconds':>9} {'utt/s':>9} {'peak MiB':>9}")
    for row in rows:
        rate = "-" if row["utterances_per_second"] is None else f"{row['utterances_per_second']:.1f}"
        print(f"{row['stage']:<28} {row['seconds']:>9.1f} {rate:>9} {row['peak_rss_mib']:>9.0f}")
    print(f"{'total':<28} {total:>9.1f}   ({utterances} utterances)")
    result = {
        **origin, "benchmark": "pipeline", "utterances": utterances, "total_seconds": round(total, 1),
        "stages": rows, "overrides": options.set,
    }
    print(f"\nwritten to {write_result(options.out, 'pipeline.json', result)}; workspace kept at {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
