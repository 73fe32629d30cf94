"""README results tables, rendered from the committed `benchmarks/results/*.json`, never typed by hand.

A table lives in README.md between two markers naming its renderer:

    <!-- results:active_speaker.voxceleb2 -->
    ...generated...
    <!-- /results:active_speaker.voxceleb2 -->

`python -m pipeline.readme_tables` rewrites every marked block from the JSON files; `--check` exits
non-zero when README and JSON disagree (the test suite runs the same check). To add a table, register
a renderer: a function from the results folder to Markdown.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
SPEAKER_RESULTS = "active_speaker.json"
SPEAKER_DEV_RESULTS = "active_speaker_dev.json"
FAULTS_RESULTS = "faults.json"

Renderer = Callable[[Path], str]
RENDERERS: dict[str, Renderer] = {}
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w.]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    """Register a table under the name its README markers use."""
    def register(function: Renderer) -> Renderer:
        RENDERERS[name] = function
        return function
    return register


class NotMeasured(Exception):
    """The results file a table needs is absent: the table says how to make it instead."""


def _load(results: Path, name: str) -> dict:
    path = results / name
    if not path.is_file():
        script = name.split(".")[0].removesuffix("_dev")
        raise NotMeasured(f"*Not measured at this commit yet: `python benchmarks/{script}.py` writes "
                          f"`benchmarks/results/{name}`.*")
    return json.loads(path.read_text())


def _accuracy(cell: dict, size: str) -> str:
    if f"{size}_face_accuracy" not in cell:
        return "-"
    lo, hi = cell[f"{size}_face_ci"]
    return f"{100 * cell[f'{size}_face_accuracy']:.1f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def _provenance(report: dict, file: str) -> str:
    dirty = " (uncommitted changes)" if report.get("dirty") else ""
    return (f"`benchmarks/results/{file}`, commit `{report['commit'][:10]}`{dirty}, {report['date']}, "
            f"{report['machine']}: `{report['command']}`")


def _speaker_table(report: dict, corpus: str) -> str:
    """Test-fold accuracy per method for both distractor variants, with the speaker stage's CPU speed."""
    if corpus not in report["corpora"]:
        return (f"*Not in `benchmarks/results/{SPEAKER_RESULTS}` (commit `{report['commit'][:10]}`) yet: "
                f"`python benchmarks/active_speaker.py --corpora {corpus}` measures it.*")
    result = report["corpora"][corpus]
    speed = result.get("test_speaker_throughput", {})
    lines = ["| method | hard, two faces | hard, three faces | listening, two faces | listening, three faces "
             "| speaker stage, utt/s (CPU) |", "|---|---|---|---|---|---|"]
    for method, hard in result["hard"].items():
        listening = result["listening"].get(method, {})
        name = f"`{method}`" if method != "default" else f"default (`{report['params']['speaker']['method']}`)"
        ups = speed.get(method, {}).get("utterances_per_second", "-")
        lines.append(f"| {name} | {_accuracy(hard, 'two')} | {_accuracy(hard, 'three')} | "
                     f"{_accuracy(listening, 'two')} | {_accuracy(listening, 'three')} | {ups} |")
    trained = result["lipsync_train"]["100%"]
    metrics = trained["metrics"]
    selection = metrics["selection"]
    scenes = result["scenes_per_cell"]
    lines += ["", f"{scenes} test scenes per cell, {result['scene_seconds']:.0f} s each, people "
              f"{', '.join(result['people']['test'])} (never in training); 95% Wilson intervals. "
              f"`lipsync_train` on the train fold ({trained['clips']} clips of {trained['people']} people, "
              f"{trained['seconds_of_video']:.0f} s of video, plus {trained['multi_face_scenes']} unlabelled "
              f"multi-face scenes) took {trained['train_seconds']:.0f} s; its own dev figures: sync accuracy "
              f"{metrics['dev_sync_accuracy']}, offset recovery {metrics['dev_offset_accuracy']}; `auto` chose "
              f"`{selection['method']}`: {selection['reason']}.",
              "", f"Source: {_provenance({**report, **result.get('run', {})}, SPEAKER_RESULTS)}"]
    return "\n".join(lines)


@renderer("active_speaker.voxceleb2")
def active_speaker_voxceleb2(results: Path) -> str:
    return _speaker_table(_load(results, SPEAKER_RESULTS), "voxceleb2")


@renderer("active_speaker.grid")
def active_speaker_grid(results: Path) -> str:
    return _speaker_table(_load(results, SPEAKER_RESULTS), "grid")


