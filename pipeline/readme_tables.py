"""README results tables, rendered from the committed `benchmarks/results/*.json`, never typed by hand.

A table lives in README.md between two markers naming its renderer:

    <!-- results:active_speaker.voxceleb2 -->
    ...generated...
    <!-- /results:active_speaker.voxceleb2 -->

`python -m pipeline.readme_tables` (or `python -m pipeline.report --readme`, the same command) rewrites
every marked block from the JSON files; `--check` exits non-zero when README and JSON disagree (the
test suite runs the same check, and fails for a results file no block renders). To add a table,
register a renderer: a function from the results folder to Markdown (the module's one job; its length is
its renderers, one per results file). Files written before the provenance block existed lack a commit
and keep their machine as a dict; their source lines say so.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline import logs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
SPEAKER_RESULTS = "active_speaker.json"
SPEAKER_DEV_RESULTS = "active_speaker_dev.json"
FAULTS_RESULTS = "faults.json"
log = logging.getLogger("pipeline.readme_tables")  # also when run as __main__
DEMO_RESULTS = "demo.json"
REAL_TEXT_RESULTS = "real_text.json"
FRONT_END_RESULTS = "speaker_front_end.json"
PIPELINE_RESULTS = "pipeline.json"
EXTRACTORS_RESULTS = "extractors.json"
ABLATIONS_RESULTS = "ablations.json"
PREDICT_RESULTS = "predict.json"
READERS_RESULTS = "video_readers.json"
SCALE_RESULTS = "scale.json"
GPU_RESULTS = "gpu.json"
PAPER_CONFIGS_RESULTS = "paper_configs.json"
# How to make a results file that is not `python benchmarks/<name>.py`.
MAKERS = {DEMO_RESULTS: "`make demo` (its last step is `python -m pipeline.report --demo-json "
                        "benchmarks/results/demo.json`)"}

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
        maker = MAKERS.get(name, f"`python benchmarks/{name.split('.')[0].removesuffix('_dev')}.py`")
        raise NotMeasured(f"*Not measured at this commit yet: {maker} writes `benchmarks/results/{name}`.*")
    return json.loads(path.read_text())


def _pm(block: dict | None, scale: float = 100) -> str:
    """`mean ± std` (percent by default); one seed has no spread."""
    if not block:
        return "-"
    if block.get("std") is None:
        return f"{scale * block['mean']:.1f} (1 seed)"
    return f"{scale * block['mean']:.1f} ± {scale * block['std']:.1f}"


def _cell(value: object, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _accuracy(cell: dict, size: str) -> str:
    if f"{size}_face_accuracy" not in cell:
        return "-"
    lo, hi = cell[f"{size}_face_ci"]
    return f"{100 * cell[f'{size}_face_accuracy']:.1f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def _run(run: dict) -> str:
    """commit, date and command of one run; files written before the provenance block may lack the commit."""
    commit = f"commit `{run['commit'][:10]}`" if run.get("commit") else "commit not recorded"
    dirty = " (uncommitted changes)" if run.get("dirty") else ""
    return f"{commit}{dirty}, {run['date']}"


def _machine(machine: str | dict) -> str:
    """The provenance block's machine line; older files kept a dict of facts."""
    if isinstance(machine, str):
        return machine
    return ", ".join(f"{key} {value}" for key, value in machine.items() if value is not None)


def _provenance(report: dict, file: str) -> str:
    return f"`benchmarks/results/{file}`, {_run(report)}, {_machine(report['machine'])}: `{report['command']}`"


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
        names = [part for part, source in parts.items()
                 if source == index or (isinstance(source, list) and index in source)] or ["all parts"]
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


def _model_label(name: str, params: dict) -> tuple[str, str]:
    """A model's name and what it reads, from the params block that trained it."""
    for refined, block in (params.get("refine") or {}).items():
        if name in (refined, f"{refined}_text"):
            return f"`{name}`", f"refines `{block['multimodal'] if name == refined else block['text']}`"
    block = (params.get("models") or {}).get(name, {})
    return f"`{name}`", " + ".join(block.get("inputs", [])) or "-"


