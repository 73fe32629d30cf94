"""Choosing the active speaker among an utterance's face tracks.

A scorer rates each track of one utterance; the stage picks the best and keeps the margin over the
runner-up as a confidence. Scorers are registered by the name used in `params.speaker.method`, so
LipSyncNet and simple baselines are interchangeable:

* `lipsyncnet`: audio-visual synchrony from the self-trained LipSyncNet (`LipSyncScorer`);
* `mouth_motion`: correlation of mouth-region motion with loudness changes (no training);
* `first_face`, `largest_face`: what pipelines without speaker choice do;
* `gender_side`: the speaker's half of a split-screen frame, as the corpus adapter wrote it in the
  manifest's `seat_hint` column (IEMOCAP's adapter does; see `SeatHintScorer`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from pipeline.config import ConfigError, choice


@dataclass
class TrackClip:
    """One face track over the frames of the utterance it was decoded for."""

    track_id: int
    frames: np.ndarray  # source frame indices, ascending
    boxes: np.ndarray  # [T, 4] source pixels
    times: np.ndarray  # [T] seconds from the start of the utterance audio
    mouths: np.ndarray | None = None  # [T, 8, 16] float32 grey mouth patches (motion baseline)
    lips: np.ndarray | None = None  # [T, h, w] uint8 mouth crops aligned on landmarks (LipSyncNet)
    landmarks: np.ndarray | None = None  # [T, 5, 2] steadied landmarks the crops were aligned on

    @property
    def mean_area(self) -> float:
        return float(np.mean((self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])))

    @property
    def mean_centre_x(self) -> float:
        return float(np.mean((self.boxes[:, 0] + self.boxes[:, 2]) / 2))


@dataclass
class UtteranceContext:
    """What a scorer may know about the utterance besides its tracks."""

    utt_id: str
    audio: np.ndarray  # mono float32
    sample_rate: int
    fps: float
    width: int = 0
    height: int = 0
    seat_hint: str | None = None  # manifest `seat_hint`: the speaker's half of a shared frame (left | right)


class TrackScorer(Protocol):
    needs_frames: bool  # whether clips must carry `mouths`/`lips` (decodes every frame of the utterance)
    scores_single: bool  # whether a lone track is scored too (its score is logged, the choice is trivial)

    def score(self, clips: list[TrackClip], context: UtteranceContext) -> dict[int, float]:
        """Higher = more likely the speaker."""
        ...


MOUTH_SIZE = (16, 8)  # width, height of the grey mouth patch the motion scorer compares


def mouth_patch(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The lower-centre part of a face box, grey, at a fixed size."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    left, right = int(max(0, x1 + 0.25 * w)), int(min(frame.shape[1], x2 - 0.25 * w))
    top, bottom = int(max(0, y1 + 0.62 * h)), int(min(frame.shape[0], y1 + 0.95 * h))
    if right - left < 2 or bottom - top < 2:
        return np.zeros(MOUTH_SIZE[::-1], dtype=np.float32)
    grey = cv2.cvtColor(frame[top:bottom, left:right], cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, MOUTH_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def audio_envelope(audio: np.ndarray, sample_rate: int, times: np.ndarray, span: float) -> np.ndarray:
    """RMS of the audio over [t, t + span) for each time t (seconds from the audio start)."""
    env = np.zeros(len(times), dtype=np.float64)
    for i, t in enumerate(times):
        chunk = audio[max(0, int(t * sample_rate)):max(0, int((t + span) * sample_rate))]
        env[i] = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) if len(chunk) else 0.0
    return env


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


class MouthMotionScorer:
    """Correlation between mouth-region motion and the change of the audio envelope.

    A speaker's mouth moves when the loudness changes; a listener's does not, or not in time. The
    best of a few small lags absorbs audio/video offsets of up to `max_lag` frames.
    """

    needs_frames = True
    scores_single = False

    def __init__(self, max_lag: int = 2) -> None:
        self.max_lag = max_lag

    def score(self, clips: list[TrackClip], context: UtteranceContext) -> dict[int, float]:
        scores = {}
        for clip in clips:
            mouths = clip.mouths
            if mouths is None or len(mouths) < 4:
                scores[clip.track_id] = 0.0
                continue
            env = audio_envelope(context.audio, context.sample_rate, clip.times, 1.0 / context.fps)
            motion = np.abs(np.diff(mouths, axis=0)).mean(axis=(1, 2))
            change = np.abs(np.diff(env))
            best = -1.0
            for lag in range(-self.max_lag, self.max_lag + 1):
                if lag >= 0:
                    a, b = motion[lag:], change[: len(change) - lag]
                else:
                    a, b = motion[:lag], change[-lag:]
                best = max(best, _pearson(a, b))
            scores[clip.track_id] = best
        return scores


class FirstFaceScorer:
    """The first track found (earliest, then leftmost): what a pipeline without speaker choice does."""

    needs_frames = False
    scores_single = False

    def score(self, clips: list[TrackClip], context: UtteranceContext) -> dict[int, float]:
        ordered = sorted(clips, key=lambda c: (c.frames[0], c.boxes[:, 0].mean()))
        return {clip.track_id: float(len(ordered) - rank) for rank, clip in enumerate(ordered)}


class LargestFaceScorer:
    """The largest face on average: the usual heuristic for close-up shots."""

    needs_frames = False
    scores_single = False

    def score(self, clips: list[TrackClip], context: UtteranceContext) -> dict[int, float]:
        total = sum(c.mean_area for c in clips) or 1.0
        return {clip.track_id: clip.mean_area / total for clip in clips}


SEAT_CENTRES = {"left": 0.25, "right": 0.75}  # horizontal middle of each half, as a share of the width


class SeatHintScorer:
    """The track nearest the middle of the half of the frame the manifest's `seat_hint` names.

    Corpora that film two people side by side know who sits where (IEMOCAP: from its ids); their
    adapter writes the hint, so this scorer needs no corpus rule of its own.
    """

    needs_frames = False
    scores_single = False

    def score(self, clips: list[TrackClip], context: UtteranceContext) -> dict[int, float]:
        if context.seat_hint not in SEAT_CENTRES or not context.width:
            raise ValueError(f"gender_side needs the manifest's seat_hint ({' or '.join(SEAT_CENTRES)}, written by "
                             f"the corpus adapter, e.g. IEMOCAP's) and the frame width; got {context.seat_hint!r}")
        target = SEAT_CENTRES[context.seat_hint]
        return {clip.track_id: 1.0 - abs(clip.mean_centre_x / context.width - target) for clip in clips}


class LipSyncScorer:
    """Audio-visual synchrony from a trained LipSyncNet.

    Each track's aligned mouth crops are resampled to the model's 25 fps and embedded window by
    window; the utterance audio is embedded under every window position. The track's distance to
    the audio is measured at every offset within +-`search_offset` frames (`SyncProfile`), and its
    score (`score_mode: sync`, the default) is how far that distance dips within +-`max_offset`
    frames of sync below its median over all offsets: a speaking face dips, a silent or unrelated
    face does not, whatever its appearance. `score_mode: distance` is the paper's Eq. 5 instead
    (minus the distance, at the best offset within +-`max_offset`). `profiles` gives each track's
    SyncNet-style diagnostics (best offset, offset confidence) for inspection.
    """

    needs_frames = True
    scores_single = True

    def __init__(self, model: Any, max_offset: int = 2, selection: Mapping[str, Any] | None = None,
                 search_offset: int = 15, score_mode: str = "sync") -> None:
        self.model = model
        self.max_offset = int(max_offset)
        self.search_offset = max(int(search_offset), self.max_offset)
        self.score_mode = score_mode
        self.selection = selection  # the scorer choice `lipsync_train` stored with the checkpoint, if any

    @property
    def lip_size(self) -> tuple[int, int]:
        """(height, width) of the mouth crops the model was trained on."""
        return int(self.model.config.mouth_height), int(self.model.config.mouth_width)

    @classmethod
    def from_params(cls, cfg: Mapping[str, Any]) -> LipSyncScorer:
        from pipeline import paths
        from pipeline.device import resolve_device
        from pipeline.lipsync_checkpoint import load_lipsyncnet
        from pipeline.lipsync_settings import LipSyncSettings

        settings = LipSyncSettings.parse(cfg.get("lipsync") or {})
        device = resolve_device(settings.device, "lipsync.device")
        model, payload = load_lipsyncnet(cfg.get("checkpoint") or paths.LIPSYNC_DIR, device)
        return cls(model, selection=payload.get("selection"), **settings.scoring())

    def profiles(self, clips: list[TrackClip], context: UtteranceContext) -> dict[int, Any]:
        """Track id -> `models.lipsyncnet.SyncProfile` (distance per offset, best offset, confidence)."""
        from models.lipsyncnet import audio_windows, log_mel, sync_profile, video_windows
        from pipeline.lipsync_data import timeline

        cfg = self.model.config
        audio = audio_windows(self.model, log_mel(context.audio, context.sample_rate, cfg.n_mels))
        profiles = {}
        for clip in clips:
            if clip.lips is None or not len(clip.lips):
                raise ValueError(f"track {clip.track_id} has no mouth crops to score")
            start, positions = timeline(clip.times, cfg.fps)
            video = video_windows(self.model, clip.lips[positions])
            profiles[clip.track_id] = sync_profile(video, audio, start, self.search_offset)
        return profiles

    def score(self, clips: list[TrackClip], context: UtteranceContext) -> dict[int, float]:
        from models.lipsyncnet import track_score

        return {track: track_score(profile, self.max_offset, self.score_mode)
                for track, profile in self.profiles(clips, context).items()}


class FusedScorer:
    """LipSyncNet and mouth motion together: each score divided by its spread, then mixed.

    The two scorers fail on different clips (LipSyncNet on faces unlike its training faces, the
    motion baseline on heads that move or mouths that move without sound), so a mix can beat both.
    `scales` (the standard deviation of each scorer's scores over the corpus's dev tracks) puts them
    on one footing; `weight` is LipSyncNet's share. Both come from `lipsync_train`'s selection.
    """

    needs_frames = True
    scores_single = True

    def __init__(self, lipsync: LipSyncScorer, motion: MouthMotionScorer, weight: float,
                 scales: Mapping[str, float]) -> None:
        self.lipsync, self.motion, self.weight = lipsync, motion, float(weight)
        self.scales = {k: max(float(v), 1e-6) for k, v in scales.items()}

    @property
    def lip_size(self) -> tuple[int, int]:
        return self.lipsync.lip_size

    def mix(self, lipsync: Mapping[int, float], motion: Mapping[int, float]) -> dict[int, float]:
        return {t: self.weight * lipsync[t] / self.scales["lipsyncnet"]
                + (1 - self.weight) * motion[t] / self.scales["mouth_motion"] for t in lipsync}

    def score(self, clips: list[TrackClip], context: UtteranceContext) -> dict[int, float]:
        return self.mix(self.lipsync.score(clips, context), self.motion.score(clips, context))


AUTO_CHOICES = ("lipsyncnet", "mouth_motion", "fused")


def selection_of(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The scorer `lipsync_train` chose for this corpus, from a checkpoint's config.json payload."""
    selection = payload.get("selection")
    if not isinstance(selection, Mapping) or selection.get("method") not in AUTO_CHOICES:
        raise ConfigError("params.yaml: 'speaker.method' is 'auto' but the LipSyncNet checkpoint holds no scorer "
                          "selection; rerun `dvc repro lipsync_train` (or choose lipsyncnet, fused or mouth_motion)")
    return selection


