"""The bad-input corpus: every kind of broken or odd row a user's own table can hold, run through the pipeline.

A real corpus has corrupt, truncated and empty files, clips without audio or without a face, odd codecs,
containers and frame rates, rotated phone videos, mis-typed times and splits, paths that escape the
corpus root and badly encoded tables. The contract is that each such utterance is either used (it
reaches every feature table) or recorded in a failure ledger with the stage and a reason, never
silently lost, and that no stage crashes. `run_cases` builds that corpus with ffmpeg and the talking
faces of `tests/media_factory.py`, runs `prepare` to `features@visual` on it in a fresh workspace and
judges every case against the outcome expected from the stages' code.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from benchmarks.workspace import env as _env  # noqa: E402
from benchmarks.workspace import prepare_workspace  # noqa: E402

CORPUS = Path("data/corpus/faults")
OVERRIDES = ["dataset.name=table", f"dataset.root={CORPUS.as_posix()}", "dataset.table.path=table.csv",
             "speaker.method=mouth_motion"]  # mouth_motion needs no LipSyncNet training
FEATURE_KEYS = ("text", "audio", "visual")
STAGES: list[list[str]] = [["prepare"], ["cut"], ["faces"], ["speaker"],
                           *(["features", key] for key in FEATURE_KEYS)]
LEDGER_ORDER = ("prepare", "cut", "faces", "speaker", *(f"features@{key}" for key in FEATURE_KEYS))
COLUMNS = ("video", "start", "end", "speaker", "text", "label", "split", "dialogue_id", "utt_id")
STAGE_TIMEOUT_S = 1200
USED = "used"


@dataclass
class Case:
    """One named fault: its table rows and the outcome the stages' code promises for them."""

    name: str
    slug: str
    stage: str | None = None  # None: the utterances must reach every feature table
    keyword: str = ""  # lower-case text the ledger reason must contain
    rows: list[dict[str, str]] = field(default_factory=list)
    control: bool = False  # a good clip: losing it is a loss of real data
    check_text: bool = False  # the manifest must hold the transcript exactly as written

    @property
    def expected(self) -> str:
        return USED if self.stage is None else f"failed at {self.stage}: {self.keyword}"

    def add(self, video: str, text: str = "I can say something quite ordinary here.", *, label: str = "neutral",
            split: str = "train", start: str = "", end: str = "", dialogue: str | None = None,
            speaker: str = "A") -> None:
        self.rows.append({"video": video, "start": start, "end": end, "speaker": speaker, "text": text,
                          "label": label, "split": split, "dialogue_id": dialogue or self.slug,
                          "utt_id": f"{self.slug}/{len(self.rows)}"})


# -- building the corpus ---------------------------------------------------------------------------


def _load(name: str, path: Path) -> ModuleType:
    """Import a file by path: `benchmarks/pipeline.py` would shadow the `pipeline` package by name."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-y", "-nostdin", "-loglevel", "error", *args], check=True, capture_output=True)


H264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")


def _clock(seconds: float) -> str:
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:04.1f}"


def _long_recording(factory: ModuleType, path: Path, sentences: list[str], seconds: float = 20.0
                    ) -> list[tuple[float, float]]:
    """One face speaking the sentences with pauses, padded to `seconds`; returns each sentence's span."""
    rate = factory.RATE
    gap = np.zeros(int(0.6 * rate), np.float32)
    parts: list[np.ndarray] = [gap]
    spans = []
    for sentence in sentences:
        onset = sum(len(p) for p in parts) / rate
        voice = factory.speech(sentence)
        parts += [voice, gap]
        spans.append((round(max(0.0, onset - 0.2), 1), round(onset + len(voice) / rate + 0.2, 1)))
    audio = np.concatenate(parts)
    audio = np.pad(audio, (0, max(0, int(seconds * rate) - len(audio))))
    frames, _ = factory.render_frames(len(audio) / rate, 25, 320, 180, [8], 0, audio)
    factory.write_video(path, frames, 25, audio)
    return spans


