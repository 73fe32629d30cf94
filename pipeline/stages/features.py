"""`features@<key>`: one vector per utterance from the extractor configured in `features.<key>`.

Work items are chunks of utterances (a dialogue, split past `CHUNK_UTTERANCES`), so a dialogue's
text context is read in one place and a killed run loses at most the chunks in flight. Each chunk is
a part in `.cache/features-<key>/`, keyed by its utterances' input fingerprints (text and context,
full content hashes of wavs and videos, crop bytes), the extractor's output config and the code
fingerprint of this module, the extractor's module and everything they import: a rerun reads
finished chunks back and computes only the rest. Per-utterance problems become failure records;
the chunk still yields its good rows.

Inputs by what the extractor consumes: `text` (with `context` previous and `future_context`
following turns), `waveform` (the cut 16 kHz wavs), `face_frames` (the active speaker's JPEG crops)
or `full_frames` (the extractor's `frames` evenly spaced frames of the utterance's range in the
source video, decoded by index with `pipeline.media.iter_frames`), each read by
`pipeline.feature_inputs`. When the block says
`sequence: true`, the extractor's frame- or token-level features go to a `sequence` column.
"""

from __future__ import annotations

import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from extractors import (
    BadInput,
    Extractor,
    ExtractorConfigError,
    FramesItem,
    WaveformItem,
    build_extractor,
)
from extractors.base import SAMPLE_RATE
from pipeline import paths
from pipeline.cache import PartCache, stable_hash
from pipeline.code_fingerprint import code_fingerprint
from pipeline.config import ConfigError, section
from pipeline.extractor_identity import extractor_identity
from pipeline.feature_inputs import (
    Chunk,
    CropStore,
    FrameSpan,
    decode_crops,
    make_chunks,
    read_span,
    read_waveform,
    span_indices,
)
from pipeline.file_hash import file_hash
from pipeline.item_guard import guarded
from pipeline.ledger import Failure, write_stage_ledger
from pipeline.manifest import read_manifest
from pipeline.media import MediaError
from pipeline.runner import Runner
from pipeline.tables import concat_tables, read_frame, vector_table, write_atomic
from pipeline.text_items import text_items
from pipeline.video_readers import video_reader

NO_CROPS = "no face crops for the active speaker"
SUPPORTED_INPUTS = ("text", "waveform", "face_frames", "full_frames")
LIBRARIES = ("numpy", "torch", "torchvision", "transformers", "opensmile", "pyarrow")


def stage_name(feature_key: str) -> str:
    return f"features@{feature_key}"


def build_for_key(params: dict[str, Any], feature_key: str | None) -> Extractor:
    """The extractor of `features.<key>`, with config problems reported by their params path."""
    features = section(params, "features")
    if feature_key is None or feature_key not in features:
        raise ConfigError(
            f"params.yaml: 'features' has no key {feature_key!r}; configured keys: {', '.join(map(str, features))}"
        )
    try:
        extractor = build_extractor(features[feature_key])
        if extractor.consumes not in SUPPORTED_INPUTS:
            raise ExtractorConfigError("name", f"consumes {extractor.consumes!r}, which this stage cannot supply yet")
        extractor.load()
    except ExtractorConfigError as error:
        raise error.within(f"features.{feature_key}") from error
    return extractor


# -- one chunk -----------------------------------------------------------------------------------


