"""Scoring active-speaker choices against a corpus's ground truth, where the corpus has one (the demo).

The demo generator writes `true_speaker` and `true_boxes` into the manifest
(`schema.MANIFEST_TRUTH_COLUMNS`); the `speaker` stage's summary and the report both read the
agreement from here. Corpora without those columns get an empty result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline import paths
from pipeline.tables import read_frame


def truth_agreement(choices: pd.DataFrame,
                    faces_by_utt: Mapping[str, pd.DataFrame] | None = None) -> dict[str, Any]:
    """Share of multi-face utterances whose chosen track is the generator's true speaker (demo).

    `faces_by_utt` (the faces table grouped by utterance) saves a second read when the caller has it.
    """
    from pipeline.manifest import read_manifest

    if not paths.MANIFEST.exists():
        return {}
    manifest = read_manifest().frame
    if "true_speaker" not in manifest.columns or choices.empty:
        return {}
    if faces_by_utt is None:
        faces_by_utt = dict(tuple(read_frame(paths.FACES).groupby("utt_id", sort=False)))
    truth = manifest.set_index("utt_id")
    hits = total = 0
    for row in choices.itertuples(index=False):
        utt_faces = faces_by_utt.get(row.utt_id)
        if utt_faces is None or utt_faces.track_id.nunique() < 2 or row.track_id < 0 or row.utt_id not in truth.index:
            continue
        boxes = json.loads(truth.at[row.utt_id, "true_boxes"])
        centres = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in boxes])
        chosen = utt_faces[utt_faces.track_id == row.track_id][["x1", "y1", "x2", "y2"]].to_numpy().mean(axis=0)
        seat = int(np.argmin(np.linalg.norm(centres - [(chosen[0] + chosen[2]) / 2, (chosen[1] + chosen[3]) / 2],
                                            axis=1)))
        hits += int(seat == int(truth.at[row.utt_id, "true_speaker"]))
        total += 1
    return {"multi_face_utterances": total, "truth_agreement": round(hits / total, 4) if total else None}
