"""Ablation benchmark: each fusion-distillation model and every row of its paper's ablation table.

    python benchmarks/ablations.py [--out benchmarks/results] [--seeds 0 1 2] [--models kd_hierfusion mrd ...]

Reads the demo corpus features that `dvc repro` (`make demo`) leaves in data/ and never writes
there: training runs in a scratch workspace whose data/ links to the project's. Every variant is
trained with the project's own train and evaluate stages (one checkpoint per seed, selected on dev
weighted F1) and reported as test weighted F1 mean ± std over the seeds. MRD is shown beside its two
input models. Ablation rows come from each model module's docstring ("row -> params edit" lines),
so the table and the documentation cannot drift apart; a row whose edit is not a plain params edit
of the model block (e.g. a front-end change) is listed as skipped with the reason.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FAMILIES = ("kd_hierfusion", "mrd", "drkf", "cmath", "lfvd")
INPUTS = ["text", "audio", "visual"]
# Demo-sized blocks for models params.yaml does not configure (the paper sizes are for 1024-d features).
DEMO_BLOCKS: dict[str, dict[str, Any]] = {
    "kd_hierfusion": {
        "teacher_dim": 32, "graph_dim": 32, "graph_heads": 4, "fusion_dim": 64, "fusion_heads": 4,
        "fusion_layers": 1, "fusion_ff": 128, "contrast_dim": 32, "teacher_epochs": 10, "teacher_lr": 0.001,
    },
}  # fmt: skip
DEMO_MRD = {"kind": "mrd", "multimodal": "fusion_gru", "text": "text_gru", "epochs": 10, "lr": 0.0003,
            "curriculum": {"r0": 0.4}}  # fmt: skip
MRD_INPUT_BLOCKS = {
    "fusion_gru": {"kind": "context_gru", "inputs": INPUTS, "hidden": 128, "dropout": 0.3},
    "text_gru": {"kind": "context_gru", "inputs": ["text"], "hidden": 128, "dropout": 0.3},
}
ROW = re.compile(r"^\s*-\s+(?P<row>.+?)\s+->\s+(?P<edit>.+?)\s*$")


def parse_ablation_rows(docstring: str) -> list[dict[str, Any]]:
    """`- <row> -> <edit>` lines after the docstring's "Ablation row" heading, as {row, edit, reason}.

    `edit` is the params edit as a mapping, or None when the text is not a plain YAML mapping (then
    `reason` says why the row cannot run here); "(defaults)" rows are the full model and are left out.
    """
    start = docstring.lower().find("ablation row")
    if start < 0:
        return []
    rows = []
    for line in docstring[start:].splitlines()[1:]:
        match = ROW.match(line)
        if not match:
            continue
        row, text = match.group("row"), re.sub(r"\s+\(.*$", "", match.group("edit")).strip()
        if text.startswith("(") or not text:
            continue
        try:
            edit = yaml.safe_load("{" + text + "}")
        except yaml.YAMLError:
            edit = None
        if not isinstance(edit, dict) or any(isinstance(v, str) and "/" in v for v in edit.values()):
            rows.append({"row": row, "edit": None, "reason": f"not a single params edit: {text}"})
        else:
            rows.append({"row": row, "edit": edit, "reason": None})
    return rows


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40]


def merge(block: Mapping[str, Any], edit: Mapping[str, Any]) -> dict[str, Any]:
    """`block` with `edit` applied; nested mappings (loss_weights, curriculum) are merged key by key."""
    out = copy.deepcopy(dict(block))
    for key, value in edit.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = copy.deepcopy(value)
    return out


def module_docstring(module: str) -> str:
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def has_sequences(inputs: list[str]) -> bool:
    """Whether every input's feature file carries the optional frame/token `sequence` column."""
    import pyarrow.parquet as pq

    return all("sequence" in pq.read_schema(ROOT / "data" / "features" / f"{k}.parquet").names for k in inputs)


def full_block(params: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The project's params block for `kind` when there is one, else a demo-sized default."""
    from models.registry import get_model_class

    for block in (params.get("models") or {}).values():
        if isinstance(block, Mapping) and block.get("kind") == kind:
            return copy.deepcopy(dict(block))
    block = {"kind": kind, "inputs": list(INPUTS), **DEMO_BLOCKS.get(kind, {})}
    if getattr(get_model_class(kind), "requires_sequences", False):
        block["sequence_inputs"] = list(INPUTS)
    return block


class Workspace:
    """A scratch project root whose data/ links to the real manifest and features (read only)."""

    def __init__(self, data: Path = ROOT / "data") -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="merc-ablations-")
        self.root = Path(self.tmp.name)
        (self.root / "data").mkdir()
        (self.root / "data" / "manifest.parquet").symlink_to(Path(data).resolve() / "manifest.parquet")
        (self.root / "data" / "features").symlink_to(Path(data).resolve() / "features")
        self.previous = Path.cwd()

    def __enter__(self) -> Workspace:
        os.chdir(self.root)
        return self

    def __exit__(self, *exc: object) -> None:
        os.chdir(self.previous)
        self.tmp.cleanup()


