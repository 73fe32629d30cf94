"""LipSyncNet learns synchrony from real in-the-wild faces and carries it to people it never saw.

VoxCeleb2 clips from `../shared/data` (skipped when absent): the real detector, tracker and
landmark-aligned mouth crops of the pipeline turn clips of some people into training series; a
brief self-supervised training follows; then, on clips of *other* people, each one-second window of
the mouth (25 frames, half-overlapping) must be closer on average to its own audio (at the clip's
own A/V offset, found on the whole clip within +-2 frames) than to the audio 5 to 15 frames away.
One second is the shortest stretch the speaker stage decides on (utterances are longer; a single
0.2 s embedding is right about 70 % of the time on these people, too noisy alone). An untrained
network, measured the same way, is at chance: the check cannot pass without learning.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from models.lipsyncnet import LipSyncConfig, LipSyncNet, audio_windows, log_mel, sync_profile, video_windows
from pipeline.clips import ClipRequest, collect_clips
from pipeline.face_detect import FaceDetector
from pipeline.lipsync_data import Augment, TrackSeries, timeline
from pipeline.lipsync_settings import LipSyncSettings
from pipeline.media import iter_frames, probe, read_audio
from pipeline.stages.faces import sample_frames
from pipeline.tracking import track_faces
from pipeline.training.lipsync import train_model

# The active-speaker benchmark's folds: train on its train people, measure on its dev people.
TEST_PEOPLE = {"pcavs_p741400", "pcavs_p00098", "pcavs_p00015", "pcavs_p00473", "pcavs_p00373"}
DEV_PEOPLE = {"id01175", "pcavs_p00002", "pcavs_p681100216", "pcavs_p796100172"}
STEPS = 600
SPAN = 25  # frames per window: one second at 25 fps


def _series(path: Path, detector: FaceDetector, config: LipSyncConfig) -> tuple[TrackSeries, np.ndarray]:
    """The clip's longest face track as the pipeline crops it, and the log-mel of its audio."""
    info = probe(path)
    wanted = sample_frames(0, info.frame_count, info.fps, 5.0)
    images = dict(iter_frames(path, wanted, info.fps))
    frames = sorted(images)
    samples = [(f, *found) for f, found in zip(frames, detector.detect([images[f] for f in frames]))]
    track = max(track_faces(samples, 0.3, 2, 2), key=lambda t: len(t.frames))
    request = ClipRequest(path.stem, 0, info.frame_count, info.fps, 0.0, {0: (track.frames, track.boxes)},
                          every_frame=True)
    clip = next(iter(collect_clips(path, [request], (config.mouth_height, config.mouth_width)))).clips[0]
    start, positions = timeline(clip.times, config.fps)
    mel = log_mel(read_audio(path, 16000), 16000, config.n_mels)
    return TrackSeries(path.stem, path.stem, 0, start, clip.lips[positions]), mel


@pytest.fixture(scope="module")
def voxceleb(request):
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips" / "voxceleb2"
    if not (root / "clips.csv").is_file():
        pytest.skip(f"{root} not present")
    with (root / "clips.csv").open() as handle:
        people = {Path(r["file"]).stem: r["person"] for r in csv.DictReader(handle)}
    config = LipSyncConfig()
    detector = FaceDetector("cpu", 0.9, 40, 480)
    train_names = [n for n in sorted(people) if people[n] not in TEST_PEOPLE | DEV_PEOPLE]
    test_names = [n for n in sorted(people) if people[n] in DEV_PEOPLE]
    material = {name: _series(root / f"{name}.mp4", detector, config) for name in train_names + test_names}
    assert not {people[n] for n in train_names} & {people[n] for n in test_names}
    return config, material, train_names, test_names


def _window_accuracy(model: LipSyncNet, material: dict, names: list[str], seed: int = 0) -> float:
    """Share of one-second windows closer on average to their own audio than to audio 5-15 frames away."""
    rng = np.random.default_rng(seed)
    hits = []
    with torch.no_grad():
        for name in names:
            series, mel = material[name]
            video, audio = video_windows(model, series.mouths), audio_windows(model, mel)
            own = sync_profile(video, audio, series.start, 2).best_offset  # the clip's A/V offset
            for t in range(0, len(video) - SPAN + 1, SPAN // 2):
                shift = int(rng.integers(5, 16)) * int(rng.choice([-1, 1]))
                at, away = series.start + t + own, series.start + t + shift
                if min(at, away) < 0 or max(at, away) + SPAN > len(audio):
                    continue
                window = video[t:t + SPAN]
                near = (window - audio[at:at + SPAN]).norm(dim=1).mean()
                far = (window - audio[away:away + SPAN]).norm(dim=1).mean()
                hits.append(float(near < far))
    assert len(hits) >= 40, f"only {len(hits)} windows to judge: too few for the check to mean anything"
    return float(np.mean(hits))


def test_lipsyncnet_trained_on_some_people_keeps_sync_on_other_people(voxceleb):
    config, material, train_names, test_names = voxceleb
    torch.manual_seed(0)
    untrained = LipSyncNet(config).eval()
    chance = _window_accuracy(untrained, material, test_names)
    series = [material[n][0] for n in train_names]
    mels = {n: material[n][1] for n in train_names}
    model, _ = train_model(series, mels, config, LipSyncSettings(steps=STEPS, augment=Augment(reverse=0.5)))
    learned = _window_accuracy(model, material, test_names)
    assert chance <= 0.65, f"an untrained network already separates the audio ({chance:.2f}): the check is void"
    assert learned >= 0.80, f"own audio beat shifted audio in only {learned:.1%} of 1 s windows of unseen people"