@renderer("demo.results")
def demo_results(results: Path) -> str:
    """Per-model test and dev scores of `make demo`, per-class F1, the majority class and the speaker choice."""
    report = _load(results, DEMO_RESULTS)
    corpus, params, models = report["corpus"], report["params"], report["models"]
    test = corpus["splits"].get("test", {})
    order = [*(params.get("models") or {}), *(n for r in params.get("refine") or {} for n in (r, f"{r}_text"))]
    names = [n for n in order if n in models] + sorted(set(models) - set(order))
    lines = [f"`make demo` with the committed `params.yaml`: {corpus['dialogues']} dialogues, "
             f"{corpus['utterances']} utterances, {len(corpus['labels'])} classes; test = "
             f"{test.get('dialogues', 0)} dialogues, {test.get('utterances', 0)} utterances.", "",
             "| model | inputs | test W-F1 | test accuracy | test macro F1 | dev W-F1 |", "|---|---|---|---|---|---|"]
    for name in names:
        model = models[name]
        label, inputs = _model_label(name, params)
        lines.append(f"| {label} | {inputs} | {_pm(model['test']['weighted_f1'])} | "
                     f"{_pm(model['test']['accuracy'])} | {_pm(model['test']['macro_f1'])} | "
                     f"{_pm(model['dev']['weighted_f1'])} |")
    majority = report.get("majority_baseline")
    if majority:
        lines.append(f"| majority class (`{majority['label']}`, from train) | - | "
                     f"{100 * majority['weighted_f1']:.1f} | {100 * majority['accuracy']:.1f} | - | - |")
    labels = corpus["labels"]
    lines += ["", "<details><summary>Per-class test F1</summary>", "",
              "| model | " + " | ".join(f"`{label}`" for label in labels) + " |", "|---|" + "---|" * len(labels)]
    lines += [f"| `{name}` | " + " | ".join(_pm(models[name]["test"]["per_class_f1"].get(label))
                                            for label in labels) + " |" for name in names]
    lines += ["", "</details>"]
    speaker = report.get("speaker") or {}
    if speaker.get("truth_agreement") is not None:
        chosen = ", ".join(f"`{m}`" for m in speaker["methods"])
        lines += ["", f"Active speaker ({chosen}): agrees with the generator's true speaker on "
                      f"{100 * speaker['truth_agreement']:.1f}% of the {speaker['multi_face_utterances']} "
                      f"utterances with two or more faces."]
    lines += ["", f"Source: {_provenance(report, DEMO_RESULTS)}"]
    return "\n".join(lines)


def _runs_provenance(report: dict, file: str) -> str:
    """Source line of a file whose rows were merged from several runs, each with its own commit."""
    runs = report.get("runs") or [report]
    shown = "; ".join(f"{_run(run)}: `{run['command']}`" for run in runs)
    return f"Source: `benchmarks/results/{file}` ({_machine(report['machine'])}); runs: {shown}"


@renderer("real_text")
def real_text(results: Path) -> str:
    """Test scores of every text-only model on the real MELD and IEMOCAP transcripts: seeds, the setting
    its dev sweep chose, the paper's own number and protocol, and seconds per epoch."""
    report = _load(results, REAL_TEXT_RESULTS)
    lines = ["| corpus | model | test W-F1 | test accuracy | seeds | dev-tuned setting | paper W-F1 | s/epoch |",
             "|---|---|---|---|---|---|---|---|"]
    papers: list[str] = []
    for corpus, result in report["results"].items():
        for row in result["models"]:
            paper = row.get("paper") or {}
            tuning = row.get("tuning") or {}
            tuned = tuning.get("chosen")
            setting = ", ".join(_setting(k, v, tuning["grid"].get(k)) for k, v in tuned.items()) if tuned \
                else "not tuned"
            lines.append(f"| {corpus} | {row['model']} | {_pm(row['test']['weighted_f1'])} | "
                         f"{_pm(row['test']['accuracy'])} | {len(row['per_seed'])} | {setting} | "
                         f"{_cell(paper.get('weighted_f1'), 1)} | {_cell(row.get('seconds_per_epoch'), 2)} |")
            if paper:
                papers.append(f"- {corpus} `{row['model']}`: {paper['source']}; {paper['protocol']}.")
    if papers:
        lines += ["", "Paper numbers and the protocols behind them:", "", *papers]
    lines += ["", _runs_provenance(report, REAL_TEXT_RESULTS)]
    return "\n".join(lines)


