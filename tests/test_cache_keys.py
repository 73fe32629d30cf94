"""Cache keys follow content: the code a result comes from and every byte of its input files.

No version string is bumped by hand, so these tests edit code and inputs the way a maintainer or a
user would and check that exactly the affected results are recomputed.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from pipeline import code_fingerprint as fingerprint_module
from pipeline import file_hash as file_hash_module
from pipeline import paths
from pipeline.code_fingerprint import PROJECT_ROOT, code_fingerprint, module_closure
from pipeline.file_hash import file_hash
from pipeline.hooks import silent_hook
from pipeline.manifest import write_manifest
from pipeline.runner import PlainRunner
from pipeline.stages import cut
from pipeline.tables import read_frame
from pipeline.training.cache import cache_key, feature_fingerprints
from pipeline.training.config import ModelSpec, TrainConfig

LONG_AGO = 1_500_000_000  # inputs "recorded" long before the test edits them, so an edit always moves mtime


def _add_statement(path: Path, function: str) -> None:
    """Edit `function`'s body in `path` (append a statement), as a maintainer's change would."""
    lines = path.read_text().splitlines(keepends=True)
    node = next(n for n in ast.walk(ast.parse("".join(lines)))
                if isinstance(n, ast.FunctionDef) and n.name == function)
    indent = " " * node.body[0].col_offset
    lines.insert(node.body[-1].end_lineno, f"{indent}_edited = True\n")
    path.write_text("".join(lines))


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _project_copy(target: Path) -> Path:
    """The project's packages, copied so a test can edit them without touching the checkout."""
    for package in sorted(fingerprint_module.PACKAGES):
        shutil.copytree(PROJECT_ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    return target


# --- the code fingerprint ------------------------------------------------------------------------


@pytest.fixture
def fake_project(tmp_path: Path) -> Path:
    """A stage module importing a helper at the top, another inside a function, and a sibling it never uses."""
    package = tmp_path / "pipeline"
    package.mkdir()
    (package / "__init__.py").write_text('"""Package."""\n')
    (package / "stage.py").write_text(
        "import numpy as np\n"
        "from typing import TYPE_CHECKING\n"
        "from pipeline.helper import clean\n\n"
        "if TYPE_CHECKING:\n"
        "    from pipeline import typing_only\n\n\n"
        "def run(values):\n"
        "    from pipeline import late\n"
        "    return late.scale(clean(np.asarray(values)))\n"
    )
    (package / "helper.py").write_text("from . import deep\n\n\ndef clean(values):\n    return deep.clip(values)\n")
    (package / "deep.py").write_text("def clip(values):\n    return values.clip(0, 1)\n")
    (package / "late.py").write_text("def scale(values):\n    return values * 2\n")
    (package / "typing_only.py").write_text("def hint():\n    return None\n")
    (package / "unrelated.py").write_text("def other():\n    return 1\n")
    return tmp_path


def test_fingerprint_covers_every_project_module_the_stage_imports(fake_project):
    assert module_closure("pipeline.stage", root=fake_project) == [
        "pipeline", "pipeline.deep", "pipeline.helper", "pipeline.late", "pipeline.stage"]


@pytest.mark.parametrize("module, function", [("helper", "clean"), ("deep", "clip"), ("late", "scale")])
def test_editing_a_function_the_stage_uses_changes_its_fingerprint(fake_project, module, function):
    before = code_fingerprint("pipeline.stage", root=fake_project)
    _add_statement(fake_project / "pipeline" / f"{module}.py", function)
    assert code_fingerprint("pipeline.stage", root=fake_project) != before


@pytest.mark.parametrize("module, function", [("unrelated", "other"), ("typing_only", "hint")])
def test_editing_code_the_stage_never_runs_keeps_its_fingerprint(fake_project, module, function):
    before = code_fingerprint("pipeline.stage", root=fake_project)
    _add_statement(fake_project / "pipeline" / f"{module}.py", function)
    assert code_fingerprint("pipeline.stage", root=fake_project) == before


def test_comments_and_formatting_keep_the_fingerprint(fake_project):
    before = code_fingerprint("pipeline.stage", root=fake_project)
    helper = fake_project / "pipeline" / "helper.py"
    helper.write_text("# tidied up\n" + helper.read_text().replace("deep.clip(values)", "deep.clip( values )"))
    assert code_fingerprint("pipeline.stage", root=fake_project) == before


def test_a_module_outside_the_project_is_refused(fake_project):
    with pytest.raises(ValueError, match="not a module"):
        code_fingerprint("numpy", root=fake_project)


# --- full content hashes of input files ----------------------------------------------------------


def test_one_byte_changed_in_the_middle_of_a_large_file_changes_its_hash(tmp_path):
    path = tmp_path / "recording.bin"
    path.write_bytes(np.random.default_rng(0).bytes(3 << 20))  # the old first/last-MiB scheme missed the middle
    os.utime(path, (LONG_AGO, LONG_AGO))
    before = file_hash(path)
    _flip_middle_byte(path)
    assert file_hash(path) != before


def test_weights_retrained_in_place_change_the_extractors_identity(tmp_path):
    """A one-byte change deep inside a local weight file (or a file added to a model folder) is a new cache key."""
    from extractors import build_extractor
    from pipeline.extractor_identity import extractor_identity

    weights = tmp_path / "densenet.pt"
    data = bytearray(np.random.default_rng(0).integers(0, 256, 5 << 20, dtype=np.uint8).tobytes())
    weights.write_bytes(bytes(data))
    before = extractor_identity(build_extractor({"name": "densenet", "weights": str(weights)}))
    data[len(data) // 2] ^= 1
    weights.write_bytes(bytes(data))
    after = extractor_identity(build_extractor({"name": "densenet", "weights": str(weights)}))
    assert before["weights_file"] != after["weights_file"] and before["weights"] == after["weights"]

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    first = file_hash_module.tree_hash(folder)
    (folder / "extra.bin").write_bytes(b"x")
    assert file_hash_module.tree_hash(folder) != first


def test_large_files_are_hashed_once_across_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(file_hash_module, "REMEMBER_ON_DISK", 1 << 20)
    path = tmp_path / "recording.bin"
    path.write_bytes(np.random.default_rng(1).bytes(2 << 20))
    os.utime(path, (LONG_AGO, LONG_AGO))
    first = file_hash(path)
    assert (paths.CACHE_DIR / file_hash_module.STATE_FILE).is_file()

    def unread(*args):
        raise AssertionError("an unchanged file was read again")

    monkeypatch.setattr(file_hash_module, "_MEMO", {})  # a new process: only the state on disk is left
    monkeypatch.setattr(file_hash_module, "_read_and_hash", unread)
    assert file_hash(path) == first
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    _flip_middle_byte(path)
    assert file_hash(path) != first


# --- a real stage: `cut` -------------------------------------------------------------------------


@pytest.fixture
def cut_workspace(tmp_path, monkeypatch, base_params):
    """Two 3 MiB recordings with two utterances each, a manifest and params; `cut` runs inside."""
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    rng = np.random.default_rng(2)
    rows = []
    for name in ("a", "b"):
        audio = (0.1 * rng.standard_normal((18 * 44100, 2))).astype(np.float32)
        sf.write(corpus / f"{name}.wav", audio, 44100, subtype="PCM_16")
        os.utime(corpus / f"{name}.wav", (LONG_AGO, LONG_AGO))
        for turn, (start, end) in enumerate([(0.5, 3.0), (8.0, 11.0)]):
            rows.append({"utt_id": f"{name}/{turn}", "dialogue_id": name, "turn": turn, "speaker": "s",
                         "text": "hello there", "label": "joy", "split": "train", "media": f"{name}.wav",
                         "start": start, "end": end})
    write_manifest(pd.DataFrame(rows), corpus, ["neutral", "joy"], "test")
    params = json.loads(json.dumps(base_params))
    calls: list[str] = []
    real = cut._cut_media

    def counting(media, *args, **kwargs):
        calls.append(Path(media).name)
        return real(media, *args, **kwargs)

    monkeypatch.setattr(cut, "_cut_media", counting)

    def run() -> list[str]:
        calls.clear()
        cut.run(params, PlainRunner(workers=1, hook=silent_hook))
        return sorted(calls)

    assert (corpus / "a.wav").stat().st_size > 2 << 20
    assert run() == ["a.wav", "b.wav"]
    return tmp_path, run


def test_unchanged_rerun_restores_every_part(cut_workspace):
    root, run = cut_workspace
    before = read_frame(paths.CUTS)
    wavs = {p.name: p.read_bytes() for p in paths.AUDIO_DIR.iterdir()}
    assert run() == []
    pd.testing.assert_frame_equal(before, read_frame(paths.CUTS))
    assert {p.name: p.read_bytes() for p in paths.AUDIO_DIR.iterdir()} == wavs


def test_one_byte_changed_in_the_middle_of_a_recording_recomputes_its_part_only(cut_workspace):
    root, run = cut_workspace
    _flip_middle_byte(root / "corpus" / "a.wav")
    assert run() == ["a.wav"]
    assert run() == []


def test_editing_code_the_stage_imports_recomputes_its_parts(cut_workspace, tmp_path_factory, monkeypatch):
    root, run = cut_workspace
    copy = _project_copy(tmp_path_factory.mktemp("project"))
    monkeypatch.setattr(fingerprint_module, "PROJECT_ROOT", copy)
    assert run() == []  # the copy is the same code
    assert "pipeline.media" in module_closure("pipeline.stages.cut")
    _add_statement(copy / "pipeline" / "media.py", "read_audio")
    assert run() == ["a.wav", "b.wav"]
    assert run() == []


def test_editing_code_the_stage_does_not_import_keeps_its_parts(cut_workspace, tmp_path_factory, monkeypatch):
    root, run = cut_workspace
    copy = _project_copy(tmp_path_factory.mktemp("project"))
    monkeypatch.setattr(fingerprint_module, "PROJECT_ROOT", copy)
    assert "pipeline.training.plots" not in module_closure("pipeline.stages.cut")
    plots = copy / "pipeline" / "training" / "plots.py"
    _add_statement(plots, next(n.name for n in ast.parse(plots.read_text()).body if isinstance(n, ast.FunctionDef)))
    assert run() == []


# --- the trainer's content cache -----------------------------------------------------------------


def test_trainer_cache_key_follows_the_modules_the_trainer_imports(tmp_path, tmp_path_factory, monkeypatch,
                                                                   base_params):
    monkeypatch.chdir(tmp_path)
    paths.MANIFEST.parent.mkdir(parents=True)
    paths.MANIFEST.write_bytes(b"manifest")
    copy = _project_copy(tmp_path_factory.mktemp("project"))
    monkeypatch.setattr(fingerprint_module, "PROJECT_ROOT", copy)
    name = "text_gru"
    spec, cfg = ModelSpec.from_params(base_params, name), TrainConfig.for_model(base_params, name)
    prints = {"text": "0" * 64}

    def key() -> str:
        return cache_key(spec, cfg, prints)

    first = key()
    assert "pipeline.report" not in module_closure("pipeline.training.cache")
    _add_statement(copy / "pipeline" / "report.py", "main")
    assert key() == first
    _add_statement(copy / "pipeline" / "training" / "splits.py", "session_folds")
    second = key()
    assert second != first
    _add_statement(copy / "pipeline" / "training" / "loop.py", "fit")  # the training loop every seed runs
    third = key()
    assert third != second
    _add_statement(copy / "models" / "context_gru.py", "forward")  # the model's module, loaded by name
    assert key() != third


def test_trainer_feature_fingerprints_see_every_byte(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = paths.features_path("audio")
    path.parent.mkdir(parents=True)
    path.write_bytes(np.random.default_rng(3).bytes(3 << 20))
    os.utime(path, (LONG_AGO, LONG_AGO))
    before = feature_fingerprints(["audio"])
    _flip_middle_byte(path)
    assert feature_fingerprints(["audio"]) != before
