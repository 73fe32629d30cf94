"""Who speaks which utterance, without names: the chosen face tracks of a recording, linked by place.

Face tracks live inside one utterance, so linking them across utterances needs a rule. With no face
recogniser available offline, the rule is where the face sits: in a conversation filmed from a fixed
camera each person keeps their seat, so chosen faces whose centres lie within `tolerance` face widths
of each other are one person (`S1`, `S2`, ... in order of first appearance). A moving camera or
people changing seats defeats it; a transcript's speaker column, when given, is used instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def link_speakers(utterances: pd.DataFrame, faces: pd.DataFrame, unknown: str, tolerance: float = 0.6
                  ) -> list[str]:
    """A speaker name per row of `utterances` (columns utt_id, track_id); `unknown` where no face was chosen."""
    centres: list[tuple[float, float, float]] = []  # running mean centre x, y and face width per person
    counts: list[int] = []
    names = []
    boxes = faces.assign(cx=(faces.x1 + faces.x2) / 2, cy=(faces.y1 + faces.y2) / 2, w=faces.x2 - faces.x1)
    mean_box = boxes.groupby(["utt_id", "track_id"])[["cx", "cy", "w"]].mean()
    for utt_id, track in zip(utterances.utt_id, utterances.track_id):
        if pd.isna(track) or int(track) < 0 or (utt_id, int(track)) not in mean_box.index:
            names.append(unknown)
            continue
        cx, cy, width = mean_box.loc[(utt_id, int(track))]
        person = _nearest(centres, cx, cy, width, tolerance)
        if person is None:
            centres.append((cx, cy, width))
            counts.append(1)
            person = len(centres) - 1
        else:
            n = counts[person]
            old = np.array(centres[person])
            centres[person] = tuple((old * n + np.array([cx, cy, width])) / (n + 1))
            counts[person] = n + 1
        names.append(f"S{person + 1}")
    return names


def _nearest(centres: list[tuple[float, float, float]], cx: float, cy: float, width: float, tolerance: float
             ) -> int | None:
    best, best_distance = None, np.inf
    for index, (px, py, pw) in enumerate(centres):
        distance = np.hypot(cx - px, cy - py) / max(1.0, (pw + width) / 2)
        if distance < tolerance and distance < best_distance:
            best, best_distance = index, distance
    return best
