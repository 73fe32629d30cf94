"""`lipsync_train`: train LipSyncNet on the corpus itself, with no downloaded weights and no labels.

Self-supervision: a face track that shows the speaker moves its mouth in time with the utterance
audio. Positives pair a mouth window with the audio under it; negatives pair it with the same
track's audio shifted by `min_shift`..`max_shift` frames (teaches timing, not identity) or with
another utterance's audio (`foreign` share).

Which tracks are positives matters: in a multi-party scene a listener's track with the utterance
audio is *not* in sync, and training on it would teach the model that silence matches speech.
Positives therefore come from tracks we are confident show the speaker:

1. single-face utterances whose track spans at least `min_coverage` of the utterance (the visible
   face is usually the speaker; reaction shots are the exception and are outnumbered);
2. multi-face utterances where the training-free mouth-motion baseline prefers one track by at least
   `bootstrap_margin` (its correlation with loudness changes clearly beats every other face);
3. after each training round (`rounds` > 1), multi-face utterances where the model itself now prefers
   one track by at least `relabel_margin` (SyncNet's self-filtering idea, spec §9.5).

Only utterances of `splits` (default: train) are read, and their dialogues are split again into a
training and a dev part, so the dev sync accuracy is measured on unseen conversations and unseen
faces. Outputs: `artifacts/lipsyncnet/` (safetensors + config.json) and `metrics/lipsyncnet.json`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from models.lipsyncnet import (
    LipSyncConfig,
    LipSyncNet,
    audio_windows,
    log_mel,
    sync_profile,
    track_score,
    video_windows,
)
from pipeline import paths
from pipeline.clips import ClipRequest, collect_clips, tracks_of
from pipeline.config import ConfigError
from pipeline.device import resolve_device
from pipeline.item_guard import guarded
from pipeline.ledger import Failure, write_stage_ledger
from pipeline.lipsync_checkpoint import save_lipsyncnet
from pipeline.lipsync_data import TrackSeries, split_by_dialogue, timeline
from pipeline.lipsync_settings import LipSyncSettings
from pipeline.media import MediaError
from pipeline.runner import Runner
from pipeline.scorer_choice import MIN_TRACKS, HeldOutTrack, choose_scorer
from pipeline.speaker_select import LipSyncScorer, MouthMotionScorer, UtteranceContext
from pipeline.tables import read_frame
from pipeline.training.lipsync import offset_recovery, pair_accuracy, train_model
from pipeline.video_readers import video_reader

STAGE = "lipsync_train"


# ---------------------------------------------------------------------------------------------------
# material: mouths of every track of the chosen utterances, decoded once per media file


@dataclass
class UtteranceTracks:
    utt_id: str
    dialogue_id: str
    frames: int  # length of the utterance in source frames
    series: dict[int, TrackSeries]
    coverage: dict[int, float]  # share of the utterance each track spans
    motion_pick: tuple[int, float] | None  # mouth-motion choice and margin (multi-face only)
    held_out: dict[int, HeldOutTrack] = field(default_factory=dict)  # dev dialogues only: for the scorer choice


def _material_for_media(media: Path, rows: pd.DataFrame, faces_by_utt: Mapping[str, pd.DataFrame],
                        dialogues: Mapping[str, str], config: LipSyncConfig, dev_dialogues: set[str],
                        reader: str = "pyav") -> tuple[list[UtteranceTracks], dict[str, np.ndarray], list[Failure]]:
    cuts = {cut.utt_id: cut for cut in rows.itertuples(index=False)}
    requests = [ClipRequest(c.utt_id, int(c.start_frame), int(c.end_frame), float(c.fps), float(c.start),
                            tracks_of(faces_by_utt[c.utt_id]), [], True)
                for c in cuts.values() if c.utt_id in faces_by_utt]
    motion = MouthMotionScorer()
    material, mels, problems = [], {}, []
    try:
        for item in collect_clips(media, requests, (config.mouth_height, config.mouth_width), reader=reader):
            cut = cuts[item.request.utt_id]
            clips = [c for c in item.clips if c.lips is not None and len(c.lips)]
            if not clips:
                continue
            try:
                audio, rate = sf.read(cut.audio, dtype="float32")
            except (OSError, RuntimeError) as error:
                problems.append(Failure(STAGE, cut.utt_id, f"audio unreadable: {error}"))
                continue
            audio = audio.mean(axis=1) if audio.ndim > 1 else audio
            mels[cut.utt_id] = log_mel(audio, int(rate), config.n_mels)
            series, coverage = {}, {}
            length = max(1, int(cut.end_frame) - int(cut.start_frame))
            for clip in clips:
                start, positions = timeline(clip.times, config.fps)
                series[clip.track_id] = TrackSeries(cut.utt_id, dialogues.get(cut.utt_id, cut.utt_id),
                                                    clip.track_id, start, clip.lips[positions])
                coverage[clip.track_id] = len(clip.frames) / length
            pick = None
            if len(clips) > 1:
                context = UtteranceContext(cut.utt_id, audio, int(rate), float(cut.fps))
                ranked = sorted(motion.score(clips, context).items(), key=lambda kv: (-kv[1], kv[0]))
                pick = (int(ranked[0][0]), float(ranked[0][1] - ranked[1][1]))
            dialogue = dialogues.get(cut.utt_id, cut.utt_id)
            held_out = {c.track_id: HeldOutTrack(cut.utt_id, dialogue, c, audio, int(rate), float(cut.fps))
                        for c in clips} if dialogue in dev_dialogues else {}
            material.append(UtteranceTracks(cut.utt_id, dialogue, length, series, coverage, pick, held_out))
    except MediaError as error:
        problems.extend(Failure(STAGE, utt_id, f"video unreadable: {error}") for utt_id in cuts)
    return material, mels, problems


def select_positives(material: list[UtteranceTracks], min_coverage: float, bootstrap_margin: float
                     ) -> tuple[list[TrackSeries], dict[str, int]]:
    """Tracks believed to show the speaker (see the module docstring): single faces and confident picks."""
    positives, counts = [], {"single_face": 0, "mouth_motion": 0}
    for utt in material:
        if len(utt.series) == 1:
            track = next(iter(utt.series))
            if utt.coverage[track] >= min_coverage:
                positives.append(utt.series[track])
                counts["single_face"] += 1
        elif utt.motion_pick is not None and utt.motion_pick[1] >= bootstrap_margin:
            positives.append(utt.series[utt.motion_pick[0]])
            counts["mouth_motion"] += 1
    return positives, counts


def speaker_tracks(material: list[UtteranceTracks], min_coverage: float, bootstrap_margin: float
                   ) -> tuple[list[HeldOutTrack], str]:
    """Held-out tracks that show their speaker: single faces; mouth-motion picks only where there are too few."""
    single = [next(iter(u.held_out.values())) for u in material
              if len(u.series) == 1 and u.held_out and next(iter(u.coverage.values())) >= min_coverage]
    if len(single) >= MIN_TRACKS:
        return single, "single_face"
    picked = [u.held_out[u.motion_pick[0]] for u in material
              if u.held_out and u.motion_pick is not None and u.motion_pick[1] >= bootstrap_margin]
    return single + picked, "single_face+mouth_motion_picks" if picked else "single_face"


def denoise(model: LipSyncNet, positives: list[TrackSeries], mels: Mapping[str, np.ndarray], fraction: float,
            search: int = 10, drift: int = 2) -> list[TrackSeries]:
    """Drop positives the model finds out of sync: best offset beyond +-`drift` frames, or among the
    `fraction` least confident (SyncNet's own filtering of reaction shots and dubbed clips)."""
    if not fraction or not positives:
        return positives
    kept, confidence = [], []
    for s in positives:
        profile = sync_profile(video_windows(model, s.mouths), audio_windows(model, mels[s.utt_id]), s.start, search)
        if abs(profile.best_offset) <= drift:
            kept.append(s)
            confidence.append(profile.confidence)
    if not kept:
        return positives
    cut = np.quantile(confidence, fraction)
    return [s for s, c in zip(kept, confidence) if c >= cut] or kept


def model_picks(scorer: LipSyncScorer, material: list[UtteranceTracks], mels: Mapping[str, np.ndarray]
                ) -> dict[str, tuple[int, float]]:
    """LipSyncNet's choice and margin for every multi-face utterance (scored as the speaker stage scores)."""
    model = scorer.model
    picks = {}
    for utt in material:
        if len(utt.series) < 2:
            continue
        audio = audio_windows(model, mels[utt.utt_id])
        scores = {t: track_score(sync_profile(video_windows(model, s.mouths), audio, s.start, scorer.search_offset),
                                 scorer.max_offset, scorer.score_mode) for t, s in utt.series.items()}
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
        picks[utt.utt_id] = (int(ranked[0][0]), float(ranked[0][1] - ranked[1][1]))
    return picks


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    cfg = dict(params.get("lipsync") or {})
    settings = LipSyncSettings.parse(cfg)
    options = settings.on_device(resolve_device(settings.device, "lipsync.device"))
    config = settings.model_config()
    splits, min_coverage, bootstrap_margin = options.splits, options.min_coverage, options.bootstrap_margin
    rounds, max_utterances = options.rounds, options.max_utterances
    reader = video_reader(params)

    from pipeline.manifest import read_manifest

    manifest = read_manifest().frame
    manifest = manifest[manifest.split.isin(splits)]
    dialogues = dict(zip(manifest.utt_id, manifest.dialogue_id))
    cuts = read_frame(paths.CUTS)
    cuts = cuts[cuts.has_video & cuts.utt_id.isin(dialogues)]
    if len(cuts) > max_utterances:
        cuts = cuts.sample(n=max_utterances, random_state=options.seed)
    faces = read_frame(paths.FACES)
    wanted = set(cuts.utt_id)
    faces_by_utt = {u: rows for u, rows in faces[faces.utt_id.isin(wanted)].groupby("utt_id", sort=False)}
    train_dialogues, dev_dialogues = split_by_dialogue(sorted({dialogues[u] for u in wanted}), options.dev_fraction,
                                                       options.seed)

    def read_media(item: tuple[str, pd.DataFrame]) -> tuple[list, dict, list[Failure]]:
        return guarded(STAGE, item[1].utt_id,
                       lambda: _material_for_media(Path(item[0]), item[1], faces_by_utt, dialogues, config,
                                                   dev_dialogues, reader),
                       lambda failures: ([], {}, failures))

    results = runner.map(read_media, list(cuts.groupby("media", sort=True)), name=f"{STAGE}: mouths")
    material = [m for part, _, _ in results for m in part]
    mels = {k: v for _, part, _ in results for k, v in part.items()}
    problems = [p for _, _, part in results for p in part]
    train_material = [m for m in material if m.dialogue_id in train_dialogues]
    dev_material = [m for m in material if m.dialogue_id in dev_dialogues]
    positives, counts = select_positives(train_material, min_coverage, bootstrap_margin)
    dev_positives, _ = select_positives(dev_material, min_coverage, bootstrap_margin)
    if not positives:
        raise ConfigError("lipsync: no positive tracks among the training utterances (no single-face track "
                          f"spanning lipsync.min_coverage={min_coverage} and no mouth-motion pick with margin >= "
                          f"lipsync.bootstrap_margin={bootstrap_margin}); lower one of them")

    model, stats = None, {}
    relabelled = dropped = 0
    singles = [p for p, utt in _with_utterance(positives, train_material) if len(utt.series) == 1]
    for round_index in range(rounds):
        if round_index:
            kept = denoise(model, singles, mels, options.denoise_fraction)
            dropped = len(singles) - len(kept)
            picks = model_picks(_scorer(model, options), train_material, mels)
            confident = [m.series[picks[m.utt_id][0]] for m in train_material
                         if m.utt_id in picks and picks[m.utt_id][1] >= options.relabel_margin]
            positives, relabelled = kept + confident, len(confident)
        model, stats = train_model(positives, mels, config, options, model,
                                   lambda done, total, r=round_index: runner.hook(
                                       f"{STAGE}: round {r + 1}/{rounds}", completed=done, total=total))

    agreement = None
    confident_dev = [m for m in dev_material if m.motion_pick is not None and m.motion_pick[1] >= bootstrap_margin]
    if confident_dev:
        picks = model_picks(_scorer(model, options), confident_dev, mels)
        agreement = float(np.mean([picks[m.utt_id][0] == m.motion_pick[0] for m in confident_dev]))
    held_out, source = speaker_tracks(dev_material, min_coverage, bootstrap_margin)
    selection = choose_scorer(held_out, _scorer(model, options), options.min_shift, options.seed,
                              source=source)
    metrics = {
        "dev_sync_accuracy": pair_accuracy(model, dev_positives, mels, options),
        "dev_offset_accuracy": offset_recovery(model, dev_positives, mels),
        "dev_agreement_with_mouth_motion": agreement,
        "train_sync_accuracy": pair_accuracy(model, positives, mels, options),
        "train_last_step": stats,
        "positives": {**counts, "relabelled": relabelled, "denoised_away": dropped, "dev": len(dev_positives)},
        "utterances": {"train": len(train_material), "dev": len(dev_material)},
        "dialogues": {"train": len(train_dialogues), "dev": len(dev_dialogues)},
        "selection": selection,
        "rounds": rounds, "steps": options.steps, "device": options.device,
        "seconds": round(time.perf_counter() - started, 1),
    }
    metrics = {k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in metrics.items()}
    save_lipsyncnet(model.cpu(), paths.LIPSYNC_DIR, {"training": {k: v for k, v in cfg.items() if k != "model"},
                                                      "metrics": metrics, "selection": selection})
    paths.LIPSYNC_METRICS.parent.mkdir(parents=True, exist_ok=True)
    paths.LIPSYNC_METRICS.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    write_stage_ledger(STAGE, problems, len(cuts), params["run"]["max_failure_ratio"])
    return {"positives": metrics["positives"], "dev_sync_accuracy": metrics["dev_sync_accuracy"],
            "dev_offset_accuracy": metrics["dev_offset_accuracy"], "skipped": len(problems),
            "scorer": selection["method"], "scorer_accuracy": selection["accuracy"]}


def _scorer(model: LipSyncNet, settings: LipSyncSettings) -> LipSyncScorer:
    """The speaker stage's LipSyncNet scorer (same offsets and score) around the model being trained."""
    return LipSyncScorer(model.eval(), **settings.scoring())


def _with_utterance(series: list[TrackSeries], material: list[UtteranceTracks]
                    ) -> list[tuple[TrackSeries, UtteranceTracks]]:
    by_utt = {m.utt_id: m for m in material}
    return [(s, by_utt[s.utt_id]) for s in series]
