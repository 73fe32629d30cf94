"""Text-only quality benchmark on the real MELD and IEMOCAP transcripts.

    python benchmarks/real_text.py [--data ../shared/data] [--out benchmarks/results] [--seeds 0 1 2]
                                   [--models kd_hierfusion,drkf,mrd] [--corpora iemocap meld]

Every utterance is embedded once with the project's `minilm` extractor (the bundled
all-MiniLM-L6-v2, no dialogue context in the embedding) and cached under `.cache/benchmarks/`; DRKF,
which reads token sequences, gets the same extractor's token states (`sequence: true, max_sequence:
32`), cached the same way. On these features it trains the text-only configurations of CMATH, LFVD,
the speaker-KD hierarchical fusion (`kd_hierfusion`, inputs [text]: the GAT teacher and the fusion,
no students), DRKF (one token-sequence input: no cross-modal InfoNCE and no discrimination head, which
need a second modality) and the `context_gru` baseline, all through the project's trainer (best epoch
selected on dev weighted F1, test never seen during training), plus a no-context logistic regression
(C selected on dev). MRD (`pipeline.training.mrd.refine_seed`) then refines each seed's context_gru
model together with the same seed's kd_hierfusion model (the text-only stand-in for MRD's multimodal
partner) and the row `mrd_text` reports the refined text model next to the context_gru model it
started from. It prints test weighted F1 and accuracy as mean ± std over the seeds, with the wall time
per epoch, and MERGES the rows into `<out>/real_text.json` (rows of models not run are kept; each run
is logged under `runs` with its command, machine and date).

MELD: official train / dev / test, 7 classes. IEMOCAP: the standard 6-class tables, Session 5 as
test, 12 dialogues of Sessions 1-4 as dev. The neural models share one optimiser setting per corpus
(AdamW, weight decay 1e-4, gradient clipping 5, the batch size and epoch budget in `TRAIN`, capped by
`CAPPED` for the heavier models) and differ only in learning rate (`LEARNING_RATE`); the fusion models
use their paper's loss weights. kd_hierfusion's first epoch includes its teacher phase. MRD uses
its paper's loss weights, 10 epochs of Adam at 3e-4 and the reverse curriculum from in-sample
predictions (no out-of-fold retraining). The logistic regression is deterministic (lbfgs), so its
seeds agree and its std is 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

import pipeline  # noqa: E402,F401  (offline hub, no telemetry)
from extractors.base import BadInput, TextItem  # noqa: E402
from extractors.registry import build_extractor  # noqa: E402
from models.batch import IGNORE_INDEX  # noqa: E402
from models.cmath import PAPER_LOSS_WEIGHTS as CMATH_WEIGHTS  # noqa: E402
from models.lfvd import PAPER_LOSS_WEIGHTS as LFVD_WEIGHTS  # noqa: E402
from models.registry import build_model  # noqa: E402
from pipeline.cache import stable_hash  # noqa: E402
from pipeline.datasets import iemocap, meld  # noqa: E402
from pipeline.provenance import KEYS, file_inputs, provenance  # noqa: E402
from pipeline.training.data import Dialogue, DialogueData, FeatureStats, sequence_stats_key  # noqa: E402
from pipeline.training.metrics import aggregate_scores, classification_scores  # noqa: E402
from pipeline.training.mrd import CurriculumConfig, MRDConfig, PairedData, refine_seed  # noqa: E402
from pipeline.training.trainer import ModelSpec, TrainConfig, fit_seed, score_split  # noqa: E402

CORPORA = {
    "iemocap": (iemocap.load_reference_tables, list(iemocap.DEFAULT_LABELS), "iemocap"),
    "meld": (meld.load_reference_tables, list(meld.LABELS), "meld"),
}
TRAIN = {  # one optimiser setting per corpus, shared by every neural model except for the learning rate
    "iemocap": {"epochs": 60, "patience": 10, "batch_dialogues": 16},
    "meld": {"epochs": 30, "patience": 6, "batch_dialogues": 32},
}
# CMATH's paper trains its attention stack at 3e-3 (IEMOCAP); LFVD's paper rates (6.2e-5, 2.5e-4) assume
# 80-100 epochs of small batches, more than this CPU budget, so it shares the baseline's 1e-3.
# The distillation-fusion models use the demo sizes of params.yaml.
LEARNING_RATE = {"cmath": 3e-3, "lfvd": 1e-3, "context_gru": 1e-3, "kd_hierfusion": 1e-3, "drkf": 1e-3}
CAPPED = {"kd_hierfusion": (30, 6), "drkf": (20, 5)}  # (epochs, patience) ceilings for the heavier models
EXTRACTOR = {"modality": "text", "name": "minilm", "context": 0, "batch_size": 64, "device": "cpu"}
SEQUENCE = {"sequence": True, "max_sequence": 32}  # MiniLM token states of the target utterance, for DRKF
# MRD refines the context_gru text model together with the text-only kd_hierfusion model (the only partner
# without audio/visual features); paper settings otherwise, curriculum from in-sample predictions only.
MRD = {
    "epochs": 10,
    "lr": 3e-4,
    "r0": {"iemocap": 0.15, "meld": 0.4},
    "partner": "kd_hierfusion",
    "text": "context_gru",
}
NEURAL = ("cmath", "lfvd", "context_gru", "kd_hierfusion", "drkf")
KNOWN = (*NEURAL, "logistic_regression", "mrd")
REPORTED = ("weighted_f1", "accuracy", "macro_f1")
C_GRID = (0.001, 0.01, 0.1, 1.0)  # logistic regression inverse regularisation, chosen on dev


def model_blocks(corpus: str) -> dict[str, dict[str, Any]]:
    """The text-only configurations compared (same input, same trainer)."""
    return {
        "cmath": {"kind": "cmath", "inputs": ["text"], "hidden": 128, "loss_weights": CMATH_WEIGHTS[corpus]},
        "lfvd": {"kind": "lfvd", "inputs": ["text"], "hidden": 128, "loss_weights": LFVD_WEIGHTS[corpus]},
        "context_gru": {"kind": "context_gru", "inputs": ["text"], "hidden": 128, "dropout": 0.3},
        "kd_hierfusion": {
            "kind": "kd_hierfusion",
            "inputs": ["text"],
            "teacher_dim": 64,
            "graph_dim": 64,
            "graph_heads": 4,
            "fusion_dim": 64,
            "fusion_heads": 4,
            "fusion_layers": 1,
            "fusion_ff": 128,
            "contrast_dim": 32,
            "teacher_epochs": 10,
            "teacher_lr": 1e-3,
        },
        "drkf": {
            "kind": "drkf",
            "inputs": ["text"],
            "sequence_inputs": ["text"],
            "max_sequence_length": SEQUENCE["max_sequence"],
            "hidden": 64,
            "layers": 2,
            "heads": 4,
            "ff_dim": 128,
            "dropout": 0.1,
            "max_positions": SEQUENCE["max_sequence"] + 8,
            "ae_widths": [32, 16, 8],
            "ae_blocks": 5,
        },
    }


# ---------------------------------------------------------------- data


def minilm_features(frame: pd.DataFrame, cache_dir: Path, corpus: str) -> tuple[np.ndarray, np.ndarray]:
    """[N, 384] MiniLM vectors in frame order and a presence mask (empty text is absent), cached by content."""
    extractor = build_extractor(EXTRACTOR)
    key = stable_hash(
        {"texts": frame[["utt_id", "text"]].to_numpy().tolist(), "extractor": extractor.output_config()}, 20
    )
    path = cache_dir / f"{corpus}-minilm-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            return stored["vectors"], stored["present"]
    items = [TextItem(str(u), str(t), str(s)) for u, t, s in zip(frame["utt_id"], frame["text"], frame["speaker"])]
    present = np.ones(len(items), dtype=bool)
    for row, item in enumerate(items):
        try:
            extractor.check(item)
        except BadInput:
            present[row] = False
    vectors = np.zeros((len(items), extractor.dim), dtype=np.float32)
    rows = np.flatnonzero(present)
    started = time.perf_counter()
    for start in range(0, len(rows), 1024):
        chunk = rows[start : start + 1024]
        vectors[chunk] = extractor.extract([items[r] for r in chunk])
        print(
            f"  {corpus}: embedded {start + len(chunk)}/{len(rows)} utterances ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, vectors=vectors, present=present)
    os.replace(tmp, path)
    return vectors, present


def minilm_sequences(frame: pd.DataFrame, cache_dir: Path, corpus: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Presence mask and [T <= 32, 384] MiniLM token states per utterance, cached by content (float16 on disk)."""
    extractor = build_extractor(EXTRACTOR | SEQUENCE)
    key = stable_hash(
        {"texts": frame[["utt_id", "text"]].to_numpy().tolist(), "extractor": extractor.output_config()}, 20
    )
    path = cache_dir / f"{corpus}-minilm-seq-{key}.npz"
    if not path.exists():
        items = [TextItem(str(u), str(t), str(s)) for u, t, s in zip(frame["utt_id"], frame["text"], frame["speaker"])]
        present = np.ones(len(items), dtype=bool)
        for row, item in enumerate(items):
            try:
                extractor.check(item)
            except BadInput:
                present[row] = False
        steps: list[np.ndarray] = [np.zeros((0, extractor.dim), np.float32)] * len(items)
        rows = np.flatnonzero(present)
        started = time.perf_counter()
        for start in range(0, len(rows), 1024):
            chunk = rows[start : start + 1024]
            _, found = extractor.extract_with_sequences([items[r] for r in chunk])
            for r, seq in zip(chunk, found):
                steps[r] = seq
            print(
                f"  {corpus}: token states of {start + len(chunk)}/{len(rows)} utterances "
                f"({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
            )
        lengths = np.array([len(x) for x in steps], dtype=np.int64)
        present &= lengths > 0
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, present=present, lengths=lengths, steps=np.concatenate(steps).astype(np.float16))
        os.replace(tmp, path)
    with np.load(path, allow_pickle=False) as stored:
        present, lengths, flat = stored["present"], stored["lengths"], stored["steps"].astype(np.float32)
    return present, np.split(flat, np.cumsum(lengths)[:-1])


