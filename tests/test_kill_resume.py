"""kill -9 in the middle of a stage: the rerun resumes from the finished parts and ends with exactly the
output of an uninterrupted run (Parquet rows, and the wav bytes `cut` writes).

Each stage runs as `python -m pipeline <stage>` in its own process group, is SIGKILLed once at least
one work item has been stored in its part cache and before its output exists, and is then rerun.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.manifest import write_manifest
from tests import media_factory as mf

PROJECT = Path(__file__).resolve().parents[1]
SENTENCES = ["the weather is lovely today my friend", "we should leave before the rain starts",
             "please pass the salt and the pepper", "nobody told me about the meeting",
             "that film was longer than i expected", "see you at the station at noon",
             "my brother plays the violin badly", "the garden needs water every morning"]
OUTPUTS = {"cut": ["data/cuts.parquet", "data/audio", "data/failures/cut.parquet"],
           "faces": ["data/faces.parquet", "data/failures/faces.parquet"],
           "speaker": ["data/speaker.parquet", "data/speaker_tracks", "data/failures/speaker.parquet"]}


def _env() -> dict[str, str]:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return {**os.environ, "PIPELINE_ORCHESTRATOR": "plain", "PATH": path}


def _run(stage: str, root: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline", stage], cwd=root, env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def _fingerprint(root: Path, stage: str) -> dict[str, str]:
    prints = {}
    for relative in OUTPUTS[stage]:
        path = root / relative
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.suffix == ".parquet":
                value = json.dumps(pq.read_table(file).to_pylist(), sort_keys=True, default=repr)
            else:
                value = hashlib.sha256(file.read_bytes()).hexdigest()
            prints[str(file.relative_to(root))] = value
    return prints


def _clear(root: Path, stage: str) -> None:
    subprocess.run(["rm", "-rf", *OUTPUTS[stage], f".cache/{stage}"], cwd=root, check=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, base_params):
    """Eight two-face clips, a manifest, params; `cut`, `faces` and `speaker` run once uninterrupted."""
    root = tmp_path_factory.mktemp("kill_resume")
    rows = []
    for index, sentence in enumerate(SENTENCES):
        mf.talking_clip(root / "corpus" / f"clip{index}.mp4", sentence, [index % 10, (index + 3) % 10], index % 2)
        rows.append({"utt_id": f"clip{index}/0", "dialogue_id": f"clip{index}", "turn": 0, "speaker": "s",
                     "text": sentence, "label": "joy", "split": "train", "media": f"clip{index}.mp4",
                     "start": np.nan, "end": np.nan})
    params = json.loads(json.dumps(base_params))
    params["dataset"]["root"] = "corpus"
    params["faces"]["detect_width"] = 320
    params["speaker"]["method"] = "mouth_motion"
    params["run"]["workers"] = 1  # parts appear one at a time, so a kill lands between items
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = Path.cwd()
    os.chdir(root)
    try:
        write_manifest(pd.DataFrame(rows), root / "corpus", ["neutral", "joy"], "test")
    finally:
        os.chdir(cwd)
    reference = {}
    for stage in ("cut", "faces", "speaker"):
        _run(stage, root)
        reference[stage] = _fingerprint(root, stage)
    return root, reference


def _kill_after_first_part(stage: str, root: Path) -> int:
    """Start the stage and SIGKILL it once its part cache holds an item; returns parts stored by then."""
    parts = root / ".cache" / stage
    process = subprocess.Popen([sys.executable, "-m", "pipeline", stage], cwd=root, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    stored = 0
    while process.poll() is None and time.monotonic() < deadline:
        stored = len(list(parts.glob("*.parquet"))) if parts.is_dir() else 0
        if stored:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the stage finished before it could be killed"
    return stored


@pytest.mark.parametrize("stage", ["cut", "faces", "speaker"])
def test_a_stage_killed_mid_run_resumes_to_identical_output(workspace, stage):
    root, reference = workspace
    _clear(root, stage)
    stored = _kill_after_first_part(stage, root)
    assert 0 < stored < len(SENTENCES)
    assert not (root / OUTPUTS[stage][0]).exists()  # nothing a later run could take as complete
    _run(stage, root)
    assert _fingerprint(root, stage) == reference[stage]