def _setting(key: str, value: object, grid: list | None = None) -> str:
    """One chosen sweep value as `key value`; a size mapping by the keys its grid varies."""
    if isinstance(value, dict):
        options = [o for o in grid or [] if isinstance(o, dict)]
        varied = [k for k in value if len({str(o.get(k)) for o in options}) > 1] or list(value)
        return ", ".join(_setting(k, value[k]) for k in varied)
    return f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"


@renderer("paper_configs")
def paper_configs(results: Path) -> str:
    """Each paper file's models after one epoch on the demo: stored weights, stage seconds, dev W-F1."""
    report = _load(results, PAPER_CONFIGS_RESULTS)
    lines = ["| params file | stage | model | weights (M) | seconds | dev W-F1 after 1 epoch |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{r['config']}` | {r['stage']} | {r['model']} | {r['weights'] / 1e6:.2f} | {r['seconds']:.1f} | "
              f"{100 * r['dev_weighted_f1']:.1f} |" for r in report["rows"]]
    lines += ["", f"Source: {_provenance(report, PAPER_CONFIGS_RESULTS)}; demo workspace made at commit "
                  f"`{(report.get('workspace_commit') or 'unknown')[:10]}`"]
    return "\n".join(lines)


@renderer("real_text.context")
def real_text_context(results: Path) -> str:
    """Per corpus, which paper models stay below the context GRU and which below the no-context baseline."""
    report = _load(results, REAL_TEXT_RESULTS)
    lines = []
    for corpus, result in report["results"].items():
        rows = {row["model"]: row for row in result["models"]}
        if "context_gru" not in rows or "logistic_regression" not in rows:
            continue
        gru, flat = (rows[m]["test"]["weighted_f1"]["mean"] for m in ("context_gru", "logistic_regression"))
        papers = [m for m in rows if m not in ("context_gru", "logistic_regression")]
        below = [m for m in papers if rows[m]["test"]["weighted_f1"]["mean"] < gru]
        under = [m for m in papers if rows[m]["test"]["weighted_f1"]["mean"] < flat]
        shown = ", ".join(f"`{m}` {100 * rows[m]['test']['weighted_f1']['mean']:.1f}" for m in below) or "none"
        lines.append(f"- {corpus}: below the context GRU ({100 * gru:.1f}): {shown}. Below the no-context "
                     f"logistic regression ({100 * flat:.1f}): "
                     f"{', '.join(f'`{m}`' for m in under) or 'none'}.")
    return "\n".join(lines)


@renderer("real_text.mrd")
def real_text_mrd(results: Path) -> str:
    """What MRD's refinement did to the text model it started from, per corpus and per seed."""
    report = _load(results, REAL_TEXT_RESULTS)
    parts = []
    for corpus, result in report["results"].items():
        row = next((r for r in result["models"] if r["model"] == "mrd_text"), None)
        if row is None or "start" not in row:
            continue
        better = sum(s["test"]["weighted_f1"] > s["start"]["test"]["weighted_f1"] for s in row["per_seed"])
        parts.append(f"{corpus} {100 * row['start']['test']['weighted_f1']['mean']:.1f} → "
                     f"{100 * row['test']['weighted_f1']['mean']:.1f} test W-F1, better on {better} of "
                     f"{len(row['per_seed'])} seeds")
    if not parts:
        raise NotMeasured(f"*No `mrd_text` rows in `benchmarks/results/{REAL_TEXT_RESULTS}` yet: "
                          "`python benchmarks/real_text.py --models mrd`.*")
    return f"`mrd_text` against the `context_gru` model of the same seed it started from: {'; '.join(parts)}."


