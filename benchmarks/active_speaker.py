"""Active-speaker accuracy on real talking faces, person-disjoint: VoxCeleb2 in-the-wild clips, and GRID.

For each corpus the people are split into fixed train, dev and test folds (no person in two folds).
Scenes put two or three faces of *different* people side by side and play the audio of one of them:

* `hard`: the other faces are other clips talking, silently (their mouths move, just not to this audio);
* `listening`: the other faces hold still (one frame of another clip, the quietest one, with a slow head
  drift), as a listener would.

LipSyncNet is trained by the real `lipsync_train` stage on a corpus made of the train fold only: its
single-face clips plus unlabelled multi-face scenes of train people, exactly as `dvc repro` would see a
user's corpus (the stage holds out dialogues of it for its own dev figures and for `speaker.method:
auto`). Dev and test scenes then go through the real `cut`, `faces` and `speaker` stages once per
method; the chosen track is compared with the seat of the face whose audio plays. Settings are the
project's `params.yaml` defaults, chosen on the dev fold; the test fold is reported, never tuned on.
Accuracies carry 95 % Wilson intervals. On VoxCeleb2, LipSyncNet is also trained on 25 % and 50 % of
the train fold (whole clips, seeded), to show how much footage the self-supervision needs.

    python benchmarks/active_speaker.py [--data ../shared/data] [--corpora voxceleb2 grid]
                                        [--scenes 100] [--fractions 0.25 0.5 1.0] [--set lipsync.steps=1500]
    python benchmarks/active_speaker.py --dev-only ...   # tuning: dev scenes only
    python benchmarks/active_speaker.py --combine vox.json grid.json   # corpora run separately, one commit

Writes `benchmarks/results/active_speaker.json` (`active_speaker_dev.json` with `--dev-only`) and
prints the tables. CPU throughput is wall clock
on this machine (other processes slow it down).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from benchmarks.workspace import apply_overrides  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.datasets.demo.video import encode_mp4  # noqa: E402
from pipeline.hooks import silent_hook  # noqa: E402
from pipeline.manifest import write_manifest  # noqa: E402
from pipeline.media import iter_frames, probe, read_audio  # noqa: E402
from pipeline.provenance import file_inputs, now, provenance  # noqa: E402
from pipeline.runner import PlainRunner  # noqa: E402
from pipeline.training.metrics import wilson_interval  # noqa: E402

FPS = 25
RATE = 16000
METHODS = ["auto", "lipsyncnet", "fused", "mouth_motion", "first_face", "largest_face"]
FRACTION_METHODS = ["auto", "lipsyncnet"]
VARIANTS = ("hard", "listening")
SIZES = (2, 3)
# GRID names no people; these clips show ten: id2_vcd_swwp2s and pwij3p are the same man (same face,
# voice and clothes), every other clip is a person of its own.
GRID_SAME_PERSON = {"pwij3p": "id2_vcd_swwp2s"}


@dataclass(frozen=True)
class Corpus:
    folder: str
    pattern: str
    tile: tuple[int, int]  # width, height of one face in a scene
    scene_frames: int  # scene length (25 fps)
    test: tuple[str, ...]  # people of the test fold
    dev: tuple[str, ...]  # people of the dev fold (the rest train)

    def persons(self, root: Path) -> dict[str, str]:
        """Clip stem -> person."""
        folder = root / self.folder
        if (folder / "clips.csv").exists():
            with (folder / "clips.csv").open() as handle:
                return {Path(r["file"]).stem: r["person"] for r in csv.DictReader(handle)}
        return {p.stem: GRID_SAME_PERSON.get(p.stem, p.stem) for p in sorted(folder.glob(self.pattern))}


CORPORA = {
    "voxceleb2": Corpus("clips/voxceleb2", "*.mp4", (224, 224), 75,
                        test=("pcavs_p741400", "pcavs_p00098", "pcavs_p00015", "pcavs_p00473", "pcavs_p00373"),
                        dev=("id01175", "pcavs_p00002", "pcavs_p681100216", "pcavs_p796100172")),
    "grid": Corpus("clips/grid", "*.mpg", (240, 192), 50,
                   test=("bbaf2n", "lbbc2a", "lwbsza", "swiz3n"), dev=("sbia1a", "brbk7n", "sbwe5n")),
}


# ---------------------------------------------------------------------------------------------------
# clips and scenes


def load_clips(root: Path, corpus: Corpus) -> dict[str, dict[str, Any]]:
    import cv2

    persons = corpus.persons(root)
    clips = {}
    for path in sorted((root / corpus.folder).glob(corpus.pattern)):
        info = probe(path)
        frames = np.stack([cv2.resize(image, corpus.tile, interpolation=cv2.INTER_AREA)
                           for _, image in iter_frames(path, range(info.frame_count + 5), info.fps)])
        audio = read_audio(path, RATE)
        usable = min(len(frames), len(audio) * FPS // RATE)
        clips[path.stem] = {"path": path, "frames": frames[:usable], "audio": audio, "person": persons[path.stem]}
    return clips


def fold_of(person: str, corpus: Corpus) -> str:
    return "test" if person in corpus.test else "dev" if person in corpus.dev else "train"


def _listening(clip: dict[str, Any], frames: int, rng: np.random.Generator) -> np.ndarray:
    """A listener: the clip's quietest frame held still, with a slow drift of the head (no articulation)."""
    import cv2

    hop = RATE // FPS
    energy = np.array([np.sqrt(np.mean(clip["audio"][k * hop:(k + 1) * hop] ** 2) + 1e-12)
                       for k in range(len(clip["frames"]))])
    still = clip["frames"][int(np.argmin(energy))]
    height, width = still.shape[:2]
    phase, amplitude = rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.5, 1.0, 3)
    out = []
    for k in range(frames):
        t = 2 * np.pi * k / (frames * 1.5)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0,
                                         1.0 + 0.015 * amplitude[2] * np.sin(t + phase[2]))
        matrix[:, 2] += (3 * amplitude[0] * np.sin(t + phase[0]), 2 * amplitude[1] * np.sin(t + phase[1]))
        out.append(cv2.warpAffine(still, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


def compose_scenes(clips: dict[str, dict[str, Any]], names: list[str], faces: int, count: int, variant: str,
                   frames: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """`count` scenes of `faces` different people; the speaker's person and seat cycle for balance."""
    by_person: dict[str, list[str]] = {}
    for name in names:
        if len(clips[name]["frames"]) >= frames:
            by_person.setdefault(clips[name]["person"], []).append(name)
    people = sorted(by_person)
    if len(people) < faces:
        return []
    scenes = []
    for index in range(count):
        speaker_person = people[index % len(people)]
        others = [p for p in people if p != speaker_person]
        chosen = [speaker_person] + [others[i] for i in rng.choice(len(others), size=faces - 1, replace=False)]
        seat = index % faces
        order = chosen[1:]
        order.insert(seat, speaker_person)
        tiles, audio, names_used = [], None, []
        for person in order:
            name = by_person[person][int(rng.integers(len(by_person[person])))]
            clip = clips[name]
            if person == speaker_person or variant == "hard":
                start = int(rng.integers(0, len(clip["frames"]) - frames + 1))
                part = clip["frames"][start:start + frames]
                if person == speaker_person:
                    audio = clip["audio"][start * RATE // FPS:(start + frames) * RATE // FPS]
            else:
                part = _listening(clip, frames, rng)
            tiles.append(part[:, :, ::-1] if rng.random() < 0.5 else part)
            names_used.append(name)
        scenes.append({"frames": np.concatenate(tiles, axis=2), "audio": audio, "seat": seat, "clips": names_used,
                       "faces": faces, "variant": variant})
    return scenes


# ---------------------------------------------------------------------------------------------------
# workspaces: a corpus folder + manifest, and the real stages run in it


def write_workspace(workspace: Path, single: list[tuple[str, Path]], scenes: list[dict[str, Any]],
                    tile: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """Copy single-face clips and encode composed scenes into `workspace/corpus`, then write the manifest."""
    corpus = workspace / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    rows, truth = [], {}
    for name, path in single:
        shutil.copy(path, corpus / path.name)
        rows.append({"utt_id": name, "media": path.name})
    for index, scene in enumerate(scenes):
        utt = f"{scene['variant']}_{scene['faces']}face_{index:04d}"
        height, width = scene["frames"].shape[1:3]
        encode_mp4(scene["frames"], scene["audio"], RATE, corpus / f"{utt}.mp4", width, height, FPS)
        rows.append({"utt_id": utt, "media": f"{utt}.mp4"})
        truth[utt] = {k: scene[k] for k in ("seat", "faces", "variant", "clips")}
    manifest = pd.DataFrame([{"utt_id": r["utt_id"], "dialogue_id": r["utt_id"], "turn": 0, "speaker": "?",
                              "text": "", "label": "neutral", "split": "train", "media": r["media"],
                              "start": np.nan, "end": np.nan} for r in rows])
    cwd = os.getcwd()
    os.chdir(workspace)
    try:
        write_manifest(manifest, corpus, ["neutral"], "active_speaker_benchmark")
    finally:
        os.chdir(cwd)
    return truth


def run_stage(workspace: Path, name: str, params: dict[str, Any], workers: int) -> tuple[dict[str, Any], float]:
    from pipeline.stages import get_stage

    cwd = os.getcwd()
    os.chdir(workspace)
    try:
        started = time.perf_counter()
        summary = get_stage(name)(params, PlainRunner(workers, hook=silent_hook), None)
        return summary, time.perf_counter() - started
    finally:
        os.chdir(cwd)


def seat_hits(workspace: Path, truth: dict[str, dict[str, Any]], tile_width: int) -> dict[tuple[str, int], list[int]]:
    """(variant, faces) -> 1 per scene whose chosen track sits on the speaker's seat (no choice counts as wrong)."""
    from pipeline.tables import read_frame

    choices = read_frame(workspace / "data/speaker.parquet").set_index("utt_id")
    faces = read_frame(workspace / "data/faces.parquet")
    centres = ((faces.x1 + faces.x2) / 2).groupby([faces.utt_id, faces.track_id]).mean()
    hits: dict[tuple[str, int], list[int]] = {}
    for utt, scene in truth.items():
        track = int(choices.at[utt, "track_id"]) if utt in choices.index else -1
        hit = track >= 0 and int(centres[(utt, track)] // tile_width) == scene["seat"]
        hits.setdefault((scene["variant"], scene["faces"]), []).append(int(hit))
    return hits


def summarise(hits: dict[tuple[str, int], list[int]]) -> dict[str, dict[str, Any]]:
    """variant -> accuracy, Wilson interval and count per scene size."""
    out: dict[str, dict[str, Any]] = {}
    for (variant, faces), values in sorted(hits.items()):
        key = {2: "two", 3: "three"}[faces]
        out.setdefault(variant, {}).update({
            f"{key}_face_accuracy": round(float(np.mean(values)), 4),
            f"{key}_face_ci": wilson_interval(int(sum(values)), len(values)),
            f"{key}_face_scenes": len(values)})
    return out


# ---------------------------------------------------------------------------------------------------
# one corpus


def train_clip_subset(clips: dict[str, dict[str, Any]], names: list[str], fraction: float, seed: int) -> list[str]:
    """Whole clips, seeded, until `fraction` of the train fold's seconds; at least two people."""
    if fraction >= 1.0:
        return names
    rng = np.random.default_rng(seed)
    order = [names[i] for i in rng.permutation(len(names))]
    total = sum(len(clips[n]["frames"]) for n in names)
    picked, seconds = [], 0
    for name in order:
        if seconds >= fraction * total and len({clips[n]["person"] for n in picked}) >= 2:
            break
        picked.append(name)
        seconds += len(clips[name]["frames"])
    return sorted(picked)


def train_lipsync(root: Path, clips: dict[str, dict[str, Any]], names: list[str], corpus: Corpus,
                  params: dict[str, Any], args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The real `cut` -> `faces` -> `lipsync_train` on the train fold's clips plus unlabelled scenes of them."""
    rng = np.random.default_rng([seed, 7])
    scenes = []
    for faces in SIZES:
        scenes += compose_scenes(clips, names, faces, args.train_scenes // len(SIZES), "hard", corpus.scene_frames,
                                 rng)
    write_workspace(root, [(n, clips[n]["path"]) for n in names], scenes, corpus.tile)
    run_stage(root, "cut", params, args.workers)
    run_stage(root, "faces", params, args.workers)
    summary, seconds = run_stage(root, "lipsync_train", params, 1)
    metrics = json.loads((root / "metrics/lipsyncnet.json").read_text())
    return {"clips": len(names), "seconds_of_video": round(sum(len(clips[n]["frames"]) for n in names) / FPS, 1),
            "people": len({clips[n]["person"] for n in names}), "multi_face_scenes": len(scenes),
            "train_seconds": round(seconds, 1), "metrics": metrics, "summary": summary}


def evaluate(workspace: Path, truth: dict[str, dict[str, Any]], checkpoint: Path, corpus: Corpus,
             params: dict[str, Any], methods: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Every method's accuracy on the scenes in `workspace` (faces found once), with the speaker stage's timing."""
    target = workspace / "artifacts" / "lipsyncnet"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(checkpoint, target)
    results: dict[str, Any] = {}
    for method in methods:
        params = copy.deepcopy(params)
        params["speaker"]["method"] = method
        summary, seconds = run_stage(workspace, "speaker", params, args.workers)
        results[method] = {"variants": summarise(seat_hits(workspace, truth, corpus.tile[0])),
                           "seconds": round(seconds, 2), "utterances_per_second": round(len(truth) / seconds, 2),
                           "chose": summary.get("method")}
        print(f"    {method:<13} {json.dumps(results[method]['variants'])}", flush=True)
    return results


def scene_workspace(workspace: Path, clips: dict[str, dict[str, Any]], names: list[str], corpus: Corpus,
                    params: dict[str, Any], args: argparse.Namespace, seed: int) -> tuple[dict[str, Any], dict]:
    rng = np.random.default_rng([seed, 11])
    scenes = [s for variant in VARIANTS for faces in SIZES
              for s in compose_scenes(clips, names, faces, args.scenes, variant, corpus.scene_frames, rng)]
    truth = write_workspace(workspace, [], scenes, corpus.tile)
    run_stage(workspace, "cut", params, args.workers)
    summary, seconds = run_stage(workspace, "faces", params, args.workers)
    faces = {"seconds": round(seconds, 1), "sampled_frames": summary["sampled_frames"],
             "video_frames": len(scenes) * corpus.scene_frames}
    return truth, faces


def run_corpus(name: str, corpus: Corpus, params: dict[str, Any], args: argparse.Namespace, root: Path
               ) -> dict[str, Any]:
    clips = load_clips(args.data, corpus)
    params = copy.deepcopy(params)
    params["faces"]["detect_width"] = corpus.tile[0] * max(SIZES)  # scenes are detected at full size
    folds = {fold: sorted(n for n, c in clips.items() if fold_of(c["person"], corpus) == fold)
             for fold in ("train", "dev", "test")}
    people = {fold: sorted({clips[n]["person"] for n in names}) for fold, names in folds.items()}
    assert not (set(people["train"]) & set(people["test"])) and not (set(people["dev"]) & set(people["test"]))
    print(f"{name}: people per fold {{{', '.join(f'{k}: {len(v)}' for k, v in people.items())}}}", flush=True)

    trained: dict[float, dict[str, Any]] = {}
    fractions = args.fractions if name in args.fraction_corpora else [1.0]
    for fraction in sorted(fractions):
        subset = train_clip_subset(clips, folds["train"], fraction, args.seed)
        workspace = root / name / f"train_{int(fraction * 100)}"
        trained[fraction] = train_lipsync(workspace, clips, subset, corpus, params, args, args.seed)
        m = trained[fraction]["metrics"]
        print(f"  trained on {fraction:.0%} ({trained[fraction]['seconds_of_video']} s, "
              f"{trained[fraction]['people']} people) in {trained[fraction]['train_seconds']} s: "
              f"dev sync {m['dev_sync_accuracy']}, offset {m['dev_offset_accuracy']}, "
              f"auto -> {m['selection']['method']}", flush=True)
    full = max(trained)
    out: dict[str, Any] = {"people": people, "clips": {k: len(v) for k, v in folds.items()},
                           "scene_seconds": corpus.scene_frames / FPS, "scenes_per_cell": args.scenes,
                           "lipsync_train": {f"{int(f * 100)}%": t for f, t in trained.items()}}
    for fold in ("dev",) if args.dev_only else ("dev", "test") if args.with_dev else ("test",):
        print(f"  {fold} scenes", flush=True)
        workspace = root / name / fold
        truth, faces = scene_workspace(workspace, clips, folds[fold], corpus, params, args,
                                       args.seed + (0 if fold == "test" else 1))
        by_method = evaluate(workspace, truth, root / name / f"train_{int(full * 100)}" / "artifacts" / "lipsyncnet",
                             corpus, params, METHODS, args)
        default = params["speaker"]["method"]
        by_method["default"] = {**by_method[default], "is": default}
        out[fold] = {v: {m: r["variants"].get(v, {}) for m, r in by_method.items()} for v in VARIANTS}
        out[f"{fold}_faces_stage"] = faces
        out[f"{fold}_speaker_throughput"] = {m: {"utterances_per_second": r["utterances_per_second"],
                                                 "chose": r["chose"]} for m, r in by_method.items()}
        if fold == "test":
            curve = {}
            for fraction in sorted(trained):
                if fraction == full:
                    curve[f"{int(fraction * 100)}%"] = {m: out["test"]["hard"][m] for m in FRACTION_METHODS}
                    continue
                print(f"  test scenes, LipSyncNet trained on {fraction:.0%}", flush=True)
                partial = evaluate(workspace, truth, root / name / f"train_{int(fraction * 100)}" / "artifacts" /
                                   "lipsyncnet", corpus, params, FRACTION_METHODS, args)
                curve[f"{int(fraction * 100)}%"] = {m: r["variants"].get("hard", {}) for m, r in partial.items()}
            out["train_fraction_test_hard"] = curve
    if args.dev_only:
        return {"dev": out.pop("dev"), **out}
    # the published shape: corpus -> variant -> method (test fold), dev and the rest beside it
    return {**out["test"], **{k: v for k, v in out.items() if k not in VARIANTS + ("test",)}}


# ---------------------------------------------------------------------------------------------------


def _fmt(cell: dict[str, Any], key: str) -> str:
    if f"{key}_face_accuracy" not in cell:
        return "-"
    lo, hi = cell[f"{key}_face_ci"]
    return f"{cell[f'{key}_face_accuracy']:.3f} [{lo:.2f}, {hi:.2f}]"


def print_tables(report: dict[str, Any]) -> None:
    for name, result in report["corpora"].items():
        shown = ([("dev", result["dev"])] if "dev" in result else []) + \
            ([("test", {v: result[v] for v in VARIANTS})] if "hard" in result else [])
        for fold, variants in shown:
            for variant in VARIANTS:
                print(f"\n{name} / {fold} / {variant} distractors ({result['scene_seconds']:.0f} s scenes)")
                print(f"{'method':<14}{'two faces':>26}{'three faces':>26}")
                for method, cell in variants[variant].items():
                    print(f"{method:<14}{_fmt(cell, 'two'):>26}{_fmt(cell, 'three'):>26}")
        full = result["lipsync_train"]["100%"]["metrics"]
        print(f"{name}: lipsync_train dev sync {full['dev_sync_accuracy']}, offset {full['dev_offset_accuracy']}, "
              f"auto chose {full['selection']['method']} ({full['selection']['reason']})")


def combine(files: list[Path]) -> dict[str, Any]:
    """One report from runs of different corpora made at the same commit with the same params.

    Also takes files written before they carried `inputs` (their corpora simply add no input hashes).
    """
    reports = [json.loads(Path(f).read_text()) for f in files]
    if len({r["commit"] for r in reports}) != 1 or any(r["dirty"] for r in reports):
        sys.exit("only runs of one clean commit can be combined: " +
                 ", ".join(f"{f}: {r['commit'][:10]}{' dirty' if r['dirty'] else ''}" for f, r in zip(files, reports)))
    if any(r["params"] != reports[0]["params"] or r["overrides"] != reports[0]["overrides"] for r in reports):
        sys.exit("only runs with the same params can be combined")
    corpora: dict[str, Any] = {}
    for report in reports:
        for name, result in report["corpora"].items():
            if name in corpora:
                sys.exit(f"{name} appears in more than one of {', '.join(map(str, files))}")
            corpora[name] = {**result, "run": {k: report[k] for k in ("command", "date", "machine", "seconds")}}
    return {**reports[0], "inputs": {k: v for r in reports for k, v in r.get("inputs", {}).items()},
            "corpora": corpora,
            "command": "python benchmarks/active_speaker.py --combine " + " ".join(map(str, files)),
            "date": now(), "seconds": round(sum(r["seconds"] for r in reports), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results")
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    parser.add_argument("--scenes", type=int, default=100, help="scenes per variant and size, per fold")
    parser.add_argument("--train-scenes", type=int, default=60, help="unlabelled multi-face scenes in the train corpus")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fraction-corpora", nargs="+", default=["voxceleb2"], choices=list(CORPORA),
                        help="corpora trained on each of --fractions (the others on 100%% only)")
    parser.add_argument("--dev-only", action="store_true", help="tune: train and score dev scenes, never the test fold")
    parser.add_argument("--with-dev", action="store_true", help="score the dev scenes as well as the test scenes")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="params override key=value")
    parser.add_argument("--combine", type=Path, nargs="+", default=None,
                        help="merge finished runs of different corpora (same commit) into one results file")
    args = parser.parse_args()
    if args.combine:
        report = combine(args.combine)
        print_tables(report)
        (args.out / "active_speaker.json").write_text(json.dumps(report, indent=2, default=float))
        print(f"\nwrote {args.out / 'active_speaker.json'}")
        return
    if not (args.data / "clips").is_dir():
        sys.exit(f"{args.data / 'clips'} not found: pass --data pointing at the shared data folder")
    if 1.0 not in args.fractions:
        args.fractions.append(1.0)
    import torch

    torch.set_num_threads(2)
    os.environ.setdefault("PIPELINE_ORCHESTRATOR", "plain")
    started = time.perf_counter()
    params = load_params(PROJECT / "params.yaml")
    apply_overrides(params, args.sets)
    params["run"]["max_failure_ratio"] = 1.0
    # provenance as of the start: the tree may change while a long run goes on
    origin = provenance({"lipsync": params["lipsync"], "speaker": params["speaker"], "faces": params["faces"]},
                        file_inputs([args.data / CORPORA[name].folder for name in args.corpora]))
    root = Path(args.workdir or tempfile.mkdtemp(prefix="active-speaker-")).resolve()
    try:
        corpora = {name: run_corpus(name, CORPORA[name], params, args, root) for name in args.corpora}
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    report = {
        **origin,
        "corpora": corpora,
        "overrides": args.sets,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print_tables(report)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / ("active_speaker_dev.json" if args.dev_only else "active_speaker.json")
    target.write_text(json.dumps(report, indent=2, default=float))
    print(f"\nwrote {target}")


if __name__ == "__main__":
    main()
