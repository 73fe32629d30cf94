"""Text-only quality benchmark on the real MELD and IEMOCAP transcripts, run by the pipeline's own stages.

    python benchmarks/real_text.py [--data ../shared/data] [--out benchmarks/results] [--workdir DIR]
                                   [--corpora iemocap meld] [--models cmath,lfvd,...,mrd] [--seeds 0 1 2]
                                   [--epochs N] [--set key=value ...]

Each corpus is a params file, `benchmarks/configs/real_text_<corpus>.yaml`: its blocks (dataset,
features, models, refine, train) replace the project's in a git + DVC workspace of the project
(`benchmarks/workspace.py`; one per corpus under --workdir, which a later run may reuse: DVC reruns
only what is stale). The data are the transcript tables alone (`dataset.media: false`), so the
workspace's DAG leaves out the stages that read media, and `dvc repro` runs `prepare`, the text
feature stages, then `train@<model>` and `evaluate@<model>` for every model (`refine@mrd` and
`evaluate_refined@mrd` for MRD, whose row `mrd_text` is the refined text model, shown beside the
`context_gru` model it started from). The script tabulates `metrics/<model>/eval.json`, and adds one
baseline of its own: a no-context logistic regression on the same `text` features (C chosen on dev;
deterministic, so its seeds agree and its std is 0).

Before the final seeds, each model the file's `tune` block names is swept on dev: every combination
of its grid (`lr`, `size`: hyper-parameters set together, or any single hyper-parameter) trains with the
sweep's seeds through the `train` stage alone, and the setting with the best mean dev weighted F1 is
kept (`evaluate`, which scores test, does not run during the sweep; --no-tune skips it). Each row records
its trials and choice (`tuning`) and, from the file's `paper` block, the paper's own number and protocol.

Every neural model is selected on dev weighted F1 per seed and scored once on test; rows report
mean ± std over the seeds and the wall seconds of the model's `train` stage per epoch it trained (seeds
restored from the cache, such as the sweep's, are left out; absent when every seed was restored). Rows
are MERGED into `<out>/real_text.json` (rows of models not run are kept; each run is logged under `runs`
with its command, machine and date).
--epochs N caps every epoch budget (shared, per model, MRD) for quick runs; --set edits any params key.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # before this folder, whose pipeline.py would shadow the package

from benchmarks.workspace import (  # noqa: E402
    apply_overrides,
    prepare_workspace,
    run_measured,
    stages_run,
    write_params,
)
from pipeline.manifest import read_manifest  # noqa: E402
from pipeline.provenance import KEYS, file_inputs, provenance  # noqa: E402
from pipeline.training.metrics import aggregate_scores, classification_scores  # noqa: E402

CONFIGS = PROJECT / "benchmarks" / "configs"
CORPORA = ("iemocap", "meld")
LOGISTIC = "logistic_regression"
LOGISTIC_INPUT = "text"  # the feature key the logistic regression reads
TEXT_SUFFIX = "_text"  # a refinement's refined text model is reported as `<refine name>_text`
REPORTED = ("weighted_f1", "accuracy", "macro_f1")
C_GRID = (0.001, 0.01, 0.1, 1.0)  # logistic regression inverse regularisation, chosen on dev
# What a transcripts-only workspace leaves out of dvc.yaml: the stages that read media, and the
# features stage's dependencies on their outputs (a text feature reads only the manifest).
MEDIA_STAGES = ("demo_corpus", "cut", "faces", "lipsync_train", "speaker", "finetune_text")
MEDIA_DEPS = ("${dataset.root}", "data/cuts.parquet", "data/audio", "data/speaker_tracks")
PROTOCOL = ("best epoch (neural, MRD) or C (logistic) selected on dev weighted F1; test scored once per seed; "
            "mean ± sample std over seeds; every neural row trained and scored by the pipeline's own DVC stages")


# ---------------------------------------------------------------- params


BENCHMARK_BLOCKS = ("tune", "paper")  # blocks of a corpus file that are the benchmark's, not params


def load_config(corpus: str, data: Path) -> dict[str, Any]:
    """The corpus's params blocks, `dataset.root` resolved against the data folder (without the
    benchmark's own blocks: see `load_benchmark_blocks`)."""
    config = yaml.safe_load((CONFIGS / f"real_text_{corpus}.yaml").read_text())
    config["dataset"]["root"] = str((Path(data) / config["dataset"]["root"]).resolve())
    return {key: value for key, value in config.items() if key not in BENCHMARK_BLOCKS}


