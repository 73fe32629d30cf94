"""`python -m pipeline.report`: where the results landed, and the headline numbers per model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline import paths


def _fmt(block: dict | None) -> str:
    """`mean ± std` in percent; a single seed has no spread, so only its value is shown."""
    if not block:
        return "-"
    if block.get("std") is None:
        return f"{100 * block['mean']:.2f} (1 seed)"
    return f"{100 * block['mean']:.2f} ± {100 * block['std']:.2f}"


def speaker_summary() -> None:
    """How the active speaker was chosen: method, reasons, LipSyncNet's dev metrics, demo truth agreement."""
    if not paths.SPEAKER.exists():
        return
    from pipeline.stages.speaker import truth_agreement
    from pipeline.tables import read_frame

    choices = read_frame(paths.SPEAKER)
    if choices.empty:
        return
    methods = ", ".join(sorted(choices.method.unique()))
    reasons = ", ".join(f"{k} {v}" for k, v in choices.reason.value_counts().items())
    print(f"\nActive speaker ({methods}): {reasons}")
    if paths.LIPSYNC_METRICS.exists():
        sync = json.loads(paths.LIPSYNC_METRICS.read_text())
        print(f"  LipSyncNet dev sync accuracy {sync.get('dev_sync_accuracy')}, offset accuracy "
              f"{sync.get('dev_offset_accuracy')} ({paths.LIPSYNC_METRICS})")
        selection = sync.get("selection") or {}
        if selection:
            print(f"  speaker.method auto -> {selection['method']}: {selection['reason']}")
            for name, figures in selection.get("accuracy", {}).items():
                cells = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items())
                print(f"    {name:<14} held-out virtual scenes: {cells}")
    truth = truth_agreement(choices)
    if truth.get("truth_agreement") is not None:
        print(f"  agrees with the demo generator's speaker on {100 * truth['truth_agreement']:.1f}% of "
              f"{truth['multi_face_utterances']} utterances with two or more faces")
    example = choices[choices.reason == "scored"].utt_id.head(1).tolist()
    if example:
        print(f"  why a face was chosen: python -m pipeline.inspect_speaker {example[0]}  (sheet in inspect/speaker/)")


def main() -> int:
    rows = []
    for eval_file in sorted(paths.METRICS_DIR.glob("*/eval.json")):
        result = json.loads(eval_file.read_text())
        test = result.get("test", {})
        majority = result.get("majority_baseline", {})
        rows.append((eval_file.parent.name, _fmt(test.get("weighted_f1")), _fmt(test.get("accuracy")),
                     _fmt(test.get("macro_f1")), len(result.get("seeds", [])), majority.get("weighted_f1")))
    print("\nResults (test split, model selected on dev, mean ± std over seeds):")
    print(f"  {'model':<18} {'weighted F1':>16} {'accuracy':>16} {'macro F1':>16} {'seeds':>5}")
    for name, wf1, acc, mf1, seeds, _ in rows:
        print(f"  {name:<18} {wf1:>16} {acc:>16} {mf1:>16} {seeds:>5}")
    majority = next((r[5] for r in rows if r[5] is not None), None)
    if majority is not None:
        print(f"  {'majority class':<18} {100 * majority:>16.2f}")
    speaker_summary()
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


if __name__ == "__main__":
    sys.exit(main())