@renderer("speaker_front_end")
def speaker_front_end(results: Path) -> str:
    """Each speaker.method's agreement with the demo's true speaker and the face-only model's scores."""
    report = _load(results, FRONT_END_RESULTS)
    model = report["model"]
    lines = [f"| method | agreement with the true speaker | `{model}` test W-F1 | test accuracy | dev W-F1 |",
             "|---|---|---|---|---|"]
    for row in report["rows"]:
        agreement = "-" if row["truth_agreement"] is None else f"{100 * row['truth_agreement']:.1f}%"
        lines.append(f"| `{row['method']}` | {agreement} | {_pm(row['test_weighted_f1'], 1)} | "
                     f"{_pm(row['test_accuracy'], 1)} | {_pm(row['dev_weighted_f1'], 1)} |")
    lines += ["", f"Mean ± std over seeds {', '.join(map(str, report['seeds']))}. "
                  f"Source: {_provenance(report, FRONT_END_RESULTS)}"]
    return "\n".join(lines)


@renderer("pipeline")
def pipeline_timings(results: Path) -> str:
    """Seconds, utterances per second and peak memory of every stage of one `dvc repro` of the demo."""
    report = _load(results, PIPELINE_RESULTS)
    lines = ["| stage | seconds | utterances/s | peak RSS (MiB) |", "|---|---|---|---|"]
    lines += [f"| `{row['stage']}` | {_cell(row['seconds'])} | {_cell(row['utterances_per_second'])} | "
              f"{_cell(row['peak_rss_mib'], 0)} |" for row in report["stages"]]
    lines += [f"| total | {_cell(report['total_seconds'])} | | |", "",
              f"{report['utterances']} utterances. Source: {_provenance(report, PIPELINE_RESULTS)}"]
    return "\n".join(lines)


@renderer("predict")
def predict(results: Path) -> str:
    """`merc predict` on the demo's test videos: boundaries, emotion accuracy beside the pipeline's own, speed."""
    report = _load(results, PREDICT_RESULTS)
    test, dev = report["test"], report["dev"]

    def share(block: dict) -> str:
        low, high = block["ci95"] or (0.0, 0.0)
        return f"{block['accuracy']:.1f} [{low:.1f}, {high:.1f}] (n={block['n']})"

    found = test["boundaries_within_0.3s"]
    speed = test["real_time_factor"]
    lines = ["| measure (demo test dialogues, model `" + report["params"]["model"] + "`) | % [95% CI] |",
             "|---|---|",
             f"| utterances whose both ends are within 0.3 s of a found segment: learned pauses (`boundaries`) | "
             f"{share(found['pauses'])} |",
             f"| ... plain voice-activity detection, setting chosen on dev | {share(found['vad'])} |",
             f"| emotion accuracy on the pipeline's own cuts (`dvc repro`) | {share(test['pipeline_cuts'])} |",
             f"| emotion accuracy, `merc predict` with the transcript | {share(test['predict_with_transcript'])} |"]
    for source, run in test["speech_alone"].items():
        chosen = " (chosen on dev)" if source == test["text_source"] else ""
        text = {"none": "no text", "pocketsphinx": "PocketSphinx, its generic language model",
                "pocketsphinx+corpus-lm": "PocketSphinx, the `asr_lm` model of the train transcripts",
                }.get(source, source)
        lines += [f"| emotion accuracy, `merc predict` from speech alone, {text}{chosen}: strict | "
                  f"{share(run['strict'])} |",
                  f"| ... by overlap (each utterance takes the found segment overlapping it most) | "
                  f"{share(run['by_overlap'])} |"]
    lines += ["", f"Real-time factor (wall seconds per video second): mean {speed['mean']:.2f}, worst "
              f"{speed['max']:.2f}. Pause model chosen on the dev dialogues (found {dev['pause_model']['matched']}%"
              f" of dev utterances); text source chosen on dev: `{dev['text_source_chosen']}`. "
              f"Source: {_provenance(report, PREDICT_RESULTS)}"]
    return "\n".join(lines)


