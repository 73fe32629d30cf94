"""Mouth crops that stay on the mouth: five-point landmarks at every frame, a stabilised similarity warp.

Face boxes come from detector samples a few times a second and are interpolated in between; on a
moving head the interpolated box slides over the face, so a crop taken from it shows the mouth
drifting, growing and shrinking, which looks like articulation to a lip-sync network. Here every
frame of a track gets MTCNN's five landmarks (eyes, nose tip, mouth corners) from its O-Net run on
the track's box, the landmarks are smoothed over a few frames (the head moves slowly, the jitter of
the landmark regressor does not), and a similarity transform fitted to all five points maps the
lower face onto a fixed crop. Position, scale and in-plane rotation of the head are removed; the
mouth's own movement is left.

The collector keeps, per frame, only an O-Net input patch and a small grey region around the face
(`FaceRegion`), so memory stays small however large the frames are; `aligned_mouths` turns a
track's regions into crops once its last frame has been seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Five reference points (left eye, right eye, nose tip, left and right mouth corner) of a frontal
# face in a 112 x 112 frame: the usual face-alignment template.
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]])
MOUTH_REGION = (24.0, 70.0, 88.0, 112.0)  # x1, y1, x2, y2 in template space: nose base to chin
REGION_SCALE = 1.6  # the grey region kept per frame: this many box sides around the box centre
REGION_SIDE = 128  # ... resampled to this many pixels
ONET_SIZE = 48
MIN_LANDMARK_PROB = 0.5  # O-Net face probability below which a frame's landmarks are not trusted


def square(box: np.ndarray) -> np.ndarray:
    """The square of side max(w, h) around a box's centre (MTCNN's `rerec`)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def _box_warp(box: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine mapping the square `box` (frame pixels) onto a size x size image."""
    x1, y1, x2, _ = box
    scale = size / max(x2 - x1, 1e-6)
    return np.array([[scale, 0.0, -x1 * scale], [0.0, scale, -y1 * scale]])


def _resample(image: np.ndarray, box: np.ndarray, size: int, border: int) -> np.ndarray:
    """The square `box` of `image` at size x size: cut at native resolution (padded past the frame), then
    area-resampled, so a large face is averaged down rather than aliased."""
    native = max(size, int(np.ceil(box[2] - box[0])))
    cut = cv2.warpAffine(image, _box_warp(box, native), (native, native), flags=cv2.INTER_LINEAR,
                         borderMode=border, borderValue=0)
    return cut if native == size else cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA)


def onet_patch(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """O-Net's input for a face box: the squared box at 48 x 48 RGB (zeros outside the frame, as MTCNN pads)."""
    squared = square(box)
    return _resample(image, squared, ONET_SIZE, cv2.BORDER_CONSTANT), squared


@dataclass
class FaceRegion:
    """A grey square around a face at a fixed size, and the affine that maps frame pixels into it."""

    grey: np.ndarray  # [REGION_SIDE, REGION_SIDE] uint8
    warp: np.ndarray  # 2x3, frame pixels -> region pixels

    @classmethod
    def cut(cls, grey_frame: np.ndarray, box: np.ndarray) -> FaceRegion:
        x1, y1, x2, y2 = square(box)
        half = (x2 - x1) * REGION_SCALE / 2
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        around = np.array([cx - half, cy - half, cx + half, cy + half])
        return cls(_resample(grey_frame, around, REGION_SIDE, cv2.BORDER_REPLICATE), _box_warp(around, REGION_SIDE))


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2x3) taking points `src` onto `dst` (Umeyama, no reflection)."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1.0
    rotation = u @ d @ vt
    variance = (src_c ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(s) @ d) / max(variance, 1e-12))
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def box_landmarks(box: np.ndarray) -> np.ndarray:
    """The template's five points placed in a face box: the fallback where no landmark can be trusted."""
    x1, y1, x2, y2 = square(box)
    return np.array([x1, y1]) + TEMPLATE / 112.0 * (x2 - x1)


def steady_landmarks(landmarks: np.ndarray, trusted: np.ndarray, boxes: np.ndarray, window: int) -> np.ndarray:
    """Fill untrusted frames by interpolation (the box template where none is trusted), then smooth in time.

    `landmarks` [T, 5, 2], `trusted` [T] bool, `boxes` [T, 4]; `window` frames of centred moving average.
    """
    count = len(landmarks)
    if not trusted.any():
        filled = np.stack([box_landmarks(b) for b in boxes])
    else:
        flat = landmarks.reshape(count, 10)
        index = np.arange(count)
        filled = np.stack([np.interp(index, index[trusted], flat[trusted, k]) for k in range(10)], axis=1)
        filled = filled.reshape(count, 5, 2)
    if window <= 1 or count < 2:
        return filled
    half = window // 2
    padded = np.concatenate([np.repeat(filled[:1], half, 0), filled, np.repeat(filled[-1:], half, 0)])
    kernel = np.ones(window) / window
    flat = padded.reshape(len(padded), 10)
    smoothed = np.stack([np.convolve(flat[:, k], kernel, mode="valid") for k in range(10)], axis=1)
    return smoothed.reshape(count, 5, 2)


def mouth_warp(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """2x3 affine taking frame pixels to the mouth crop, fitted to one frame's five landmarks."""
    x1, y1, x2, y2 = MOUTH_REGION
    target = (TEMPLATE - [x1, y1]) * [width / (x2 - x1), height / (y2 - y1)]
    return similarity(np.asarray(landmarks, dtype=np.float64), target)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """outer o inner for 2x3 affines."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]


def aligned_mouths(regions: list[FaceRegion], landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """[T, height, width] uint8 grey mouth crops from each frame's region and (steadied) landmarks."""
    crops = []
    for region, points in zip(regions, landmarks):
        to_crop = _compose(mouth_warp(points, height, width), cv2.invertAffineTransform(region.warp))
        crops.append(cv2.warpAffine(region.grey, to_crop, (width, height), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE))
    return np.stack(crops) if crops else np.zeros((0, height, width), np.uint8)
