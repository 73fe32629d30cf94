"""README's results tables are generated from the committed benchmark JSON and agree with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline import readme_tables, report

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tables_match_the_committed_results():
    text = (ROOT / "README.md").read_text()
    assert "<!-- results:active_speaker.dev -->" in text
    assert readme_tables.render_readme(text) == text, "run python -m pipeline.readme_tables"


def test_a_changed_figure_changes_the_table_and_the_check_fails(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    report = json.loads((results / "active_speaker_dev.json").read_text())
    report["corpora"]["voxceleb2"]["dev"]["hard"]["lipsyncnet"]["two_face_accuracy"] = 0.123
    (results / "active_speaker_dev.json").write_text(json.dumps(report))
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    assert readme_tables.main(["--check", "--readme", str(readme), "--results", str(results)]) == 1
    assert readme_tables.main(["--readme", str(readme), "--results", str(results)]) == 0
    assert "| `lipsyncnet` | 12.3% [" in readme.read_text()
    assert readme_tables.main(["--check", "--readme", str(readme), "--results", str(results)]) == 0


def test_a_missing_results_file_says_how_to_make_it(tmp_path):
    text = "<!-- results:active_speaker.grid -->\n<!-- /results:active_speaker.grid -->\n"
    assert "Not measured at this commit yet" in readme_tables.render_readme(text, tmp_path)


def test_an_unknown_table_name_fails_with_the_known_names():
    with pytest.raises(KeyError, match="active_speaker.voxceleb2"):
        readme_tables.render_readme("<!-- results:nope -->\n<!-- /results:nope -->\n")


def test_every_results_file_has_a_generated_readme_table(monkeypatch):
    """A committed benchmarks/results/*.json that no README block renders would be typed by hand, or not shown."""
    read: set[str] = set()
    load = readme_tables._load

    def recording(results: Path, name: str) -> dict:
        read.add(name)
        return load(results, name)

    monkeypatch.setattr(readme_tables, "_load", recording)
    readme_tables.render_readme((ROOT / "README.md").read_text())
    committed = {path.name for path in (ROOT / "benchmarks" / "results").glob("*.json")}
    assert committed <= read, f"no README table renders {sorted(committed - read)}"


def test_a_changed_real_text_score_fails_the_check(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    scores = json.loads((results / "real_text.json").read_text())
    scores["results"]["iemocap"]["models"][0]["test"]["weighted_f1"]["mean"] = 0.4321
    (results / "real_text.json").write_text(json.dumps(scores))
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    assert readme_tables.main(["--check", "--readme", str(readme), "--results", str(results)]) == 1
    assert readme_tables.main(["--readme", str(readme), "--results", str(results)]) == 0
    assert f"| iemocap | {scores['results']['iemocap']['models'][0]['model']} | 43.2 ± " in readme.read_text()


def test_the_demo_table_says_how_to_make_its_file(tmp_path):
    text = "<!-- results:demo.results -->\n<!-- /results:demo.results -->\n"
    assert "`make demo`" in readme_tables.render_readme(text, tmp_path)


def test_report_readme_is_the_same_command(monkeypatch):
    calls = []
    monkeypatch.setattr(readme_tables, "main", lambda argv=None: calls.append(argv) or 0)
    assert report.main(["--readme", "--check"]) == 0 and report.main(["--readme"]) == 0
    assert calls == [["--check"], []]
