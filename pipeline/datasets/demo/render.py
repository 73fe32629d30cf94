"""Rendering one planned dialogue: its speech track, its animated faces, one mp4, one row per turn.

The speaker's mouth opens with the RMS envelope of the speech under each frame and their face
shows the visual cue's expression; listeners keep a neutral face and, half of the time, move their
mouth with another utterance's envelope at low amplitude, so motion alone does not give the
speaker away but motion in sync with the audio does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.datasets.demo.config import DemoConfig
from pipeline.datasets.demo.plan import DialoguePlan
from pipeline.datasets.demo.scene import BOB_PIXELS, FaceState, Scene
from pipeline.datasets.demo.video import encode_mp4
from pipeline.datasets.demo.voice import SAMPLE_RATE, frame_envelope, mouth_opening, synthesize

LEAD_SECONDS = 0.3  # silence before the first utterance
TAIL_SECONDS = 0.4  # and after the last
NOISE_DBFS = -55.0  # room noise floor, so silence is not digital zero
RAMP_SECONDS = 0.25  # the speaker's expression fades in and out over this long
EXPRESSION_LEAD = 0.15  # ... starting this long before the speech
EXPRESSION_HOLD = 0.3  # ... and lasting this long after it


@dataclass
class Timeline:
    """Where each utterance sits in the dialogue recording, in samples and frames."""

    audio: np.ndarray  # float32 mono at SAMPLE_RATE, exactly n_frames / fps long
    starts: list[int]  # first sample of each utterance
    ends: list[int]  # one past its last sample
    n_frames: int


def media_name(dialogue_id: str) -> str:
    return f"videos/{dialogue_id}.mp4"


def build_timeline(plan: DialoguePlan, speech: list[np.ndarray], fps: float, rng: np.random.Generator) -> Timeline:
    starts, ends = [], []
    position = int(LEAD_SECONDS * SAMPLE_RATE)
    for i, (turn, samples) in enumerate(zip(plan.turns, speech)):
        if i > 0:
            position += int(round(turn.gap_before * SAMPLE_RATE))
        starts.append(position)
        position += samples.size
        ends.append(position)
    total = position + int(TAIL_SECONDS * SAMPLE_RATE)
    n_frames = math.ceil(total * fps / SAMPLE_RATE)
    audio = rng.normal(0.0, 10 ** (NOISE_DBFS / 20), size=int(math.ceil(n_frames * SAMPLE_RATE / fps)))
    audio = audio.astype(np.float32)
    for start, samples in zip(starts, speech):
        audio[start : start + samples.size] += samples
    return Timeline(np.clip(audio, -1.0, 1.0), starts, ends, n_frames)


def face_states(plan: DialoguePlan, timeline: Timeline, fps: float, rng: np.random.Generator) -> list[list[FaceState]]:
    """Per frame, per seat: expression, its intensity, mouth opening and head bob."""
    n_seats, n_frames = len(plan.people), timeline.n_frames
    opening = np.zeros((n_seats, n_frames), dtype=np.float32)
    intensity = np.zeros((n_seats, n_frames), dtype=np.float32)
    expression = np.full((n_seats, n_frames), "neutral", dtype=object)
    envelope = frame_envelope(timeline.audio, fps, n_frames)
    spans = [(int(s * fps / SAMPLE_RATE), min(n_frames, math.ceil(e * fps / SAMPLE_RATE)))
             for s, e in zip(timeline.starts, timeline.ends)]
    own = [mouth_opening(envelope[f0:f1]) for f0, f1 in spans]
    times = np.arange(n_frames, dtype=np.float32) / fps
    for turn, (f0, f1), mouth, start, end in zip(plan.turns, spans, own, timeline.starts, timeline.ends):
        seat = turn.speaker
        opening[seat, f0:f1] = np.maximum(opening[seat, f0:f1], mouth)
        on, off = start / SAMPLE_RATE - EXPRESSION_LEAD, end / SAMPLE_RATE + EXPRESSION_HOLD
        level = np.clip(np.minimum(times - on, off - times) / RAMP_SECONDS, 0.0, 1.0)
        stronger = level > intensity[seat]
        intensity[seat] = np.where(stronger, level, intensity[seat])
        expression[seat, stronger] = turn.cues["visual"]
        for listener in turn.listeners:
            source = own[listener.source_turn]
            if source.size == 0 or f1 <= f0:
                continue
            moved = np.resize(source, f1 - f0)
            moved = np.roll(moved, int(listener.shift * moved.size)) * listener.amplitude
            opening[listener.seat, f0:f1] = np.maximum(opening[listener.seat, f0:f1], moved)
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_seats, 1))
    rate = rng.uniform(0.25, 0.6, size=(n_seats, 1))
    bob = np.round(BOB_PIXELS * np.sin(2 * np.pi * rate * times[None, :] + phase)).astype(int)
    return [
        [
            FaceState(expression[s, f], float(intensity[s, f]), float(opening[s, f]), int(bob[s, f]))
            for s in range(n_seats)
        ]
        for f in range(n_frames)
    ]


def render_dialogue(plan: DialoguePlan, config: DemoConfig, videos: Path, turn_digits: int = 2) -> list[dict[str, Any]]:
    """Render `plan` to `videos/<dialogue_id>.mp4`; return its annotation rows (one per turn)."""
    rng = np.random.default_rng(plan.render_seed)
    speech = [synthesize(turn.text, turn.delivery) for turn in plan.turns]
    timeline = build_timeline(plan, speech, config.fps, rng)
    states = face_states(plan, timeline, config.fps, rng)
    scene = Scene(plan.people, config.width, config.height, rng)
    media = media_name(plan.dialogue_id)
    encode_mp4(
        (scene.frame(frame_states) for frame_states in states),
        timeline.audio,
        SAMPLE_RATE,
        Path(videos) / Path(media).name,
        config.width,
        config.height,
        config.fps,
    )
    boxes = json.dumps(scene.boxes)
    faces = json.dumps([person.face for person in plan.people])
    rows = []
    for turn, start, end in zip(plan.turns, timeline.starts, timeline.ends):
        rows.append(
            {
                "utt_id": f"{plan.dialogue_id}/{turn.turn:0{turn_digits}d}",
                "dialogue_id": plan.dialogue_id,
                "turn": turn.turn,
                "speaker": plan.people[turn.speaker].name,
                "text": turn.text,
                "label": turn.label,
                "split": plan.split,
                "media": media,
                "start": start / SAMPLE_RATE,
                "end": end / SAMPLE_RATE,
                "true_speaker": turn.speaker,
                "true_boxes": boxes,
                "text_cue": turn.cues["text"],
                "audio_cue": turn.cues["audio"],
                "visual_cue": turn.cues["visual"],
                "voice": json.dumps(turn.delivery.__dict__, sort_keys=True),
                "faces": faces,
            }
        )
    return rows
