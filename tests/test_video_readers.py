"""`video.reader` switches the decoder: every reader hands the stages the frames PyAV gives (the same pixels
on H.264; on MPEG-1 the colour conversion differs by a few levels, which is why DVC tracks the block)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.config import ConfigError, parse_block
from pipeline.face_detect import FaceDetector
from pipeline.media import MediaError, probe
from pipeline.stages.faces import _faces_for_media
from pipeline.video_readers import READER_NAMES, VideoConfig, read_frames, video_reader

OTHERS = [name for name in READER_NAMES if name != "pyav"]


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def _frames(path: Path, wanted: list[int], fps: float, reader: str) -> dict[int, np.ndarray]:
    return dict(read_frames(path, wanted, fps, reader))


def _agreement(clip: Path, reader: str) -> tuple[bool, float]:
    """(same frame indices as PyAV, largest mean absolute pixel difference over a frame)."""
    info = probe(clip)
    worst, same_indices = 0.0, True
    for wanted in (list(range(0, info.frame_count + 3, 5)),  # the faces stage: sampled frames
                   list(range(10, min(info.frame_count, 60)))):  # the speaker stage: every frame of a cut
        expected = _frames(clip, wanted, info.fps, "pyav")
        got = _frames(clip, wanted, info.fps, reader)
        same_indices &= sorted(got) == sorted(expected)
        for index in set(got) & set(expected):
            assert got[index].dtype == np.uint8 and got[index].shape == expected[index].shape
            worst = max(worst, float(np.abs(got[index].astype(int) - expected[index]).mean()))
    return same_indices, worst


@pytest.mark.parametrize("reader", OTHERS)
def test_every_reader_gives_pyavs_pixels_on_real_h264_clips(shared_data, reader):
    clips = sorted((shared_data / "clips" / "voxceleb2").glob("*.mp4"))[:4]
    assert clips, "no VoxCeleb2 clips found"
    for clip in clips:
        assert _agreement(clip, reader) == (True, 0.0), clip.name


def test_on_mpeg1_the_colour_conversion_differs_and_torchcodec_stops_early(shared_data):
    clip = sorted((shared_data / "clips" / "grid").glob("*.mpg"))[0]  # MPEG-PS: seeks by bytes
    same_indices, worst = _agreement(clip, "decord")
    assert same_indices and 0 < worst < 8  # the same frames, a few grey levels apart
    same_indices, worst = _agreement(clip, "torchcodec")
    assert worst < 8
    info = probe(clip)
    every = range(info.frame_count + 3)
    by_pyav, by_torchcodec = _frames(clip, every, info.fps, "pyav"), _frames(clip, every, info.fps, "torchcodec")
    # torchcodec cannot decode the last frames of MPEG-PS files: it stops early, never skips or repeats one
    assert sorted(by_torchcodec) == sorted(by_pyav)[:len(by_torchcodec)]
    assert len(by_pyav) // 2 < len(by_torchcodec) < len(by_pyav)


@pytest.mark.parametrize("reader", READER_NAMES)
def test_every_reader_turns_phone_video_upright(tmp_path, reader):
    base, sideways, tagged = tmp_path / "base.mp4", tmp_path / "sideways.mp4", tmp_path / "tagged.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=1", "-c:v", "libx264", "-pix_fmt",
            "yuv420p", str(base))
    _ffmpeg("-i", str(base), "-vf", "transpose=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(sideways))
    _ffmpeg("-i", str(sideways), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(tagged))
    upright = _frames(base, [12], 25.0, "pyav")[12]
    turned = _frames(tagged, [12, 400], 25.0, reader)
    assert sorted(turned) == [12]  # an index past the end is absent, not an error
    assert turned[12].shape == upright.shape == (180, 320, 3)
    assert np.abs(turned[12].astype(int) - upright).mean() < 5


@pytest.mark.parametrize("reader", READER_NAMES)
def test_an_undecodable_file_is_a_media_error(tmp_path, reader):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    with pytest.raises(MediaError, match="could not be decoded|corrupt"):
        list(read_frames(broken, [0, 1], 25.0, reader))


def test_the_faces_stage_finds_the_same_tracks_with_every_reader(shared_data):
    clip = sorted((shared_data / "clips" / "voxceleb2").glob("*.mp4"))[0]
    info = probe(clip)
    rows = pd.DataFrame({"utt_id": ["u1", "u2"], "start_frame": [0, info.frame_count // 2],
                         "end_frame": [info.frame_count // 2, info.frame_count], "fps": [info.fps, info.fps]})
    cfg = {"sample_fps": 5.0, "batch_size": 16, "iou_threshold": 0.3, "max_gap": 2, "min_track_samples": 2}
    detector = FaceDetector("cpu", 0.9, 40, 480)
    tables = {reader: _faces_for_media(clip, rows, cfg, detector, reader) for reader in READER_NAMES}
    reference, failures = tables["pyav"]
    assert reference.num_rows > 0 and not failures
    for reader in OTHERS:
        assert tables[reader][0].equals(reference), reader
        assert tables[reader][1] == []


def test_an_unknown_reader_is_refused_naming_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"'video.reader'.*pyav, decord, torchcodec"):
        video_reader({"video": {"reader": "opencv"}})
    with pytest.raises(ConfigError, match=r"unknown key 'video.decoder'"):
        parse_block(VideoConfig, {"decoder": "pyav"}, "video")
    assert video_reader({}) == "pyav" and video_reader({"video": {"reader": "decord"}}) == "decord"
