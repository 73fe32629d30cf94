"""Choosing the active-speaker scorer for a corpus from its own held-out tracks, without labels.

A face track that is the only face of an utterance and spans most of it shows the speaker: its
own audio is the right audio. Put it beside the tracks of other dialogues (other people) playing
with that audio, and a scorer should pick it: these *virtual scenes* ask the speaker stage's exact
question on the user's own footage, with a known answer and no annotation. The same tracks with
their audio shifted by `min_shift` frames or more measure synchrony alone (a scorer that only likes
moving mouths cannot tell).

`choose_scorer` runs LipSyncNet, the mouth-motion baseline and their mix (`FusedScorer`, at a few
weights) on those scenes and returns the figures and the winner; `lipsync_train` stores them with
the checkpoint, and `speaker.method: auto` uses the winner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline.speaker_select import FusedScorer, LipSyncScorer, MouthMotionScorer, TrackClip, UtteranceContext

FUSION_WEIGHTS = (0.25, 0.5, 0.75)
PREFERENCE = ("mouth_motion", "lipsyncnet", "fused")  # ties go to the simpler, cheaper scorer
MIN_TRACKS = 4  # fewer held-out positives than this: the figures say too little to choose by
SCENE_FRAMES = 75  # longest stretch of a track in one virtual scene (3 s at 25 fps, a typical utterance)


@dataclass
class HeldOutTrack:
    """A track believed to show the speaker of its utterance, with that utterance's audio."""

    utt_id: str
    dialogue_id: str
    clip: TrackClip
    audio: np.ndarray
    sample_rate: int
    fps: float


def _retimed(clip: TrackClip, start: int, like: TrackClip, like_start: int, frames: int, track_id: int
             ) -> TrackClip:
    """`frames` frames of `clip` from `start`, shown at `like`'s frames from `like_start` (with `like`'s audio)."""
    part = slice(start, start + frames)
    return replace(clip, track_id=track_id, frames=like.frames[like_start:like_start + frames],
                   boxes=clip.boxes[part], times=like.times[like_start:like_start + frames],
                   mouths=None if clip.mouths is None else clip.mouths[part],
                   lips=None if clip.lips is None else clip.lips[part],
                   landmarks=None if clip.landmarks is None else clip.landmarks[part])


@dataclass
class VirtualScene:
    clips: list[TrackClip]
    speaker: int  # track id of the clip whose audio plays
    context: UtteranceContext


def virtual_scenes(tracks: Sequence[HeldOutTrack], faces: int, count: int, seed: int,
                   max_frames: int = SCENE_FRAMES) -> list[VirtualScene]:
    """Up to `count` scenes of `faces` tracks: one track with its own audio, the others from other dialogues.

    Each scene takes a random stretch of at most `max_frames` frames of every track, so a few long
    held-out tracks still give many different scenes.
    """
    rng = np.random.default_rng([seed, faces])
    scenes = []
    if len({t.dialogue_id for t in tracks}) < faces:
        return scenes
    for index in range(count):
        own = tracks[index % len(tracks)]
        others = [t for t in tracks if t.dialogue_id != own.dialogue_id]
        picks = [others[i] for i in rng.choice(len(others), size=faces - 1, replace=False)]
        if len({p.dialogue_id for p in picks}) < len(picks):
            continue
        frames = min(max_frames, len(own.clip.frames), *(len(p.clip.frames) for p in picks))
        starts = [int(rng.integers(len(t.clip.frames) - frames + 1)) for t in [own, *picks]]
        ids = list(rng.permutation(faces))  # the speaker's track id is random: ties cannot favour it
        clips = [_retimed(own.clip, starts[0], own.clip, starts[0], frames, int(ids[0]))]
        clips += [_retimed(p.clip, start, own.clip, starts[0], frames, int(i))
                  for p, start, i in zip(picks, starts[1:], ids[1:])]
        clips.sort(key=lambda c: c.track_id)
        scenes.append(VirtualScene(clips, int(ids[0]), UtteranceContext(own.utt_id, own.audio, own.sample_rate,
                                                                        own.fps)))
    return scenes


def _shifted(track: HeldOutTrack, shift: int) -> UtteranceContext:
    """The track's utterance audio moved `shift` video frames later (circularly)."""
    samples = int(round(shift * track.sample_rate / track.fps))
    return UtteranceContext(track.utt_id, np.roll(track.audio, samples), track.sample_rate, track.fps)


