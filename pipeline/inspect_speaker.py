"""See why a face was chosen: a contact sheet per utterance from the `speaker` stage's outputs.

    python -m pipeline.inspect_speaker <utt_id> [<utt_id> ...] [--out DIR] [--frames 8]

Each sheet shows evenly spaced frames of the utterance with every face track's box, id and the
five landmarks the mouth crops were aligned on (the chosen track thick and green, the others red),
one strip per track of the aligned mouth crops LipSyncNet scored, and a caption with the method,
the reason, the confidence and every track's score. When the method reads LipSyncNet (`auto`,
`lipsyncnet`, `fused`) and its checkpoint is present, each track's best audio offset, offset
confidence and sync score are added. Run it from the project root after `dvc repro speaker`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import soundfile as sf

from pipeline import logs, paths
from pipeline.clips import ClipRequest, collect_clips, evenly, tracks_of
from pipeline.config import load_params
from pipeline.media import MediaError, iter_frames
from pipeline.tables import read_frame
from pipeline.tracking import box_at

CHOSEN = (40, 200, 60)
OTHER = (220, 60, 50)
TILE_WIDTH = 320
STRIP_CROPS = 10
log = logging.getLogger("pipeline.inspect_speaker")  # also when run as __main__


def _text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.5,
          colour: tuple[int, int, int] = (20, 20, 20), thickness: int = 1) -> None:
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def _frame_tile(image: np.ndarray, frame: int, tracks: dict[int, tuple[list[int], list[np.ndarray]]],
                chosen: int, landmarks: dict[int, dict[int, np.ndarray]]) -> np.ndarray:
    scale = TILE_WIDTH / image.shape[1]
    tile = cv2.resize(image, (TILE_WIDTH, int(round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    for track_id, (frames, boxes) in tracks.items():
        step = int(np.diff(frames).max()) if len(frames) > 1 else 1  # the detector's sampling step
        if not frames[0] - step <= frame <= frames[-1] + step:
            continue
        x1, y1, x2, y2 = (int(round(v * scale)) for v in box_at(frames, boxes, frame))
        colour, width = (CHOSEN, 3) if track_id == chosen else (OTHER, 1)
        cv2.rectangle(tile, (x1, y1), (x2, y2), colour, width)
        for x, y in landmarks.get(track_id, {}).get(frame, np.zeros((0, 2))):
            cv2.circle(tile, (int(round(x * scale)), int(round(y * scale))), 2, (255, 220, 0), -1)
        _text(tile, str(track_id), (x1 + 3, max(12, y1 - 4)), 0.5, colour, 2)
    _text(tile, f"frame {frame}", (5, tile.shape[0] - 6), 0.4, (255, 255, 255))
    return tile


def _lip_strip(track_id: int, lips: np.ndarray | None, chosen: int, width: int) -> np.ndarray:
    height = 56
    strip = np.full((height, width, 3), 245, np.uint8)
    colour = CHOSEN if track_id == chosen else OTHER
    _text(strip, f"track {track_id}", (6, 32), 0.5, colour, 2)
    if lips is None or not len(lips):
        _text(strip, "(no mouth crops: the track has no frame in the utterance)", (100, 32), 0.4)
        return strip
    x = 100
    for index in evenly(0, len(lips), STRIP_CROPS):
        crop = cv2.resize(lips[index], (72, 48), interpolation=cv2.INTER_AREA)
        if x + 72 > width:
            break
        strip[4:52, x:x + 72] = crop[..., None]
        x += 76
    return strip


def _profiles(method: str, clips: list[Any], cut: Any) -> dict[int, Any]:
    """LipSyncNet diagnostics per track, when the method reads it and the checkpoint is there (else nothing)."""
    reads_lipsyncnet = method.split(":")[0] in ("auto", "lipsyncnet", "fused")
    if not reads_lipsyncnet or not (paths.LIPSYNC_DIR / "model.safetensors").exists():
        return {}
    from pipeline.speaker_select import LipSyncScorer, UtteranceContext

    lipsync = dict(load_params().get("lipsync") or {}) if Path("params.yaml").exists() else {}
    scorer = LipSyncScorer.from_params({"lipsync": {**lipsync, "device": "cpu"}})
    audio, rate = sf.read(cut.audio, dtype="float32")
    audio = audio.mean(axis=1) if audio.ndim > 1 else audio
    profiles = scorer.profiles([c for c in clips if c.lips is not None and len(c.lips)],
                               UtteranceContext(cut.utt_id, audio, int(rate), float(cut.fps)))
    return {track: (profile, profile.sync_score(scorer.max_offset)) for track, profile in profiles.items()}


def contact_sheet(utt_id: str, frames: int = 8) -> np.ndarray:
    """The RGB contact sheet of one utterance (see the module docstring)."""
    cuts = read_frame(paths.CUTS).set_index("utt_id")
    if utt_id not in cuts.index:
        raise KeyError(f"{utt_id!r} is not in {paths.CUTS}")
    cut = cuts.loc[utt_id]
    cut = pd.Series({**cut.to_dict(), "utt_id": utt_id})
    faces = read_frame(paths.FACES)
    tracks = tracks_of(faces[faces.utt_id == utt_id])
    choices = read_frame(paths.SPEAKER).set_index("utt_id") if paths.SPEAKER.exists() else pd.DataFrame()
    choice = choices.loc[utt_id] if utt_id in choices.index else None
    chosen = int(choice.track_id) if choice is not None else -1
    method = str(choice.method) if choice is not None else "?"
    shown = evenly(int(cut.start_frame), int(cut.end_frame), frames)
    media = Path(cut.media)
    request = ClipRequest(utt_id, int(cut.start_frame), int(cut.end_frame), float(cut.fps), float(cut.start),
                          tracks, [], every_frame=bool(tracks))
    collected = next(iter(collect_clips(media, [request])), None) if tracks else None
    images = dict(iter_frames(media, shown, float(cut.fps)))
    clips = collected.clips if collected is not None else []
    landmarks = {c.track_id: dict(zip(c.frames.tolist(), c.landmarks)) for c in clips if c.landmarks is not None}
    tiles = [_frame_tile(images[f], f, tracks, chosen, landmarks) for f in shown if f in images]
    if not tiles:
        raise MediaError(f"no frame of {utt_id} could be decoded from {media}")
    columns = 4
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])
    width = grid.shape[1]
    strips = [_lip_strip(c.track_id, c.lips, chosen, width) for c in clips]
    profiles = _profiles(method, clips, cut)
    scores = json.loads(choice.scores) if choice is not None else {}
    lines = [f"{utt_id}   method: {method}   reason: {choice.reason if choice is not None else 'not scored'}"
             f"   chosen track: {chosen}   confidence (margin): "
             f"{float(choice.confidence) if choice is not None else float('nan'):.3f}"]
    for track_id in sorted(tracks):
        line = f"track {track_id}: score {scores.get(str(track_id), float('nan')):.4f}"
        if track_id in profiles:
            p, sync = profiles[track_id]
            line += (f"   sync score {sync:.3f}   best offset {p.best_offset:+d} frames   "
                     f"offset confidence {p.confidence:.3f}")
        lines.append(("> " if track_id == chosen else "  ") + line)
    caption = np.full((24 * len(lines) + 12, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        _text(caption, line, (8, 22 + 24 * i), 0.5, CHOSEN if line.startswith(">") else (20, 20, 20))
    return np.vstack([grid, *strips, caption])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.inspect_speaker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("utt_ids", nargs="+")
    parser.add_argument("--out", type=Path, default=Path("inspect") / "speaker")
    parser.add_argument("--frames", type=int, default=8, help="frames shown per utterance")
    options = parser.parse_args(argv)
    logs.configure()
    options.out.mkdir(parents=True, exist_ok=True)
    status = 0
    for utt_id in options.utt_ids:
        try:
            sheet = contact_sheet(utt_id, options.frames)
        except (KeyError, FileNotFoundError, MediaError) as error:
            log.error("%s: %s", utt_id, error)
            status = 1
            continue
        target = options.out / f"{paths.safe_name(utt_id)}.png"
        cv2.imwrite(str(target), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        print(target)
    return status


if __name__ == "__main__":
    sys.exit(main())
