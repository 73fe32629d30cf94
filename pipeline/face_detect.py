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
        if min(small[0].shape[:2]) < min_size:
            # no face of the minimum size fits in the frame (MTCNN's image pyramid would be empty)
            return [(np.zeros((0, 4)), np.zeros(0)) for _ in frames]
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


class LandmarkModel:
    """MTCNN's last stage (O-Net) on given face boxes: five landmarks and a face probability per box.

    The detector runs on a few sampled frames; O-Net alone is cheap enough for every frame of a
    track (one 48 x 48 patch per face), so mouth crops can follow the face at the video's own rate.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def __call__(self, patches: np.ndarray, squared_boxes: np.ndarray, batch: int = 512
                 ) -> tuple[np.ndarray, np.ndarray]:
        """`patches` [N, 48, 48, 3] uint8 RGB cut from `squared_boxes` [N, 4] -> landmarks [N, 5, 2], probs [N]."""
        import torch

        if not len(patches):
            return np.zeros((0, 5, 2)), np.zeros(0)
        onet = _mtcnn(self.device, 20, 0.9).onet
        points, probs = [], []
        with torch.no_grad():
            for start in range(0, len(patches), batch):
                x = torch.as_tensor(np.ascontiguousarray(patches[start:start + batch])).permute(0, 3, 1, 2).float()
                _, landmarks, face = onet(((x - 127.5) * 0.0078125).to(self.device))
                points.append(landmarks.cpu().numpy())
                probs.append(face[:, 1].cpu().numpy())
        relative = np.concatenate(points).astype(np.float64)
        boxes = np.asarray(squared_boxes, dtype=np.float64)
        side = (boxes[:, 2] - boxes[:, 0])[:, None]
        xs = boxes[:, :1] + side * relative[:, :5]
        ys = boxes[:, 1:2] + side * relative[:, 5:]
        return np.stack([xs, ys], axis=2), np.concatenate(probs).astype(np.float64)
