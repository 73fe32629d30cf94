"""`run.runner`: the media and feature stages give the same outputs on worker processes, a local Dask
cluster and a local Ray cluster (2 workers each) as on threads, and a worker that dies costs one item."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from core.config import ConfigError
from pipeline import paths
from pipeline.hooks import silent_hook
from pipeline.manifest import write_manifest
from pipeline.runner import PlainRunner, run_config
from pipeline.stages import cut, faces, failures, features, speaker
from pipeline.task_runners import DistributedRunner, make_runner
from tests import media_factory as mf

LABELS = ["neutral", "joy"]
BACKENDS = ["processes", "dask", "ray"]
OUTPUTS = [paths.CUTS, paths.FACES, paths.SPEAKER, paths.SPEAKER_TRACKS / "crops.parquet",
           paths.FEATURES_DIR / "audio.parquet", paths.FAILURES]


def _row(utt: str, media: str, start: float | None = None, end: float | None = None) -> dict:
    return {"utt_id": utt, "dialogue_id": utt.split("/")[0], "turn": int(utt[-1]), "speaker": "s",
            "text": "hello there", "label": "joy", "split": "train", "media": media, "start": start, "end": end}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("runner_corpus")
    mf.talking_clip(folder / "two.mp4", "the weather is lovely today my friend", [3, 7], 1)
    mf.talking_clip(folder / "one.mp4", "we should leave before it rains", [4], 0)
    mf.corrupt_file(folder / "corrupt.mp4")
    rows = [_row("two/0", "two.mp4", 0.0, 1.2), _row("two/1", "two.mp4", 1.2, None), _row("one/0", "one.mp4"),
            _row("corrupt/0", "corrupt.mp4")]
    return folder, pd.DataFrame(rows)


def _run_stages(root: Path, corpus: tuple[Path, pd.DataFrame], params: dict, runner) -> dict[str, object]:
    folder, frame = corpus
    cwd = os.getcwd()
    os.chdir(root)
    try:
        write_manifest(frame, folder, LABELS, "test")
        with runner:
            for stage in (cut, faces, speaker):
                stage.run(params, runner)
            features.run(params, runner, "audio")
            failures.run(params, runner)
        return {str(out): pq.read_table(root / out) for out in OUTPUTS}
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def stage_params(base_params) -> dict:
    params = json.loads(json.dumps(base_params))
    params["faces"]["detect_width"] = 320
    params["run"]["max_failure_ratio"] = 0.9
    params["speaker"]["method"] = "mouth_motion"
    params["features"] = {"audio": params["features"]["audio"]}  # OpenSMILE functionals
    return params


@pytest.fixture(scope="module")
def on_threads(corpus, stage_params, tmp_path_factory) -> dict[str, object]:
    return _run_stages(tmp_path_factory.mktemp("threads"), corpus, stage_params, PlainRunner(2, silent_hook))


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_stage_output_matches_the_threads_runner(backend, corpus, stage_params, on_threads, tmp_path):
    runner = DistributedRunner(backend, workers=2, hook=silent_hook)
    outputs = _run_stages(tmp_path, corpus, stage_params, runner)
    assert on_threads[str(paths.FACES)].num_rows > 0 and on_threads[str(paths.SPEAKER)].num_rows == 3
    for name, table in on_threads.items():
        assert outputs[name].equals(table), f"{name} differs on {backend}"
        assert outputs[name].schema.metadata == table.schema.metadata, f"{name} metadata differs on {backend}"
    assert not (tmp_path / paths.CACHE_DIR / "runner").exists() or not any((tmp_path / paths.CACHE_DIR /
                                                                             "runner").iterdir())


def _dies_once(item: tuple[int, str]) -> int:
    """Kills its own worker process the first time it sees item 2 (a marker file remembers)."""
    value, marker = item
    if value == 2 and not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)
    return value * value


@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_a_worker_that_dies_costs_only_its_item(backend, tmp_path, monkeypatch):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests package
    monkeypatch.chdir(tmp_path)
    marker = str(tmp_path / "died")
    with DistributedRunner(backend, workers=2, hook=silent_hook) as runner:
        assert runner.map(_dies_once, [(i, marker) for i in range(5)], "squares") == [0, 1, 4, 9, 16]
    assert Path(marker).exists()  # the worker did die; the item was retried on a fresh one


def test_the_run_block_picks_the_runner_and_refuses_bad_values():
    assert isinstance(make_runner({"run": {"max_failure_ratio": 0.5}}), PlainRunner)
    runner = make_runner({"run": {"max_failure_ratio": 0.5, "runner": "dask", "workers": 3}})
    assert isinstance(runner, DistributedRunner) and (runner.backend, runner.workers) == ("dask", 3)
    with pytest.raises(ConfigError, match=r"'run.runner'.*threads, processes, dask, ray"):
        run_config({"run": {"max_failure_ratio": 0.5, "runner": "spark"}})
    with pytest.raises(ConfigError, match=r"'run.address'.*only runner dask or ray"):
        run_config({"run": {"max_failure_ratio": 0.5, "address": "tcp://host:8786"}})
