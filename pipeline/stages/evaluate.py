"""`evaluate@<model>`: score every seed's dev-selected checkpoint on dev and test (per fold with `folds:`).

Writes `metrics/<model>/eval.json` (provenance block, mean ± std over seeds, per-class F1, a majority-class row),
`metrics/<model>/predictions.parquet`, and `plots/<model>/confusion.csv|png` for the test split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from models.batch import IGNORE_INDEX
from pipeline import paths
from pipeline.device import resolve_device
from pipeline.provenance import dvc_lock_inputs, dvc_lock_outputs, provenance
from pipeline.runner import Runner
from pipeline.training.config import TrainConfig
from pipeline.training.data import load_dialogue_data
from pipeline.training.evaluation import (
    SPLITS,
    check_checkpoints,
    check_scorable,
    prediction_frame,
    write_evaluation,
)
from pipeline.training.model_checkpoints import feature_stats, load_checkpoint, read_checkpoint_config
from pipeline.training.mrd import TEXT_SUFFIX, refinements, resolve_model_spec
from pipeline.training.protocols import ScoredPartition, protocol_for
from pipeline.training.trainer import predict_dialogues


def eval_provenance(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The block `eval.json` starts with, so its scores name the code, params and checkpoints they came from.

    `params` are the model's block (or the refinement that wrote it) and `train`; `inputs` are the md5s
    `dvc.lock` holds for the stage that trained the checkpoints: what it read and the checkpoints
    themselves (empty outside DVC).
    """
    refined = next((key for key in refinements(params) if name in (key, f"{key}{TEXT_SUFFIX}")), None)
    if refined is not None:
        block, stage = {"refine": {refined: params["refine"][refined]}}, f"refine@{refined}"
    else:
        block, stage = {"models": {name: params["models"][name]}}, f"train@{name}"
    workspace = Path.cwd()  # stages run at the DVC workspace root, where dvc.lock is
    inputs = {**dvc_lock_inputs(stage, workspace), **dvc_lock_outputs(stage, workspace)}
    return provenance({**block, "train": params.get("train", {})}, inputs, ["-m", "pipeline", "evaluate", name])


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    spec = resolve_model_spec(params, arg)  # a `models` block, or an output of a `refine` block (e.g. MRD)
    cfg = TrainConfig.for_model(params, spec.name)
    cfg.apply_threads()
    protocol = protocol_for(spec)
    device = resolve_device(cfg.device, "train.device")
    partitions = protocol.partitions()
    step = f"evaluate {spec.name}"
    total = len(partitions) * len(cfg.seeds)
    runner.hook(step, completed=0, total=total)
    frames: list[pd.DataFrame] = []
    scored: list[ScoredPartition] = []
    for partition in partitions:
        folder = paths.MODELS_DIR / spec.name / partition.dirname
        configs = {seed: read_checkpoint_config(folder / f"seed{seed}") for seed in cfg.seeds}
        check_checkpoints(spec, configs)
        first = configs[cfg.seeds[0]]
        if partition.fold is not None and first.get("fold") != partition.fold.identity():
            raise ValueError(
                f"{partition.dirname} of {spec.name} was trained on other splits than the manifest gives now: "
                f"rerun `dvc repro train@{spec.name}`"
            )
        data = load_dialogue_data(spec.inputs, stats=feature_stats(first), split_of=partition.split_of(),
                                  **spec.sequences.loader_kwargs())
        check_scorable(data, first["labels"], f"{partition.dirname}: " if partition.dirname else "")
        per_seed: dict[int, dict[str, Any]] = {}
        for seed in cfg.seeds:
            model, config = load_checkpoint(folder / f"seed{seed}", device)
            entry: dict[str, Any] = {"best_epoch": config["best_epoch"]}
            for split in SPLITS:
                utt_ids, truth, predicted = predict_dialogues(
                    model, data.split(split), data.inputs, cfg.batch_dialogues, device
                )
                labeled = truth != IGNORE_INDEX
                entry[split] = protocol.scores(truth[labeled], predicted[labeled], data.labels)
                rows = prediction_frame(utt_ids, split, seed, truth, predicted, data.labels)
                frames.append(rows if partition.fold is None else rows.assign(fold=partition.fold.name))
            per_seed[seed] = entry
            runner.hook(step, completed=len(scored) * len(cfg.seeds) + len(per_seed), total=total)
        scored.append(ScoredPartition(partition, data, per_seed))

    report, summary, title = protocol.eval_report(spec, cfg, scored)
    report = {**eval_provenance(params, spec.name), **report}
    write_evaluation(spec.name, report, pd.concat(frames, ignore_index=True), scored[-1].data.labels, title)
    return summary