@renderer("extractors")
def extractors(results: Path) -> str:
    """Throughput and memory per extractor and batch size, and MiniLM over every real transcript."""
    report = _load(results, EXTRACTORS_RESULTS)
    lines = []
    demo = report.get("demo_corpus")
    if demo:
        lines += ["| extractor | modality | batch | utterances | utterances/s | peak RSS (MB) | load s |",
                  "|---|---|---|---|---|---|---|"]
        for row in demo["results"]:
            speed = _cell(row.get("utt_per_s")) if "error" not in row else f"failed: {row['error']}"
            lines.append(f"| {row['extractor']} | {row['modality']} | {row['batch_size']} | "
                         f"{row.get('utterances', '-')} | {speed} | {_cell(row.get('peak_rss_mb'), 0)} | "
                         f"{_cell(row.get('load_seconds'))} |")
        lines += ["", f"Demo corpus; {demo['note']}."]
    transcripts = report.get("transcripts")
    if transcripts and "corpora" in transcripts:
        lines += ["", "| corpus | transcripts | embedded | wall s | utterances/s |", "|---|---|---|---|---|"]
        lines += [f"| {name} | {r['transcripts']} | {r['embedded']} | {_cell(r['wall_seconds'])} | "
                  f"{_cell(r['utt_per_s'])} |" for name, r in transcripts["corpora"].items()]
        lines += ["", f"{transcripts['extractor']}; peak RSS {_cell(transcripts['peak_rss_mb'], 0)} MB."]
    lines += ["", f"Source: {_provenance(report, EXTRACTORS_RESULTS)}"]
    return "\n".join(lines)


