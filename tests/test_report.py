"""`python -m pipeline.report` prints every model's results, and writes and checks the demo's results file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipeline import paths, report
from pipeline.manifest import write_manifest
from pipeline.training.metrics import mean_std


def _eval(path, scores):
    block = {"weighted_f1": mean_std(scores), "accuracy": mean_std(scores), "macro_f1": mean_std(scores),
             "per_class_f1": {"a": mean_std(scores), "b": mean_std([s / 3 for s in scores])}}
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"commit": "c" * 40, "date": "2026-01-01 00:00 UTC", "model": path.parent.name,
                                "test": block, "dev": block, "seeds": list(range(len(scores))),
                                "majority_baseline": {"label": "a", "accuracy": 0.5, "weighted_f1": 0.3},
                                "per_seed": [{"seconds": 1.0}]}))


def test_report_prints_single_and_multi_seed_results(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _eval(tmp_path / "metrics" / "one_seed" / "eval.json", [0.5])
    _eval(tmp_path / "metrics" / "three_seeds" / "eval.json", [0.5, 0.6, 0.7])
    assert report.main([]) == 0
    out = capsys.readouterr().out
    assert "one_seed" in out and "50.00 (1 seed)" in out
    assert "three_seeds" in out and "60.00 ± 10.00" in out


def test_demo_json_is_reproduced_up_to_its_provenance_and_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("features:\n  text: {name: minilm}\ntrain:\n  seeds: [0, 1, 2]\n")
    rows = [dict(utt_id=f"{s}{d}/{t}", dialogue_id=f"{s}{d}", turn=t, speaker="x", text="hi", label="ab"[t % 2],
                 split=s, media="m.mp4", start=np.nan, end=np.nan)
            for s in ("train", "test") for d in range(2) for t in range(3)]
    write_manifest(pd.DataFrame(rows), tmp_path, ["a", "b"], "demo")
    (tmp_path / "dvc.lock").write_text(json.dumps({"stages": {
        "prepare": {"outs": [{"path": "data/manifest.parquet", "md5": "m1"}]},
        "features@text": {"outs": [{"path": "data/features/text.parquet", "md5": "t1"}]}}}))
    _eval(paths.METRICS_DIR / "gru" / "eval.json", [0.5, 0.6, 0.712345678])
    target = tmp_path / "benchmarks" / "results" / "demo.json"

    assert report.main(["--demo-json", str(target)]) == 0
    first = target.read_text()
    written = json.loads(first)
    assert written["command"] == f"python -m pipeline.report --demo-json {target}"
    assert written["params"]["train"] == {"seeds": [0, 1, 2]}
    assert written["inputs"] == {"data/manifest.parquet": "m1", "data/features/text.parquet": "t1"}
    assert written["corpus"]["splits"] == {"test": {"dialogues": 2, "utterances": 6},
                                           "train": {"dialogues": 2, "utterances": 6}}
    model = written["models"]["gru"]
    assert model["test"]["weighted_f1"]["mean"] == round(np.mean([0.5, 0.6, 0.712345678]), 4)
    assert set(model["test"]["per_class_f1"]) == {"a", "b"} and "per_seed" not in model and "commit" not in model
    assert written["majority_baseline"]["label"] == "a"

    assert report.main(["--demo-json", str(target), "--check"]) == 0  # same results: only provenance may differ
    assert report.main(["--demo-json", str(target)]) == 0
    assert "same results as before" in capsys.readouterr().out
    rewritten = json.loads(target.read_text())
    assert {k: v for k, v in rewritten.items() if k not in report.VOLATILE} == \
        {k: v for k, v in written.items() if k not in report.VOLATILE}

    written["models"]["gru"]["test"]["macro_f1"]["mean"] = 0.1
    written["machine"], written["date"] = "elsewhere", "2030-01-01 00:00 UTC"
    target.write_text(json.dumps(written))
    capsys.readouterr()
    assert report.main(["--demo-json", str(target), "--check"]) == 1
    captured = capsys.readouterr()
    assert "models.gru.test.macro_f1.mean: 0.1 -> 0.6041" in captured.err and "NOT reproduced" in captured.out
    assert "machine" not in captured.err and "date" not in captured.err
    assert json.loads(target.read_text()) == written  # --check writes nothing


def test_demo_json_without_results_says_how_to_make_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert report.main(["--demo-json", "demo.json"]) == 2
    assert "make demo" in capsys.readouterr().err and not (tmp_path / "demo.json").exists()
