"""What `merc predict` leaves for a person to look at: a table, a timeline per speaker, an annotated video.

- `predictions.csv` and `predictions.json`: one row per utterance (start, end, speaker, the chosen
  face track and the chooser's confidence, text, emotion, a probability per class); the JSON adds how
  they were made (model, seeds, where the segments came from, the real-time factor).
- `timeline_<speaker>.png`: each speaker's emotion probabilities over the recording, the predicted
  emotion shaded under each utterance.
- `annotated.mp4`: the recording with every detected face boxed, the active speaker's box coloured
  and labelled with the speaker and the predicted emotion (H.264 with the original sound when the
  `ffmpeg` command is there, else MPEG-4 without sound).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import paths
from pipeline.media import iter_frames, probe
from pipeline.tables import read_frame

COLUMNS = ("utt_id", "start", "end", "speaker", "track_id", "speaker_confidence", "text", "emotion")
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (128, 128, 0))  # RGB, one per class


def write_table(frame: pd.DataFrame, labels: list[str], info: dict[str, Any], out: Path) -> list[Path]:
    columns = [*COLUMNS, *(f"p_{label}" for label in labels)]
    table = frame.reindex(columns=columns)
    csv_path, json_path = out / "predictions.csv", out / "predictions.json"
    table.to_csv(csv_path, index=False)
    records = json.loads(table.to_json(orient="records"))
    json_path.write_text(json.dumps({"info": info, "utterances": records}, indent=2))
    return [csv_path, json_path]


def write_timelines(frame: pd.DataFrame, labels: list[str], duration: float | None, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    end = duration or (float(frame.end.max()) if len(frame) else 1.0)
    for speaker, rows in frame.groupby("speaker", sort=True):
        figure, axis = plt.subplots(figsize=(10, 3))
        middle = ((rows.start + rows.end) / 2).to_numpy()
        for index, label in enumerate(labels):
            colour = np.array(PALETTE[index % len(PALETTE)]) / 255
            axis.plot(middle, rows[f"p_{label}"], marker="o", color=colour, label=label)
            for row in rows[rows.emotion == label].itertuples():
                axis.axvspan(row.start, row.end, color=colour, alpha=0.15, lw=0)
        axis.set(xlim=(0, end), ylim=(0, 1), xlabel="seconds", ylabel="probability",
                 title=f"speaker {speaker}: emotion over time (shaded: predicted)")
        axis.legend(loc="upper right", fontsize="small", ncol=min(len(labels), 4))
        figure.tight_layout()
        path = out / f"timeline_{_safe(str(speaker))}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def write_annotated_video(video: Path, frame: pd.DataFrame, labels: list[str], workspace: Path, out: Path
                          ) -> Path | None:
    """The recording with boxes and labels; None when it has no picture."""
    import cv2

    info = probe(video)
    if not info.has_video or not info.frame_count:
        return None
    faces = read_frame(workspace / paths.FACES) if (workspace / paths.FACES).exists() else pd.DataFrame(
        columns=["utt_id", "track_id", "frame", "x1", "y1", "x2", "y2"])
    spans = [(int(round(r.start * info.fps)), int(round(r.end * info.fps)), r) for r in frame.itertuples()]
    boxes = {u: rows.sort_values("frame") for u, rows in faces.groupby("utt_id")}
    silent = out / "annotated.silent.mp4"
    writer = cv2.VideoWriter(str(silent), cv2.VideoWriter_fourcc(*"mp4v"), info.fps, (info.width, info.height))
    try:
        for index, image in iter_frames(video, range(info.frame_count), info.fps):
            canvas = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            utterance = next((r for start, stop, r in spans if start <= index < stop), None)
            if utterance is not None:
                _draw(canvas, utterance, boxes.get(utterance.utt_id), index, labels)
            writer.write(canvas)
    finally:
        writer.release()
    target = out / "annotated.mp4"
    if shutil.which("ffmpeg") is None:
        silent.replace(target)
        return target
    command = ["ffmpeg", "-y", "-loglevel", "error", "-i", str(silent), "-i", str(video), "-map", "0:v",
               "-map", "1:a?", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(target)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        silent.replace(target)
    else:
        silent.unlink()
    return target


def _draw(canvas: np.ndarray, utterance: Any, rows: pd.DataFrame | None, index: int, labels: list[str]) -> None:
    import cv2

    if rows is None or rows.empty:
        return
    sampled = rows[rows.frame <= index]
    latest = sampled[sampled.frame == sampled.frame.max()] if len(sampled) else rows[rows.frame == rows.frame.min()]
    chosen = -1 if pd.isna(utterance.track_id) else int(utterance.track_id)
    colour = PALETTE[labels.index(utterance.emotion) % len(PALETTE)] if utterance.emotion in labels else (255,) * 3
    for box in latest.itertuples():
        corner, far = (int(box.x1), int(box.y1)), (int(box.x2), int(box.y2))
        if int(box.track_id) == chosen:
            cv2.rectangle(canvas, corner, far, colour[::-1], 3)
            text = f"{utterance.speaker}: {utterance.emotion}"
            cv2.putText(canvas, text, (corner[0], max(14, corner[1] - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        colour[::-1], 2, cv2.LINE_AA)
        else:
            cv2.rectangle(canvas, corner, far, (160, 160, 160), 1)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "unknown"
