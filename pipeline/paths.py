"""Where every stage reads and writes, relative to the project (DVC workspace) root."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
MANIFEST = DATA / "manifest.parquet"
AUDIO_DIR = DATA / "audio"
CUTS = DATA / "cuts.parquet"
FACES = DATA / "faces.parquet"
SPEAKER = DATA / "speaker.parquet"
SPEAKER_TRACKS = DATA / "speaker_tracks"
CROPS = SPEAKER_TRACKS / "crops.parquet"  # the chosen track's face crops, read by the visual extractors
FEATURES_DIR = DATA / "features"
FAILURES_DIR = DATA / "failures"
FAILURES = DATA / "failures.parquet"
ARTIFACTS = Path("artifacts")
MODELS_DIR = ARTIFACTS / "models"
METRICS_DIR = Path("metrics")
LIPSYNC_DIR = ARTIFACTS / "lipsyncnet"  # self-trained active-speaker model (safetensors + config.json)
LIPSYNC_METRICS = METRICS_DIR / "lipsyncnet.json"
PLOTS_DIR = Path("plots")
DVCLIVE_DIR = Path("dvclive")  # per-model training curves (dvclive/<model>/)
CACHE_DIR = Path(".cache")


def features_path(feature_key: str) -> Path:
    return FEATURES_DIR / f"{feature_key}.parquet"


def stage_ledger(stage: str) -> Path:
    """One failure ledger per stage (DVC gives each output one owner); `failures` merges them."""
    return FAILURES_DIR / f"{stage.replace('@', '-')}.parquet"


def audio_path(utt_id: str) -> Path:
    return AUDIO_DIR / f"{safe_name(utt_id)}.wav"


def safe_name(utt_id: str) -> str:
    """A file name for an utterance id (ids may contain '/')."""
    return utt_id.replace("/", "__")
