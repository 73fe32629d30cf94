"""`merc predict`: one recording through the pipeline's own stages, outside the DAG, to emotions over time.

The recording becomes a one-dialogue corpus in a workspace folder (`<out>/work`): its utterances
come from the transcript when one is given, else from voice-activity detection with text from a
recogniser (`asr.py`). Then the same stage functions `dvc repro` runs (`cut`, `faces`, `speaker`,
`features@<key>` for every input of the model) run there on the project's params, except that the
feature blocks are the ones the model was trained with (`trained.py`) and no utterance failure stops
the run. The speaker stage's chosen face tracks link utterances of the same person (`speakers.py`),
and every seed of the model scores the dialogue; their probabilities are averaged.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import paths
from pipeline.config import ConfigError, load_params
from pipeline.hooks import ProgressHook, silent_hook
from pipeline.manifest import write_manifest
from pipeline.media import MediaError, probe, read_audio
from pipeline.predict.asr import recogniser
from pipeline.predict.boundaries import MODEL_PATH, BoundaryModel, utterance_segments
from pipeline.predict.language_model import MODEL_PATH as LM_PATH
from pipeline.predict.segments import SAMPLE_RATE, Segment, VadSettings, speech_segments
from pipeline.predict.speakers import link_speakers
from pipeline.predict.trained import TrainedModel, feature_blocks, load_trained
from pipeline.predict.transcript import read_transcript
from pipeline.runner import PlainRunner
from pipeline.speaker_methods import LEARNED_METHODS
from pipeline.stages import get_stage
from pipeline.tables import read_frame
from pipeline.training.data import load_dialogue_data
from pipeline.training.model_checkpoints import feature_stats, load_checkpoint
from pipeline.training.trainer import dialogue_logits

log = logging.getLogger("pipeline.predict")
UNKNOWN_SPEAKER = "?"
BOUNDARY_CHOICES = ("auto", "vad")
LM_CHOICES = ("auto", "generic")
SPLIT = "test"  # the one dialogue plays the test split: no statistic is fitted on it


@dataclass(frozen=True)
class PredictOptions:
    video: Path
    out: Path
    model: str
    transcript: Path | None = None
    asr: str = "auto"
    asr_model: Path | None = None
    project: Path = Path(".")
    workers: int = 2
    vad: VadSettings = field(default_factory=VadSettings)
    boundaries: str = "auto"  # auto: the project's learned pause model when it has one; vad: pauses alone
    asr_lm: str = "auto"  # auto: PocketSphinx with the project's `asr_lm` model when it has one; generic: without


@dataclass
class Prediction:
    """The utterance table (`frame`) and what produced it (`info`: model, segments' source, timings)."""

    frame: pd.DataFrame
    labels: list[str]
    info: dict[str, Any]


def predict(options: PredictOptions, hook: ProgressHook = silent_hook) -> Prediction:
    started = time.perf_counter()
    video = Path(options.video).resolve()
    if not video.is_file():
        raise ConfigError(f"VIDEO: {video} not found")
    project = Path(options.project).resolve()
    trained = load_trained(project / paths.MODELS_DIR, options.model)
    blocks = feature_blocks(trained)
    params = workspace_params(load_params(project / "params.yaml"), blocks, video, project)
    try:
        info = probe(video)
        samples = read_audio(video, SAMPLE_RATE) if info.has_audio else np.zeros(0, dtype=np.float32)
    except MediaError as error:
        raise ConfigError(f"VIDEO: {video} cannot be read: {error}") from None
    segments, speakers, source = utterances(samples, options, project, hook)
    work = Path(options.out).resolve() / "work"
    with inside(work):
        frame = manifest_frame(video, segments, speakers)
        if frame.empty:
            table = frame.assign(track_id=pd.Series(dtype="int64"), speaker_confidence=pd.Series(dtype=float))
            return Prediction(_empty_predictions(table, trained.labels), trained.labels,
                              _info(options, trained, params, source, info.duration, started, 0))
        write_manifest(frame, video.parent, trained.labels, "predict")
        runner = PlainRunner(options.workers, hook)
        for stage in ("cut", "faces", "speaker"):
            get_stage(stage)(params, runner, None)
        chosen = chosen_tracks()
        frame = frame.merge(chosen, on="utt_id", how="left")
        if all(s is None for s in speakers):
            frame["speaker"] = link_speakers(frame, read_frame(paths.FACES), UNKNOWN_SPEAKER)
        write_manifest(frame.drop(columns=["track_id", "speaker_confidence"]), video.parent, trained.labels,
                       "predict")
        for key in trained.inputs:
            get_stage("features")(params, runner, key)
        probabilities = score(trained)
    table = frame.assign(emotion=[trained.labels[i] for i in probabilities.argmax(axis=1)])
    for index, label in enumerate(trained.labels):
        table[f"p_{label}"] = probabilities[:, index].round(4)
    info_block = _info(options, trained, params, source, info.duration, started, len(table))
    return Prediction(table, trained.labels, info_block)


def workspace_params(project_params: Mapping[str, Any], blocks: Mapping[str, Any], video: Path,
                     project: Path) -> dict[str, Any]:
    """The project's params with the model's own feature blocks, a lenient failure ledger and the speaker
    stage pointed at the project's LipSyncNet (or at mouth motion when there is none)."""
    params = copy.deepcopy(dict(project_params))
    params["dataset"] = {"name": "table", "root": str(video.parent), "media": True}
    params["features"] = {key: dict(block) for key, block in blocks.items()}
    params["run"] = {**params.get("run", {}), "max_failure_ratio": 1.0}
    speaker = dict(params["speaker"])
    checkpoint = project / (speaker.get("checkpoint") or paths.LIPSYNC_DIR)
    if speaker["method"] in LEARNED_METHODS:
        if (checkpoint / "model.safetensors").is_file():
            speaker["checkpoint"] = str(checkpoint)
        else:
            log.warning("no LipSyncNet checkpoint in %s: the active speaker is chosen by mouth motion", checkpoint)
            speaker["method"] = "mouth_motion"
    params["speaker"] = speaker
    return params


def utterances(samples: np.ndarray, options: PredictOptions, project: Path, hook: ProgressHook
               ) -> tuple[list[Segment], list[str | None], str]:
    """Segments, the transcript's speaker per segment (None: unknown) and where they came from."""
    if options.transcript is not None:
        segments, speakers = read_transcript(options.transcript)
        return segments, speakers, f"transcript:{Path(options.transcript).name}"
    pauses = pause_model(project, options.boundaries)
    segments = utterance_segments(samples, pauses) if pauses else speech_segments(samples, options.vad)
    asr = recogniser(options.asr, options.asr_model, corpus_language_model(project, options.asr_lm))
    texts = []
    for index, segment in enumerate(segments):
        hook("speech recognition", completed=index, total=len(segments))
        part = samples[int(segment.start * SAMPLE_RATE): int(segment.end * SAMPLE_RATE)]
        texts.append(asr.transcribe(part))
    hook("speech recognition", completed=len(segments), total=len(segments))
    segments = [Segment(s.start, s.end, t) for s, t in zip(segments, texts)]
    return segments, [None] * len(segments), f"{'pauses' if pauses else 'vad'}+{asr.name}"


def corpus_language_model(project: Path, choice: str) -> Path | None:
    """The project's language model of its train transcripts under `auto` (None: generic, or none made)."""
    if choice not in LM_CHOICES:
        raise ConfigError(f"--asr-lm is {choice!r}; allowed values: {', '.join(LM_CHOICES)}")
    path = project / LM_PATH
    return path if choice == "auto" and path.is_file() else None


def pause_model(project: Path, choice: str) -> BoundaryModel | None:
    """The project's learned pause model (`boundaries` stage) under `auto`; None under `vad` or where
    the stage learned none (a corpus of pre-cut clips) or has not run."""
    if choice not in BOUNDARY_CHOICES:
        raise ConfigError(f"--boundaries is {choice!r}; allowed values: {', '.join(BOUNDARY_CHOICES)}")
    path = project / MODEL_PATH
    if choice == "vad" or not path.is_file():
        if choice == "auto":
            log.warning("no %s (run `dvc repro boundaries`): utterances are voice-activity spans", path)
        return None
    return BoundaryModel.load(path)


def manifest_frame(video: Path, segments: list[Segment], speakers: list[str | None]) -> pd.DataFrame:
    stem = video.stem
    rows = [{
        "utt_id": f"{stem}/{index:04d}", "dialogue_id": stem, "turn": index,
        "speaker": speaker or UNKNOWN_SPEAKER, "text": segment.text or "", "label": "", "split": SPLIT,
        "media": video.name, "start": round(segment.start, 3), "end": round(segment.end, 3),
    } for index, (segment, speaker) in enumerate(zip(segments, speakers))]
    return pd.DataFrame(rows, columns=["utt_id", "dialogue_id", "turn", "speaker", "text", "label", "split",
                                       "media", "start", "end"])


def chosen_tracks() -> pd.DataFrame:
    """utt_id -> the active speaker's track (-1: no face) and the chooser's confidence."""
    chosen = read_frame(paths.SPEAKER, ["utt_id", "track_id", "confidence"])
    return chosen.rename(columns={"confidence": "speaker_confidence"})


def score(trained: TrainedModel) -> np.ndarray:
    """Mean class probabilities over the model's seeds, in manifest order."""
    spec = trained.spec()
    stats = feature_stats(trained.config)
    data = load_dialogue_data(trained.inputs, stats=stats, **spec.sequences.loader_kwargs())
    dialogues = data.split(SPLIT)
    order = None
    total = None
    for folder in trained.seeds:
        model, _ = load_checkpoint(folder, "cpu")
        utt_ids, _, logits = dialogue_logits(model, dialogues, data.inputs, 8, "cpu")
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        order = utt_ids if order is None else order
        total = probabilities if total is None else total + probabilities
    manifest = read_frame(paths.MANIFEST, ["utt_id"]).utt_id.tolist()
    position = {u: i for i, u in enumerate(order or [])}
    mean = (total / len(trained.seeds)) if total is not None else np.zeros((0, len(trained.labels)))
    return mean[[position[u] for u in manifest]]


@contextlib.contextmanager
def inside(folder: Path) -> Iterator[None]:
    """Run with `folder` as the working directory (the stages read and write relative to it)."""
    folder.mkdir(parents=True, exist_ok=True)
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def _empty_predictions(frame: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    return frame.assign(emotion=pd.Series(dtype=str), **{f"p_{label}": pd.Series(dtype=float) for label in labels})


def _info(options: PredictOptions, trained: TrainedModel, params: Mapping[str, Any], source: str,
          duration: float | None, started: float, utterances: int) -> dict[str, Any]:
    seconds = time.perf_counter() - started
    return {
        "video": str(options.video), "model": trained.name, "seeds": len(trained.seeds),
        "inputs": trained.inputs, "labels": trained.labels, "segments": source, "utterances": utterances,
        "speaker_method": params["speaker"]["method"], "boundaries": options.boundaries,
        "vad": asdict(options.vad),
        "seconds": round(seconds, 2), "duration": duration,
        "real_time_factor": round(seconds / duration, 3) if duration else None,
    }