def dialogue_data(
    frame: pd.DataFrame,
    labels: list[str],
    vectors: np.ndarray,
    present: np.ndarray,
    steps: list[np.ndarray] | None = None,
) -> DialogueData:
    """Dialogues in turn order with train-standardised features, as the trainer's data loader builds them.

    With `steps` (token states per utterance) the dialogues also carry the text as a sequence input,
    standardised per dimension over the training split's steps, as for a `sequence_inputs` model.
    """
    frame = frame.reset_index(drop=True)
    train = (frame["split"] == "train").to_numpy() & present
    stats = FeatureStats.fit(vectors[train])
    standardised = np.where(present[:, None], (vectors - stats.mean) / stats.std, 0.0).astype(np.float32)
    all_stats = {"text": stats}
    if steps is not None:
        step_stats = FeatureStats.fit_steps([s for s, t in zip(steps, train) if t], vectors.shape[1])
        steps = [
            ((s - step_stats.mean) / step_stats.std).astype(np.float32) if p else s for s, p in zip(steps, present)
        ]
        all_stats[sequence_stats_key("text")] = step_stats
    index = {label: i for i, label in enumerate(labels)}
    targets = np.array([index.get(v, IGNORE_INDEX) for v in frame["label"]], dtype=np.int64)
    splits: dict[str, list[Dialogue]] = {}
    for (split, dialogue_id), group in frame.groupby(["split", "dialogue_id"], sort=True):
        rows = group.sort_values("turn").index.to_numpy()
        splits.setdefault(str(split), []).append(
            Dialogue(
                dialogue_id=str(dialogue_id),
                split=str(split),
                utt_ids=frame.loc[rows, "utt_id"].astype(str).tolist(),
                speakers=pd.factorize(frame.loc[rows, "speaker"].astype(str))[0].astype(np.int64),
                labels=targets[rows],
                features={"text": standardised[rows]},
                present={"text": present[rows]},
                sequences={} if steps is None else {"text": [steps[r] for r in rows]},
            )
        )
    return DialogueData(
        inputs=["text"],
        labels=labels,
        input_dims={"text": int(vectors.shape[1])},
        splits=splits,
        stats=all_stats,
        missing={"text": int((~present).sum())},
        unlabeled=int((targets == IGNORE_INDEX).sum()),
        sequence_inputs=[] if steps is None else ["text"],
    )


