"""IoU face tracking over sampled frames: greedy matching, gap interpolation, box smoothing.

Detections arrive per sampled frame; a track continues while its last box overlaps a new one by
more than `iou_threshold`, may skip up to `max_gap` samples (the missing boxes are interpolated),
and its boxes are smoothed with a centred moving average to steady the crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Track:
    track_id: int
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    interpolated: list[bool] = field(default_factory=list)
    last_sample: int = -1


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def track_faces(
    samples: list[tuple[int, np.ndarray, np.ndarray]],
    iou_threshold: float,
    max_gap: int,
    min_track_samples: int,
    smooth: int = 3,
) -> list[Track]:
    """`samples`: (frame_index, boxes [K, 4], scores [K]) in frame order. Returns kept tracks.

    A clip with fewer samples than `min_track_samples` still yields tracks (of what it has), so
    sub-second utterances are never left without a face.
    """
    active: list[Track] = []
    finished: list[Track] = []
    next_id = 0
    for sample_index, (frame, boxes, scores) in enumerate(samples):
        still_active = []
        for track in active:
            if sample_index - track.last_sample > max_gap + 1:
                finished.append(track)
            else:
                still_active.append(track)
        active = still_active
        pairs = sorted(
            ((iou(track.boxes[-1], box), t, d) for t, track in enumerate(active) for d, box in enumerate(boxes)),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_boxes: set[int] = set()
        for overlap, t, d in pairs:
            if overlap < iou_threshold:
                break
            if t in used_tracks or d in used_boxes:
                continue
            used_tracks.add(t)
            used_boxes.add(d)
            _extend(active[t], frame, sample_index, boxes[d], float(scores[d]), samples)
        for d, box in enumerate(boxes):
            if d not in used_boxes:
                track = Track(track_id=next_id)
                next_id += 1
                _extend(track, frame, sample_index, box, float(scores[d]), samples)
                active.append(track)
    finished.extend(active)
    needed = min(min_track_samples, max(1, len(samples)))
    kept = [t for t in finished if sum(not i for i in t.interpolated) >= needed]
    kept.sort(key=lambda t: (t.frames[0], float(np.mean([b[0] for b in t.boxes]))))
    for new_id, track in enumerate(kept):
        track.track_id = new_id
        track.boxes = _smooth(track.boxes, smooth)
    return kept


def _extend(track: Track, frame: int, sample_index: int, box: np.ndarray, score: float,
            samples: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
    """Append a detection, first filling skipped samples with linearly interpolated boxes."""
    if track.boxes and sample_index - track.last_sample > 1:
        last_box, last_sample = track.boxes[-1], track.last_sample
        for missing in range(last_sample + 1, sample_index):
            weight = (missing - last_sample) / (sample_index - last_sample)
            track.frames.append(samples[missing][0])
            track.boxes.append((1 - weight) * last_box + weight * box)
            track.scores.append(0.0)
            track.interpolated.append(True)
    track.frames.append(frame)
    track.boxes.append(np.asarray(box, dtype=np.float64))
    track.scores.append(score)
    track.interpolated.append(False)
    track.last_sample = sample_index


def _smooth(boxes: list[np.ndarray], window: int) -> list[np.ndarray]:
    if window <= 1 or len(boxes) < 3:
        return boxes
    stacked = np.stack(boxes)
    half = window // 2
    out = np.empty_like(stacked)
    for i in range(len(stacked)):
        out[i] = stacked[max(0, i - half) : i + half + 1].mean(axis=0)
    return list(out)


def box_at(track_frames: list[int], track_boxes: list[np.ndarray], frame: int) -> np.ndarray:
    """A track's box at any frame: linear between samples, held constant past either end."""
    frames = np.asarray(track_frames, dtype=np.float64)
    stacked = np.stack(track_boxes)
    return np.array([np.interp(frame, frames, stacked[:, k]) for k in range(4)])
