"""Ablation benchmark: each fusion-distillation model and every row of its paper's ablation table.

    python benchmarks/ablations.py [--workdir DIR] [--models kd_hierfusion mrd ...] [--set key=value ...]

Runs the real stages through DVC in a git + DVC workspace (`benchmarks/workspace.py`; nothing in your
checkout is touched; --workdir reuses one, e.g. the pipeline benchmark's, and DVC reruns only what is
stale). Every ablation row becomes a params block of its own (`models.<family>__<row>`, or
`refine.mrd__<row>` for MRD) written to the workspace's `params.yaml`; `python -m pipeline.dag` gives it
train/evaluate stages reading exactly its inputs, and `dvc repro evaluate@<row>` trains one checkpoint
per seed (selected on dev weighted F1) and scores it. A row that edits the pipeline rather than the
model block (e.g. `speaker.method: first_face`) runs as `dvc exp run -S <edit> evaluate@<row>`, so DVC
reruns the front-end stages that edit reaches and nothing else. Reported: test weighted F1 mean ± std
over the seeds, dev weighted F1, and the stages each row reran. MRD is shown beside its two input
models. Ablation rows come from each model module's docstring ("row -> params edit" lines), so the
table and the documentation cannot drift apart.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.workspace import prepare_workspace, run_measured, stages_run, write_params  # noqa: E402

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
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")  # a package or a module
    return ast.get_docstring(ast.parse(path.read_text())) or ""


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



def scores(workdir: Path, name: str) -> dict[str, Any]:
    """The scores of `metrics/<name>/eval.json` in the workspace that a benchmark row reports."""
    report = json.loads((workdir / "metrics" / name / "eval.json").read_text())
    return {
        "test_weighted_f1": report["test"]["weighted_f1"],
        "test_accuracy": report["test"]["accuracy"],
        "test_macro_f1": report["test"]["macro_f1"],
        "dev_weighted_f1": report["dev"]["weighted_f1"],
        "majority_weighted_f1": report["majority_baseline"]["weighted_f1"],
    }


def variants(family: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The full model and each ablation row of one family: its stage name, params block and pipeline edit.

    `pipeline` holds the dotted params edit of a row that changes the front end (run as a DVC
    experiment), `block` the model (or refine) block every row trains; `reason` says why a row cannot run.
    """
    if family == "mrd":
        base = copy.deepcopy(dict((params.get("refine") or {}).get("mrd") or DEMO_MRD))
        rows = parse_ablation_rows(module_docstring("pipeline.training.mrd"))
    else:
        base = full_block(params, family)
        rows = parse_ablation_rows(module_docstring(f"models.{family}"))
    stage = "evaluate_refined" if family == "mrd" else "evaluate"
    out = [{"family": family, "row": "full model", "name": family, "stage": stage, "edit": {}, "block": base,
            "pipeline": None, "reason": None}]
    for row in rows:
        entry = {"family": family, "row": row["row"], "name": f"{family}__{slug(row['row'])}", "stage": stage,
                 "edit": row["edit"], "block": None, "pipeline": None, "reason": row["reason"]}
        if row["edit"] is not None:
            dotted = {k: v for k, v in row["edit"].items() if "." in str(k)}
            if dotted and len(dotted) < len(row["edit"]):
                entry["reason"] = "mixes a pipeline edit with a model edit"
            elif dotted:
                entry.update(block=base, pipeline=dotted)
            else:
                entry["block"] = merge(base, row["edit"])
        out.append(entry)
    return out


