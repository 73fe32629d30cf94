"""Batched MTCNN face detection (facenet-pytorch; weights ship in the wheel, no download)."""

from __future__ import annotations

import threading
from functools import lru_cache

import cv2
import numpy as np

_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _mtcnn(device: str, min_face_size: int, threshold: float):
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device=device, min_face_size=min_face_size,
                 thresholds=[0.6, 0.7, threshold], post_process=False, select_largest=False)


class FaceDetector:
    """Detects faces on frames resized to `detect_width`; boxes come back in source pixels."""

    def __init__(self, device: str, threshold: float, min_face_size: int, detect_width: int) -> None:
        self.device = device
        self.threshold = threshold
        self.min_face_size = min_face_size
        self.detect_width = detect_width

    def detect(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame: boxes [K, 4] (x1, y1, x2, y2) and probabilities [K]; frames must share a size."""
        if not frames:
            return []
        height, width = frames[0].shape[:2]
        scale = min(1.0, self.detect_width / width)
        if scale < 1.0:
            size = (int(round(width * scale)), int(round(height * scale)))
            small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
        else:
            small = frames
        min_size = max(12, int(round(self.min_face_size * scale)))
        model = _mtcnn(self.device, min_size, self.threshold)
        with _LOCK:  # MTCNN keeps no per-call state, but torch threads are better used by one batch
            boxes, probs = model.detect(np.stack(small))
        results = []
        for frame_boxes, frame_probs in zip(boxes, probs):
            if frame_boxes is None:
                results.append((np.zeros((0, 4)), np.zeros(0)))
                continue
            frame_boxes = np.asarray(frame_boxes, dtype=np.float64).reshape(-1, 4) / scale
            frame_probs = np.asarray(frame_probs, dtype=np.float64).reshape(-1)
            keep = frame_probs >= self.threshold
            frame_boxes[:, [0, 2]] = frame_boxes[:, [0, 2]].clip(0, width)
            frame_boxes[:, [1, 3]] = frame_boxes[:, [1, 3]].clip(0, height)
            results.append((frame_boxes[keep], frame_probs[keep]))
        return results
