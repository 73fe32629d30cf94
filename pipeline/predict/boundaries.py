"""Utterance boundaries learned from a corpus's own cuts: which pauses end an utterance.

Voice-activity detection finds speech, not utterances: it splits at every pause, and no silence
length alone separates a pause inside an utterance from the gap between two. A `BoundaryModel` is
a logistic regression over the cues around each pause (`pauses.py`) that says whether the spans on
either side belong to one utterance; its pauses are bridged, the others kept. It is fitted on the
train split's recordings of a corpus whose utterances are cut from longer recordings (the `boundaries`
stage), its VAD setting and probability threshold chosen on the dev split by the share of
utterances whose two ends are found within `tolerance` seconds (`matched`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.predict.pauses import FEATURES, pause_features
from pipeline.predict.segments import Segment, VadSettings, join, split_long, vad_spans

MODEL_PATH = Path("artifacts/boundaries/model.json")  # written by the `boundaries` stage, in the project
THRESHOLDS = tuple(np.round(np.arange(0.1, 0.95, 0.05), 2))


@dataclass(frozen=True)
class Recording:
    """Audio of one recording (16 kHz mono) and its utterances' true spans, in time order."""

    samples: np.ndarray
    truth: list[Segment]


@dataclass(frozen=True)
class BoundaryModel:
    vad: VadSettings
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    threshold: float  # probability of "one utterance" above which a pause is bridged
    features: tuple[str, ...] = FEATURES
    dev: dict[str, Any] = field(default_factory=dict)  # what the choice was made on

    def same_utterance(self, rows: np.ndarray) -> np.ndarray:
        """Probability, per pause row, that the spans on either side are one utterance."""
        z = (rows - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights) + self.bias)))

    @classmethod
    def load(cls, path: Path) -> BoundaryModel | None:
        """The model the `boundaries` stage wrote, or None where it learned none (its file says why)."""
        raw = json.loads(Path(path).read_text())
        if not raw.pop("learned", True):
            return None
        if tuple(raw["features"]) != FEATURES:
            raise ValueError(f"{path}: fitted on features {raw['features']}, this version reads {list(FEATURES)}")
        return cls(**{**raw, "vad": VadSettings(**raw["vad"]), "features": tuple(raw["features"])})


def utterance_segments(samples: np.ndarray, model: BoundaryModel) -> list[Segment]:
    """Speech spans of `samples` joined across the pauses the model reads as inside an utterance."""
    spans = vad_spans(samples, model.vad)
    return split_long(join(spans, bridged(samples, spans, model)), model.vad.max_seconds)


def bridged(samples: np.ndarray, spans: Sequence[Segment], model: BoundaryModel) -> np.ndarray:
    """Per pause between consecutive spans: True where the model joins them."""
    if len(spans) < 2:
        return np.zeros(0, dtype=bool)
    return model.same_utterance(pause_features(samples, spans)) > model.threshold


def matched(truth: Sequence[Segment], found: Sequence[Segment], tolerance: float) -> list[int | None]:
    """Per true utterance, the index of a found segment with both ends within `tolerance` s (None: none)."""
    starts = np.array([s.start for s in found])
    ends = np.array([s.end for s in found])
    out: list[int | None] = []
    for utterance in truth:
        hits = np.flatnonzero((np.abs(starts - utterance.start) <= tolerance)
                              & (np.abs(ends - utterance.end) <= tolerance))
        out.append(int(hits[0]) if hits.size else None)
    return out


def pause_labels(spans: Sequence[Segment], truth: Sequence[Segment]) -> np.ndarray:
    """Per pause between consecutive spans: 1 where its middle lies inside a true utterance."""
    middles = np.array([(a.end + b.start) / 2 for a, b in zip(spans[:-1], spans[1:])])
    inside = np.zeros(len(middles), dtype=bool)
    for utterance in truth:
        inside |= (middles > utterance.start) & (middles < utterance.end)
    return inside.astype(np.int64)


def fit_boundaries(train: Sequence[Recording], dev: Sequence[Recording], min_silences: Sequence[float],
                   vad_threshold: float, tolerance: float) -> tuple[BoundaryModel | None, list[dict[str, Any]]]:
    """The model (VAD setting x threshold) that finds the most dev utterances, and every candidate's score.

    None when the train recordings hold no pause of either kind (nothing to learn): callers then keep
    plain voice-activity detection."""
    from sklearn.linear_model import LogisticRegression

    table: list[dict[str, Any]] = []
    best: tuple[float, BoundaryModel] | None = None
    dev_total = sum(len(r.truth) for r in dev)
    for min_silence in min_silences:
        vad = replace(VadSettings(), threshold=vad_threshold, min_silence=min_silence, merge_gap=0.0)
        train_spans = [vad_spans(r.samples, vad) for r in train]
        rows = [pause_features(r.samples, s) for r, s in zip(train, train_spans) if len(s) > 1]
        labels = [pause_labels(s, r.truth) for r, s in zip(train, train_spans) if len(s) > 1]
        x = np.concatenate(rows) if rows else np.zeros((0, len(FEATURES)))
        y = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        dev_spans = [vad_spans(r.samples, vad) for r in dev]
        plain = _found(dev, dev_spans, [np.zeros(max(0, len(s) - 1), dtype=bool) for s in dev_spans], tolerance)
        table.append({"min_silence": min_silence, "threshold": None, "matched": _share(plain, dev_total)})
        if len(set(y.tolist())) < 2:
            continue
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
        regression = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, y)
        candidate = BoundaryModel(vad, mean.tolist(), scale.tolist(), regression.coef_[0].tolist(),
                                  float(regression.intercept_[0]), 0.5)
        dev_rows = [pause_features(r.samples, s) if len(s) > 1 else np.zeros((0, len(FEATURES)))
                    for r, s in zip(dev, dev_spans)]
        dev_probability = [candidate.same_utterance(rows) for rows in dev_rows]
        for threshold in THRESHOLDS:
            hits = _found(dev, dev_spans, [p > threshold for p in dev_probability], tolerance)
            table.append({"min_silence": min_silence, "threshold": float(threshold),
                          "matched": _share(hits, dev_total)})
            if best is None or hits > best[0]:
                best = (hits, replace(candidate, threshold=float(threshold)))
    if best is None:
        return None, table
    hits, model = best
    dev_summary = {"recordings": len(dev), "utterances": dev_total, "matched": _share(hits, dev_total),
                   "train_recordings": len(train), "tolerance": tolerance}
    return replace(model, dev=dev_summary), table


def _found(recordings: Sequence[Recording], spans: Sequence[Sequence[Segment]], bridges: Sequence[np.ndarray],
           tolerance: float) -> int:
    return sum(sum(m is not None for m in matched(r.truth, join(s, b), tolerance))
               for r, s, b in zip(recordings, spans, bridges))


def _share(hits: int, total: int) -> float:
    return round(100.0 * hits / total, 1) if total else 0.0

