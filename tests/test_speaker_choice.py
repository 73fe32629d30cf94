"""Choosing the speaker among tracks: reasons, ties, order, the seat-hint scorer and the LipSyncNet scorer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from models.lipsyncnet import LipSyncConfig, LipSyncNet, log_mel
from pipeline.config import ConfigError
from pipeline.lipsync_checkpoint import save_lipsyncnet
from pipeline.lipsync_data import Augment, TrackSeries
from pipeline.lipsync_settings import LipSyncSettings
from pipeline.speaker_select import (
    FirstFaceScorer,
    LargestFaceScorer,
    LipSyncScorer,
    MouthMotionScorer,
    SeatHintScorer,
    TrackClip,
    UtteranceContext,
    build_scorer,
    choose,
)
from pipeline.training.lipsync import train_model
from tests import media_factory as mf

FPS = 25.0


def _clip(track_id: int, x: float, size: float = 60, start: int = 0, frames: int = 20, lips=None, mouths=None,
          fps: float = FPS, offset: float = 0.0) -> TrackClip:
    idx = np.arange(start, start + frames)
    boxes = np.tile([x, 50, x + size, 50 + size], (frames, 1)).astype(float)
    return TrackClip(track_id, idx, boxes, idx / fps - offset, mouths, lips)


def _context(audio=None, width=640, seat=None) -> UtteranceContext:
    audio = np.zeros(16000, np.float32) if audio is None else audio
    return UtteranceContext("u", audio, 16000, FPS, width, 360, seat)


class Fixed:
    """A scorer with given scores, to test the choice logic alone."""

    needs_frames = False
    scores_single = False

    def __init__(self, scores):
        self.scores = scores

    def score(self, clips, context):
        return {c.track_id: self.scores[c.track_id] for c in clips}


def test_zero_and_one_face_get_their_reasons():
    none = choose([], Fixed({}), _context(), 0.1)
    assert (none.track_id, none.reason, none.scores) == (-1, "no_face", {})
    one = choose([_clip(4, 10)], Fixed({4: 0.3}), _context(), 0.1)
    assert (one.track_id, one.reason, one.confidence) == (4, "single_face", 1.0)


def test_margin_is_the_confidence_and_small_margins_are_flagged():
    scored = choose([_clip(0, 10), _clip(1, 300)], Fixed({0: 0.2, 1: 0.9}), _context(), 0.1)
    assert (scored.track_id, scored.reason) == (1, "scored") and scored.confidence == pytest.approx(0.7)
    close = choose([_clip(0, 10), _clip(1, 300)], Fixed({0: 0.5, 1: 0.55}), _context(), 0.1)
    assert close.reason == "low_confidence" and close.track_id == 1


def test_ties_go_to_the_lowest_track_and_order_does_not_matter():
    clips = [_clip(2, 10), _clip(0, 200), _clip(1, 400)]
    tie = choose(clips, Fixed({0: 0.5, 1: 0.5, 2: 0.5}), _context(), 0.1)
    assert tie.track_id == 0 and tie.reason == "low_confidence"
    scorer = Fixed({0: 0.1, 1: 0.8, 2: 0.3})
    assert choose(clips, scorer, _context(), 0.1) == choose(clips[::-1], scorer, _context(), 0.1)


def test_first_and_largest_face_baselines():
    clips = [_clip(0, 300, size=40, start=5), _clip(1, 20, size=40, start=0), _clip(2, 150, size=90, start=0)]
    assert choose(clips, FirstFaceScorer(), _context(), 0.1).track_id == 1
    assert choose(clips, LargestFaceScorer(), _context(), 0.1).track_id == 2


def test_seat_hint_picks_the_face_in_the_speakers_half():
    clips = [_clip(0, 60), _clip(1, 420)]
    left = choose(clips, SeatHintScorer(), _context(seat="left"), 0.1)
    right = choose(clips, SeatHintScorer(), _context(seat="right"), 0.1)
    assert (left.track_id, right.track_id) == (0, 1)
    assert build_scorer({"method": "gender_side"}).score(clips, _context(seat="right"))[1] == pytest.approx(
        1 - abs(450 / 640 - 0.75))
    for missing in (None, "", "middle"):
        with pytest.raises(ValueError, match="seat_hint"):
            SeatHintScorer().score(clips, _context(seat=missing))


def test_mouth_motion_reads_the_audio_at_the_tracks_own_times():
    """A track that starts 1 s into the utterance is compared with the audio from 1 s on.

    The decoy moves with the first two seconds of the sound: it would win if the scorer paired a
    track's first frame with the start of the audio.
    """
    rng = np.random.default_rng(0)
    env = mf.syllabic_envelope(3.0, rng)
    audio = mf.envelope_audio(env, rng)
    openings = mf.frame_openings(env, 75)

    def patches(values):
        return (values[:, None, None] * np.ones((1, 8, 16)) + rng.normal(0, 0.01, (len(values), 8, 16))).astype(
            np.float32)

    clips = [_clip(0, 10, start=25, frames=50, mouths=patches(openings[25:])),
             _clip(1, 300, start=25, frames=50, mouths=patches(openings[:50]))]
    chosen = choose(clips, MouthMotionScorer(), _context(audio), 0.0)
    assert chosen.track_id == 0 and chosen.scores[0] > 0.5


def test_unknown_method_and_missing_checkpoint_are_configuration_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"speaker\.method.*allowed values: auto, lipsyncnet"):
        build_scorer({"method": "loudest"})
    with pytest.raises(ConfigError, match="lipsync_train"):
        build_scorer({"method": "lipsyncnet", "checkpoint": tmp_path / "none", "lipsync": {"device": "cpu"}})


# --- the LipSyncNet scorer on TrackClips (timeline, short tracks, other frame rates) -----------------------


@pytest.fixture(scope="module")
def lipsync_dir(tmp_path_factory):
    rng = np.random.default_rng(10)
    config = LipSyncConfig(video_channels=(8, 16, 32), audio_channels=(8, 16, 32), hidden=64)
    series, mels = [], {}
    for i in range(400):
        scene = mf.sync_scene(1.6, rng, [])
        mels[f"c{i}"] = log_mel(scene["audio"], 16000, config.n_mels)
        series.append(TrackSeries(f"c{i}", f"c{i}", 0, 0, scene["faces"][0]))
    torch.manual_seed(0)
    options = LipSyncSettings(steps=200, batch_size=32, augment=Augment(reverse=0.5))
    model, _ = train_model(series, mels, config, options)
    return save_lipsyncnet(model, tmp_path_factory.mktemp("lipsync") / "ckpt")


def _lipsync(lipsync_dir) -> LipSyncScorer:
    return build_scorer({"method": "lipsyncnet", "checkpoint": lipsync_dir, "lipsync": {"device": "cpu",
                                                                                       "max_offset": 1}})


def test_lipsyncnet_picks_the_speaker_on_sub_second_tracks(lipsync_dir):
    """0.6 s tracks that start 0.4 s into a 1.2 s utterance are scored and the speaker found."""
    scorer = _lipsync(lipsync_dir)
    rng = np.random.default_rng(11)
    hits = []
    for _ in range(30):
        scene = mf.sync_scene(1.2, rng, ["independent"])
        clips = [_clip(k, 100 + 200 * k, start=10, frames=15, lips=face[10:25]) for k, face in
                 enumerate(scene["faces"])]
        chosen = choose(clips, scorer, _context(scene["audio"]), 0.0)
        assert set(chosen.scores) == {0, 1} and all(np.isfinite(list(chosen.scores.values())))
        hits.append(chosen.track_id == 0)
    assert np.mean(hits) >= 0.8


def test_lipsyncnet_scores_a_single_face_and_other_frame_rates(lipsync_dir):
    scorer = _lipsync(lipsync_dir)
    rng = np.random.default_rng(12)
    scene = mf.sync_scene(2.0, rng, ["static"])
    single = choose([_clip(3, 100, frames=50, lips=scene["faces"][0])], scorer, _context(scene["audio"]), 0.1)
    assert single.reason == "single_face" and 0 < single.scores[3] <= 2  # a speaking face dips at sync
    distance = build_scorer({"method": "lipsyncnet", "checkpoint": lipsync_dir,
                             "lipsync": {"device": "cpu", "max_offset": 1, "score": "distance"}})
    plain = choose([_clip(3, 100, frames=50, lips=scene["faces"][0])], distance, _context(scene["audio"]), 0.1)
    assert -2 <= plain.scores[3] <= 0  # the paper's Eq. 5: minus a distance of unit vectors
    # the same faces recorded at 50 fps (every frame twice) score the same way
    doubled = [np.repeat(face, 2, axis=0) for face in scene["faces"]]
    clips = [_clip(k, 100 + 200 * k, frames=100, lips=face, fps=50.0) for k, face in enumerate(doubled)]
    context = UtteranceContext("u", scene["audio"], 16000, 50.0, 640, 360)
    chosen = choose(clips, scorer, context, 0.0)
    assert chosen.track_id == 0
    profiles = scorer.profiles(clips, context)
    assert abs(profiles[0].best_offset) <= 1


# --- choosing the scorer for a corpus from held-out tracks (speaker.method: auto) ---------------------------


def _held_out(count: int, seed: int, informative_motion: bool):
    """Single-face held-out tracks: synthetic mouths with their own audio; motion patches real or pure noise."""
    from pipeline.scorer_choice import HeldOutTrack

    rng = np.random.default_rng(seed)
    tracks = []
    for i in range(count):
        scene = mf.sync_scene(3.0, rng, [])
        lips = scene["faces"][0]
        if informative_motion:
            mouths = np.stack([cv2.resize(f, (16, 8), interpolation=cv2.INTER_AREA) for f in lips]) / 255.0
        else:
            mouths = rng.random((len(lips), 8, 16))
        clip = _clip(0, 100, frames=len(lips), lips=lips, mouths=mouths.astype(np.float32))
        tracks.append(HeldOutTrack(f"u{i}", f"d{i}", clip, scene["audio"], 16000, FPS))
    return tracks


def test_auto_choice_follows_the_held_out_figures(lipsync_dir):
    from pipeline.scorer_choice import choose_scorer

    trained = _lipsync(lipsync_dir)
    # motion patches carry nothing: the trained LipSyncNet (alone or mixed) must win
    blind = choose_scorer(_held_out(12, 20, informative_motion=False), trained, min_shift=5, scenes_per_size=60)
    assert blind["method"] in ("lipsyncnet", "fused"), blind
    assert blind["accuracy"]["lipsyncnet"]["2_face"] >= 0.85 and blind["accuracy"]["mouth_motion"]["2_face"] <= 0.75
    assert blind["shifted_audio_accuracy"]["lipsyncnet"] >= 0.8
    # an untrained LipSyncNet against informative mouth motion: the baseline must win
    torch.manual_seed(3)
    untrained = LipSyncScorer(LipSyncNet(trained.model.config).eval(), max_offset=1)
    seeing = choose_scorer(_held_out(12, 21, informative_motion=True), untrained, min_shift=5, scenes_per_size=60)
    assert seeing["method"] == "mouth_motion", seeing
    assert set(seeing["accuracy"]) == {"lipsyncnet", "mouth_motion", "fused@0.25", "fused@0.5", "fused@0.75"}
    # too few held-out tracks: the training-free baseline, and the reason says so
    few = choose_scorer(_held_out(3, 22, informative_motion=False), trained, min_shift=5, scenes_per_size=20)
    assert few["method"] == "mouth_motion" and "too few" in few["reason"]


def test_auto_delegates_to_the_stored_choice_and_names_it(lipsync_dir, tmp_path):
    import json
    import shutil

    from pipeline.speaker_select import AutoScorer

    checkpoint = tmp_path / "ckpt"
    shutil.copytree(lipsync_dir, checkpoint)
    with pytest.raises(ConfigError, match="no scorer selection"):
        build_scorer({"method": "auto", "checkpoint": checkpoint, "lipsync": {"device": "cpu"}})
    payload = json.loads((checkpoint / "config.json").read_text())
    for method, kind in (("mouth_motion", MouthMotionScorer), ("lipsyncnet", LipSyncScorer)):
        payload["selection"] = {"method": method, "reason": "test", "fused": {"weight": 0.5, "scales": {
            "lipsyncnet": 0.1, "mouth_motion": 0.2}}}
        (checkpoint / "config.json").write_text(json.dumps(payload))
        scorer = build_scorer({"method": "auto", "checkpoint": checkpoint, "lipsync": {"device": "cpu"}})
        assert isinstance(scorer, AutoScorer) and isinstance(scorer.inner, kind)
        assert scorer.name == f"auto:{method}" and scorer.reason == "test"