# ---------------------------------------------------------------- models


def run_neural(
    name: str, block: dict[str, Any], data: DialogueData, cfg: TrainConfig, states: dict[int, dict] | None = None
) -> dict[str, Any]:
    """Train every seed through the project's trainer; score the dev-selected weights on test.

    `states`, when given, receives each seed's dev-selected weights (for MRD to refine).
    """
    spec = ModelSpec.from_params({"models": {name: block}}, name)
    per_seed = []
    for seed in cfg.seeds:
        stamps = [time.perf_counter()]
        result = fit_seed(spec, data, cfg, seed, on_epoch=lambda _s, _r, at=stamps: at.append(time.perf_counter()))
        if states is not None:
            states[seed] = result.state
        model = build_model(spec.kind, spec.params, data.input_dims, len(data.labels))
        model.load_state_dict(result.state)
        test = score_split(model, data, "test", cfg.batch_dialogues, "cpu")
        seconds = float(np.mean(np.diff(stamps)))
        per_seed.append(
            {
                "seed": seed,
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                "seconds_per_epoch": seconds,
                "dev": result.dev,
                "test": test,
            }
        )
        print(
            f"  {name} seed {seed}: best epoch {result.best_epoch}/{result.epochs_run}, "
            f"dev W-F1 {result.dev['weighted_f1']:.4f}, test W-F1 {test['weighted_f1']:.4f}, "
            f"acc {test['accuracy']:.4f}, {seconds:.2f} s/epoch",
            file=sys.stderr,
        )
    return summarise(name, block, per_seed)


