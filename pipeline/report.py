"""`python -m pipeline.report`: where the results landed, and the headline numbers per model.

    python -m pipeline.report                                            # print the summary
    python -m pipeline.report --demo-json benchmarks/results/demo.json   # and write the demo's results
    python -m pipeline.report --demo-json benchmarks/results/demo.json --check   # compare, write nothing
    python -m pipeline.report --readme [--check]                         # README tables (pipeline.readme_tables)

The demo's results file holds what the summary prints (per model test and dev scores, mean ± std over
seeds, per-class F1, the majority class, the active-speaker choice) and nothing that changes from run
to run but its provenance block's commit, dirty, machine and date: a fresh clone's `make demo`
reproduces the committed file, and `--check` says where it does not.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline import logs, paths
from pipeline.config import load_params
from pipeline.provenance import dvc_lock_outputs, provenance

VOLATILE = ("commit", "dirty", "machine", "date")  # the provenance keys a rerun may change
DIGITS = 4  # scores are rounded so that the file is stable and readable (0.01 percentage points)
log = logging.getLogger("pipeline.report")  # also when run as __main__


def _fmt(block: dict | None) -> str:
    """`mean ± std` in percent; a single seed has no spread, so only its value is shown."""
    if not block:
        return "-"
    if block.get("std") is None:
        return f"{100 * block['mean']:.2f} (1 seed)"
    return f"{100 * block['mean']:.2f} ± {100 * block['std']:.2f}"


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DIGITS)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def model_results() -> dict[str, dict[str, Any]]:
    """Every evaluated model's scores from `metrics/<model>/eval.json`, by name (per-seed detail left out)."""
    models = {}
    for eval_file in sorted(paths.METRICS_DIR.glob("*/eval.json")):
        result = json.loads(eval_file.read_text())
        keep = ("seeds", "folds", "test", "dev", "majority_baseline")
        models[eval_file.parent.name] = {key: result[key] for key in keep if key in result}
    return models


def speaker_results() -> dict[str, Any]:
    """How the active speaker was chosen: methods, reasons, LipSyncNet's dev figures, demo truth agreement."""
    if not paths.SPEAKER.exists():
        return {}
    from pipeline.speaker_truth import truth_agreement
    from pipeline.tables import read_frame

    choices = read_frame(paths.SPEAKER)
    if choices.empty:
        return {}
    out: dict[str, Any] = {"methods": sorted(choices.method.unique()),
                           "reasons": {k: int(v) for k, v in choices.reason.value_counts().sort_index().items()}}
    if paths.LIPSYNC_METRICS.exists():
        sync = json.loads(paths.LIPSYNC_METRICS.read_text())
        selection = sync.get("selection") or {}
        out["lipsync"] = {"dev_sync_accuracy": sync.get("dev_sync_accuracy"),
                          "dev_offset_accuracy": sync.get("dev_offset_accuracy"),
                          "selection": {k: selection[k] for k in ("method", "reason", "accuracy") if k in selection}}
    return {**out, **truth_agreement(choices)}


def speaker_summary(speaker: dict[str, Any]) -> None:
    if not speaker:
        return
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(speaker["reasons"].items(), key=lambda item: -item[1]))
    print(f"\nActive speaker ({', '.join(speaker['methods'])}): {reasons}")
    sync = speaker.get("lipsync")
    if sync:
        print(f"  LipSyncNet dev sync accuracy {sync['dev_sync_accuracy']}, offset accuracy "
              f"{sync['dev_offset_accuracy']} ({paths.LIPSYNC_METRICS})")
        selection = sync["selection"]
        if selection:
            print(f"  speaker.method auto -> {selection['method']}: {selection['reason']}")
            for name, figures in selection.get("accuracy", {}).items():
                cells = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items())
                print(f"    {name:<14} held-out virtual scenes: {cells}")
    if speaker.get("truth_agreement") is not None:
        print(f"  agrees with the demo generator's speaker on {100 * speaker['truth_agreement']:.1f}% of "
              f"{speaker['multi_face_utterances']} utterances with two or more faces")
    from pipeline.tables import read_frame

    choices = read_frame(paths.SPEAKER)
    example = choices[choices.reason == "scored"].utt_id.head(1).tolist()
    if example:
        print(f"  why a face was chosen: python -m pipeline.inspect_speaker {example[0]}  (sheet in inspect/speaker/)")


def corpus_summary() -> dict[str, Any]:
    """Size of the corpus the models were scored on: dialogues and utterances per split, the classes."""
    from pipeline.manifest import read_manifest

    manifest = read_manifest()
    frame = manifest.frame
    splits = {split: {"dialogues": int(rows.dialogue_id.nunique()), "utterances": len(rows)}
              for split, rows in frame.groupby("split", sort=True)}
    return {"dataset": manifest.dataset, "dialogues": int(frame.dialogue_id.nunique()), "utterances": len(frame),
            "labels": list(manifest.labels), "splits": splits}


