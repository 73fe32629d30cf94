"""Each paper's params file trains one epoch on the demo corpus, at the paper's sizes.

    python benchmarks/paper_configs.py --workspace DIR [--corpora iemocap meld] [--papers cmath,drkf,...]
                                       [--out benchmarks/results]

DIR is a finished `make demo` workspace: its manifest and feature files are read, nothing in it is
written. For each `configs/<paper>/<corpus>.yaml` the file's `models` and `refine` blocks are merged over
the workspace's params (`pipeline.config.merge_params`, as a user applies the file). Its `dataset` block
is not: the demo corpus and its labels stay. Leave-one-session-out folds become the demo's own split,
because the demo has no sessions. Each model then trains one epoch of one seed through the real train
stage (MRD's refinement one epoch too) in a scratch folder linking the workspace's manifest and features.

The table gives, per model, the stored weights, the wall seconds of the stage and the dev weighted F1
after that one epoch. One epoch proves the file builds and trains on real pipeline features; the dev
score of one epoch says nothing about the paper's numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # before this folder, whose pipeline.py would shadow the package

from pipeline import paths  # noqa: E402
from pipeline.config import load_params, merge_params  # noqa: E402
from pipeline.hooks import Hooks  # noqa: E402
from pipeline.provenance import file_inputs, git_state, provenance  # noqa: E402
from pipeline.readme_tables import paper_configs as paper_configs_table  # noqa: E402
from pipeline.runner import PlainRunner  # noqa: E402
from pipeline.stages import get_stage  # noqa: E402

CONFIGS = PROJECT / "configs"
CORPORA = ("iemocap", "meld")
APPLIED_BLOCKS = ("models", "refine")  # what of a paper file is laid over the demo's params


def demo_params(workspace_params: dict[str, Any], config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The workspace's params with the file's model blocks, one epoch of one seed each, on this CPU.

    Returns the params and the models the file trains (refinements trained after them)."""
    overlay = {key: config[key] for key in APPLIED_BLOCKS if key in config}
    params = merge_params(workspace_params, overlay)
    names = list(config.get("models") or {})
    for name in names:
        block = params["models"][name]
        block["train"] = {**(block.get("train") or {}), "epochs": 1, "patience": 1, "seeds": [0], "device": "cpu"}
        if block.get("folds") == "session":
            block["folds"] = None  # the demo has no sessions: its own train / dev / test split
    for refinement in (params.get("refine") or {}).values():
        refinement["epochs"] = 1
    return params, names


def stored_weights(folder: Path) -> int:
    """Numbers in the model's stored weights (the first seed's or fold's safetensors file)."""
    from safetensors import safe_open

    path = next(iter(sorted(folder.rglob("*.safetensors"))))
    with safe_open(str(path), "pt") as handle:
        return sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())


def dev_weighted_f1(report: dict[str, Any]) -> float:
    """Dev weighted F1 of a train stage's report; of a refinement's, its refined multimodal model's."""
    dev = report["dev"]
    if "multimodal" in dev:
        dev = dev["multimodal"]
    if "weighted_f1" not in dev:  # session folds: the folds' mean (not used on the demo, which has none)
        raise ValueError(f"no dev weighted F1 in the report of {report.get('model')}")
    return float(dev["weighted_f1"]["mean"])


def train_file(path: Path, workspace: Path, log) -> list[dict[str, Any]]:
    """Train every model of one paper file for one epoch in a scratch folder; its rows."""
    config = yaml.safe_load(path.read_text())
    params, names = demo_params(load_params(workspace / "params.yaml"), config)
    rows = []
    with tempfile.TemporaryDirectory(prefix="merc-paper-config-") as scratch, contextlib.chdir(scratch):
        Path("data").mkdir()
        os.symlink(workspace / paths.MANIFEST, paths.MANIFEST)
        os.symlink(workspace / "data" / "features", "data/features")
        stages = [("train", name) for name in names] + [("refine", r) for r in config.get("refine") or {}]
        for stage, name in stages:
            log(f"  {path.parent.name}/{path.stem}: {stage} {name}")
            started = time.perf_counter()
            get_stage(stage)(params, PlainRunner(1, hook=Hooks()), name)  # no progress bars
            seconds = time.perf_counter() - started
            report = json.loads((paths.METRICS_DIR / name / "train.json").read_text())
            rows.append({"config": f"configs/{path.parent.name}/{path.name}", "stage": stage, "model": name,
                         "kind": params["models"][name]["kind"] if stage == "train" else "mrd",
                         "weights": stored_weights(paths.MODELS_DIR / name), "seconds": round(seconds, 1),
                         "dev_weighted_f1": dev_weighted_f1(report)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True, help="a finished `make demo` workspace")
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument("--papers", default=None, help="comma-separated paper folders (default: every one)")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    workspace = args.workspace.resolve()
    if not (workspace / paths.MANIFEST).is_file() or not (workspace / "data" / "features").is_dir():
        parser.error(f"{workspace} holds no manifest and features: run `make demo` there first")
    papers = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())
    wanted = papers if args.papers is None else [p.strip() for p in args.papers.split(",") if p.strip()]
    unknown = sorted(set(wanted) - set(papers))
    if unknown:
        parser.error(f"unknown paper folder(s) {unknown}; choose from {', '.join(papers)}")
    files = [CONFIGS / paper / f"{corpus}.yaml" for paper in wanted for corpus in args.corpora]
    origin = provenance({"corpora": args.corpora, "papers": wanted},
                        file_inputs([workspace / paths.MANIFEST, *files]))

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    rows = [row for path in files for row in train_file(path, workspace, log)]
    report = {**origin, "wall_seconds": round(time.perf_counter() - started, 1),
              "workspace_commit": git_state(workspace)["commit"], "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "paper_configs.json").write_text(json.dumps(report, indent=2))
    print(paper_configs_table(args.out))  # the README's table, from the file just written
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
