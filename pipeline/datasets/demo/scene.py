"""A static scene of seated people, and per-frame compositing of their animated faces.

The background (wall, torsos, a table) is drawn once per dialogue; each frame only re-composites
the face squares, which keeps rendering fast enough for a whole corpus on two cores.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.datasets.demo.faces import AnimatedFace, feather_mask
from pipeline.datasets.demo.plan import Person

BOB_PIXELS = 1  # heads bob by at most this much, so detections stay near the recorded boxes
_CACHE_SIZE = 256  # rendered faces kept per seat (quantised opening x expression intensity)
_OPEN_LEVELS = 32
_INTENSITY_LEVELS = 8


@dataclass(frozen=True)
class FaceState:
    expression: str = "neutral"
    intensity: float = 0.0
    opening: float = 0.0
    bob: int = 0


class Seat:
    """One person's place on screen: the photo square's top-left corner and its animated face."""

    def __init__(self, person: Person, x: int, y: int) -> None:
        self.person, self.x, self.y, self.size = person, x, y, person.size
        self.face = AnimatedFace(person.face, person.size, person.tone)
        self.alpha = feather_mask(person.size)
        self._cache: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()

    @property
    def box(self) -> list[int]:
        """[x1, y1, x2, y2] of the photo square in video pixels (at rest, without the bob)."""
        return [self.x, self.y, self.x + self.size, self.y + self.size]

    def render(self, state: FaceState) -> np.ndarray:
        iq = int(round(float(np.clip(state.intensity, 0, 1)) * _INTENSITY_LEVELS))
        oq = int(round(float(np.clip(state.opening, 0, 1)) * _OPEN_LEVELS))
        key = (state.expression if iq else "neutral", iq, oq)
        face = self._cache.get(key)
        if face is None:
            face = self.face.render(key[0], iq / _INTENSITY_LEVELS, oq / _OPEN_LEVELS) * self.alpha
            self._cache[key] = face
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return face


class Scene:
    """The people of one dialogue, seated left to right in front of a plain, mildly textured wall."""

    def __init__(self, people: Sequence[Person], width: int, height: int, rng: np.random.Generator) -> None:
        self.width, self.height = width, height
        self.seats: list[Seat] = []
        n = len(people)
        for i, person in enumerate(people):
            cx = width * (i + 0.5) / n + rng.uniform(-0.03, 0.03) * width / n
            cy = height * (0.42 + rng.uniform(-0.03, 0.03))
            x = int(np.clip(round(cx - person.size / 2), 0, width - person.size))
            y = int(np.clip(round(cy - person.size / 2), BOB_PIXELS, height - person.size - BOB_PIXELS))
            self.seats.append(Seat(person, x, y))
        self.background = self._background(rng)
        back = self.background.astype(np.float32) / 255.0
        # Background under each face square times (1 - alpha), for every bob offset.
        self._under: dict[tuple[int, int], np.ndarray] = {}
        for s, seat in enumerate(self.seats):
            for bob in range(-BOB_PIXELS, BOB_PIXELS + 1):
                region = back[seat.y + bob : seat.y + bob + seat.size, seat.x : seat.x + seat.size]
                self._under[(s, bob)] = region * (1.0 - seat.alpha)

    @property
    def boxes(self) -> list[list[int]]:
        return [seat.box for seat in self.seats]

    def frame(self, states: Sequence[FaceState]) -> np.ndarray:
        """One RGB uint8 frame with every seat's face in its state."""
        out = self.background.copy()
        for s, (seat, state) in enumerate(zip(self.seats, states)):
            bob = int(np.clip(state.bob, -BOB_PIXELS, BOB_PIXELS))
            patch = seat.render(state) + self._under[(s, bob)]
            y = seat.y + bob
            out[y : y + seat.size, seat.x : seat.x + seat.size] = (patch * 255.0 + 0.5).astype(np.uint8)
        return out

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.height, self.width
        wall = rng.uniform(0.35, 0.8, size=3)
        wall = 0.5 * wall + 0.5 * wall.mean()  # muted colours
        shade = np.linspace(1.05, 0.85, h, dtype=np.float32)[:, None, None]
        cells = (max(2, h // 24), max(2, w // 24))
        grain = rng.normal(0.0, 1.0, size=(*cells, 1)) + 0.3 * rng.normal(0.0, 1.0, size=(*cells, 3))
        texture = cv2.resize(grain.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC) * 0.02
        image = np.clip(wall[None, None].astype(np.float32) * shade + texture, 0.0, 1.0)
        canvas = (image * 255.0).astype(np.uint8)
        for seat in self.seats:
            s = seat.size
            centre = (seat.x + s // 2, seat.y + int(1.55 * s))
            cv2.ellipse(canvas, centre, (int(0.78 * s), int(0.7 * s)), 0, 0, 360, seat.person.shirt, -1, cv2.LINE_AA)
            neck = np.array(seat.person.tone) * 150.0
            x0, x1 = seat.x + int(0.36 * s), seat.x + int(0.64 * s)
            cv2.rectangle(canvas, (x0, seat.y + int(0.7 * s)), (x1, seat.y + int(0.98 * s)), neck.tolist(), -1)
        table_top = int(h * 0.86)
        if table_top < h:
            wood = (rng.uniform(90, 140), rng.uniform(60, 90), rng.uniform(35, 60))
            cv2.rectangle(canvas, (0, table_top), (w, h), wood, -1)
            cv2.line(canvas, (0, table_top), (w, table_top), tuple(0.7 * c for c in wood), 2, cv2.LINE_AA)
        return canvas