def demo_results(path: Path) -> dict[str, Any]:
    """The demo's results file: provenance block (params.yaml, md5 of the manifest and features), then results."""
    models = model_results()
    if not models:
        raise FileNotFoundError(f"no {paths.METRICS_DIR}/*/eval.json: run `make demo` (or `dvc repro`) first")
    params = load_params(Path("params.yaml"))
    inputs = dvc_lock_outputs("prepare", Path.cwd())
    for key in params.get("features", {}):
        inputs.update(dvc_lock_outputs(f"features@{key}", Path.cwd()))
    majority = next((m["majority_baseline"] for m in models.values() if "label" in m.get("majority_baseline", {})),
                    None)
    origin = provenance(params, inputs, ["-m", "pipeline.report", "--demo-json", str(path)])
    return {**origin, "corpus": corpus_summary(), "models": _rounded(models),
            "majority_baseline": _rounded(majority), "speaker": _rounded(speaker_results())}


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Dotted paths where two results files differ, provenance's commit, dirty, machine and date left out."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in [*old, *(k for k in new if k not in old)]:
            if not where and key in VOLATILE:
                continue
            if key not in old or key not in new:
                found.append(f"{where}{key} ({'added' if key in new else 'gone'})")
            else:
                found += differences(old[key], new[key], f"{where}{key}.")
        return found
    return [] if old == new else [f"{where.rstrip('.')}: {old!r} -> {new!r}"]


def demo_json(path: Path, check: bool) -> int:
    """Write (or with `check`, only compare) the demo's results; either way say what differs from the file."""
    fresh = demo_results(path)
    if not path.exists():
        if check:
            log.error("%s does not exist: `python -m pipeline.report --demo-json %s` writes it", path, path)
            return 1
        found = None
    else:
        found = differences(json.loads(path.read_text()), fresh)
        for line in found[:40]:
            log.info("  %s", line)
        if len(found) > 40:
            log.info("  ... and %d more", len(found) - 40)
    if check:
        print(f"{path}: {'NOT reproduced' if found else 'reproduced'} (commit, dirty, machine and date not compared)")
        return 1 if found else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fresh, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}" + ("" if found is None else ": results changed" if found else ": same results as before"))
    return 0


def summary() -> int:
    models = model_results()
    print("\nResults (test split, model selected on dev, mean ± std over seeds):")
    print(f"  {'model':<18} {'weighted F1':>16} {'accuracy':>16} {'macro F1':>16} {'seeds':>5}")
    for name, result in models.items():
        test = result.get("test", {})
        print(f"  {name:<18} {_fmt(test.get('weighted_f1')):>16} {_fmt(test.get('accuracy')):>16} "
              f"{_fmt(test.get('macro_f1')):>16} {len(result.get('seeds', [])):>5}")
    majority = next((m["majority_baseline"].get("weighted_f1") for m in models.values()
                     if m.get("majority_baseline", {}).get("weighted_f1") is not None), None)
    if majority is not None:
        print(f"  {'majority class':<18} {100 * majority:>16.2f}")
    speaker_summary(speaker_results())
    print("\nWhere everything is:")
    for label, where in [
        ("manifest", paths.MANIFEST), ("utterance audio", paths.AUDIO_DIR), ("cuts", paths.CUTS),
        ("face tracks", paths.FACES), ("active speaker", paths.SPEAKER), ("speaker face crops", paths.SPEAKER_TRACKS),
        ("features", paths.FEATURES_DIR), ("models", paths.MODELS_DIR), ("metrics", paths.METRICS_DIR),
        ("plots", paths.PLOTS_DIR), ("training curves", Path("dvclive")), ("failures", paths.FAILURES),
    ]:
        print(f"  {label:<20} {where}")
    print("\n  dvc metrics show      # every metric file\n  dvc plots show        # confusion matrices and "
          "training curves -> dvc_plots/index.html")
    if paths.FAILURES.exists():
        import pandas as pd

        failures = pd.read_parquet(paths.FAILURES)
        if len(failures):
            print(f"\n{len(failures)} utterance problems recorded in {paths.FAILURES}:")
            print(failures.groupby(["stage", "reason"]).size().to_string())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--demo-json", type=Path, metavar="PATH", help="write the demo's results to PATH")
    target.add_argument("--readme", action="store_true", help="rewrite README's results tables from the JSON")
    parser.add_argument("--check", action="store_true", help="with --demo-json or --readme: compare, write nothing")
    args = parser.parse_args(argv)
    logs.configure()
    if args.readme:
        from pipeline import readme_tables

        return readme_tables.main(["--check"] if args.check else [])
    if args.check and args.demo_json is None:
        parser.error("--check needs --demo-json or --readme")
    if args.demo_json is not None:
        try:
            return demo_json(args.demo_json, args.check)
        except FileNotFoundError as missing:
            log.error("%s", missing)
            return 2
    return summary()


if __name__ == "__main__":
    sys.exit(main())
