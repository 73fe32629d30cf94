"""Active-speaker accuracy on real faces: scenes of two and three GRID speakers side by side.

Each scene plays one GRID clip with its audio and one or two other GRID clips silently beside it (their
mouths move: they were speaking too, just not this sentence). The 11 clips are split into two folds;
for each fold LipSyncNet is trained by the real `lipsync_train` stage on the *other* fold's clips only,
so no test face and no test audio is ever seen in training. The test scenes then go through the real
`cut`, `faces` and `speaker` stages once per method, and the chosen track is compared with the seat
of the clip whose audio plays.

    python benchmarks/active_speaker.py [--data /work/shared/data] [--out benchmarks/results]

Scenes vary the clip combination, the speaker's seat (balanced over seats), a 2 s segment of each
clip (independent start per face) and mirroring of each face. Throughput is measured on the CPU
(wall clock; other processes on the machine slow it down).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from pipeline.config import load_params  # noqa: E402
from pipeline.datasets.demo_video import encode_mp4  # noqa: E402
from pipeline.hooks import silent_hook  # noqa: E402
from pipeline.manifest import write_manifest  # noqa: E402
from pipeline.media import iter_frames, probe, read_audio  # noqa: E402
from pipeline.runner import PlainRunner  # noqa: E402

FPS = 25
RATE = 16000
TILE = (240, 192)  # width, height of one face tile (GRID is 360x288)
SEGMENT = 50  # frames per scene (2 s)
METHODS = ["lipsyncnet", "mouth_motion", "first_face", "largest_face"]
LIPSYNC = {  # the `lipsync:` block proposed for params.yaml, with the benchmark's own dev_fraction
    "device": "cpu", "seed": 0, "splits": ["train"], "dev_fraction": 0.0, "max_utterances": 3000,
    "min_coverage": 0.8, "bootstrap_margin": 0.2, "relabel_margin": 0.1, "rounds": 1,
    "steps": 400, "batch_size": 64, "lr": 0.001, "weight_decay": 0.0001, "margin": 1.5, "alpha": 0.7,
    "multiway_weight": 0.5, "min_shift": 5, "max_shift": 15, "foreign": 0.25,
    "augment": {"flip": 0.5, "shift": 0.08, "scale": 0.1, "noise": 0.03, "reverse": 0.5},
    "max_offset": 1, "model": {},
}


def load_clips(folder: Path) -> dict[str, dict[str, Any]]:
    clips = {}
    for path in sorted(folder.glob("*.mpg")):
        info = probe(path)
        frames = np.stack([image for _, image in iter_frames(path, range(info.frame_count + 1), info.fps)])
        clips[path.stem] = {"path": path, "frames": frames, "audio": read_audio(path, RATE)}
    return clips


def compose_scenes(clips: dict[str, dict[str, Any]], names: list[str], faces: int, variants: int,
                   rng: np.random.Generator) -> list[dict[str, Any]]:
    """Every (speaker, distractors) combination of `names`, `variants` times, speaker seat balanced."""
    import cv2

    scenes = []
    combos = [(s, others) for s in names for others in itertools.combinations([n for n in names if n != s], faces - 1)]
    for variant in range(variants):
        for index, (speaker, others) in enumerate(combos):
            seat = (index + variant) % faces
            order = list(others)
            rng.shuffle(order)
            order.insert(seat, speaker)
            tiles, audio = [], None
            for name in order:
                clip = clips[name]
                start = int(rng.integers(0, len(clip["frames"]) - SEGMENT + 1))
                part = clip["frames"][start:start + SEGMENT]
                part = np.stack([cv2.resize(f, TILE, interpolation=cv2.INTER_AREA) for f in part])
                if rng.random() < 0.5:
                    part = part[:, :, ::-1]
                tiles.append(part)
                if name == speaker:
                    a0 = int(start * RATE / FPS)
                    audio = clip["audio"][a0:a0 + SEGMENT * RATE // FPS]
            boxes = [[k * TILE[0], 0, (k + 1) * TILE[0], TILE[1]] for k in range(faces)]
            scenes.append({"frames": np.concatenate(tiles, axis=2), "audio": audio, "seat": seat,
                           "boxes": boxes, "clips": order, "speaker": speaker})
    return scenes


def manifest_rows(entries: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for i, e in enumerate(entries):
        rows.append({"utt_id": e["utt_id"], "dialogue_id": e["dialogue_id"], "turn": i, "speaker": "grid",
                     "text": "", "label": "neutral", "split": "train", "media": e["media"],
                     "start": np.nan, "end": np.nan, "true_speaker": e.get("seat", 0),
                     "true_boxes": json.dumps(e.get("boxes", []))})
    return pd.DataFrame(rows)


def run_stage(name: str, params: dict[str, Any], workers: int) -> tuple[dict[str, Any], float]:
    from pipeline.stages import get_stage

    started = time.perf_counter()
    summary = get_stage(name)(params, PlainRunner(workers, hook=silent_hook), None)
    return summary, time.perf_counter() - started


def accuracy_by_size(workspace: Path, scenes: dict[str, dict[str, Any]]) -> dict[int, list[int]]:
    """Per scene size: 1 when the chosen track sits on the speaker's seat, else 0 (no face counts as wrong)."""
    from pipeline.tables import read_frame

    choices = read_frame(workspace / "data/speaker.parquet").set_index("utt_id")
    faces = read_frame(workspace / "data/faces.parquet")
    hits: dict[int, list[int]] = {2: [], 3: []}
    for utt_id, scene in scenes.items():
        size = len(scene["boxes"])
        if utt_id not in choices.index or choices.at[utt_id, "track_id"] < 0:
            hits[size].append(0)
            continue
        track = faces[(faces.utt_id == utt_id) & (faces.track_id == choices.at[utt_id, "track_id"])]
        centre = float(((track.x1 + track.x2) / 2).mean())
        hits[size].append(int(int(centre // TILE[0]) == scene["seat"]))
    return hits


def run_fold(fold: int, train_names: list[str], test_names: list[str], clips: dict[str, dict[str, Any]],
             base: dict[str, Any], root: Path, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng([args.seed, fold])
    train_dir, test_dir = root / f"fold{fold}_train", root / f"fold{fold}_test"
    for d in (train_dir / "corpus", test_dir / "corpus"):
        d.mkdir(parents=True)
    # training workspace: the training clips themselves, one utterance each (one face: positives)
    for name in train_names:
        shutil.copy(clips[name]["path"], train_dir / "corpus" / f"{name}.mpg")
    params = copy.deepcopy(base)
    params["lipsync"] = {**LIPSYNC, "steps": args.steps, "seed": args.seed + fold}
    os.chdir(train_dir)
    write_manifest(manifest_rows([{"utt_id": n, "dialogue_id": n, "media": f"{n}.mpg"} for n in train_names]),
                   train_dir / "corpus", ["neutral"], "grid")
    for stage in ("cut", "faces"):
        run_stage(stage, params, args.workers)
    train_summary, train_seconds = run_stage("lipsync_train", params, 1)
    print(f"fold {fold}: trained on {train_names} in {train_seconds:.0f} s: {train_summary}", flush=True)

    # test workspace: composed scenes of the held-out clips only
    scenes = {}
    for faces in (2, 3):
        variants = args.two_face_variants if faces == 2 else args.three_face_variants
        for i, scene in enumerate(compose_scenes(clips, test_names, faces, variants, rng)):
            utt = f"f{fold}_{faces}face_{i:03d}"
            height, width = scene["frames"].shape[1:3]
            encode_mp4(scene["frames"], scene["audio"], RATE, test_dir / "corpus" / f"{utt}.mp4", width, height, FPS)
            scenes[utt] = {**scene, "utt_id": utt, "dialogue_id": utt, "media": f"{utt}.mp4"}
    os.chdir(test_dir)
    write_manifest(manifest_rows(list(scenes.values())), test_dir / "corpus", ["neutral"], "grid")
    shutil.copytree(train_dir / "artifacts" / "lipsyncnet", test_dir / "artifacts" / "lipsyncnet")
    params["faces"]["detect_width"] = TILE[0] * 3
    run_stage("cut", params, args.workers)
    faces_summary, faces_seconds = run_stage("faces", params, args.workers)
    result: dict[str, Any] = {"train_clips": train_names, "test_clips": test_names, "scenes": len(scenes),
                              "faces": {"seconds": faces_seconds, "sampled_frames": faces_summary["sampled_frames"],
                                        "video_frames": len(scenes) * SEGMENT},
                              "methods": {}}
    for method in METHODS:
        params["speaker"]["method"] = method
        _, seconds = run_stage("speaker", params, args.workers)
        hits = accuracy_by_size(test_dir, scenes)
        result["methods"][method] = {"hits": hits, "seconds": seconds}
        print(f"fold {fold} {method}: two {np.mean(hits[2]):.3f} ({len(hits[2])}), "
              f"three {np.mean(hits[3]):.3f} ({len(hits[3])}), {seconds:.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=PROJECT / "benchmarks" / "results")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--steps", type=int, default=400, help="LipSyncNet training steps per fold")
    parser.add_argument("--two-face-variants", type=int, default=2)
    parser.add_argument("--three-face-variants", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    grid = args.data / "clips" / "grid"
    if not grid.is_dir():
        sys.exit(f"{grid} not found: pass --data pointing at the shared data folder")
    import torch

    torch.set_num_threads(2)
    os.environ.setdefault("PIPELINE_ORCHESTRATOR", "plain")
    started = time.perf_counter()
    clips = load_clips(grid)
    names = sorted(clips)
    folds = [names[0::2], names[1::2]]
    base = load_params(PROJECT / "params.yaml")
    base["run"]["max_failure_ratio"] = 1.0
    root = Path(args.workdir or tempfile.mkdtemp(prefix="active-speaker-"))
    cwd = os.getcwd()
    try:
        results = [run_fold(f, [n for n in names if n not in test], test, clips, base, root, args)
                   for f, test in enumerate(folds)]
    finally:
        os.chdir(cwd)
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)

    methods = {}
    for method in METHODS:
        two = [h for r in results for h in r["methods"][method]["hits"][2]]
        three = [h for r in results for h in r["methods"][method]["hits"][3]]
        methods[method] = {"two_face_accuracy": round(float(np.mean(two)), 4),
                           "three_face_accuracy": round(float(np.mean(three)), 4),
                           "two_face_scenes": len(two), "three_face_scenes": len(three)}
    scenes = sum(r["scenes"] for r in results)
    faces_seconds = sum(r["faces"]["seconds"] for r in results)
    throughput = {
        "faces_sampled_frames_per_second": round(sum(r["faces"]["sampled_frames"] for r in results) / faces_seconds, 2),
        "faces_video_frames_per_second": round(sum(r["faces"]["video_frames"] for r in results) / faces_seconds, 2),
        "speaker_utterances_per_second": {
            m: round(scenes / sum(r["methods"][m]["seconds"] for r in results), 2) for m in METHODS},
        "device": "cpu", "torch_threads": 2, "scene_size": [f"{TILE[0] * k}x{TILE[1]}" for k in (2, 3)],
        "scene_seconds": SEGMENT / FPS,
    }
    report = {
        "methods": methods, "throughput": throughput,
        "folds": [{"train_clips": r["train_clips"], "test_clips": r["test_clips"], "scenes": r["scenes"]}
                  for r in results],
        "lipsync": {**LIPSYNC, "steps": args.steps},
        "command": "python benchmarks/active_speaker.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"\n{'method':<14}{'two faces':>12}{'three faces':>13}{'speaker utt/s':>15}")
    for method in METHODS:
        m = methods[method]
        print(f"{method:<14}{m['two_face_accuracy']:>12.3f}{m['three_face_accuracy']:>13.3f}"
              f"{throughput['speaker_utterances_per_second'][method]:>15.2f}")
    print(f"scenes: {methods['lipsyncnet']['two_face_scenes']} two-face, "
          f"{methods['lipsyncnet']['three_face_scenes']} three-face; faces stage "
          f"{throughput['faces_sampled_frames_per_second']} sampled frames/s "
          f"({throughput['faces_video_frames_per_second']} video frames/s)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "active_speaker.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'active_speaker.json'}")


if __name__ == "__main__":
    main()
