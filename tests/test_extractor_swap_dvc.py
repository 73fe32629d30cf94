"""Swapping an extractor is a one-line params edit that reruns only what reads its features.

A temporary git + DVC repository holds a copy of the code and a tiny demo corpus. After a full
`dvc repro`, `features.audio.name` goes from `opensmile` to `wav2vec2` (a tiny local wav2vec2
folder the test builds); DVC's own `status --json` and the "Running stage" lines of the next
`dvc repro` must show that only `features@audio` and its downstream stages are stale and rerun.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.test_dvc_pipeline import build_workspace, ran_stages, run
from tests.test_extractors_suite import tiny_wav2vec2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """One repository for the whole module, already reproduced once."""
    repo = build_workspace(tmp_path_factory.mktemp("swap_repo"))
    run(["dvc", "repro"], repo)
    return repo


def test_swapping_opensmile_for_wav2vec2_reruns_only_the_audio_branch(workspace, tmp_path_factory):
    model = tiny_wav2vec2(tmp_path_factory.mktemp("w2v") / "tiny-wav2vec2")
    params_file = workspace / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    assert params["features"]["audio"]["name"] == "opensmile"
    assert json.loads(run(["dvc", "status", "--json"], workspace)) == {}  # everything up to date before the edit

    params["features"]["audio"] = {"modality": "audio", "name": "wav2vec2", "model": str(model)}
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(run(["dvc", "status", "--json"], workspace))
    assert set(status) == {"features@audio"}, status
    changed = json.dumps(status["features@audio"])
    assert "features.audio" in changed and "modified" in changed

    output = run(["dvc", "repro"], workspace)
    ran = ran_stages(output)
    consumers = {name for name, spec in params["models"].items() if "audio" in spec.get("inputs", [])}
    assert consumers, "no model reads the audio features"
    downstream = ({"features@audio", "failures"}
                  | {f"{s}@{m}" for s in ("train", "evaluate") for m in params["models"]}
                  | {f"{s}@{r}" for s in ("refine", "evaluate_refined") for r in params.get("refine", {})})
    assert "features@audio" in ran and {f"train@{m}" for m in consumers} <= ran
    assert ran <= downstream, f"ran more than the audio branch: {sorted(ran - downstream)}"
    untouched = {"demo_corpus", "prepare", "cut", "faces", "lipsync_train", "speaker", "features@text",
                 "features@visual"}
    assert not ran & untouched

    from pipeline.tables import read_metadata, read_vectors

    meta = read_metadata(workspace / "data" / "features" / "audio.parquet")
    assert meta["extractor"] == "wav2vec2" and meta["dim"] == 16 and meta["config"]["model"] == str(model)
    ids, vectors = read_vectors(workspace / "data" / "features" / "audio.parquet")
    assert len(ids) > 0 and vectors.shape == (len(ids), 16)
    assert ran_stages(run(["dvc", "repro"], workspace)) == set()  # and then nothing is stale
