"""The GPU paths measured: every stage on the device, training at fp32 and mixed precision, every
extractor at fp32 and fp16.

    python benchmarks/gpu.py [--device cuda] [--workdir DIR] [--set key=value ...] [--only minilm,...]
                             [--out benchmarks/results]

1. **Stages.** A git + DVC workspace of the demo corpus (`benchmarks/workspace.py`) with every
   device key set to `--device` (faces, lipsync, train, each feature block); each stage runs with
   `dvc repro --single-item` in dependency order (`measure_stages`): seconds, utterances per second
   (faces and speaker throughput) and peak RSS; each `train@<model>` trains every seed of
   `train.seeds` (3 by default).
2. **Mixed precision.** `train.amp: true`, then every `train@<model>` again: seconds beside fp32.
3. **Extractors.** Every configuration of `benchmarks/extractors.py`'s suite (random weights at the
   published sizes where none are available offline) at float32 and float16 on the device, over
   the workspace's demo inputs: utterances per second, peak RSS and peak CUDA memory.

Writes `benchmarks/results/gpu.json`. On a machine without the device it says so and exits 2; with
`--device cpu` it runs the same steps on the CPU (fp16 computes in float32 there, with a warning),
which is how the script is tested where no GPU is lent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(PROJECT))

from benchmarks.extractors import MODALITY, SUITE, run_child  # noqa: E402
from benchmarks.workspace import (  # noqa: E402
    apply_overrides,
    measure_stages,
    prepare_workspace,
    read_params,
    run_measured,
    write_params,
)
from pipeline.provenance import provenance, write_result  # noqa: E402


def device_problem(device: str) -> str | None:
    """Why `device` cannot be used here (None: it can)."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device on this machine (torch.cuda.is_available() is False)"
    return None


def device_overrides(params: dict[str, Any], device: str) -> list[str]:
    """`key=value` edits that put every stage and extractor on `device`: each `device` key of a
    top-level block and of each feature block."""
    edits = []
    for name, block in params.items():
        if not isinstance(block, dict):
            continue
        if "device" in block:
            edits.append(f"{name}.device={device}")
        if name == "features":
            edits += [f"features.{key}.device={device}" for key, inner in block.items()
                      if isinstance(inner, dict) and "device" in inner]
    return edits


def train_stages(rows: list[dict[str, Any]]) -> list[str]:
    return [row["stage"] for row in rows if row["stage"].startswith("train@")]


def mixed_precision(workdir: Path, stages: list[str]) -> list[dict[str, Any]]:
    params = read_params(workdir)
    write_params(workdir, {**params, "train": {**params["train"], "amp": True}}, "train.amp=true")
    rows = []
    for stage in stages:
        seconds, peak, *_ = run_measured(["dvc", "repro", "--single-item", stage], workdir)
        rows.append({"stage": stage, "seconds": round(seconds, 2), "peak_rss_mib": round(peak, 1)})
        print(f"{stage + ' (amp)':<34} {seconds:8.1f} s", flush=True)
    return rows


def extractors(workdir: Path, device: str, only: set[str] | None, threads: int) -> list[dict[str, Any]]:
    """The extractor suite at float32 and, where an extractor has a `dtype` option, float16 (OpenSMILE
    has neither a device nor a dtype: one CPU row)."""
    from extractors import build_extractor

    with tempfile.TemporaryDirectory(prefix="merc-gpu-") as tmp:
        folders = run_child("folders", {"root": tmp, "threads": threads}, 1800)
        if "error" in folders:
            raise RuntimeError(f"cannot build the architecture folders: {folders['error']}")
        results = []
        for label, config, batch_sizes, limit in SUITE:
            if only and label not in only:
                continue
            if "@" in str(config.get("model")):
                config = {**config, "model": folders[config["model"][1:]]}
            accepted = build_extractor({"name": config["name"]}).config
            placed = {**config, "device": device} if "device" in accepted else dict(config)
            for dtype in ("float32", "float16") if "dtype" in accepted else ("float32",):
                settings = {**placed, "dtype": dtype} if "dtype" in accepted else placed
                spec = {"config": settings, "batch_size": max(batch_sizes),
                        "limit": limit, "workspace": str(workdir), "threads": threads}
                result = run_child("demo", spec, 1800)
                results.append({"extractor": label, "modality": MODALITY[config["name"]], "dtype": dtype,
                                "batch_size": max(batch_sizes), **result})
                print(f"{label:<28} {dtype:<8} {result.get('utt_per_s', result.get('error'))}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workdir", default=None, help="an empty folder for the workspace (default: temporary)")
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. dataset.demo.dialogues=10")
    parser.add_argument("--only", default=None, help="comma-separated extractor labels of the suite")
    parser.add_argument("--threads", type=int, default=4, help="CPU threads of each extractor process")
    parser.add_argument("--out", default=str(PROJECT / "benchmarks" / "results"))
    options = parser.parse_args()
    problem = device_problem(options.device)
    if problem:
        print(f"gpu benchmark not run: {problem}. Run it where a GPU is, or with --device cpu to try the steps.",
              file=sys.stderr)
        return 2
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="merc-gpu-"))
    if workdir.exists() and any(workdir.iterdir()):
        parser.error(f"--workdir {workdir} is not empty: every stage must run from nothing to be measured")
    project_params = apply_overrides(read_params(PROJECT), list(options.set))
    params = prepare_workspace(workdir, [*options.set, *device_overrides(project_params, options.device)])
    origin = provenance(params)
    started = time.perf_counter()
    rows, utterances, total = measure_stages(workdir)
    amp = mixed_precision(workdir, train_stages(rows))
    only = set(options.only.split(",")) if options.only else None
    result = {**origin, "benchmark": "gpu", "device": options.device, "utterances": utterances,
              "stages": rows, "stages_total_seconds": round(total, 1), "train_amp": amp,
              "extractors": extractors(workdir, options.device, only, options.threads),
              "seeds": params["train"]["seeds"], "wall_seconds": round(time.perf_counter() - started, 1)}
    print(f"written to {write_result(options.out, 'gpu.json', result)}; workspace kept at {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