def run_mrd(
    corpus: str,
    blocks: dict[str, dict[str, Any]],
    data: DialogueData,
    cfg: TrainConfig,
    states: dict[str, dict[int, dict]],
) -> dict[str, Any]:
    """MRD's refined text model per seed, scored on test next to the context_gru model it started from.

    Both input models are this run's dev-selected checkpoints of the same seed; MRD keeps the refined
    text model's best epoch by its own dev weighted F1.
    """
    partner, text = MRD["partner"], MRD["text"]
    mrd_cfg = MRDConfig(
        name="mrd",
        multimodal=partner,
        text=text,
        epochs=MRD["epochs"],
        lr=MRD["lr"],
        curriculum=CurriculumConfig(r0=MRD["r0"][corpus], oof="never"),
    )
    specs = tuple(ModelSpec.from_params({"models": {n: blocks[n]}}, n) for n in (partner, text))
    pair = PairedData(data, data)
    per_seed = []
    for seed in cfg.seeds:
        models = []
        for spec in specs:
            model = build_model(spec.kind, spec.params, data.input_dims, len(data.labels))
            model.load_state_dict(states[spec.name][seed])
            models.append(model)
        start = score_split(models[1], data, "test", cfg.batch_dialogues, "cpu")
        start_dev = score_split(models[1], data, "dev", cfg.batch_dialogues, "cpu")
        stamps = [time.perf_counter()]
        result = refine_seed(
            mrd_cfg,
            specs,
            pair,
            tuple(models),
            cfg,
            seed,
            on_epoch=lambda _s, _r, at=stamps: at.append(time.perf_counter()),
        )
        refined = build_model(specs[1].kind, specs[1].params, data.input_dims, len(data.labels))
        refined.load_state_dict(result.text.state)
        test = score_split(refined, data, "test", cfg.batch_dialogues, "cpu")
        seconds = float(np.mean(np.diff(stamps)))
        per_seed.append(
            {
                "seed": seed,
                "best_epoch": result.text.best_epoch,
                "epochs_run": result.text.epochs_run,
                "seconds_per_epoch": seconds,
                "curriculum": result.curriculum,
                "dev": result.text.dev,
                "test": test,
                "start": {"dev": start_dev, "test": start},
            }
        )
        print(
            f"  mrd seed {seed}: text model test W-F1 {start['weighted_f1']:.4f} -> {test['weighted_f1']:.4f} "
            f"(best epoch {result.text.best_epoch}/{result.text.epochs_run}), {seconds:.2f} s/epoch",
            file=sys.stderr,
        )
    config = {"procedure": "mrd", "refines": {"multimodal": partner, "text": text}, "reported": "refined text model"}
    summary = summarise("mrd_text", config | {"mrd": mrd_cfg.identity()}, per_seed)
    summary["start"] = {
        "model": text,
        "test": {k: v for k, v in aggregate_scores([s["start"]["test"] for s in per_seed]).items() if k in REPORTED},
    }
    return summary


