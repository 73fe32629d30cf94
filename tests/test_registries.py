"""Adding an extractor or a stage is one file: the registries find it by reading the folder."""

from __future__ import annotations

from pathlib import Path

from extractors.registry import EXTRACTORS, _declared_names, extractor_class
from pipeline.stages import STAGE_MODULES

ROOT = Path(__file__).resolve().parents[1]


def test_a_class_declaring_a_name_is_registered_without_importing_its_module(tmp_path):
    module = tmp_path / "audio_new.py"
    module.write_text("import not_installed_anywhere\n\nclass Base:\n    pass\n\n"
                      "class NewExtractor(Base):\n    name = 'new'\n    other = 'x'\n\n"
                      "class Helper:\n    label = 'helper'\n")
    assert _declared_names(module) == {"new": "extractors.audio_new:NewExtractor"}


def test_every_registered_extractor_is_the_class_declaring_its_name():
    assert set(EXTRACTORS) == {"densenet", "minilm", "opensmile", "roberta", "timesformer", "wav2vec2"}
    for name in EXTRACTORS:
        assert extractor_class(name).name == name


def test_every_stage_file_is_a_stage():
    files = {p.stem for p in (ROOT / "pipeline" / "stages").glob("*.py") if not p.stem.startswith("_")}
    assert set(STAGE_MODULES) == files and "refine" in files
