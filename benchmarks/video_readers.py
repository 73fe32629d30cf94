"""PyAV, decord and torchcodec on the stages' access patterns: speed, frames delivered, pixels.

    python benchmarks/video_readers.py [--data ../shared/data] [--repeats 2] [--long-seconds 120]
                                       [--out benchmarks/results]

Patterns, each read the way the stages read it (one call per media file with every frame any
utterance of the file needs, `pipeline.video_readers.read_frames`):

- **short clips, sampled**: every real clip in `<data>/clips` (VoxCeleb2 H.264 MP4s, GRID MPEG-1
  files), frames at 5 per second: the `faces` stage on a corpus of one clip per utterance (MELD).
- **short clips, every frame**: the same clips, every frame: the `speaker` stage's mouths.
- **long recording, sampled / every frame of its cuts**: one 1280x720 H.264 recording (the VoxCeleb2
  clips joined and re-encoded with B-frames, `--long-seconds` long), cut into seeded 2-4 s
  utterances with short gaps, as IEMOCAP sessions and demo dialogues are.

Per reader and pattern: the best wall seconds of `--repeats` runs, frames per second, the frames
delivered beside PyAV's, and how far its pixels are from PyAV's (share of identical frames, largest
mean absolute difference of one frame). Writes `benchmarks/results/video_readers.json`; the README's
table is rendered from it (`python -m pipeline.readme_tables`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from pipeline.media import probe  # noqa: E402
from pipeline.provenance import provenance, write_result  # noqa: E402
from pipeline.video_readers import READER_NAMES, read_frames  # noqa: E402

SAMPLE_FPS = 5.0
Job = tuple[Path, list[int], float]  # media, wanted frame indices, fps


def real_clips(data: Path) -> list[Path]:
    return sorted((data / "clips" / "voxceleb2").glob("*.mp4")) + sorted((data / "clips" / "grid").glob("*.mpg"))


def long_recording(clips: list[Path], seconds: float, folder: Path) -> Path:
    """The H.264 clips joined into one 1280x720, 25 fps recording with B-frames, `seconds` long."""
    listing = folder / "clips.txt"
    loops = [c for c in clips if c.suffix == ".mp4"]
    listing.write_text("".join(f"file '{c.resolve()}'\n" for c in loops * 20))
    out = folder / "recording.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-t", str(seconds), "-vf", "scale=1280:720,fps=25", "-an", "-c:v", "libx264", "-preset",
                    "veryfast", "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def utterance_cuts(frame_count: int, fps: float, seed: int = 0) -> list[tuple[int, int]]:
    """Seeded utterances of 2-4 s separated by 0.2-1 s gaps, covering the recording."""
    rng = np.random.default_rng(seed)
    cuts, start = [], 0
    while True:
        end = start + int(rng.uniform(2, 4) * fps)
        if end > frame_count:
            return cuts
        cuts.append((start, end))
        start = end + int(rng.uniform(0.2, 1.0) * fps)


def sampled(start: int, end: int, fps: float) -> list[int]:
    step = max(1, int(round(fps / SAMPLE_FPS)))
    return list(range(start, end, step))


def patterns(clips: list[Path], recording: Path) -> dict[str, list[Job]]:
    infos = {clip: probe(clip) for clip in clips}
    long_info = probe(recording)
    cuts = utterance_cuts(long_info.frame_count, long_info.fps)
    return {
        "short clips, sampled (faces)": [(c, sampled(0, i.frame_count, i.fps), i.fps) for c, i in infos.items()],
        "short clips, every frame (speaker)": [(c, list(range(i.frame_count)), i.fps) for c, i in infos.items()],
        "long recording, sampled (faces)": [(recording, sorted({f for s, e in cuts
                                                                for f in sampled(s, e, long_info.fps)}),
                                             long_info.fps)],
        "long recording, every frame of its cuts (speaker)": [(recording, sorted({f for s, e in cuts
                                                                                  for f in range(s, e)}),
                                                               long_info.fps)],
    }


def timed(jobs: list[Job], reader: str, repeats: int) -> tuple[float, int]:
    best, frames = float("inf"), 0
    for _ in range(repeats):
        started, frames = time.perf_counter(), 0
        for media, wanted, fps in jobs:
            for _ in read_frames(media, wanted, fps, reader):
                frames += 1
        best = min(best, time.perf_counter() - started)
    return best, frames


def agreement(jobs: list[Job], reader: str, stride: int = 7) -> dict[str, Any]:
    """Every `stride`-th wanted frame of every job compared with PyAV's."""
    same = compared = missing = extra = 0
    worst = 0.0
    for media, wanted, fps in jobs:
        subset = wanted[::stride]
        reference = dict(read_frames(media, subset, fps, "pyav"))
        got = dict(read_frames(media, subset, fps, reader))
        missing += len(set(reference) - set(got))
        extra += len(set(got) - set(reference))
        for index in set(reference) & set(got):
            difference = float(np.abs(got[index].astype(np.int16) - reference[index]).mean())
            same += difference == 0.0
            compared += 1
            worst = max(worst, difference)
    return {"frames_compared": compared, "identical_share": round(same / max(compared, 1), 4),
            "max_mean_abs_difference": round(worst, 3), "missing_vs_pyav": missing, "extra_vs_pyav": extra}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(PROJECT.parent / "shared" / "data"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--long-seconds", type=float, default=120.0)
    parser.add_argument("--readers", nargs="+", default=list(READER_NAMES), choices=READER_NAMES)
    parser.add_argument("--out", default=str(PROJECT / "benchmarks" / "results"))
    options = parser.parse_args()
    clips = real_clips(Path(options.data))
    if not clips:
        parser.error(f"no clips under {options.data}/clips")
    origin = provenance({"repeats": options.repeats, "long_seconds": options.long_seconds,
                         "sample_fps": SAMPLE_FPS, "readers": options.readers})
    rows = []
    with tempfile.TemporaryDirectory(prefix="merc-readers-") as folder:
        recording = long_recording(clips, options.long_seconds, Path(folder))
        for pattern, jobs in patterns(clips, recording).items():
            wanted = sum(len(w) for _, w, _ in jobs)
            pyav_seconds = None
            for reader in options.readers:
                seconds, frames = timed(jobs, reader, options.repeats)
                pyav_seconds = seconds if reader == "pyav" else pyav_seconds
                row = {"pattern": pattern, "reader": reader, "files": len(jobs), "frames_wanted": wanted,
                       "frames": frames, "seconds": round(seconds, 3), "frames_per_second": round(frames / seconds, 1),
                       "speed_vs_pyav": round(pyav_seconds / seconds, 2) if pyav_seconds else None,
                       **agreement(jobs, reader)}
                rows.append(row)
                print(f"{pattern:<52} {reader:<11} {frames:>6}/{wanted:<6} {seconds:7.2f} s "
                      f"{row['frames_per_second']:8.1f} fr/s  identical {100 * row['identical_share']:5.1f}%  "
                      f"max diff {row['max_mean_abs_difference']:.2f}", flush=True)
    result = {**origin, "benchmark": "video_readers", "clips": len(clips), "rows": rows}
    print(f"written to {write_result(options.out, 'video_readers.json', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
