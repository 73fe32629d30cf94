"""`python -m pipeline.report` prints every model's results, with one seed as well as with several."""

from __future__ import annotations

import json

from pipeline import report
from pipeline.training.metrics import mean_std


def _eval(path, scores):
    block = {"weighted_f1": mean_std(scores), "accuracy": mean_std(scores), "macro_f1": mean_std(scores)}
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"test": block, "seeds": list(range(len(scores))),
                                "majority_baseline": {"weighted_f1": 0.3}}))


def test_report_prints_single_and_multi_seed_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _eval(tmp_path / "metrics" / "one_seed" / "eval.json", [0.5])
    _eval(tmp_path / "metrics" / "three_seeds" / "eval.json", [0.5, 0.6, 0.7])
    assert report.main() == 0
    out = capsys.readouterr().out
    assert "one_seed" in out and "50.00 (1 seed)" in out
    assert "three_seeds" in out and "60.00 ± 10.00" in out
