"""`faces`: face tracks per utterance from batched MTCNN detections and IoU tracking.

One work item per media file: the frames every utterance of that file needs are decoded in a
single pass, detected in batches, and tracked per utterance. Results are cached per file so a
killed run resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from core.config import parse_block, recorded, setting
from pipeline import paths
from pipeline.cache import PartCache
from pipeline.code_fingerprint import code_fingerprint
from pipeline.device import resolve_device
from pipeline.face_detect import FaceDetector
from pipeline.file_hash import file_hash
from pipeline.item_guard import guarded
from pipeline.ledger import Failure, write_stage_ledger
from pipeline.media import MediaError
from pipeline.runner import Runner
from pipeline.schema import FACES_SCHEMA
from pipeline.tables import concat_tables, read_frame, write_atomic
from pipeline.tracking import track_faces
from pipeline.video_readers import read_frames, video_reader

STAGE = "faces"


@dataclass(frozen=True, kw_only=True)
class FacesConfig:
    """The `faces` block: detector placement and thresholds, frame sampling, tracking."""

    device: str | None = setting("auto", runtime=True)  # values checked by `resolve_device` at the start
    sample_fps: float = setting(positive=True)
    batch_size: int = setting(positive=True)
    min_face_size: int = setting()
    threshold: float = setting()
    iou_threshold: float = setting()
    max_gap: int = setting()
    min_track_samples: int = setting()
    detect_width: int = setting()



def sample_frames(start_frame: int, end_frame: int, fps: float, sample_fps: float) -> list[int]:
    """Evenly spaced frame indices at `sample_fps`; at least one (the middle) for tiny clips."""
    count = end_frame - start_frame
    if count <= 0:
        return []
    step = max(1.0, fps / sample_fps)
    frames = sorted({start_frame + int(round(k * step)) for k in range(int(count / step) + 1)})
    frames = [f for f in frames if f < end_frame]
    return frames or [start_frame + count // 2]


def _faces_for_media(media: Path, rows: pd.DataFrame, cfg: dict[str, Any], detector: FaceDetector,
                     reader: str = "pyav") -> tuple[pa.Table, list[Failure]]:
    wanted = {row.utt_id: sample_frames(row.start_frame, row.end_frame, row.fps, cfg["sample_fps"])
              for row in rows.itertuples(index=False)}
    all_frames = sorted({f for frames in wanted.values() for f in frames})
    detections: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    batch_frames: list[int] = []
    batch_images: list[np.ndarray] = []

    def flush() -> None:
        for frame, result in zip(batch_frames, detector.detect(batch_images)):
            detections[frame] = result
        batch_frames.clear()
        batch_images.clear()

    try:
        for frame, image in read_frames(media, all_frames, float(rows.fps.iloc[0]), reader):
            batch_frames.append(frame)
            batch_images.append(image)
            if len(batch_images) >= cfg["batch_size"]:
                flush()
        flush()
    except MediaError as error:
        return FACES_SCHEMA.empty_table(), [Failure(STAGE, u, str(error)) for u in rows.utt_id]

    records: list[dict[str, Any]] = []
    failures: list[Failure] = []
    for utt_id, frames in wanted.items():
        samples = [(f, *detections[f]) for f in frames if f in detections]
        if not samples:
            failures.append(Failure(STAGE, utt_id, "no video frames could be decoded in the utterance's range"))
            continue
        tracks = track_faces(samples, cfg["iou_threshold"], cfg["max_gap"], cfg["min_track_samples"])
        if not tracks:
            failures.append(Failure(STAGE, utt_id, f"no face detected in {len(samples)} sampled frames"))
            continue
        for track in tracks:
            for frame, box, score, interpolated in zip(track.frames, track.boxes, track.scores, track.interpolated):
                records.append({"utt_id": utt_id, "track_id": track.track_id, "frame": int(frame),
                                "x1": float(box[0]), "y1": float(box[1]), "x2": float(box[2]), "y2": float(box[3]),
                                "score": float(score), "interpolated": bool(interpolated)})
    return pa.Table.from_pylist(records, schema=FACES_SCHEMA), failures


def run(params: dict[str, Any], runner: Runner, arg: str | None = None) -> dict[str, Any]:
    cfg = dict(params["faces"])  # as written: recorded in the output
    settings = parse_block(FacesConfig, cfg, "faces")
    device = resolve_device(settings.device, "faces.device")
    detector = FaceDetector(device, float(settings.threshold), settings.min_face_size, settings.detect_width)
    reader = video_reader(params)
    cuts = read_frame(paths.CUTS)
    failures = [Failure(STAGE, u, "no video stream") for u in cuts.loc[~cuts.has_video, "utt_id"]]
    video_cuts = cuts[cuts.has_video]
    code = code_fingerprint(__name__)
    cache = PartCache(STAGE, {**recorded(settings), "video_reader": reader}, code)
    groups = [(Path(media), rows) for media, rows in video_cuts.groupby("media", sort=True)]

    def work(item: tuple[Path, pd.DataFrame]) -> tuple[pa.Table, list[Failure]]:
        media, rows = item
        fingerprint = {"media": file_hash(media),
                       "utts": rows[["utt_id", "start_frame", "end_frame"]].astype(str).values.tolist()}

        def compute() -> tuple[pa.Table, list[Failure]]:
            return _faces_for_media(media, rows, cfg, detector, reader)

        return guarded(STAGE, rows.utt_id, lambda: cache.get_or_compute(fingerprint, compute),
                       lambda failures: (FACES_SCHEMA.empty_table(), failures))

    results = runner.map(work, groups, name=STAGE)
    tables = [table for table, _ in results]
    for _, item_failures in results:
        failures.extend(item_failures)
    faces = concat_tables(tables, FACES_SCHEMA).sort_by([("utt_id", "ascending"), ("track_id", "ascending"),
                                                  ("frame", "ascending")])
    write_atomic(faces, paths.FACES, {"stage": STAGE, "config": cfg, "video_reader": reader, "device": device,
                                      "code_version": code})
    write_stage_ledger(STAGE, failures, len(cuts), params["run"]["max_failure_ratio"])
    with_faces = len(set(faces.column("utt_id").to_pylist()))
    sampled = sum(len(sample_frames(r.start_frame, r.end_frame, r.fps, cfg["sample_fps"]))
                  for r in video_cuts.itertuples(index=False))
    return {"utterances": len(cuts), "with_faces": with_faces, "sampled_frames": sampled,
            "failures": len(failures), "device": device}