def load_benchmark_blocks(corpus: str) -> dict[str, Any]:
    """The file's `tune` block (the dev sweep) and `paper` block (each paper's own number and protocol)."""
    config = yaml.safe_load((CONFIGS / f"real_text_{corpus}.yaml").read_text())
    return {key: config.get(key) or {} for key in BENCHMARK_BLOCKS}


# ---------------------------------------------------------------- the dev sweep


def candidates(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the grid's order (the first value of each key first)."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def with_setting(params: Mapping[str, Any], model: str, setting: Mapping[str, Any]) -> dict[str, Any]:
    """`params` with one sweep setting applied to `models.<model>`: `lr` is its `train.lr`, `size` a
    mapping of hyper-parameters set together (e.g. a width and its feed-forward width), any other key
    the hyper-parameter of that name."""
    params = copy.deepcopy(dict(params))
    block = params["models"][model]
    for key, value in setting.items():
        if key == "lr":
            block["train"] = {**(block.get("train") or {}), "lr": value}
        elif key == "size":
            block.update(copy.deepcopy(dict(value)))
        else:
            block[key] = value
    return params


def tune(params: Mapping[str, Any], sweep: Mapping[str, Any], models: Sequence[str],
         dev_score: Callable[[Mapping[str, Any], str], float], log) -> tuple[dict[str, Any], dict[str, Any]]:
    """Choose each swept model's setting by its dev weighted F1 over the sweep's seeds (test unread).

    Models are tuned one after another in `models` order, each over the settings already chosen for
    the ones before it (MRD's partners are tuned before MRD refines them). Ties keep the earlier
    setting. Returns the params with every choice applied and, per model, the trials and the choice.
    """
    chosen = copy.deepcopy(dict(params))
    chosen["train"] = {**chosen["train"], "seeds": list(sweep["seeds"])}
    records: dict[str, Any] = {}
    for model in models:
        grid = (sweep.get("models") or {}).get(model)
        if not grid:
            continue
        trials = []
        for setting in candidates(grid):
            score = dev_score(with_setting(chosen, model, setting), model)
            trials.append({"setting": setting, "dev_weighted_f1": score})
            log(f"  tune {model} {setting}: dev W-F1 {score:.4f}")
        best = max(trials, key=lambda trial: trial["dev_weighted_f1"])  # max keeps the first of equals
        chosen = with_setting(chosen, model, best["setting"])
        records[model] = {"seeds": list(sweep["seeds"]), "grid": dict(grid), "trials": trials,
                          "chosen": best["setting"]}
    chosen["train"]["seeds"] = list(params["train"]["seeds"])
    return chosen, records


def corpus_params(project: Mapping[str, Any], config: Mapping[str, Any], seeds: Sequence[int] | None = None,
                  epochs: int | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The project's params with the config's blocks in place, then the command line's edits."""
    params = copy.deepcopy(dict(project))
    params.update(copy.deepcopy(dict(config)))
    if seeds:
        params["train"]["seeds"] = list(seeds)
    if epochs:
        params["train"]["epochs"] = min(params["train"]["epochs"], epochs)
        for block in [*params.get("models", {}).values(), *params.get("refine", {}).values()]:
            own = block.get("train") or {}
            if "epochs" in own:
                block["train"] = {**own, "epochs": min(own["epochs"], epochs)}
            if block.get("kind") == "mrd":
                block["epochs"] = min(block.get("epochs", epochs), epochs)
    return apply_overrides(params, overrides)


def text_only_dag(workdir: Path) -> None:
    """Rewrite the workspace's dvc.yaml without the media stages (its params are transcripts only)."""
    path = Path(workdir) / "dvc.yaml"
    dag = yaml.safe_load(path.read_text())
    for stage in MEDIA_STAGES:
        dag["stages"].pop(stage, None)
    features = dag["stages"]["features"]["do"]
    features["deps"] = [dep for dep in features["deps"] if dep not in MEDIA_DEPS]
    path.write_text(yaml.safe_dump(dag, sort_keys=False))


def row_names(params: Mapping[str, Any]) -> list[str]:
    """Every row a corpus can report: its models, the logistic baseline and each refinement's text model."""
    return [*params.get("models", {}), LOGISTIC, *(f"{name}{TEXT_SUFFIX}" for name in params.get("refine", {}))]


def wanted_rows(models: str | None, params: Mapping[str, Any]) -> list[str]:
    """The rows `--models` asks for (a refinement by its own name or its row's); all of them by default."""
    known = row_names(params)
    if models is None:
        return known
    aliases = {name: f"{name}{TEXT_SUFFIX}" for name in params.get("refine", {})}
    wanted = list(dict.fromkeys(aliases.get(m.strip(), m.strip()) for m in models.split(",") if m.strip()))
    unknown = sorted(set(wanted) - set(known))
    if not wanted or unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join([*known, *aliases])}")
    return wanted


# ---------------------------------------------------------------- running the stages


def repro(workdir: Path, stage: str, log) -> tuple[float, bool]:
    """`dvc repro <stage>`: its wall seconds, and whether the stage itself ran (rather than being current)."""
    log(f"  dvc repro {stage}")
    measured = run_measured(["dvc", "repro", stage], workdir)
    return measured.seconds, stage in stages_run(measured.output)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def reported(scores: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scores.items() if k in REPORTED}


def model_row(workdir: Path, name: str, config: Mapping[str, Any], train_seconds: float | None) -> dict[str, Any]:
    """One model's row from its `eval.json` (and `train.json`: epochs run, for the seconds per epoch)."""
    evaluation = read_json(workdir / "metrics" / name / "eval.json")
    trained = read_json(workdir / "metrics" / name / "train.json")
    epochs = {entry["seed"]: entry["epochs_run"] for entry in trained["per_seed"]}
    per_seed = [{"seed": s["seed"], "best_epoch": s["best_epoch"], "epochs_run": epochs.get(s["seed"]),
                 "dev": s["dev"], "test": s["test"]} for s in evaluation["per_seed"]]
    row = {"model": name, "config": dict(config), "test": reported(evaluation["test"]),
           "dev": reported(evaluation["dev"]), "per_seed": per_seed}
    restored = set(trained.get("restored_from_cache") or [])
    trained_epochs = sum(n for seed, n in epochs.items() if seed not in restored)
    if train_seconds is not None and trained_epochs:  # the stage's seconds over the epochs it trained
        row["seconds_per_epoch"] = train_seconds / trained_epochs
    return row


def refined_row(workdir: Path, name: str, config: Mapping[str, Any], train_seconds: float | None) -> dict[str, Any]:
    """A refinement's text model (`<name>_text`) next to the text model of the same seed it started from."""
    text = config["text"]
    evaluation = read_json(workdir / "metrics" / f"{name}{TEXT_SUFFIX}" / "eval.json")
    start = {s["seed"]: s for s in read_json(workdir / "metrics" / text / "eval.json")["per_seed"]}
    refined = {s["seed"]: s for s in read_json(workdir / "metrics" / name / "train.json")["per_seed"]}
    per_seed = []
    for scored in evaluation["per_seed"]:
        seed = scored["seed"]
        per_seed.append({"seed": seed, "best_epoch": scored["best_epoch"],
                         "epochs_run": refined[seed]["text"]["epochs_run"], "curriculum": refined[seed]["curriculum"],
                         "dev": scored["dev"], "test": scored["test"],
                         "start": {"dev": start[seed]["dev"], "test": start[seed]["test"]}})
    row = {"model": f"{name}{TEXT_SUFFIX}", "config": {"procedure": config.get("kind", "mrd"), **dict(config),
                                                       "reported": "refined text model"},
           "test": reported(evaluation["test"]), "dev": reported(evaluation["dev"]), "per_seed": per_seed,
           "start": {"model": text, "test": reported(aggregate_scores([s["start"]["test"] for s in per_seed]))}}
    if train_seconds is not None:
        row["seconds_per_epoch"] = train_seconds / max(1, sum(s["epochs_run"] for s in per_seed))
    return row


def logistic_row(workdir: Path, seeds: Sequence[int], log) -> dict[str, Any]:
    """No-context baseline on the workspace's `text` features: one utterance at a time, C chosen on dev."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from models.batch import IGNORE_INDEX
    from pipeline.training.data import load_dialogue_data

    with contextlib.chdir(workdir):  # the loader reads the workspace's manifest and feature files
        data = load_dialogue_data([LOGISTIC_INPUT])

    def split(name: str) -> tuple[np.ndarray, np.ndarray]:
        features = np.concatenate([d.features[LOGISTIC_INPUT] for d in data.split(name)])
        labels = np.concatenate([d.labels for d in data.split(name)])
        return features[labels != IGNORE_INDEX], labels[labels != IGNORE_INDEX]

    (x_train, y_train), (x_dev, y_dev), (x_test, y_test) = split("train"), split("dev"), split("test")
    per_seed = []
    for seed in seeds:
        started = time.perf_counter()
        best = None
        for c in C_GRID:
            classifier = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x_train, y_train)
            dev = classification_scores(y_dev, classifier.predict(x_dev), data.labels)
            if best is None or dev["weighted_f1"] > best[1]["weighted_f1"]:
                best = (c, dev, classifier)
        c, dev, classifier = best
        test = classification_scores(y_test, classifier.predict(x_test), data.labels)
        per_seed.append({"seed": seed, "C": c, "fit_seconds": time.perf_counter() - started, "dev": dev, "test": test})
        log(f"  {LOGISTIC} seed {seed}: C {c}, dev W-F1 {dev['weighted_f1']:.4f}, test W-F1 {test['weighted_f1']:.4f}")

    return {"model": LOGISTIC, "config": {"kind": "sklearn LogisticRegression", "C": list(C_GRID),
                                          "inputs": [LOGISTIC_INPUT]},
            "test": reported(aggregate_scores([s["test"] for s in per_seed])),
            "dev": reported(aggregate_scores([s["dev"] for s in per_seed])), "per_seed": per_seed}


def needed_models(params: Mapping[str, Any], wanted: Sequence[str]) -> list[str]:
    """The models the wanted rows train: their own, and the partners of a wanted refinement."""
    models, refine = params.get("models", {}), params.get("refine", {})
    refinements = {f"{name}{TEXT_SUFFIX}": name for name in refine}
    return [m for m in models if m in wanted or any(
        refinements.get(w) and m in (refine[refinements[w]]["multimodal"], refine[refinements[w]]["text"])
        for w in wanted)]


def workspace_dev_score(workdir: Path, log) -> Callable[[Mapping[str, Any], str], float]:
    """How a sweep scores a setting: the model's `train` stage alone in the workspace, its dev weighted F1
    (mean over the sweep's seeds) read from `train.json`; `evaluate`, which scores test, never runs."""

    def score(params: Mapping[str, Any], model: str) -> float:
        write_params(workdir, dict(params), f"real_text: tune {model}")
        repro(workdir, f"train@{model}", log)
        return float(read_json(workdir / "metrics" / model / "train.json")["dev"]["weighted_f1"]["mean"])

    return score


def run_corpus(workdir: Path, params: Mapping[str, Any], wanted: Sequence[str], log) -> list[dict[str, Any]]:
    """Train, score and tabulate the wanted rows of one corpus in its workspace, in the order asked."""
    models, refine = params.get("models", {}), params.get("refine", {})
    refinements = {f"{name}{TEXT_SUFFIX}": name for name in refine}
    needed = needed_models(params, wanted)
    keys = dict.fromkeys([*(k for m in needed for k in models[m]["inputs"]), *([LOGISTIC_INPUT] if LOGISTIC in wanted
                                                                               else [])])
    for key in keys:  # prepare runs with the first
        repro(workdir, f"features@{key}", log)
    seconds: dict[str, float | None] = {}
    for name in needed:
        took, ran = repro(workdir, f"train@{name}", log)
        seconds[name] = took if ran else None
        repro(workdir, f"evaluate@{name}", log)
    rows = []
    for name in wanted:
        if name in models:
            rows.append(model_row(workdir, name, models[name], seconds[name]))
        elif name == LOGISTIC:
            rows.append(logistic_row(workdir, params["train"]["seeds"], log))
        else:
            block = refinements[name]
            took, ran = repro(workdir, f"refine@{block}", log)
            repro(workdir, f"evaluate_refined@{block}", log)
            rows.append(refined_row(workdir, block, refine[block], took if ran else None))
        log(f"  {name}: test W-F1 {pm(rows[-1]['test']['weighted_f1'])}")
    return rows


def corpus_summary(workdir: Path, params: Mapping[str, Any], config_file: Path, overrides: Sequence[str],
                   rows: list[dict[str, Any]]) -> dict[str, Any]:
    manifest = read_manifest(Path(workdir) / "data" / "manifest.parquet")
    return {
        "labels": manifest.labels,
        "utterances": {s: int((manifest.frame["split"] == s).sum()) for s in ("train", "dev", "test")},
        "params": {"file": config_file.relative_to(PROJECT).as_posix(), "overrides": list(overrides)},
        "features": params["features"],
        "train": params["train"],
        "models": rows,
    }


# ---------------------------------------------------------------- report


def pm(stat: Mapping[str, float | None]) -> str:
    std = stat["std"] if stat["std"] is not None else float("nan")
    return f"{100 * stat['mean']:.2f} ± {100 * std:.2f}"


def table(results: Mapping[str, Mapping[str, Any]]) -> str:
    lines = [
        "| corpus | model | test W-F1 (%) | test acc (%) | dev W-F1 (%) | s / epoch |",
        "|---|---|---|---|---|---|",
    ]
    for corpus, rows in results.items():
        for row in rows["models"]:
            epoch = f"{row['seconds_per_epoch']:.2f}" if "seconds_per_epoch" in row else "n/a"
            lines.append(
                f"| {corpus} | {row['model']} | {pm(row['test']['weighted_f1'])} | "
                f"{pm(row['test']['accuracy'])} | {pm(row['dev']['weighted_f1'])} | {epoch} |"
            )
    return "\n".join(lines)


RUN_KEYS = ("commit", "dirty", "command", "date", "wall_seconds")  # what each run of a merged file keeps


def merge(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """The stored report with this run's rows replacing those of the same model (others kept), runs logged.

    A corpus's params, features and train block are this run's; `runs` keeps every run's commit,
    command and date, because the rows of a merged file may come from several of them.
    """
    if not path.exists():
        return report | {"runs": [{k: report[k] for k in RUN_KEYS if k in report}]}
    stored = json.loads(path.read_text())
    runs = stored.get("runs") or [{k: stored[k] for k in RUN_KEYS if k in stored}]
    runs.append({k: report[k] for k in RUN_KEYS if k in report} | {"models": report["models"]})
    for corpus, fresh in report["results"].items():
        old = stored.setdefault("results", {}).get(corpus)
        names = {row["model"] for row in fresh["models"]}
        kept = [row for row in (old or {}).get("models", []) if row["model"] not in names]
        stored["results"][corpus] = {**fresh, "models": kept + fresh["models"]}
    stored["runs"] = runs
    stored.update({k: report[k] for k in (*KEYS, "protocol") if k in report})
    return stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder of the per-corpus workspaces, created or reused (default: a temporary folder)")
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument("--models", default=None,
                        help="comma-separated rows to run (default: all of the corpus config's, the logistic "
                             "baseline and mrd_text); rows of other models already in the results are kept")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="override train.seeds")
    parser.add_argument("--epochs", type=int, default=None, help="cap every epoch budget (quick runs)")
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. train.patience=3")
    parser.add_argument("--no-tune", action="store_true",
                        help="skip the dev sweep of the file's `tune` block: train the file's settings as they are")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="merc-real-text-"))

    configs = {corpus: load_config(corpus, args.data) for corpus in args.corpora}
    project = yaml.safe_load((PROJECT / "params.yaml").read_text())
    plans = {corpus: corpus_params(project, config, args.seeds, args.epochs, args.set)
             for corpus, config in configs.items()}
    try:
        wanted = {corpus: wanted_rows(args.models, params) for corpus, params in plans.items()}
    except ValueError as error:
        parser.error(str(error))
    for config in configs.values():
        if not Path(config["dataset"]["root"]).is_dir():
            parser.error(f"{config['dataset']['root']} not found (pass --data pointing at the shared data folder)")
    started = time.perf_counter()
    origin = provenance(  # as of the start: the checkout may change while the run goes on
        {"corpora": args.corpora, "models": args.models, "seeds": args.seeds, "epochs": args.epochs,
         "overrides": args.set},
        file_inputs([Path(c["dataset"]["root"]) for c in configs.values()]),
        ["benchmarks/real_text.py", *(argv if argv is not None else sys.argv[1:])],
    )

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results: dict[str, dict[str, Any]] = {}
    for corpus, params in plans.items():
        space = workdir / corpus
        log(f"{corpus}: workspace {space}")
        prepare_workspace(space)
        text_only_dag(space)
        extra = load_benchmark_blocks(corpus)
        tuning: dict[str, Any] = {}
        if extra["tune"] and not args.no_tune:
            needed = needed_models(params, wanted[corpus])
            write_params(space, params, f"real_text: {corpus}")
            for key in dict.fromkeys(k for m in needed for k in params["models"][m]["inputs"]):
                repro(space, f"features@{key}", log)
            params, tuning = tune(params, extra["tune"], needed, workspace_dev_score(space, log), log)
        write_params(space, params, f"real_text: {corpus}")
        rows = run_corpus(space, params, wanted[corpus], log)
        for row in rows:
            if row["model"] in tuning:
                row["tuning"] = tuning[row["model"]]
            if row["model"] in extra["paper"]:
                row["paper"] = extra["paper"][row["model"]]
        results[corpus] = corpus_summary(space, params, CONFIGS / f"real_text_{corpus}.yaml", args.set, rows)
    report = {**origin, "wall_seconds": round(time.perf_counter() - started, 1),
              "models": sorted({name for names in wanted.values() for name in names}), "protocol": PROTOCOL,
              "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "real_text.json"
    merged = merge(path, report)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(merged, indent=2))
    os.replace(tmp, path)
    print(table(merged["results"]))
    log(f"wrote {path}; workspaces kept under {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
