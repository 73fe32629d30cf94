"""A full disk stops a stage with a clear message, leaves no half-written output, and resumes once freed.

`data/` is a small real tmpfs (skipped where mounting is not allowed); a ballast file fills it so
the `faces` stage's output cannot be written.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from pipeline import __main__ as entry
from pipeline import paths
from pipeline.hooks import silent_hook
from pipeline.manifest import write_manifest
from pipeline.runner import PlainRunner
from pipeline.stages import cut, faces
from pipeline.tables import read_frame
from tests import media_factory as mf


def _runner() -> PlainRunner:
    return PlainRunner(workers=1, hook=silent_hook)


@pytest.fixture
def small_disk(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield tmp_path
    subprocess.run(["umount", "-l", str(data)], capture_output=True)


def _fill(directory, leave: int) -> None:
    """Write a ballast file until only about `leave` bytes are free."""
    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    with open(directory / "ballast", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))


def test_a_full_disk_fails_clearly_keeps_no_partial_output_and_resumes(small_disk, base_params, monkeypatch):
    root = small_disk
    monkeypatch.chdir(root)
    mf.talking_clip(root / "corpus" / "two.mp4", "the weather is lovely today my friend", [3, 7], 1)
    frame = pd.DataFrame([{"utt_id": "two/0", "dialogue_id": "two", "turn": 0, "speaker": "s", "text": "hi",
                           "label": "joy", "split": "train", "media": "two.mp4", "start": np.nan, "end": np.nan}])
    write_manifest(frame, root / "corpus", ["neutral", "joy"], "test")
    params = json.loads(json.dumps(base_params))
    params["faces"]["detect_width"] = 320
    cut.run(params, _runner())
    _fill(root / "data", 2048)
    with pytest.raises(OSError) as caught:
        faces.run(params, _runner())
    assert caught.value.errno == errno.ENOSPC
    leftovers = [p.name for p in (root / "data").iterdir() if p.name.startswith(".") or p.name == "faces.parquet"]
    assert leftovers == [], leftovers  # neither the output nor a temporary file of it

    (root / "data" / "ballast").unlink()  # space freed: the finished item comes from the part cache
    monkeypatch.setattr(faces, "_faces_for_media", lambda *a, **k: (_ for _ in ()).throw(AssertionError("redone")))
    faces.run(params, _runner())
    assert set(read_frame(paths.FACES).utt_id) == {"two/0"}


def test_the_entry_point_turns_a_full_disk_into_one_clear_message(monkeypatch, capsys, tmp_path, base_params):
    import yaml

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base_params))
    monkeypatch.chdir(tmp_path)

    def stage(params, runner, arg=None):
        raise OSError(errno.ENOSPC, "No space left on device", "data/cuts.parquet")

    monkeypatch.setattr(entry, "get_stage", lambda name: stage)
    assert entry.main(["cut"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("disk full:") and "free some space and rerun" in err and "Traceback" not in err
