"""`benchmarks/scale.py` compares per-utterance seconds and peak memory of each stage between two sizes."""

from __future__ import annotations

from benchmarks.scale import compare


def _size(utterances: int, stages: dict[str, tuple[float, float]], dvc: float = 300.0) -> dict:
    """Stage rows as `measure_stages` writes them; DVC's own memory differs between sizes but is not judged."""
    return {"utterances": utterances,
            "stages": [{"stage": name, "seconds": s, "peak_rss_mib": m + dvc, "stage_rss_mib": m, "dvc_rss_mib": dvc}
                       for name, (s, m) in stages.items()]}


def test_ratios_are_per_utterance_time_and_the_stage_s_own_peak_memory_with_the_limits_applied():
    small = _size(100, {"faces": (10.0, 1000.0), "train": (5.0, 800.0), "only_small": (1.0, 1.0)})
    large = _size(400, {"faces": (44.0, 1150.0), "train": (30.0, 1000.0)}, dvc=900.0)
    rows = {row["stage"]: row for row in compare(small, large)}
    assert set(rows) == {"faces", "train"}  # a stage missing at one size is not compared
    assert rows["faces"]["seconds_per_utterance"] == [0.1, 0.11]
    assert (rows["faces"]["time_ratio"], rows["faces"]["memory_ratio"]) == (1.1, 1.15)
    assert rows["faces"]["time_linear"] and rows["faces"]["memory_flat"]
    assert (rows["train"]["time_ratio"], rows["train"]["memory_ratio"]) == (1.5, 1.25)
    assert not rows["train"]["time_linear"] and not rows["train"]["memory_flat"]
    assert rows["faces"]["dvc_rss_mib"] == [300.0, 900.0]


def test_a_stage_s_memory_is_its_own_processes_not_the_helpers_beside_it(tmp_path):
    """Under `dvc repro`, the stage is the `python -m pipeline ...` process and what it starts."""
    import sys

    from benchmarks.workspace import run_measured

    hold = "import time; b = bytearray({size}); b[::4096] = b'x' * len(b[::4096]); time.sleep(3)"
    stage = f"{sys.executable} -c \"{hold.format(size=150_000_000)}\" -m pipeline faces"
    helper = f"{sys.executable} -c \"{hold.format(size=300_000_000)}\""
    measured = run_measured(["sh", "-c", f"{stage} & {helper} & wait"], tmp_path)
    assert measured.work_rss_mib > 140  # the stage's 150 MB
    assert measured.peak_rss_mib - measured.work_rss_mib > 280  # the helper's 300 MB, counted apart