@renderer("active_speaker.fractions")
def active_speaker_fractions(results: Path) -> str:
    """Test accuracy (hard distractors) against the share of the train fold LipSyncNet learned from."""
    result = _load(results, SPEAKER_RESULTS)["corpora"]["voxceleb2"]
    curve = result["train_fraction_test_hard"]
    methods = list(next(iter(curve.values())))
    lines = ["| train fold used | video | dev sync accuracy | " + " | ".join(
        f"`{m}` two faces | `{m}` three faces" for m in methods) + " |",
        "|---|---|---|" + "---|---|" * len(methods)]
    for share, cells in curve.items():
        trained = result["lipsync_train"][share]
        row = [share, f"{trained['seconds_of_video']:.0f} s, {trained['people']} people",
               str(trained["metrics"]["dev_sync_accuracy"])]
        row += [_accuracy(cells[m], size) for m in methods for size in ("two", "three")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


@renderer("active_speaker.dev")
def active_speaker_dev(results: Path) -> str:
    """The dev-fold figures the settings were chosen on (hard distractors)."""
    report = _load(results, SPEAKER_DEV_RESULTS)
    dev = report["corpora"]["voxceleb2"]["dev"]["hard"]
    lines = ["| method | two faces | three faces |", "|---|---|---|"]
    lines += [f"| `{m}` | {_accuracy(c, 'two')} | {_accuracy(c, 'three')} |" for m, c in dev.items() if m != "default"]
    lines += ["", f"Source: {_provenance(report, SPEAKER_DEV_RESULTS)}"]
    return "\n".join(lines)


def _faults_provenance(report: dict) -> str:
    runs = report.get("runs") or [report]
    parts = report.get("part_run") or {}
    lines = []
    for index, run in enumerate(runs):
        names = [part for part, source in parts.items() if source == index] or ["all parts"]
        dirty = " (uncommitted changes)" if run.get("dirty") else ""
        lines.append(f"{', '.join(names)}: commit `{run['commit'][:10]}`{dirty}, {run['date']}, {run['machine']}: "
                     f"`{run['command']}`")
    return f"Source: `benchmarks/results/{FAULTS_RESULTS}`; " + "; ".join(lines)


@renderer("faults.cases")
def faults_cases(results: Path) -> str:
    """Every awkward input, what should happen to it and what did."""
    report = _load(results, FAULTS_RESULTS)
    if not report.get("cases"):
        raise NotMeasured("*Not measured at this commit yet: `python benchmarks/faults.py --parts cases`.*")
    lines = ["| case | expected | got | ok |", "|---|---|---|---|"]
    for row in report["cases"]:
        cells = [str(row[key]).replace("|", "\\|").replace("\n", " ") for key in ("case", "expected", "got")]
        lines.append(f"| {' | '.join(cells)} | {'yes' if row['ok'] else '**no**'} |")
    return "\n".join(lines)


@renderer("faults.kills")
def faults_kills(results: Path) -> str:
    """kill -9 trials per long stage, and the disk-full and monitor cases."""
    report = _load(results, FAULTS_RESULTS)
    if not report.get("kills"):
        raise NotMeasured("*Not measured at this commit yet: `python benchmarks/faults.py --parts kills`.*")
    lines = ["| stage | trials | identical output | killed while working |", "|---|---|---|---|"]
    lines += [f"| `{row['stage']}` | {row['trials']} | {row['identical']} | {row['killed_mid_work']} |"
              for row in report["kills"]]
    disk = report.get("disk_full") or {}
    if disk:
        lines += ["", f"Disk full: {'passed' if disk.get('ok') else '**failed**'} (exit code {disk.get('exit_code')}, "
                      f"no output left behind: {not disk.get('leftover_outputs')}, same rows after freeing space: "
                      f"{disk.get('resumed_rows_identical')})."]
    monitor = report.get("monitor") or {}
    for fault in ("dies", "freezes"):
        if fault in monitor:
            case = monitor[fault]
            lines += ["", f"Prefect server {fault} mid-stage: {'passed' if case['ok'] else '**failed**'}, "
                          f"{len(case['warning_lines'])} warning line(s), {case['seconds']} s against "
                          f"{case['plain_seconds']} s plain, rows identical: {case['rows_identical']}."]
    lines += ["", _faults_provenance(report)]
    return "\n".join(lines)


def render_readme(text: str, results: Path = RESULTS) -> str:
    """`text` with every marked block replaced by its renderer's output; unknown names fail loudly."""
    def fill(match: re.Match) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise KeyError(f"README marks a table {name!r}; known tables: {sorted(RENDERERS)}")
        try:
            body = RENDERERS[name](results)
        except NotMeasured as missing:
            body = str(missing)
        return f"{match.group(1)}{body.rstrip()}\n{match.group(4)}"
    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when README differs from the JSON")
    parser.add_argument("--readme", type=Path, default=README)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    rendered = render_readme(text, args.results)
    if args.check:
        if rendered != text:
            print(f"{args.readme} is out of date with {args.results}: run python -m pipeline.readme_tables",
                  file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