def build_corpus(workdir: Path) -> list[Case]:
    """Write the media and `table.csv` (cp1252) under the corpus root; return the cases they encode."""
    factory = _load("fault_media_factory", PROJECT / "tests" / "media_factory.py")
    root = workdir / CORPUS
    source = workdir / "fault_sources"  # intermediate files, outside the corpus root
    root.mkdir(parents=True, exist_ok=True)
    source.mkdir(parents=True, exist_ok=True)
    base = source / "base.mp4"
    factory.talking_clip(base, "Honestly, I did not expect that at all.", [7], 0)
    cases: list[Case] = []

    def case(name: str, slug: str, stage: str | None = None, keyword: str = "", **flags: bool) -> Case:
        cases.append(Case(name, slug, stage, keyword, **flags))
        return cases[-1]

    def copy_of_base(name: str) -> str:
        shutil.copyfile(base, root / name)
        return name

    controls = [("I got the job, this is wonderful news.", "joy", "train", "d-one"),
                ("The meeting starts at nine tomorrow.", "neutral", "train", "d-one"),
                ("I miss her so much, it really hurts.", "sadness", "train", "d-one"),
                ("You broke it again, I told you not to.", "anger", "train", "d-two"),
                ("Let us take the train instead.", "neutral", "dev", "d-two"),
                ("That was the best party ever.", "joy", "test", "d-two")]
    good = case("good control clips (2 dialogues)", "control", control=True)
    for index, (text, label, split, dialogue) in enumerate(controls):
        factory.talking_clip(root / f"control_{index}.mp4", text, [index + 1], 0)
        good.add(f"control_{index}.mp4", text, label=label, split=split, dialogue=dialogue,
                 speaker="AB"[index % 2])

    factory.corrupt_file(root / "corrupt.mp4")
    case("corrupt file", "corrupt", "cut", "corrupt").add("corrupt.mp4")
    data = base.read_bytes()  # H.264 mp4 with its index (moov) at the end: half of it has none
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    case("truncated file (half the bytes)", "truncated", "cut", "corrupt").add("truncated.mp4")
    _ffmpeg("-i", str(base), "-c", "copy", "-movflags", "+faststart", str(source / "faststart.mp4"))
    data = (source / "faststart.mp4").read_bytes()  # index first: opens, then the streams stop mid-way
    (root / "truncated_faststart.mp4").write_bytes(data[: len(data) // 2])
    case("truncated file, index at the front (faststart)", "truncated-faststart", "cut",
         "could not be decoded").add("truncated_faststart.mp4")
    (root / "empty.mp4").write_bytes(b"")
    case("empty file (0 bytes)", "empty", "cut", "corrupt").add("empty.mp4")

    _ffmpeg("-i", str(base), "-an", "-c:v", "copy", str(root / "no_audio.mp4"))
    case("video without an audio stream", "no-audio", "cut", "no audio stream").add("no_audio.mp4")
    _ffmpeg("-i", str(base), "-vn", "-c:a", "pcm_s16le", str(root / "audio_only.wav"))
    case("audio only (.wav)", "audio-wav", "faces", "no video stream").add("audio_only.wav")
    _ffmpeg("-i", str(base), "-vn", "-c:a", "aac", str(root / "audio_only.m4a"))
    case("audio only (.m4a)", "audio-m4a", "faces", "no video stream").add("audio_only.m4a")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=2", "-f", "lavfi", "-i",
            "sine=frequency=220:duration=2", *H264, "-c:a", "aac", "-shortest", str(root / "no_face.mp4"))
    case("video without a face (testsrc2)", "no-face", "faces", "no face detected").add("no_face.mp4")
    _ffmpeg("-i", str(base), "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-map", "0:v", "-map", "1:a",
            "-c:v", "copy", "-c:a", "aac", "-shortest", str(root / "silent.mp4"))
    case("silent audio (anullsrc) with a face", "silent").add("silent.mp4")

    _ffmpeg("-i", str(base), "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
            "-c:a", "libopus", str(root / "vp9.webm"))
    case("VP9 + Opus in WebM", "webm").add("vp9.webm")
    _ffmpeg("-i", str(base), "-c:v", "mjpeg", "-q:v", "4", "-c:a", "pcm_s16le", str(root / "mjpeg.avi"))
    case("MJPEG + PCM in AVI", "avi").add("mjpeg.avi")
    _ffmpeg("-i", str(base), "-c:v", "mpeg4", "-q:v", "4", "-c:a", "aac", "-ar", "48000", "-ac", "2",
            str(root / "mpeg4.mov"))
    case("MPEG-4 Part 2 in MOV, 48 kHz stereo AAC", "mov").add("mpeg4.mov")
    _ffmpeg("-i", str(base), "-t", "1", "-vf", "scale=1920:1080:flags=bicubic,fps=60", *H264, "-c:a", "aac",
            str(root / "hd_1080p60.mp4"))
    case("1080p60 (1 s)", "hd").add("hd_1080p60.mp4")
    _ffmpeg("-i", str(base), "-vf", "fps=12", *H264, "-c:a", "aac", str(root / "fps12.mp4"))
    case("12 fps", "fps12").add("fps12.mp4")
    # a phone video: pixels stored sideways, a display matrix turning them upright on playback; every player
    # shows an upright face, so the pipeline should find it too
    _ffmpeg("-i", str(base), "-vf", "transpose=1", *H264, "-c:a", "copy", str(source / "sideways.mp4"))
    _ffmpeg("-i", str(source / "sideways.mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=90",
            str(root / "rotated.mp4"))
    case("rotation metadata (phone video, display matrix 90 deg)", "rotated").add("rotated.mp4")
    _ffmpeg("-i", str(base), "-vf", "scale=2:2", *H264, "-c:a", "aac", str(root / "tiny_2x2.mp4"))
    case("2x2-pixel video", "tiny", "faces", "no face detected").add("tiny_2x2.mp4")

    sentences = ["Good morning, everyone, thanks for coming.", "The numbers this quarter look really strong.",
                 "Sadly we lost two of our best people.", "I am furious that nobody told me.",
                 "Let us move on to the next item.", "What a fantastic result for the team."]
    spans = _long_recording(factory, root / "long_recording.mp4", sentences)
    numeric = case("long recording (~20 s) cut by numeric time stamps", "long-numeric")
    clock = case("long recording (~20 s) cut by clock times (HH:MM:SS.s)", "long-clock")
    for index, (sentence, (start, end)) in enumerate(zip(sentences, spans)):
        if index < 3:
            numeric.add("long_recording.mp4", sentence, start=f"{start:.1f}", end=f"{end:.1f}", dialogue="long")
        else:
            clock.add("long_recording.mp4", sentence, start=_clock(start), end=_clock(end), dialogue="long")
    case("start past the end of the media", "past-end", "cut", "past the end").add(
        "long_recording.mp4", start="45.0", end="47.5")

    case("file name with spaces and non-ASCII", "odd-name").add(copy_of_base("clip é 1.mp4"))
    huge = " ".join(["and then she told me the whole long story about the trip"] * 1800)  # ~100 kB
    case("huge transcript (~100 kB)", "huge-text", check_text=True).add(copy_of_base("huge_text.mp4"), huge)
    controls_text = "he said\x01 hi\x07 then\x1b[31m left\x7f and\x0b\x0c came\tback\nnext line"
    case("control characters in the transcript", "control-chars", check_text=True).add(
        copy_of_base("control_chars.mp4"), controls_text)
    case("cp1252 table read (café, dash, quote, euro)", "cp1252", check_text=True).add(
        copy_of_base("cp1252.mp4"), "Un café \u2014 it\u2019s 5 \u20ac, très cher")

    valid = copy_of_base("valid.mp4")  # good media behind rows that are wrong in the table itself
    case("missing file", "missing", "prepare", "not found").add("not_here.mp4")
    case("empty transcript", "no-text", "prepare", "empty transcript").add(valid, "   ")
    case("end before start", "end-before-start", "prepare", "before start").add(valid, start="1.5", end="0.5")
    case("negative time", "negative", "prepare", "negative").add(valid, start="-1.0", end="1.0")
    case("zero length (start == end)", "zero-length", "prepare", "zero-length").add(valid, start="1.0", end="1.0")
    case("unparseable time", "bad-time", "prepare", "not a time").add(valid, start="soon", end="1.0")
    case("unknown split name", "bad-split", "prepare", "split").add(valid, split="holdout")
    case("label present only in test", "test-only-label", "prepare", "label").add(valid, label="surprise",
                                                                                   split="test")
    outside = workdir / "data" / "outside.mp4"
    shutil.copyfile(base, outside)
    case("path leading outside the root (../../outside.mp4)", "outside-relative", "prepare",
         "leaves the corpus root").add("../../outside.mp4")
    case("absolute path outside the root", "outside-absolute", "prepare", "leaves the corpus root").add(
        str(outside))
    os.symlink(outside, root / "linked.mp4")
    case("symlink inside the root to a file outside", "symlink-outside", "prepare",
         "leaves the corpus root").add("linked.mp4")

    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for item in cases:
        writer.writerows(item.rows)
    (root / "table.csv").write_bytes(buffer.getvalue().encode("cp1252"))  # a table saved by Excel on Windows
    return cases


# -- running and judging ---------------------------------------------------------------------------


def run_stages(workdir: Path) -> list[tuple[str, int, str]]:
    """Every stage in order, each in its own process; (stage, return code, last stderr line)."""
    results = []
    for argv in STAGES:
        name = "@".join(argv)
        try:
            done = subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=workdir, env=_env(),
                                  capture_output=True, text=True, timeout=STAGE_TIMEOUT_S)
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            results.append((name, done.returncode, lines[-1].strip() if lines else ""))
        except subprocess.TimeoutExpired:
            results.append((name, -1, f"timed out after {STAGE_TIMEOUT_S} s"))
    return results


def _ids(path: Path) -> set[str]:
    return set(pq.read_table(path, columns=["utt_id"]).column("utt_id").to_pylist()) if path.exists() else set()


def _outcome(utt_id: str, features: dict[str, set[str]], ledger: dict[str, list[tuple[str, str]]],
             texts: dict[str, str], case: Case, written: str) -> tuple[str, bool]:
    """What happened to one utterance, and whether that is what the case expects."""
    kept = [key for key in FEATURE_KEYS if utt_id in features[key]]
    failures = sorted(ledger.get(utt_id, []), key=lambda f: LEDGER_ORDER.index(f[0])
                      if f[0] in LEDGER_ORDER else len(LEDGER_ORDER))
    if len(kept) == len(FEATURE_KEYS):
        got = USED
        if case.check_text and texts.get(utt_id) != written.strip():
            got = f"used, but the transcript was changed to {texts.get(utt_id, '')[:60]!r}"
    elif failures:
        stage, reason = failures[0]
        got = f"failed at {stage}: {reason[:80]}" + (f" [kept: {', '.join(kept)}]" if kept else "")
    else:
        got = "MISSING" + (f" (only in {', '.join(kept)} features, no ledger row)" if kept else "")
    if case.stage is None:
        return got, got == USED
    return got, bool(failures) and failures[0][0] == case.stage and case.keyword in failures[0][1].lower()


def judge(workdir: Path, cases: list[Case], stages: list[tuple[str, int, str]]) -> list[dict]:
    """One row per case, plus the whole-run and lost-good-utterance rows."""
    data = workdir / "data"
    features = {key: _ids(data / "features" / f"{key}.parquet") for key in FEATURE_KEYS}
    ledger: dict[str, list[tuple[str, str]]] = {}
    for path in sorted((data / "failures").glob("*.parquet")):
        for row in pd.read_parquet(path).itertuples(index=False):
            if str(row.reason).strip():
                ledger.setdefault(str(row.utt_id), []).append((str(row.stage), str(row.reason)))
    manifest = data / "manifest.parquet"
    texts = dict(pd.read_parquet(manifest, columns=["utt_id", "text"]).itertuples(index=False)) \
        if manifest.exists() else {}
    rows = []
    lost: list[str] = []
    for case in cases:
        outcomes = [(row["utt_id"], *_outcome(row["utt_id"], features, ledger, texts, case, row["text"]))
                    for row in case.rows]
        distinct = list(dict.fromkeys(got for _, got, _ in outcomes))
        got = distinct[0] if len(distinct) == 1 else "; ".join(f"{u}: {g}" for u, g, _ in outcomes)
        if len(case.rows) > 1 and len(distinct) == 1:
            got = f"{got} ({len(case.rows)} utterances)"
        rows.append({"case": case.name, "expected": case.expected, "got": got,
                     "ok": all(ok for _, _, ok in outcomes)})
        if case.control:
            lost += [u for u, got_one, _ in outcomes if got_one != USED]
    crashed = [(name, code, line) for name, code, line in stages if code != 0]
    rows.append({"case": "whole run", "expected": "every stage exits 0",
                 "got": "; ".join(f"{name} exit {code}: {line[:120]}" for name, code, line in crashed)
                 or f"all {len(stages)} stages exit 0", "ok": not crashed})
    controls = sum(len(case.rows) for case in cases if case.control)
    rows.append({"case": "good utterances lost", "expected": "0",
                 "got": f"{len(lost)} of {controls}" + (f": {', '.join(lost)}" if lost else ""), "ok": not lost})
    return rows


def run_cases(workdir: Path) -> list[dict]:
    """Build the bad-input corpus under workdir, run the pipeline on it, judge every case."""
    workdir = Path(workdir).resolve()
    if workdir.exists() and any(workdir.iterdir()):
        raise FileExistsError(f"{workdir} is not empty: the fault corpus needs a fresh workspace")
    workdir.mkdir(parents=True, exist_ok=True)
    prepare_workspace(workdir, OVERRIDES)
    cases = build_corpus(workdir)
    return judge(workdir, cases, run_stages(workdir))