def _accuracy(scenes: Sequence[VirtualScene], scores: Sequence[Mapping[int, float]]) -> float | None:
    if not scenes:
        return None
    hits = [max(s, key=lambda t: (s[t], -t)) == scene.speaker for scene, s in zip(scenes, scores)]
    return round(float(np.mean(hits)), 4)


def choose_scorer(tracks: Sequence[HeldOutTrack], lipsync: LipSyncScorer, min_shift: int, seed: int = 0,
                  scenes_per_size: int = 200, source: str = "single_face") -> dict[str, Any]:
    """Figures of every candidate on virtual scenes of `tracks` and the chosen scorer with its reason."""
    motion = MouthMotionScorer()
    tracks = [t for t in tracks if t.clip.lips is not None and t.clip.mouths is not None and len(t.clip.frames) >= 4]
    scenes = {faces: virtual_scenes(tracks, faces, scenes_per_size, seed) for faces in (2, 3)}
    raw: dict[str, dict[int, list[dict[int, float]]]] = {"lipsyncnet": {}, "mouth_motion": {}}
    for faces, group in scenes.items():
        raw["lipsyncnet"][faces] = [lipsync.score(s.clips, s.context) for s in group]
        raw["mouth_motion"][faces] = [motion.score(s.clips, s.context) for s in group]
    pooled = {name: [v for by_size in per.values() for s in by_size for v in s.values()] for name, per in raw.items()}
    scales = {name: float(np.std(values)) if len(values) > 1 else 1.0 for name, values in pooled.items()}

    candidates: dict[str, dict[str, Any]] = {}
    for name in ("lipsyncnet", "mouth_motion"):
        candidates[name] = {f"{faces}_face": _accuracy(scenes[faces], raw[name][faces]) for faces in (2, 3)}
    for weight in FUSION_WEIGHTS:
        fused = FusedScorer(lipsync, motion, weight, scales)
        candidates[f"fused@{weight}"] = {
            f"{faces}_face": _accuracy(scenes[faces], [fused.mix(a, b) for a, b in zip(raw["lipsyncnet"][faces],
                                                                                     raw["mouth_motion"][faces])])
            for faces in (2, 3)}

    rng = np.random.default_rng(seed)
    shifted: dict[str, list[bool]] = {"lipsyncnet": [], "mouth_motion": []}
    for track in tracks:
        if len(track.clip.frames) < 3 * min_shift:
            continue
        shift = int(rng.integers(min_shift, 2 * min_shift + 1)) * int(rng.choice([-1, 1]))
        own = UtteranceContext(track.utt_id, track.audio, track.sample_rate, track.fps)
        for name, scorer in (("lipsyncnet", lipsync), ("mouth_motion", motion)):
            shifted[name].append(scorer.score([track.clip], own)[track.clip.track_id]
                                 > scorer.score([track.clip], _shifted(track, shift))[track.clip.track_id])

    def mean_accuracy(figures: Mapping[str, float | None]) -> float:
        values = [v for v in figures.values() if v is not None]
        return float(np.mean(values)) if values else -1.0

    best_fused = max((k for k in candidates if k.startswith("fused@")), key=lambda k: mean_accuracy(candidates[k]))
    finalists = {"lipsyncnet": candidates["lipsyncnet"], "mouth_motion": candidates["mouth_motion"],
                 "fused": candidates[best_fused]}
    ranked = sorted(finalists, key=lambda k: (-mean_accuracy(finalists[k]), PREFERENCE.index(k)))
    if len(tracks) < MIN_TRACKS or not scenes[2]:
        method = "mouth_motion"
        reason = (f"only {len(tracks)} held-out tracks that show their speaker (need {MIN_TRACKS}): too few to trust "
                  "a learned scorer over the training-free baseline")
    else:
        method = ranked[0]
        figures = ", ".join(f"{k} {mean_accuracy(finalists[k]):.3f}" for k in ranked)
        reason = (f"highest mean accuracy on {len(scenes[2])} two-face and {len(scenes[3])} three-face virtual scenes "
                  f"of held-out dialogues ({figures})")
    return {
        "method": method,
        "reason": reason,
        "source": source,
        "held_out_tracks": len(tracks),
        "scenes": {f"{faces}_face": len(group) for faces, group in scenes.items()},
        "accuracy": candidates,
        "shifted_audio_accuracy": {k: round(float(np.mean(v)), 4) if v else None for k, v in shifted.items()},
        "fused": {"weight": float(best_fused.split("@")[1]), "scales": scales},
    }