def run_variant(workdir: Path, variant: Mapping[str, Any], log) -> dict[str, Any]:
    """Train and score one row through DVC; a failing row is reported with its error and the others go on."""
    name, family = variant["name"], variant["family"]
    entry = {"family": family, "row": variant["row"], "model": name, "edit": variant["edit"]}
    if variant["block"] is None:
        return entry | {"status": f"skipped: {variant['reason']}"}
    target = f"{variant['stage']}@{name}"
    if variant["pipeline"]:
        sets = [f"{key}={json.dumps(value)}" for key, value in variant["pipeline"].items()]
        cmd = ["dvc", "exp", "run", "--name", slug(name).replace("_", "-"),
               *(arg for edit in sets for arg in ("-S", edit)), target]
        entry["experiment"] = " ".join(cmd)
    else:
        cmd = ["dvc", "repro", target]
    log(f"[{family}] {variant['row']}: {' '.join(cmd)}")
    seconds, _, output, code, _ = run_measured(cmd, workdir, check=False)
    entry.update(seconds=round(seconds, 1), stages_run=stages_run(output))
    if code != 0:
        log(output[-4000:])
        tail = [line for line in output.splitlines() if line.strip()][-1:] or ["(no output)"]
        return entry | {"status": f"error: {tail[0].strip()}"}
    entry["scores"] = scores(workdir, name)
    if variant["stage"] == "evaluate_refined":
        entry["text_model_scores"] = scores(workdir, f"{name}_text")
    return entry | {"status": "ok"}


def mrd_inputs(workdir: Path, params: Mapping[str, Any], log) -> list[dict[str, Any]]:
    """MRD's two input models, scored as rows of their own (MRD is judged against them)."""
    refine = (params.get("refine") or {}).get("mrd") or DEMO_MRD
    rows = []
    for name in (refine["multimodal"], refine["text"]):
        variant = {"family": "mrd", "row": f"input: {name}", "name": name, "stage": "evaluate", "edit": None,
                   "block": params["models"][name], "pipeline": None, "reason": None}
        rows.append(run_variant(workdir, variant, log))
    return rows


def add_blocks(params: dict[str, Any], variants_of: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """`params` with one models (or refine) block per runnable row, so each row is a DVC stage of its own."""
    out = copy.deepcopy(params)
    for family, rows in variants_of.items():
        for variant in rows:
            if variant["block"] is None:
                continue
            section = "refine" if family == "mrd" else "models"
            out.setdefault(section, {})[variant["name"]] = copy.deepcopy(variant["block"])
            if family == "mrd":
                for name in (variant["block"]["multimodal"], variant["block"]["text"]):
                    out["models"].setdefault(name, copy.deepcopy(MRD_INPUT_BLOCKS.get(name, {})))
    return out


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for ablations.json")
    parser.add_argument("--workdir", default=None,
                        help="workspace to create or reuse (default: a temporary folder); DVC reruns what is stale")
    parser.add_argument("--models", nargs="+", default=list(FAMILIES), choices=FAMILIES, help="model families to run")
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. train.epochs=5")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="merc-ablations-"))
    params = prepare_workspace(workdir, args.set)
    seeds = list(params["train"]["seeds"])
    if len(seeds) < 3:
        parser.error(f"train.seeds: need at least 3 seeds for mean ± std, got {seeds}")
    variants_of = {family: variants(family, params) for family in args.models}
    base = add_blocks(params, variants_of)
    write_params(workdir, base, "ablation rows as params blocks")
    from pipeline.provenance import provenance

    origin = provenance(  # as of the start: the checkout may change while the run goes on
        {"train": params["train"], "models": args.models, "overrides": args.set},
        command=["benchmarks/ablations.py", *(argv if argv is not None else sys.argv[1:])],
    )

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    results: list[dict[str, Any]] = []
    for family in args.models:
        if family == "mrd":
            results.extend(mrd_inputs(workdir, base, log))
        for variant in variants_of[family]:
            if variant["pipeline"]:
                continue  # experiments last: each leaves its edit in the workspace until the next write
            results.append(run_variant(workdir, variant, log))
    for family in args.models:
        for variant in (v for v in variants_of[family] if v["pipeline"]):
            write_params(workdir, base, "ablation rows as params blocks")
            results.append(run_variant(workdir, variant, log))
    write_params(workdir, base, "ablation rows as params blocks")
    from pipeline.provenance import file_inputs

    features = sorted((workdir / "data" / "features").glob("*.parquet"))
    report = {
        **origin,
        "inputs": file_inputs([workdir / "data" / "manifest.parquet", *features], workdir),
        "seeds": seeds,
        "protocol": "each seed's checkpoint selected on dev weighted F1; test weighted F1 mean ± sample std over "
                    "seeds; every row trained and scored by its own DVC stages",
        "seconds": round(time.monotonic() - started, 1),
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablations.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten: {out / 'ablations.json'}; workspace kept at {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