@renderer("video_readers")
def video_readers(results: Path) -> str:
    """Each video reader on the stages' access patterns: speed beside PyAV's, frames delivered, pixels."""
    report = _load(results, READERS_RESULTS)
    lines = ["| access pattern | reader | frames delivered / wanted | frames/s | speed vs PyAV | "
             "frames identical to PyAV's | largest mean abs difference |", "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        speed = "-" if row["speed_vs_pyav"] is None else f"{row['speed_vs_pyav']:.2f}x"
        lines.append(f"| {row['pattern']} | `{row['reader']}` | {row['frames']} / {row['frames_wanted']} | "
                     f"{_cell(row['frames_per_second'], 0)} | {speed} | {100 * row['identical_share']:.1f}% | "
                     f"{row['max_mean_abs_difference']:.2f} |")
    lines += ["", f"{report['clips']} real clips; best of {report['params']['repeats']} runs. "
                  f"Source: {_provenance(report, READERS_RESULTS)}"]
    return "\n".join(lines)


@renderer("scale")
def scale(results: Path) -> str:
    """Seconds per utterance and peak memory of every stage at two corpus sizes, and Prefect under many tasks."""
    report = _load(results, SCALE_RESULTS)
    small, large = report["sizes"]
    lines = [f"| stage | s/utt at {small['utterances']} utt | s/utt at {large['utterances']} utt | time ratio | "
             f"stage MiB at {small['utterances']} | stage MiB at {large['utterances']} | memory ratio | "
             "DVC's own MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for row in report["stages"]:
        flags = ("" if row["time_linear"] else " (over)", "" if row["memory_flat"] else " (over)")
        stage = row.get("stage_rss_mib") or row["peak_rss_mib"]  # results before DVC was measured apart
        dvc = "{:.0f} / {:.0f}".format(*row["dvc_rss_mib"]) if "dvc_rss_mib" in row else "not measured apart"
        lines.append(f"| `{row['stage']}` | {row['seconds_per_utterance'][0]:.3f} | "
                     f"{row['seconds_per_utterance'][1]:.3f} | {row['time_ratio']:.2f}{flags[0]} | "
                     f"{stage[0]:.0f} | {stage[1]:.0f} | {row['memory_ratio']:.2f}{flags[1]} | {dvc} |")
    lines += ["", f"Limits: memory ratio <= {report['memory_limit']}, time ratio <= {report['time_limit']}; "
                  f"every stage within: memory {'yes' if report['all_memory_flat'] else 'no'}, "
                  f"time {'yes' if report['all_time_linear'] else 'no'}."]
    prefect = report.get("prefect")
    if prefect:
        lines += ["", f"Prefect: a stage of {prefect['tasks']} items as a flow on a local server ran "
                      f"{prefect['tasks_per_second']} tasks/s; the slowest `/health` answer during it took "
                      f"{prefect['slowest_health_seconds']} s."]
    lines += ["", f"Source: {_provenance(report, SCALE_RESULTS)}"]
    return "\n".join(lines)


@renderer("gpu")
def gpu(results: Path) -> str:
    """Every stage on the device, training at fp32 and with mixed precision, extractors at fp32 and fp16."""
    report = _load(results, GPU_RESULTS)
    amp = {row["stage"]: row["seconds"] for row in report["train_amp"]}
    lines = [f"| stage on `{report['device']}` | seconds | utterances/s | seconds with `train.amp` |",
             "|---|---|---|---|"]
    lines += [f"| `{row['stage']}` | {_cell(row['seconds'])} | {_cell(row['utterances_per_second'])} | "
              f"{_cell(amp.get(row['stage']))} |" for row in report["stages"]]
    lines += ["", "| extractor | dtype | batch | utterances/s | peak RSS (MB) | peak CUDA (MB) |",
              "|---|---|---|---|---|---|"]
    for row in report["extractors"]:
        speed = _cell(row.get("utt_per_s")) if "error" not in row else f"failed: {row['error']}"
        lines.append(f"| {row['extractor']} | {row['dtype']} | {row['batch_size']} | {speed} | "
                     f"{_cell(row.get('peak_rss_mb'), 0)} | {_cell(row.get('peak_cuda_mb'), 0)} |")
    lines += ["", f"{report['utterances']} utterances; seeds {', '.join(map(str, report['seeds']))} per `train@`. "
                  f"Source: {_provenance(report, GPU_RESULTS)}"]
    return "\n".join(lines)


@renderer("ablations")
def ablations(results: Path) -> str:
    """Every model family's ablation rows on the demo corpus: test and dev weighted F1, or why a row did not run."""
    report = _load(results, ABLATIONS_RESULTS)
    lines = ["| family | row | test W-F1 | dev W-F1 | note |", "|---|---|---|---|---|"]
    for row in report["results"]:
        scores = row.get("scores") or {}
        note = "" if row["status"] == "ok" else row["status"]
        if row.get("experiment"):
            note = f"`{row['experiment']}` reran {', '.join(row.get('stages_run') or [])}. {note}".strip()
        note = note.replace("|", "\\|")
        lines.append(f"| {row['family']} | {row['row']} | {_pm(scores.get('test_weighted_f1'))} | "
                     f"{_pm(scores.get('dev_weighted_f1'))} | {note} |")
        if "text_model_scores" in row:
            text = row["text_model_scores"]
            lines.append(f"| {row['family']} | {row['row']}: its refined text model | "
                         f"{_pm(text['test_weighted_f1'])} | {_pm(text['dev_weighted_f1'])} |  |")
    lines += ["", f"Mean ± std over seeds {', '.join(map(str, report['seeds']))}. "
                  f"Source: {_provenance(report, ABLATIONS_RESULTS)}"]
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
    logs.configure()
    text = args.readme.read_text()
    rendered = render_readme(text, args.results)
    if args.check:
        if rendered != text:
            log.error("%s is out of date with %s: run python -m pipeline.readme_tables", args.readme, args.results)
            return 1
        return 0
    args.readme.write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