def scores(name: str) -> dict[str, Any]:
    from pipeline import paths

    report = json.loads((paths.METRICS_DIR / name / "eval.json").read_text())
    return {
        "test_weighted_f1": report["test"]["weighted_f1"],
        "test_accuracy": report["test"]["accuracy"],
        "test_macro_f1": report["test"]["macro_f1"],
        "dev_weighted_f1": report["dev"]["weighted_f1"],
        "majority_weighted_f1": report["majority_baseline"]["weighted_f1"],
    }


def train_and_evaluate(params: dict[str, Any], name: str, outputs: list[str] | None = None) -> dict[str, dict]:
    from pipeline.hooks import silent_hook
    from pipeline.runner import PlainRunner
    from pipeline.stages import evaluate as evaluate_stage
    from pipeline.stages import train as train_stage

    runner = PlainRunner(workers=1, hook=silent_hook)
    train_stage.run(params, runner, name)
    result = {}
    for output in outputs or [name]:
        evaluate_stage.run(params, runner, output)
        result[output] = scores(output)
    return result


def variants(family: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The full model and each ablation row of one family, with the params block each runs."""
    if family == "mrd":
        base = copy.deepcopy(dict((params.get("refine") or {}).get("mrd") or DEMO_MRD))
        rows = parse_ablation_rows(module_docstring("pipeline.training.mrd"))
    else:
        base = full_block(params, family)
        rows = parse_ablation_rows(module_docstring(f"models.{family}"))
    out = [{"family": family, "row": "full model", "edit": {}, "block": base, "reason": None, "front_end": None}]
    for row in rows:
        block, reason, front_end = None, row["reason"], None
        if row["edit"] is not None:
            dotted = [k for k in row["edit"] if "." in str(k)]
            if dotted:
                front_end = ",".join(f"{k}={v}" for k, v in row["edit"].items())
                block = base
                reason = f"pipeline edit: run `dvc repro` in a copy with {front_end}, then --front-end {front_end}=DATA"
            else:
                block = merge(base, row["edit"])
        out.append(
            {"family": family, "row": row["row"], "edit": row["edit"], "block": block, "reason": reason}
            | {"front_end": front_end}
        )
    return out


def run_family(
    family: str, params: dict[str, Any], log, front_ends: Mapping[str, Path] | None = None
) -> list[dict[str, Any]]:
    """Train and evaluate every variant of one family; `front_ends` maps a pipeline edit to its data folder."""
    from models.registry import registered

    if family != "mrd" and family not in registered():
        return [{"family": family, "row": "full model", "status": f"skipped: models/{family}.py is not present"}]
    if family != "mrd":
        from models.registry import get_model_class

        if getattr(get_model_class(family), "requires_sequences", False) and not has_sequences(
            full_block(params, family)["inputs"]
        ):
            reason = (
                "skipped: reads frame/token sequences, which the demo features lack "
                "(enable `sequence: true` in the features blocks, rerun `dvc repro`)"
            )
            return [{"family": family, "row": "full model", "status": reason}]
    results = []
    if family == "mrd":
        base_refine = dict((params.get("refine") or {}).get("mrd") or DEMO_MRD)
        for name in (base_refine["multimodal"], base_refine["text"]):
            params["models"].setdefault(name, copy.deepcopy(MRD_INPUT_BLOCKS.get(name, {})))
            log(f"[mrd] input model {name}")
            started = time.monotonic()
            row = {"family": "mrd", "row": f"input: {name}", "model": name, "edit": None}
            row.update(scores=train_and_evaluate(params, name)[name], seconds=round(time.monotonic() - started, 1))
            results.append(row | {"status": "ok"})
    for variant in variants(family, params):
        name = family if variant["row"] == "full model" else f"{family}__{slug(variant['row'])}"
        entry = {"family": family, "row": variant["row"], "model": name, "edit": variant["edit"]}
        data = (front_ends or {}).get(variant["front_end"]) if variant["front_end"] else None
        if variant["block"] is None or (variant["front_end"] and data is None):
            results.append(entry | {"status": f"skipped: {variant['reason']}"})
            continue
        if data is not None:
            entry["data"] = str(data)
        log(f"[{family}] {variant['row']}")
        started = time.monotonic()
        try:
            if family == "mrd":
                params.setdefault("refine", {})[name] = variant["block"]
                outcome = train_and_evaluate(params, name, [name, f"{name}_text"])
                entry["scores"] = outcome[name]
                entry["text_model_scores"] = outcome[f"{name}_text"]
            elif data is not None:  # the same model on features from another front end
                params["models"][name] = variant["block"]
                with Workspace(data):
                    entry["scores"] = train_and_evaluate(params, name)[name]
            else:
                params["models"][name] = variant["block"]
                entry["scores"] = train_and_evaluate(params, name)[name]
            entry["status"] = "ok"
        except Exception as error:  # one broken variant must not lose the others
            entry["status"] = f"error: {type(error).__name__}: {error}"
            log(traceback.format_exc())
        entry["seconds"] = round(time.monotonic() - started, 1)
        results.append(entry)
    return results


def fmt(stat: Mapping[str, Any] | None) -> str:
    if not stat:
        return "-"
    std = stat.get("std")
    return f"{100 * stat['mean']:.2f} ± {100 * std:.2f}" if std is not None else f"{100 * stat['mean']:.2f}"


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'model':<14} {'row':<46} {'test WF1 (%)':>16} {'dev WF1 (%)':>16}  note"]
    for r in results:
        s = r.get("scores") or {}
        note = "" if r["status"] == "ok" else r["status"]
        lines.append(
            f"{r['family']:<14} {r['row'][:46]:<46} {fmt(s.get('test_weighted_f1')):>16} "
            f"{fmt(s.get('dev_weighted_f1')):>16}  {note}"
        )
        if "text_model_scores" in r:
            t = r["text_model_scores"]
            lines.append(
                f"{'':<14} {'  (its refined text model)':<46} {fmt(t['test_weighted_f1']):>16} "
                f"{fmt(t['dev_weighted_f1']):>16}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for ablations.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: train.seeds, at least 3)")
    parser.add_argument("--models", nargs="+", default=list(FAMILIES), choices=FAMILIES, help="model families to run")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs (quick looks only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--front-end",
        action="append",
        default=[],
        metavar="EDIT=DATA",
        help="data folder of a `dvc repro` run with a pipeline edit, e.g. speaker.method=first_face=/tmp/copy/data; "
        "runs the ablation rows that need it",
    )
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    features = sorted((ROOT / "data" / "features").glob("*.parquet"))
    if not (ROOT / "data" / "manifest.parquet").exists() or not features:
        print("No demo features in data/: run `make demo` (or `dvc repro`) first.", file=sys.stderr)
        return 2
    from pipeline.config import load_params

    params = load_params(ROOT / "params.yaml")
    params.setdefault("models", {})
    seeds = args.seeds or list(params["train"]["seeds"])
    if len(seeds) < 3:
        print(f"need at least 3 seeds for mean ± std, got {seeds}", file=sys.stderr)
        return 2
    params["train"]["seeds"] = seeds
    params["train"]["device"] = params["train"].get("device", "auto")
    if args.epochs:
        params["train"]["epochs"] = args.epochs

    front_ends = {}
    for item in args.front_end:
        edit, _, folder = item.rpartition("=")
        if not edit or not (Path(folder) / "manifest.parquet").exists():
            print(f"--front-end {item!r}: expected EDIT=DATA with DATA/manifest.parquet", file=sys.stderr)
            return 2
        front_ends[edit] = Path(folder).resolve()
    from pipeline.provenance import file_inputs, provenance

    read = [ROOT / "data" / "manifest.parquet", *features]
    read += [folder / name for folder in front_ends.values() for name in ("manifest.parquet", "features")]
    origin = provenance(  # as of the start: the checkout may change while the run goes on
        {"train": params["train"], "models": args.models, "front_end": args.front_end, "threads": args.threads},
        file_inputs(read, ROOT),
        ["benchmarks/ablations.py", *(argv if argv is not None else sys.argv[1:])],
        ROOT,
    )

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    results: list[dict[str, Any]] = []
    with Workspace():
        for family in args.models:
            results.extend(run_family(family, params, log, front_ends))
    report = {
        **origin,
        "data": {"manifest": "data/manifest.parquet", "features": [f.name for f in features]},
        "seeds": seeds,
        "protocol": "each seed's checkpoint selected on dev weighted F1; test weighted F1 mean ± sample std over seeds",
        "seconds": round(time.monotonic() - started, 1),
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablations.json").write_text(json.dumps(report, indent=2))
    print(table(results))
    print(f"\nwritten: {out / 'ablations.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