def flat_split(data: DialogueData, split: str) -> tuple[np.ndarray, np.ndarray]:
    features = np.concatenate([d.features["text"] for d in data.split(split)])
    labels = np.concatenate([d.labels for d in data.split(split)])
    keep = labels != IGNORE_INDEX
    return features[keep], labels[keep]


def run_logistic(data: DialogueData, seeds: list[int]) -> dict[str, Any]:
    """No-context baseline: one utterance at a time, C chosen on dev weighted F1."""
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = flat_split(data, "train")
    x_dev, y_dev = flat_split(data, "dev")
    x_test, y_test = flat_split(data, "test")
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
        print(
            f"  logistic seed {seed}: C {c}, dev W-F1 {dev['weighted_f1']:.4f}, test W-F1 {test['weighted_f1']:.4f}",
            file=sys.stderr,
        )
    return summarise("logistic_regression", {"kind": "sklearn LogisticRegression", "C": list(C_GRID)}, per_seed)


def summarise(name: str, config: dict[str, Any], per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {
        "model": name,
        "config": config,
        "test": {k: v for k, v in aggregate_scores([s["test"] for s in per_seed]).items() if k in REPORTED},
        "dev": {k: v for k, v in aggregate_scores([s["dev"] for s in per_seed]).items() if k in REPORTED},
        "per_seed": per_seed,
    }
    if "seconds_per_epoch" in per_seed[0]:
        summary["seconds_per_epoch"] = float(np.mean([s["seconds_per_epoch"] for s in per_seed]))
    return summary


# ---------------------------------------------------------------- report


def pm(stat: dict[str, float | None]) -> str:
    std = stat["std"] if stat["std"] is not None else float("nan")
    return f"{100 * stat['mean']:.2f} ± {100 * std:.2f}"


def table(results: dict[str, dict[str, Any]]) -> str:
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

    The top-level provenance is this run's; `runs` keeps every run's commit, command and date, because
    the rows of a merged file may come from several of them.
    """
    if not path.exists():
        return report | {"runs": [{k: report[k] for k in RUN_KEYS if k in report}]}
    stored = json.loads(path.read_text())
    runs = stored.get("runs") or [{k: stored[k] for k in RUN_KEYS if k in stored}]
    runs.append({k: report[k] for k in RUN_KEYS if k in report} | {"models": report["models"]})
    for corpus, fresh in report["results"].items():
        old = stored.setdefault("results", {}).get(corpus)
        if old is None:
            stored["results"][corpus] = fresh
            continue
        names = {row["model"] for row in fresh["models"]}
        old["models"] = [row for row in old["models"] if row["model"] not in names] + fresh["models"]
        old["train"]["lr"] = {**old["train"].get("lr", {}), **fresh["train"]["lr"]}
        for key in ("capped", "mrd"):
            if key in fresh["train"]:
                old["train"][key] = fresh["train"][key]
    stored["runs"] = runs
    stored.update({k: report[k] for k in (*KEYS, "features", "protocol") if k in report})
    return stored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results")
    parser.add_argument("--cache", type=Path, default=PROJECT / ".cache" / "benchmarks")
    parser.add_argument("--corpora", nargs="+", choices=sorted(CORPORA), default=["iemocap", "meld"])
    parser.add_argument(
        "--models",
        default=",".join(KNOWN),
        help=f"comma-separated subset of {','.join(KNOWN)}; rows of other models already in the results are kept",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the per-corpus epoch budget")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    args = parser.parse_args(argv)
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    if not wanted or set(wanted) - set(KNOWN):
        parser.error(f"unknown model(s) {sorted(set(wanted) - set(KNOWN))}; choose from {', '.join(KNOWN)}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    origin = provenance(  # as of the start: the checkout may change while the run goes on
        {"corpora": args.corpora, "models": wanted, "seeds": args.seeds, "epochs": args.epochs,
         "threads": args.threads},
        file_inputs([args.data / CORPORA[c][2] for c in args.corpora if (args.data / CORPORA[c][2]).is_dir()]),
        ["benchmarks/real_text.py", *(argv if argv is not None else sys.argv[1:])],
    )
    results: dict[str, dict[str, Any]] = {}
    for corpus in args.corpora:
        load, labels, folder = CORPORA[corpus]
        if not (args.data / folder).is_dir():
            parser.error(f"{args.data / folder} not found (pass --data pointing at the shared data folder)")
        frame = load(args.data / folder)
        print(f"{corpus}: {len(frame)} utterances, {frame['dialogue_id'].nunique()} dialogues", file=sys.stderr)
        vectors, present = minilm_features(frame, args.cache, corpus)
        data = dialogue_data(frame, labels, vectors, present)
        settings = dict(TRAIN[corpus]) | ({"epochs": args.epochs} if args.epochs else {})
        cfg = TrainConfig.from_params(
            {
                "seeds": args.seeds,
                "weight_decay": 1e-4,
                "grad_clip": 5.0,
                "device": "cpu",
                "loss_weights": {},
                "lr": 1e-3,
                **settings,
            }
        )
        blocks = model_blocks(corpus)
        needed = set(wanted) | ({MRD["partner"], MRD["text"]} if "mrd" in wanted else set())
        states: dict[str, dict[int, dict]] = {MRD["partner"]: {}, MRD["text"]: {}}
        rows = []
        for name in NEURAL:
            if name not in needed:
                continue
            model_cfg = replace(cfg, lr=LEARNING_RATE[name])
            if name in CAPPED:
                epochs, patience = CAPPED[name]
                model_cfg = replace(model_cfg, epochs=min(cfg.epochs, epochs), patience=min(cfg.patience, patience))
            model_data = data
            if "sequence_inputs" in blocks[name]:
                seq_present, steps = minilm_sequences(frame, args.cache, corpus)
                model_data = dialogue_data(frame, labels, vectors, present & seq_present, steps)
            row = run_neural(name, blocks[name], model_data, model_cfg, states.get(name))
            if name in wanted:
                rows.append(row)
        if "logistic_regression" in wanted:
            rows.append(run_logistic(data, args.seeds))
        if "mrd" in wanted:
            rows.append(run_mrd(corpus, blocks, data, replace(cfg, lr=MRD["lr"]), states))
        train_info = {**settings, "weight_decay": 1e-4, "grad_clip": 5.0, "optimizer": "AdamW"}
        train_info["lr"] = {k: v for k, v in LEARNING_RATE.items() if k in needed}
        if needed & set(CAPPED):
            train_info["capped"] = {k: {"epochs": e, "patience": p} for k, (e, p) in CAPPED.items()}
        if "mrd" in wanted:
            train_info["mrd"] = {**MRD, "r0": MRD["r0"][corpus], "optimizer": "Adam", "curriculum_oof": "never"}
        results[corpus] = {
            "labels": labels,
            "utterances": {s: int(sum(len(d) for d in data.split(s))) for s in ("train", "dev", "test")},
            "train": train_info,
            "models": rows,
        }
    report = {
        **origin,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "models": wanted,
        "features": {
            "extractor": EXTRACTOR,
            "model": "all-MiniLM-L6-v2 (bundled), mean-pooled, L2-normalised",
            "sequences": {"extractor": EXTRACTOR | SEQUENCE, "used_by": ["drkf"]},
        },
        "protocol": "best epoch (neural, MRD) or C (logistic) selected on dev weighted F1; test scored once per "
        "seed; mean ± sample std over seeds",
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "real_text.json"
    merged = merge(path, report)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(merged, indent=2))
    os.replace(tmp, path)
    print(table(merged["results"]))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
