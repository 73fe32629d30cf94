"""One decoding pass per media file for everything the face-track consumers need.

The `speaker` stage, `lipsync_train` and `inspect_speaker` all want, for a set of utterances of one
media file, each face track's frames: face crops at a few frames, and for synchrony scorers the
mouth of every frame. `collect_clips` decodes the file once in order, hands every frame to every
utterance that wants it (IEMOCAP turns overlap), and yields an utterance as soon as the pass is
beyond its last frame, so memory holds only small per-frame crops of the utterances still open.

Mouths are aligned on MTCNN landmarks found at every frame (`pipeline.mouths`), not cut from boxes
interpolated between the detector's samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline.face_detect import LandmarkModel
from pipeline.mouths import MIN_LANDMARK_PROB, FaceRegion, aligned_mouths, onet_patch, steady_landmarks
from pipeline.speaker_select import TrackClip, mouth_patch
from pipeline.tracking import box_at
from pipeline.video_readers import read_frames

DEFAULT_LIP_SIZE = (32, 48)  # (height, width) of the aligned grey mouth crops
LANDMARK_SMOOTHING = 5  # frames of moving average over the landmarks (0.2 s at 25 fps)
LANDMARK_STEP = 2  # O-Net runs on every second frame of a track; the frames between are interpolated

Tracks = dict[int, tuple[list[int], list[np.ndarray]]]


def crop_face(frame: np.ndarray, box: np.ndarray, size: int, margin: float = 0.15) -> np.ndarray:
    """A square crop around the box (enlarged by `margin`), edge-padded at the frame border."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    right, bottom = left + int(round(side)), top + int(round(side))
    pad = max(0, -left, -top, right - frame.shape[1], bottom - frame.shape[0])
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        left, top, right, bottom = left + pad, top + pad, right + pad, bottom + pad
    return cv2.resize(frame[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)


def evenly(start: int, end: int, count: int) -> list[int]:
    """At most `count` frame indices spread evenly over [start, end)."""
    if end <= start:
        return []
    return sorted({int(round(x)) for x in np.linspace(start, end - 1, num=min(count, end - start))})


def tracks_of(faces: pd.DataFrame) -> Tracks:
    """Track id -> (sampled frames, boxes) from one utterance's rows of `faces.parquet`."""
    tracks = {}
    for track_id, rows in faces.groupby("track_id", sort=True):
        rows = rows.sort_values("frame")
        tracks[int(track_id)] = (rows.frame.tolist(), list(rows[["x1", "y1", "x2", "y2"]].to_numpy(float)))
    return tracks


@dataclass
class ClipRequest:
    """What one utterance needs from the shared decoding pass of its media file."""

    utt_id: str
    start_frame: int
    end_frame: int
    fps: float
    start_seconds: float  # where the utterance audio starts in the media
    tracks: Tracks
    crop_frames: list[int] = field(default_factory=list)  # face crops of every track are kept here
    every_frame: bool = False  # mouth patches and aligned mouth crops of every frame (sync scorers)

    def wanted(self) -> set[int]:
        if not self.tracks:  # nothing to crop or score
            return set()
        frames = set(self.crop_frames)
        if self.every_frame:
            frames.update(range(self.start_frame, self.end_frame))
        return frames


@dataclass
class CollectedUtterance:
    request: ClipRequest
    clips: list[TrackClip]
    face_crops: dict[int, dict[int, np.ndarray]]  # track id -> frame -> RGB crop
    decoded: int  # frames of the utterance that were decoded


@dataclass
class _FrameParts:
    """What one frame of one track leaves behind for the mouth crops."""

    frame: int
    box: np.ndarray
    motion_patch: np.ndarray
    onet_input: np.ndarray | None  # None on frames between landmark frames
    onet_box: np.ndarray | None
    region: FaceRegion


class _Collector:
    def __init__(self, request: ClipRequest, lip_size: tuple[int, int], crop_size: int,
                 landmarks: LandmarkModel) -> None:
        self.request, self.lip_size, self.crop_size, self.landmarks = request, lip_size, crop_size, landmarks
        self.wanted = request.wanted()
        self.last = max(self.wanted) if self.wanted else -1
        self.crop_frames = set(request.crop_frames)
        self.parts: dict[int, list[_FrameParts]] = {t: [] for t in request.tracks}
        self.crops: dict[int, dict[int, np.ndarray]] = {t: {} for t in request.tracks}
        self.decoded = 0

    def add(self, frame: int, image: np.ndarray, grey: np.ndarray) -> None:
        self.decoded += 1
        for track_id, (frames, boxes) in self.request.tracks.items():
            box = box_at(frames, boxes, frame)
            if frame in self.crop_frames and self.crop_size:
                self.crops[track_id][frame] = crop_face(image, box, self.crop_size)
            if self.request.every_frame and frames[0] <= frame <= frames[-1]:
                parts = self.parts[track_id]
                patch, squared = onet_patch(image, box) if len(parts) % LANDMARK_STEP == 0 else (None, None)
                parts.append(_FrameParts(frame, box, mouth_patch(image, box), patch, squared,
                                         FaceRegion.cut(grey, box)))

    def _mouths(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Track id -> (aligned mouth crops, steadied landmarks), one O-Net batch for every track."""
        measured = [p for parts in self.parts.values() for p in parts if p.onet_input is not None]
        if not measured:
            return {}
        points, probs = self.landmarks(np.stack([p.onet_input for p in measured]),
                                       np.stack([p.onet_box for p in measured]))
        found = {id(p): (points[i], probs[i]) for i, p in enumerate(measured)}
        out = {}
        for track_id, parts in self.parts.items():
            if not parts:
                continue
            track_points = np.stack([found[id(p)][0] if id(p) in found else np.zeros((5, 2)) for p in parts])
            trusted = np.array([id(p) in found and found[id(p)][1] >= MIN_LANDMARK_PROB for p in parts])
            steady = steady_landmarks(track_points, trusted, np.stack([p.box for p in parts]), LANDMARK_SMOOTHING)
            out[track_id] = (aligned_mouths([p.region for p in parts], steady, *self.lip_size), steady)
        return out

    def finish(self) -> CollectedUtterance:
        request = self.request
        mouths = self._mouths() if request.every_frame else {}
        clips = []
        for track_id, (frames, boxes) in request.tracks.items():
            parts = self.parts[track_id]
            if track_id in mouths:
                clip_frames = np.array([p.frame for p in parts])
                motion = np.stack([p.motion_patch for p in parts])
                lips, landmarks = mouths[track_id]
            else:
                clip_frames, motion, lips, landmarks = np.asarray(frames), None, None, None
            clip_boxes = np.stack([box_at(frames, boxes, f) for f in clip_frames])
            times = clip_frames / request.fps - request.start_seconds
            clips.append(TrackClip(track_id, clip_frames, clip_boxes, times, motion, lips, landmarks))
        return CollectedUtterance(request, clips, self.crops, self.decoded)


def collect_clips(media: Path, requests: list[ClipRequest], lip_size: tuple[int, int] = DEFAULT_LIP_SIZE,
                  crop_size: int = 0, device: str = "cpu", reader: str = "pyav") -> Iterator[CollectedUtterance]:
    """Decode `media` once for all `requests` (one utterance each), yielding each utterance when complete.

    Utterances may overlap in time (IEMOCAP turns do); a frame is handed to every utterance that
    wants it. Raises MediaError when the file cannot be decoded; utterances already yielded stand.
    `reader` names the decoder (`pipeline.video_readers`).
    """
    if not requests:
        return
    fps = float(requests[0].fps)
    landmarks = LandmarkModel(device)
    pending = sorted((_Collector(r, lip_size, crop_size, landmarks) for r in requests), key=lambda c: c.last)
    wanted = set().union(*(c.wanted for c in pending))
    for frame, image in read_frames(media, wanted, fps, reader):
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        for collector in pending:
            if frame in collector.wanted:
                collector.add(frame, image, grey)
        while pending and pending[0].last <= frame:
            yield pending.pop(0).finish()
    for collector in pending:  # frames missing at the end of the file: score what was decoded
        yield collector.finish()
