"""Animated faces for the demo corpus: real LFW photos whose mouth, brows and tint can move.

The photos are the first 100 25x25 grey faces of `skimage.data.lfw_subset()`, upscaled with cubic
interpolation. The pool keeps only faces that MTCNN detects at p >= 0.99 on a plain background at
110-132 px and still finds once with every expression and a wide-open mouth. `LANDMARKS` holds
MTCNN's five landmarks for each, as fractions of the photo side, so a mouth can be drawn where the
photo's mouth is and brows moved where the brows are.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# index -> (left eye x, y, right eye x, y, nose x, y, left mouth corner x, y, right mouth corner x, y)
LANDMARKS: dict[int, tuple[float, ...]] = {
    0: (0.34, 0.36, 0.66, 0.35, 0.54, 0.56, 0.38, 0.77, 0.63, 0.77),
    1: (0.19, 0.34, 0.55, 0.34, 0.31, 0.57, 0.22, 0.73, 0.56, 0.72),
    2: (0.21, 0.35, 0.54, 0.30, 0.34, 0.55, 0.29, 0.74, 0.58, 0.70),
    3: (0.28, 0.38, 0.63, 0.37, 0.47, 0.57, 0.31, 0.74, 0.61, 0.74),
    6: (0.21, 0.39, 0.59, 0.39, 0.39, 0.62, 0.26, 0.78, 0.56, 0.78),
    8: (0.28, 0.38, 0.62, 0.37, 0.44, 0.55, 0.30, 0.71, 0.62, 0.71),
    11: (0.34, 0.39, 0.69, 0.39, 0.53, 0.61, 0.37, 0.74, 0.67, 0.74),
    12: (0.27, 0.40, 0.60, 0.40, 0.43, 0.55, 0.30, 0.75, 0.56, 0.75),
    15: (0.32, 0.36, 0.65, 0.34, 0.53, 0.58, 0.37, 0.71, 0.65, 0.69),
    16: (0.27, 0.23, 0.62, 0.24, 0.44, 0.38, 0.29, 0.59, 0.56, 0.61),
    17: (0.35, 0.35, 0.65, 0.35, 0.50, 0.51, 0.38, 0.67, 0.63, 0.67),
    18: (0.24, 0.36, 0.63, 0.36, 0.37, 0.57, 0.25, 0.71, 0.57, 0.70),
    19: (0.26, 0.30, 0.63, 0.30, 0.46, 0.47, 0.30, 0.68, 0.61, 0.68),
    20: (0.20, 0.35, 0.58, 0.33, 0.33, 0.51, 0.25, 0.73, 0.56, 0.72),
    22: (0.27, 0.39, 0.61, 0.36, 0.42, 0.60, 0.32, 0.74, 0.64, 0.72),
    24: (0.30, 0.36, 0.62, 0.36, 0.49, 0.55, 0.32, 0.74, 0.61, 0.73),
    25: (0.33, 0.35, 0.68, 0.36, 0.54, 0.51, 0.35, 0.71, 0.64, 0.73),
    26: (0.23, 0.38, 0.59, 0.34, 0.43, 0.54, 0.30, 0.76, 0.60, 0.73),
    27: (0.24, 0.39, 0.61, 0.35, 0.42, 0.54, 0.29, 0.71, 0.64, 0.68),
    29: (0.29, 0.36, 0.67, 0.35, 0.51, 0.53, 0.36, 0.81, 0.63, 0.81),
    31: (0.23, 0.38, 0.58, 0.33, 0.40, 0.56, 0.30, 0.73, 0.64, 0.68),
    33: (0.23, 0.37, 0.57, 0.37, 0.37, 0.61, 0.27, 0.75, 0.55, 0.75),
    34: (0.27, 0.37, 0.59, 0.36, 0.43, 0.56, 0.32, 0.73, 0.57, 0.72),
    35: (0.22, 0.34, 0.59, 0.33, 0.34, 0.53, 0.24, 0.76, 0.53, 0.77),
    36: (0.30, 0.36, 0.64, 0.37, 0.46, 0.60, 0.29, 0.70, 0.61, 0.72),
    37: (0.29, 0.41, 0.62, 0.38, 0.47, 0.52, 0.32, 0.70, 0.65, 0.67),
    38: (0.33, 0.36, 0.67, 0.35, 0.55, 0.55, 0.33, 0.71, 0.66, 0.70),
    39: (0.24, 0.37, 0.59, 0.34, 0.41, 0.49, 0.30, 0.74, 0.56, 0.72),
    41: (0.27, 0.35, 0.59, 0.34, 0.41, 0.55, 0.29, 0.71, 0.59, 0.70),
    42: (0.24, 0.34, 0.59, 0.29, 0.37, 0.52, 0.30, 0.76, 0.57, 0.74),
    43: (0.26, 0.38, 0.58, 0.38, 0.39, 0.58, 0.28, 0.70, 0.57, 0.71),
    44: (0.31, 0.33, 0.66, 0.33, 0.54, 0.49, 0.38, 0.74, 0.66, 0.74),
    45: (0.26, 0.35, 0.61, 0.33, 0.44, 0.55, 0.28, 0.71, 0.60, 0.70),
    46: (0.25, 0.39, 0.59, 0.35, 0.41, 0.59, 0.32, 0.76, 0.59, 0.73),
    49: (0.27, 0.36, 0.61, 0.32, 0.43, 0.55, 0.35, 0.78, 0.58, 0.76),
    51: (0.23, 0.36, 0.57, 0.33, 0.36, 0.52, 0.30, 0.78, 0.55, 0.77),
    52: (0.24, 0.35, 0.62, 0.34, 0.40, 0.52, 0.25, 0.70, 0.63, 0.68),
    53: (0.34, 0.29, 0.68, 0.33, 0.57, 0.44, 0.34, 0.69, 0.64, 0.72),
    54: (0.24, 0.35, 0.61, 0.31, 0.43, 0.58, 0.33, 0.77, 0.58, 0.75),
    55: (0.27, 0.31, 0.65, 0.30, 0.46, 0.57, 0.33, 0.74, 0.60, 0.75),
    58: (0.38, 0.37, 0.72, 0.36, 0.61, 0.56, 0.43, 0.75, 0.69, 0.74),
    60: (0.24, 0.35, 0.63, 0.34, 0.43, 0.55, 0.29, 0.78, 0.59, 0.77),
    61: (0.26, 0.38, 0.62, 0.34, 0.46, 0.56, 0.32, 0.74, 0.64, 0.71),
    62: (0.26, 0.37, 0.60, 0.36, 0.41, 0.60, 0.31, 0.74, 0.57, 0.73),
    63: (0.18, 0.32, 0.55, 0.28, 0.33, 0.54, 0.24, 0.73, 0.57, 0.70),
    65: (0.20, 0.37, 0.55, 0.34, 0.35, 0.54, 0.25, 0.76, 0.55, 0.75),
    66: (0.26, 0.36, 0.62, 0.35, 0.41, 0.55, 0.31, 0.75, 0.56, 0.75),
    67: (0.34, 0.39, 0.63, 0.43, 0.46, 0.58, 0.31, 0.70, 0.55, 0.74),
    69: (0.30, 0.36, 0.65, 0.35, 0.47, 0.56, 0.28, 0.70, 0.65, 0.69),
    70: (0.33, 0.33, 0.63, 0.35, 0.44, 0.52, 0.32, 0.65, 0.58, 0.68),
    72: (0.26, 0.34, 0.63, 0.32, 0.44, 0.57, 0.31, 0.74, 0.61, 0.73),
    73: (0.25, 0.37, 0.59, 0.35, 0.40, 0.57, 0.30, 0.75, 0.58, 0.73),
    75: (0.21, 0.34, 0.51, 0.38, 0.23, 0.56, 0.19, 0.72, 0.45, 0.76),
    77: (0.32, 0.37, 0.67, 0.35, 0.54, 0.57, 0.39, 0.77, 0.65, 0.76),
    79: (0.27, 0.43, 0.60, 0.41, 0.43, 0.61, 0.30, 0.77, 0.61, 0.76),
    80: (0.26, 0.38, 0.63, 0.36, 0.46, 0.57, 0.32, 0.76, 0.60, 0.75),
    81: (0.33, 0.35, 0.66, 0.36, 0.52, 0.55, 0.32, 0.68, 0.65, 0.68),
    83: (0.32, 0.34, 0.80, 0.38, 0.61, 0.55, 0.35, 0.85, 0.76, 0.89),
    84: (0.29, 0.40, 0.61, 0.36, 0.49, 0.58, 0.35, 0.75, 0.62, 0.71),
    85: (0.23, 0.36, 0.60, 0.33, 0.42, 0.53, 0.28, 0.71, 0.64, 0.69),
    86: (0.27, 0.34, 0.64, 0.34, 0.45, 0.61, 0.29, 0.71, 0.62, 0.72),
    87: (0.34, 0.38, 0.65, 0.35, 0.55, 0.57, 0.39, 0.75, 0.65, 0.73),
    88: (0.29, 0.36, 0.65, 0.35, 0.48, 0.54, 0.33, 0.73, 0.64, 0.73),
    90: (0.32, 0.36, 0.65, 0.34, 0.54, 0.53, 0.36, 0.75, 0.64, 0.74),
    92: (0.27, 0.39, 0.61, 0.34, 0.47, 0.54, 0.36, 0.75, 0.63, 0.72),
    93: (0.27, 0.36, 0.64, 0.34, 0.48, 0.56, 0.32, 0.72, 0.64, 0.71),
    94: (0.28, 0.31, 0.66, 0.31, 0.43, 0.57, 0.27, 0.68, 0.67, 0.69),
    95: (0.27, 0.34, 0.65, 0.33, 0.46, 0.55, 0.31, 0.75, 0.61, 0.74),
    97: (0.25, 0.35, 0.58, 0.35, 0.39, 0.58, 0.28, 0.72, 0.55, 0.72),
    98: (0.31, 0.35, 0.68, 0.34, 0.52, 0.59, 0.34, 0.75, 0.63, 0.75),
    99: (0.26, 0.34, 0.63, 0.33, 0.35, 0.54, 0.31, 0.77, 0.59, 0.76),
}
FACE_POOL = tuple(LANDMARKS)


@dataclass(frozen=True)
class Expression:
    """A facial configuration; displacements are fractions of the face side."""

    corners: float = 0.0  # mouth corners up (+) or down (-)
    brows: float = 0.0  # brows up (+) or down (-)
    upper_lip: float = 0.0  # upper lip raised (+)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB gain on the skin
    brightness: float = 0.0  # added to the skin
    mouth_width: float = 1.0  # speaking mouth width relative to the corners' distance
    mouth_open: float = 1.0  # speaking mouth height gain


EXPRESSIONS: dict[str, Expression] = {
    "neutral": Expression(),
    "joy": Expression(corners=0.06, brows=0.015, tint=(1.12, 1.06, 0.9), brightness=0.1, mouth_width=1.25),
    "sadness": Expression(corners=-0.05, brows=0.025, tint=(0.84, 0.93, 1.22), brightness=-0.06, mouth_open=0.7),
    "anger": Expression(corners=-0.02, brows=-0.06, tint=(1.32, 0.84, 0.8), mouth_width=0.9),
    "surprise": Expression(brows=0.055, tint=(1.03, 1.03, 1.03), brightness=0.03, mouth_width=0.75, mouth_open=1.5),
    "fear": Expression(corners=-0.02, brows=0.04, tint=(0.93, 0.97, 1.05), brightness=0.04, mouth_width=1.1),
    "disgust": Expression(corners=-0.025, upper_lip=0.035, brows=-0.02, tint=(0.95, 1.1, 0.88)),
}

MOUTH_COLOUR = np.array([0.2, 0.06, 0.07], dtype=np.float32)


@lru_cache(maxsize=1)
def _photos() -> np.ndarray:
    from skimage.data import lfw_subset

    return lfw_subset()[:100].astype(np.float32)


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2) / 2.0)


class AnimatedFace:
    """One person's face at a fixed size; `render` returns the photo with an expression and a mouth."""

    def __init__(self, index: int, size: int, tone: tuple[float, float, float]) -> None:
        if index not in LANDMARKS:
            raise ValueError(f"face {index} is not in the detector-checked pool")
        self.index, self.size = index, size
        grey = cv2.resize(_photos()[index], (size, size), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)
        self.base = (grey[..., None] * np.asarray(tone, dtype=np.float32)[None, None]).clip(0.0, 1.0)
        pts = np.asarray(LANDMARKS[index], dtype=np.float32).reshape(5, 2) * size
        self.eyes, self.nose, self.corners = pts[:2], pts[2], pts[3:]
        self.mouth = self.corners.mean(axis=0)
        self.mouth_half_width = float(np.linalg.norm(self.corners[1] - self.corners[0])) / 2.0
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        self.grid_x, self.grid_y = x, y
        s = float(size)
        # Displacement fields (pixels per unit of Expression), positive = content moves up.
        self.f_corners = sum(_gauss(x, y, cx, cy, 0.07 * s, 0.07 * s) for cx, cy in self.corners) * s
        self.f_brows = sum(_gauss(x, y, ex, ey - 0.1 * s, 0.1 * s, 0.07 * s) for ex, ey in self.eyes) * s
        mx, my = self.mouth
        self.f_lip = _gauss(x, y, mx, my - 0.05 * s, 0.12 * s, 0.05 * s) * s
        below = np.clip((y - my + 0.02 * s) / (0.08 * s), 0.0, 1.0)
        self.f_jaw = -(below * np.exp(-(((x - mx) / (0.3 * s)) ** 2))) * s
        skin = _gauss(x, y, 0.5 * s, 0.55 * s, 0.3 * s, 0.38 * s)
        self.skin = np.clip(skin * 1.6, 0.0, 1.0)[..., None].astype(np.float32)

    def render(self, expression: str = "neutral", intensity: float = 0.0, opening: float = 0.0) -> np.ndarray:
        """The face (float32 RGB in [0, 1]) with `expression` at `intensity` and the mouth `opening` (0-1)."""
        e = EXPRESSIONS[expression]
        k = float(intensity)
        field = (e.corners * self.f_corners + e.brows * self.f_brows + e.upper_lip * self.f_lip) * k
        field = field + (0.035 * float(opening)) * self.f_jaw
        face = self.base
        if np.abs(field).max() > 0.05:
            map_y = (self.grid_y + field).astype(np.float32)
            face = cv2.remap(face, self.grid_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if k > 0 and (e.tint != (1.0, 1.0, 1.0) or e.brightness):
            gain = 1.0 + (np.asarray(e.tint, dtype=np.float32) - 1.0) * k
            face = face * (1.0 + self.skin * (gain - 1.0)) + self.skin * (e.brightness * k)
        if opening > 0:
            face = self._draw_mouth(face, e, float(opening), k)
        return np.clip(face, 0.0, 1.0)

    def _draw_mouth(self, face: np.ndarray, e: Expression, opening: float, k: float) -> np.ndarray:
        width_gain = 1.0 + (e.mouth_width - 1.0) * k
        open_gain = 1.0 + (e.mouth_open - 1.0) * k
        rx = self.mouth_half_width * 0.85 * width_gain * (0.8 + 0.2 * opening)
        ry = opening * 0.07 * self.size * open_gain
        if ry < 0.3:
            return face
        mx, my = self.mouth
        my = my + 0.3 * ry  # the jaw drops, the upper lip stays
        x0, x1 = max(int(mx - rx - 2), 0), min(int(mx + rx + 3), self.size)
        y0, y1 = max(int(my - ry - 2), 0), min(int(my + ry + 3), self.size)
        gx = self.grid_x[y0:y1, x0:x1]
        gy = self.grid_y[y0:y1, x0:x1]
        r = np.sqrt(((gx - mx) / rx) ** 2 + ((gy - my) / ry) ** 2)
        # A soft edge one pixel wide, so sub-pixel changes of the opening still change the image.
        alpha = np.clip((1.0 - r) * min(rx, ry) + 0.5, 0.0, 1.0)[..., None]
        face = face.copy()
        face[y0:y1, x0:x1] = face[y0:y1, x0:x1] * (1.0 - alpha) + MOUTH_COLOUR * alpha
        return face


def feather_mask(size: int) -> np.ndarray:
    """Alpha for pasting a photo: a rounded square with soft edges (no hard photo border)."""
    s = float(size)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dx = np.abs(x - (s - 1) / 2) / (s / 2)
    dy = np.abs(y - (s - 1) / 2) / (s / 2)
    r = (dx**6 + dy**6) ** (1 / 6)  # a superellipse: square-ish with rounded corners
    return np.clip((1.0 - r) / 0.08, 0.0, 1.0)[..., None].astype(np.float32)
