"""Phone videos store portrait footage sideways with a display rotation: frames must come out upright,
and `probe` must report the size those upright frames have."""

from __future__ import annotations

import subprocess

import numpy as np

from pipeline.media import iter_frames, probe


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def test_a_rotated_video_is_read_upright(tmp_path):
    base, sideways, tagged = tmp_path / "base.mp4", tmp_path / "sideways.mp4", tmp_path / "tagged.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=1", "-c:v", "libx264", "-pix_fmt",
            "yuv420p", str(base))
    _ffmpeg("-i", str(base), "-vf", "transpose=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(sideways))
    _ffmpeg("-i", str(sideways), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(tagged))

    info = probe(tagged)
    assert (info.width, info.height) == (320, 180)
    upright = dict(iter_frames(base, [0, 12], info.fps))
    turned = dict(iter_frames(tagged, [0, 12], info.fps))
    for index in (0, 12):
        assert turned[index].shape == upright[index].shape == (180, 320, 3)
        assert np.abs(turned[index].astype(int) - upright[index]).mean() < 5  # same picture, re-encoded twice