def _lipsyncnet(cfg: Mapping[str, Any]) -> TrackScorer:
    return LipSyncScorer.from_params(cfg)


def _fused(cfg: Mapping[str, Any], selection: Mapping[str, Any] | None = None) -> TrackScorer:
    """LipSyncNet + mouth motion, with the weight and scales `lipsync_train` measured on the corpus's dev tracks."""
    lipsync = LipSyncScorer.from_params(cfg)
    selection = selection or lipsync.selection
    fused = selection.get("fused") if isinstance(selection, Mapping) else None
    if not isinstance(fused, Mapping):
        raise ConfigError("params.yaml: 'speaker.method' is 'fused' but the LipSyncNet checkpoint holds no fusion "
                          "weight; rerun `dvc repro lipsync_train`")
    return FusedScorer(lipsync, MouthMotionScorer(), fused["weight"], fused["scales"])


class AutoScorer:
    """`speaker.method: auto`: whichever of LipSyncNet, mouth motion or their mix the corpus's dev figures favour.

    `lipsync_train` measures all three on held-out dialogues of the user's own corpus (no labels)
    and stores its choice with the reason in the checkpoint; this scorer delegates to that choice.
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        lipsync = LipSyncScorer.from_params(cfg)
        self.selection = selection_of({"selection": lipsync.selection})
        self.chosen = str(self.selection["method"])
        self.reason = str(self.selection.get("reason", ""))
        if self.chosen == "lipsyncnet":
            self.inner: Any = lipsync
        elif self.chosen == "fused":
            self.inner = _fused(cfg, self.selection)
        else:
            self.inner = MouthMotionScorer()
        self.needs_frames = self.inner.needs_frames
        self.scores_single = self.inner.scores_single
        self.lip_size = getattr(self.inner, "lip_size", lipsync.lip_size)

    @property
    def name(self) -> str:
        return f"auto:{self.chosen}"

    def score(self, clips: list[TrackClip], context: UtteranceContext) -> dict[int, float]:
        return self.inner.score(clips, context)


SCORERS: dict[str, Callable[[Mapping[str, Any]], TrackScorer]] = {
    "auto": AutoScorer,
    "lipsyncnet": _lipsyncnet,
    "fused": _fused,
    "mouth_motion": lambda cfg: MouthMotionScorer(),
    "first_face": lambda cfg: FirstFaceScorer(),
    "largest_face": lambda cfg: LargestFaceScorer(),
    "gender_side": lambda cfg: SeatHintScorer(),
}


def build_scorer(cfg: Mapping[str, Any]) -> TrackScorer:
    """The scorer named by `speaker.method`; `cfg` is the speaker block (plus `lipsync` for LipSyncNet)."""
    method = choice(cfg.get("method"), "speaker.method", SCORERS)
    try:
        return SCORERS[method](cfg)
    except FileNotFoundError as error:
        raise ConfigError(f"params.yaml: 'speaker.method' is {method!r} but {error}") from error


@dataclass
class Choice:
    track_id: int
    reason: str
    confidence: float
    scores: dict[int, float]


def choose(clips: list[TrackClip], scorer: TrackScorer, context: UtteranceContext, low_confidence: float) -> Choice:
    """Pick the best-scoring track (ties: the lowest track id); the margin over the runner-up is the confidence."""
    if not clips:
        return Choice(-1, "no_face", 0.0, {})
    if len(clips) == 1:
        scores = scorer.score(clips, context) if scorer.scores_single else {clips[0].track_id: 1.0}
        return Choice(clips[0].track_id, "single_face", 1.0, scores)
    scores = scorer.score(clips, context)
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    margin = float(ranked[0][1] - ranked[1][1])
    reason = "scored" if margin >= low_confidence else "low_confidence"
    return Choice(int(ranked[0][0]), reason, margin, scores)
