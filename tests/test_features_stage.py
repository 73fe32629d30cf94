"""The `features` stage on a tiny project: rows, failure ledger, metadata, caching and resume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import soundfile as sf
import yaml

from extractors import TextItem, build_extractor
from pipeline import paths
from pipeline.code_fingerprint import code_fingerprint
from pipeline.config import ConfigError
from pipeline.hooks import RecordingHook
from pipeline.ledger import read_ledger
from pipeline.manifest import write_manifest
from pipeline.runner import PlainRunner
from pipeline.schema import CROPS_SCHEMA, CUTS_SCHEMA
from pipeline.stages import features
from pipeline.tables import read_metadata, read_vectors, write_atomic, write_frame
from tests.test_extractors import tiny_bert

PROJECT = Path(__file__).resolve().parents[1]
RATE = 16000
TEXTS = ["i am so happy", "the train is late", "bob is sad", "one two three", "alice is happy"]

EMPTY_TEXT = "d0/3"  # text failure
MISSING_WAV = "d0/4"  # audio failure
SHORT_WAV = "d1/4"  # audio failure (0.03 s)
NOT_CUT = "d1/3"  # failed upstream: no row and no new failure
NO_CROPS = "d0/1"  # visual failure
BAD_JPEG = "d1/1"  # visual failure


@pytest.fixture(scope="module")
def voice() -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    from tests.media_factory import speech

    return speech("well I never thought we would see the day")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def write_project(root: Path, voice: np.ndarray, dialogues: int, turns: int, special: bool) -> list[str]:
    """Manifest, cuts, 16 kHz wavs and JPEG crops under `root` (the working directory)."""
    rows, cuts, crops = [], [], []
    rng = np.random.default_rng(0)
    for d in range(dialogues):
        for t in range(turns):
            utt = f"d{d}/{t}"
            text = "" if special and utt == EMPTY_TEXT else TEXTS[(d + t) % len(TEXTS)]
            rows.append({"utt_id": utt, "dialogue_id": f"d{d}", "turn": t, "speaker": ["alice", "bob"][t % 2],
                         "text": text, "label": "neutral", "split": "train", "media": f"d{d}.mp4",
                         "start": float("nan"), "end": float("nan")})
            if special and utt == NOT_CUT:
                continue
            wav = paths.audio_path(utt)
            wav.parent.mkdir(parents=True, exist_ok=True)
            start = (7 * d + 3 * t) * 400
            samples = voice[start : start + RATE] * (0.5 + 0.1 * t)
            if special and utt == SHORT_WAV:
                samples = samples[: int(0.03 * RATE)]
            if not (special and utt == MISSING_WAV):
                sf.write(wav, samples, RATE, subtype="FLOAT")
            cuts.append({"utt_id": utt, "media": f"d{d}.mp4", "audio": str(wav), "fps": 25.0, "start_frame": 0,
                         "end_frame": 25, "start": 0.0, "duration": len(samples) / RATE, "width": 64,
                         "height": 64, "has_video": True})
            if special and utt == NO_CROPS:
                continue
            for frame in range(3):
                image = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
                jpeg = b"\xff\xd8 broken" if special and utt == BAD_JPEG else cv2.imencode(".jpg", image)[1].tobytes()
                crops.append({"utt_id": utt, "frame": frame * 5, "jpeg": jpeg})
    write_manifest(pd.DataFrame(rows), root / "corpus", ["neutral"], "test")
    write_frame(pd.DataFrame(cuts)[CUTS_SCHEMA.names], paths.CUTS)
    write_atomic(pa.Table.from_pylist(crops, schema=CROPS_SCHEMA), paths.CROPS)
    return [r["utt_id"] for r in rows]


@pytest.fixture
def project(tmp_path, monkeypatch, voice, params, tiny_model) -> dict:
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path, voice, dialogues=2, turns=5, special=True)
    params["features"]["text"].update({"model": str(tiny_model), "context": 1, "batch_size": 4})
    params["features"]["visual"].update({"image_size": 32, "frames": 2, "batch_size": 8})
    return params


def _runner() -> PlainRunner:
    return PlainRunner(workers=2, hook=RecordingHook())


def _ledger(key: str) -> dict[str, str]:
    return {f.utt_id: f.reason for f in read_ledger(paths.stage_ledger(f"features@{key}"))}


def _expected(*failed: str) -> list[str]:
    every = [f"d{d}/{t}" for d in range(2) for t in range(5)]
    return sorted(u for u in every if u not in failed and u != NOT_CUT)


def test_audio_rows_failures_and_metadata(project):
    runner = _runner()
    summary = features.run(project, runner, "audio")
    ids, vectors = read_vectors(paths.features_path("audio"))
    assert ids == _expected(MISSING_WAV, SHORT_WAV)
    assert vectors.shape == (len(ids), 88) and np.isfinite(vectors).all()
    ledger = _ledger("audio")
    assert set(ledger) == {MISSING_WAV, SHORT_WAV}
    assert "cannot read audio" in ledger[MISSING_WAV] and "too short" in ledger[SHORT_WAV]
    assert summary["utterances"] == len(ids) and summary["dim"] == 88 and summary["failures"] == 2
    meta = read_metadata(paths.features_path("audio"))
    assert meta["extractor"] == "opensmile" and meta["modality"] == "audio" and meta["dim"] == 88
    assert meta["config"]["feature_set"] == "eGeMAPSv02" and len(meta["config_hash"]) == 16
    assert {"torch", "transformers", "opensmile", "numpy"} <= set(meta["versions"])
    assert meta["code_version"] == code_fingerprint("pipeline.stages.features", "extractors.audio_opensmile")
    steps = {call[0] for call in runner.hook.calls}
    assert steps == {"features@audio"} and runner.hook.calls[-1][1] == runner.hook.calls[-1][2] == 2


def test_text_rows_use_dialogue_context(project, tiny_model):
    features.run(project, _runner(), "text")
    ids, vectors = read_vectors(paths.features_path("text"))
    assert ids == _expected(EMPTY_TEXT)
    assert vectors.shape == (len(ids), 32)
    assert _ledger("text") == {EMPTY_TEXT: "empty text"}
    extractor = build_extractor(project["features"]["text"])
    # d0/2 follows d0/1 ("bob": "the train is late") in the same dialogue
    direct = extractor.extract([TextItem("d0/2", TEXTS[2], "alice", (("bob", TEXTS[1]),))])
    np.testing.assert_allclose(vectors[ids.index("d0/2")], direct[0], atol=1e-6)
    # the first turn of a dialogue has no context
    first = extractor.extract([TextItem("d1/0", TEXTS[1], "alice", ())])
    np.testing.assert_allclose(vectors[ids.index("d1/0")], first[0], atol=1e-6)


def test_visual_rows_and_crop_failures(project):
    features.run(project, _runner(), "visual")
    ids, vectors = read_vectors(paths.features_path("visual"))
    assert ids == _expected(NO_CROPS, BAD_JPEG)
    assert vectors.shape == (len(ids), 1024) and np.isfinite(vectors).all()
    ledger = _ledger("visual")
    assert ledger[NO_CROPS] == "no face crops for the active speaker"
    assert "JPEG" in ledger[BAD_JPEG] and set(ledger) == {NO_CROPS, BAD_JPEG}


def test_rerun_reads_parts_back_and_runtime_options_keep_the_cache(project):
    features.run(project, _runner(), "visual")
    cache_dir = paths.CACHE_DIR / "features-visual"
    before = {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*.parquet")}
    first = read_vectors(paths.features_path("visual"))
    assert len(before) == 2  # one part per dialogue
    project["features"]["visual"]["batch_size"] = 1  # speed knob: same numbers, same parts
    features.run(project, _runner(), "visual")
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*.parquet")} == before
    second = read_vectors(paths.features_path("visual"))
    assert second[0] == first[0]
    np.testing.assert_array_equal(second[1], first[1])
    project["features"]["visual"]["seed"] = 5  # changes the numbers: new parts
    features.run(project, _runner(), "visual")
    assert len(list(cache_dir.glob("*.parquet"))) == 4


def test_config_errors_name_the_key(project):
    with pytest.raises(ConfigError, match="'features' has no key 'speech'.*text, audio, visual"):
        features.run(project, _runner(), "speech")
    project["features"]["audio"]["feature_set"] = "eGeMAPS"
    with pytest.raises(ConfigError, match=r"features\.audio\.feature_set.*eGeMAPSv02"):
        features.run(project, _runner(), "audio")
    project["features"]["text"]["window"] = 3
    with pytest.raises(ConfigError, match=r"features\.text\.window.*unknown option"):
        features.run(project, _runner(), "text")


# -- resume after a kill -------------------------------------------------------------------------

RESUME_DIALOGUES = 12


def _resume_project(root: Path, voice: np.ndarray, params: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        write_project(root, voice, dialogues=RESUME_DIALOGUES, turns=3, special=False)
    finally:
        os.chdir(cwd)
    params = {**params, "run": {**params["run"], "workers": 1}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def _stage_process(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "PIPELINE_ORCHESTRATOR": "plain", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipeline", "features", "audio"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_run_resumes_without_recomputing_or_duplicating(tmp_path, voice, params, monkeypatch):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    _resume_project(killed, voice, params)
    _resume_project(clean, voice, params)
    parts_dir = killed / ".cache" / "features-audio"

    process = _stage_process(killed)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if len(list(parts_dir.glob("*.parquet"))) >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    survivors = {p.name: p.stat().st_mtime_ns for p in parts_dir.glob("*.parquet")}
    assert 0 < len(survivors) < RESUME_DIALOGUES
    assert not (killed / paths.features_path("audio")).exists()

    rerun = _stage_process(killed)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in parts_dir.glob("*.parquet")}
    assert len(after) == RESUME_DIALOGUES
    assert {name: after[name] for name in survivors} == survivors  # finished parts were read, not redone

    monkeypatch.chdir(clean)
    features.run(params, PlainRunner(workers=1, hook=RecordingHook()), "audio")
    resumed_ids, resumed = read_vectors(killed / paths.features_path("audio"))
    clean_ids, reference = read_vectors(clean / paths.features_path("audio"))
    assert resumed_ids == clean_ids and len(set(resumed_ids)) == RESUME_DIALOGUES * 3
    np.testing.assert_array_equal(resumed, reference)


def test_a_text_only_corpus_needs_no_cuts_and_reads_every_utterance(tmp_path, monkeypatch, params, tiny_model):
    monkeypatch.chdir(tmp_path)
    rows = [{"utt_id": f"d0/{t}", "dialogue_id": "d0", "turn": t, "speaker": "ab"[t % 2], "text": TEXTS[t],
             "label": "neutral", "split": "train", "media": "never/there.mp4", "start": float("nan"),
             "end": float("nan")} for t in range(3)]
    write_manifest(pd.DataFrame(rows), tmp_path / "corpus", ["neutral"], "test", media=False)
    params["features"]["text"].update({"model": str(tiny_model), "context": 0, "batch_size": 4})
    summary = features.run(params, _runner(), "text")
    ids, vectors = read_vectors(paths.features_path("text"))
    assert ids == ["d0/0", "d0/1", "d0/2"] and np.isfinite(vectors).all() and summary["failures"] == 0
    assert not paths.CUTS.exists()
    with pytest.raises(ConfigError, match=r"features\.audio.*text-only"):
        features.run(params, _runner(), "audio")