class ChunkWorker:
    """Featurises one chunk through the part cache; per-utterance problems become failures."""

    def __init__(self, feature_key: str, extractor: Extractor, crops: CropStore | None, reader: str = "pyav") -> None:
        self.stage = stage_name(feature_key)
        self.extractor = extractor
        self.crops = crops
        self.reader = reader
        self.cache = PartCache(self.stage, extractor_identity(extractor), extractor_code(extractor))

    def fingerprint(self, chunk: Chunk) -> list[Any]:
        consumes = self.extractor.consumes
        if consumes == "text":
            return [[t.utt_id, t.speaker, t.text, [list(c) for c in t.context]] for t in chunk.texts]
        if consumes == "waveform":
            return [[u, a, file_hash(a) if Path(a).is_file() else "missing"]
                    for u, a in zip(chunk.utt_ids, chunk.audio)]
        if consumes == "full_frames":
            budget = self.extractor.frame_budget
            return [[u, s.media, file_hash(s.media) if Path(s.media).is_file() else "missing", s.fps,
                     span_indices(s, budget), self.reader] for u, s in zip(chunk.utt_ids, chunk.spans)]
        return [[u, self.crops.fingerprint(u)] for u in chunk.utt_ids]

    def __call__(self, chunk: Chunk) -> tuple[pa.Table, list[Failure]]:
        return guarded(self.stage, chunk.utt_ids,
                       lambda: self.cache.get_or_compute(self.fingerprint(chunk), lambda: self.compute(chunk)),
                       lambda failures: (self.empty(), failures))

    def empty(self) -> pa.Table:
        """No rows, in the schema of this extractor's output (sequence column when it writes one)."""
        dim, sequences = self.extractor.dim, [] if self.extractor.wants_sequence else None
        return vector_table([], np.zeros((0, dim), dtype=np.float32), sequences)

    def load_items(self, chunk: Chunk) -> tuple[list[Any], list[Failure]]:
        consumes = self.extractor.consumes
        if consumes == "text":
            return list(chunk.texts), []
        items, failures = [], []
        for index, utt_id in enumerate(chunk.utt_ids):
            if consumes == "waveform":
                path = chunk.audio[index]
                try:
                    items.append(WaveformItem(utt_id, read_waveform(path), SAMPLE_RATE))
                except Exception as error:  # unreadable or missing wav: this utterance only
                    failures.append(Failure(self.stage, utt_id, f"cannot read audio {path}: {error}"))
                continue
            if consumes == "full_frames":
                item, failure = self.full_frames(utt_id, chunk.spans[index])
                items.extend([item] if item is not None else [])
                failures.extend([failure] if failure is not None else [])
                continue
            crops = self.crops.jpegs(utt_id)
            if not crops:
                failures.append(Failure(self.stage, utt_id, NO_CROPS))
                continue
            images = decode_crops(crops)
            if not images:
                failures.append(Failure(self.stage, utt_id, f"none of the {len(crops)} face crops decodes as JPEG"))
                continue
            items.append(FramesItem(utt_id, images))
        return items, failures

    def full_frames(self, utt_id: str, span: FrameSpan) -> tuple[FramesItem | None, Failure | None]:
        """Decode the utterance's sampled frames from the source video; problems become a failure."""
        if not span.has_video:
            return None, Failure(self.stage, utt_id, "the source media has no video stream")
        if span.end_frame <= span.start_frame:
            return None, Failure(self.stage, utt_id, f"empty frame range [{span.start_frame}, {span.end_frame})")
        try:
            images = read_span(span, self.extractor.frame_budget, self.reader)
        except (MediaError, OSError) as error:
            return None, Failure(self.stage, utt_id, f"cannot read frames of {span.media}: {error}")
        if not images:
            reason = f"no frame of [{span.start_frame}, {span.end_frame}) could be decoded from {span.media}"
            return None, Failure(self.stage, utt_id, reason)
        return FramesItem(utt_id, images), None

    def compute(self, chunk: Chunk) -> tuple[pa.Table, list[Failure]]:
        items, failures = self.load_items(chunk)
        good = []
        for item in items:
            try:
                self.extractor.check(item)
                good.append(item)
            except BadInput as error:
                failures.append(Failure(self.stage, item.utt_id, str(error)))
        ids, vectors, sequences, extract_failures = self.extract(good)
        failures.extend(extract_failures)
        matrix = np.stack(vectors) if vectors else np.zeros((0, self.extractor.dim), dtype=np.float32)
        return vector_table(ids, matrix, sequences if self.extractor.wants_sequence else None), failures

    def extract(self, items: list[Any]) -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[Failure]]:
        """Batch first; if the batch fails, retry one by one so only the bad utterances are lost."""
        if not items:
            return [], [], [], []
        try:
            matrix, sequences = self._checked(*self.extractor.extract_with_sequences(items), len(items))
            rows = [(item, matrix[i], sequences[i], None) for i, item in enumerate(items)]
        except ExtractorConfigError:
            raise
        except Exception:
            rows = [self._one(item) for item in items]
        ids, vectors, kept, failures = [], [], [], []
        for item, vector, sequence, reason in rows:
            if reason is None and not (np.isfinite(vector).all() and np.isfinite(sequence).all()):
                reason = "extractor returned non-finite values"
            if reason is None:
                ids.append(item.utt_id)
                vectors.append(vector)
                kept.append(sequence)
            else:
                failures.append(Failure(self.stage, item.utt_id, reason))
        return ids, vectors, kept, failures

    def _one(self, item: Any) -> tuple[Any, np.ndarray | None, np.ndarray | None, str | None]:
        try:
            matrix, sequences = self._checked(*self.extractor.extract_with_sequences([item]), 1)
            return item, matrix[0], sequences[0], None
        except ExtractorConfigError:
            raise
        except BadInput as error:
            return item, None, None, str(error)
        except Exception as error:
            return item, None, None, f"{self.extractor.name} failed: {type(error).__name__}: {error}"

    def _checked(
        self, matrix: np.ndarray, sequences: list[np.ndarray] | None, count: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The [count, dim] matrix and one [T, sequence_dim] array per row (empty when not wanted)."""
        name, dim = self.extractor.name, self.extractor.dim
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.shape != (count, dim):
            raise RuntimeError(f"{name} returned shape {matrix.shape}, expected {(count, dim)}")
        if not self.extractor.wants_sequence:
            return matrix, [np.zeros((0, 0), np.float32)] * count
        if sequences is None or len(sequences) != count:
            given = 0 if sequences is None else len(sequences)
            raise RuntimeError(f"{name} was asked for {count} sequences but returned {given}")
        width = self.extractor.sequence_dim
        checked = [np.asarray(seq, dtype=np.float32) for seq in sequences]
        for seq in checked:
            if seq.ndim != 2 or seq.shape[1] != width or len(seq) == 0:
                raise RuntimeError(f"{name} returned a sequence of shape {seq.shape}, expected [T>0, {width}]")
        return matrix, checked


# -- the stage -----------------------------------------------------------------------------------


def extractor_code(extractor: Extractor) -> str:
    """Fingerprint of this stage's code and the extractor's module (the registry loads it by name,
    so no import in the source leads to it)."""
    return code_fingerprint(__name__, type(extractor).__module__)


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    extractor = build_for_key(params, arg)
    feature_key = str(arg)
    stage = stage_name(feature_key)
    corpus = read_manifest()
    manifest = corpus.frame
    consumes = extractor.consumes
    if not corpus.media:  # a text-only run (dataset.media: false): nothing was cut, every utterance has its text
        if consumes != "text":
            raise ConfigError(f"params.yaml: 'features.{feature_key}' reads {consumes}, but the corpus is text-only "
                              "(dataset.media: false)")
        audio_of: dict[str, str] = {}
        span_of: dict[str, FrameSpan] = {}
        wanted = set(manifest.utt_id)
    else:
        if not paths.CUTS.exists():
            raise FileNotFoundError(f"{paths.CUTS} not found: run `dvc repro cut` first")
        span_columns = ["media", "fps", "start_frame", "end_frame", "has_video"] if consumes == "full_frames" else []
        cuts = read_frame(paths.CUTS, ["utt_id", "audio", *span_columns])
        audio_of = dict(zip(cuts.utt_id, cuts.audio))
        span_of = {
            row.utt_id: FrameSpan(str(row.media), float(row.fps), int(row.start_frame), int(row.end_frame),
                                  bool(row.has_video))
            for row in cuts.itertuples(index=False)
        } if span_columns else {}
        wanted = set(manifest.utt_id) & set(audio_of)  # utterances missing from cuts failed upstream
    texts = text_items(manifest, wanted, extractor.context_turns, extractor.future_turns) if consumes == "text" else {}
    chunks = [
        Chunk(tuple(ids), tuple(texts[u] for u in ids) if texts else (),
              tuple(str(audio_of[u]) for u in ids) if consumes == "waveform" else (),
              tuple(span_of[u] for u in ids) if span_of else ())
        for ids in make_chunks(manifest, wanted)
    ]
    crops = CropStore(paths.CROPS) if consumes == "face_frames" else None
    worker = ChunkWorker(feature_key, extractor, crops, video_reader(params))
    try:
        results = runner.map(worker, chunks, name=stage)
    except ExtractorConfigError as error:
        raise error.within(f"features.{feature_key}") from error

    table = concat_tables([t for t, _ in results], worker.empty().schema).sort_by("utt_id")
    failures = [f for _, item_failures in results for f in item_failures]
    meta = {
        "feature_key": feature_key,
        "extractor": extractor.name,
        "modality": extractor.modality,
        "consumes": extractor.consumes,
        "config": {"modality": extractor.modality, "name": extractor.name, **extractor.config},
        "config_hash": stable_hash(extractor_identity(extractor)),
        "dim": extractor.dim,
        "sequence": {"dim": extractor.sequence_dim, "max_length": extractor.config.get("max_sequence")}
        if extractor.wants_sequence else None,
        "code_version": extractor_code(extractor),
        "versions": library_versions(),
    }
    write_atomic(table, paths.features_path(feature_key), meta)
    write_stage_ledger(stage, failures, len(wanted), params["run"]["max_failure_ratio"])
    return {
        "feature": feature_key,
        "extractor": extractor.name,
        "utterances": table.num_rows,
        "dim": extractor.dim,
        "failures": len(failures),
        "chunks": len(chunks),
        "seconds": round(time.perf_counter() - started, 2),
    }
