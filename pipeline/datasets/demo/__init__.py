"""The embedded demo corpus: conversations the project renders itself, so the whole pipeline runs
(and can be scored against ground truth) on a machine with no data and no network.

Each dialogue is one long mp4 (like an IEMOCAP session): two to four real face photos seated left
to right, one of them speaking at a time with espeak-ng speech and a mouth that opens with it.
Every label is shown partially and noisily by text, prosody and face (see `plan`), so each
modality alone is informative and fusion is best. `annotations.parquet` holds the manifest columns,
the ground truth later stages are scored against (`true_speaker`, `true_boxes`), and the cue each
modality actually showed (`text_cue`, `audio_cue`, `visual_cue`, plus the espeak settings in
`voice` and the LFW photo index of each seat in `faces`).

`render()` writes a corpus and `build_manifest()` reads it back as the `demo` corpus adapter. The
modules beside this one: `config` (the checked `dataset.demo` block), `plan` (every random choice,
made up front), `render` (one dialogue: speech, faces, mp4), `scene`, `faces`, `text`, `voice` and
`video` (the pieces it draws with).

Render with `python -m pipeline.datasets.demo [--params params.yaml] [--root ROOT]`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pipeline.code_fingerprint import code_fingerprint
from pipeline.config import ConfigError
from pipeline.datasets.base import CorpusManifest, RowFailure
from pipeline.datasets.demo.config import DemoConfig, parse
from pipeline.datasets.demo.plan import plan_corpus
from pipeline.datasets.demo.render import render_dialogue
from pipeline.datasets.demo.video import ffmpeg_available
from pipeline.datasets.demo.voice import espeak_available
from pipeline.hooks import ProgressHook, silent_hook
from pipeline.runner import PlainRunner
from pipeline.schema import MANIFEST_COLUMNS, MANIFEST_TRUTH_COLUMNS, require_columns
from pipeline.tables import read_frame, read_metadata, write_frame

ANNOTATIONS = "annotations.parquet"
# What a corpus holds is decided by these (and what they import): a corpus rendered by other code is stale.
RENDERER_MODULES = ("pipeline.datasets.demo.plan", "pipeline.datasets.demo.render")
CUE_COLUMNS = ("text_cue", "audio_cue", "visual_cue", "voice", "faces")


def render(demo_params: Mapping[str, Any], root: Path, hook: ProgressHook | None = None, workers: int = 2) -> None:
    """Render the whole corpus into `root` (replacing what is there), atomically.

    Everything is written to a hidden sibling folder first and renamed into place at the end, so a
    killed render never leaves a half corpus that looks finished.
    """
    config = parse(demo_params)
    _check_tools()
    root = Path(root)
    _check_replaceable(root)
    plans = plan_corpus(config)
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.rendering-", dir=root.parent))
    try:
        os.chmod(work, 0o755)
        videos = work / "videos"
        videos.mkdir()
        digits = max(2, len(str(config.turns[1] - 1)))
        runner = PlainRunner(workers=workers, hook=hook or silent_hook)
        per_dialogue = runner.map(lambda plan: render_dialogue(plan, config, videos, digits), plans, "demo corpus")
        frame = pd.DataFrame([row for rows in per_dialogue for row in rows])
        frame = frame.sort_values(["dialogue_id", "turn"], kind="stable").reset_index(drop=True)
        write_frame(frame, work / ANNOTATIONS, _metadata(config))
        os.chmod(work / ANNOTATIONS, 0o644)
        (work / "README.txt").write_text(readme(config, frame))
        _swap_into_place(work, root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def build_manifest(dataset_params: Mapping[str, Any], root: Path) -> CorpusManifest:
    """Read a rendered corpus. `dataset_params` is the `dataset` block; labels follow `dataset.demo.labels`."""
    if not isinstance(dataset_params, Mapping) or "demo" not in dataset_params:
        raise ConfigError("params.yaml: missing key 'dataset.demo'")
    config = parse(dataset_params["demo"])
    root = Path(root)
    path = root / ANNOTATIONS
    if not path.is_file():
        raise ConfigError(
            f"params.yaml: 'dataset.root' is {str(root)!r}, which holds no rendered demo corpus ({ANNOTATIONS} "
            "missing); render it with `python -m pipeline.datasets.demo` or `dvc repro demo_corpus`"
        )
    stale = stale_keys(config, read_metadata(path))
    if stale:
        raise ConfigError(
            f"params.yaml: 'dataset.demo' ({', '.join(stale)}) differs from the params the corpus in {root} "
            "was rendered with; re-render it with `python -m pipeline.datasets.demo`"
        )
    frame = read_frame(path)
    columns = list(MANIFEST_COLUMNS) + list(MANIFEST_TRUTH_COLUMNS)
    require_columns(frame, columns, str(path))
    failures: list[RowFailure] = []
    keep = []
    inside = root.resolve()
    for media, rows in frame.groupby("media", sort=False):
        path = (inside / str(media)).resolve()
        if inside not in path.parents:
            present, reason = False, f"media path {media!r} leaves the corpus root {root}"
        else:
            present, reason = path.is_file(), f"video {media} is missing from the corpus root {root}"
        if present:
            keep.extend(rows.index)
        else:
            failures.extend(RowFailure(str(utt), reason) for utt in rows["utt_id"])
    manifest = frame.loc[sorted(keep), columns].reset_index(drop=True)
    return CorpusManifest(frame=manifest, root=root, labels=list(config.labels), failures=failures)


def stale_keys(config: DemoConfig, metadata: Mapping[str, Any]) -> list[str]:
    """The `dataset.demo` keys whose value differs from those a corpus was rendered with."""
    rendered = metadata.get("params") or {}
    current = json.loads(json.dumps(config.as_dict()))
    keys = [key for key in current if rendered.get(key) != current[key]]
    if metadata.get("renderer_code") != renderer_code():
        keys.append("renderer code")
    return keys


def renderer_code() -> str:
    """Fingerprint of the code that plans and renders a corpus: editing it makes rendered corpora stale."""
    return code_fingerprint(*RENDERER_MODULES)


def readme(config: DemoConfig, frame: pd.DataFrame) -> str:
    counts = frame.groupby(["split", "label"]).size().unstack(fill_value=0)
    durations = frame.groupby("dialogue_id")["end"].max()
    params = yaml.safe_dump({"dataset": {"demo": json.loads(json.dumps(config.as_dict()))}}, sort_keys=False)
    return f"""MERC demo corpus (rendered by pipeline.datasets.demo, renderer code {renderer_code()})

A synthetic corpus of conversations for trying the pipeline end to end and scoring each stage
against ground truth. It is not a benchmark of real human emotion.

- {frame['dialogue_id'].nunique()} dialogues, {len(frame)} utterances, {frame['speaker'].nunique()} people;
  about {durations.sum() / 60:.1f} minutes of video ({config.width}x{config.height} at {config.fps:g} fps).
- videos/<dialogue_id>.mp4: one H.264 + AAC (16 kHz mono) recording per dialogue; utterances
  follow each other with short silences; `start`/`end` in annotations.parquet are seconds in it.
- Faces: real 25x25 photos from Labeled Faces in the Wild (scikit-image `lfw_subset`), upscaled
  and tinted per person; seats are numbered 0.. from left to right. The speaker's mouth opens with
  the loudness of the speech; listeners sometimes move their mouth out of sync.
- Speech: espeak-ng, one voice per person; text: sentence templates with slot fillers.
- Each label is shown by text, prosody and face independently: a modality shows the true emotion
  with probability cue_fidelity (else another label's cue); the cue columns record what it showed.
- Ground truth: `true_speaker` (seat index of the speaker), `true_boxes` (JSON list of
  [x1, y1, x2, y2] face squares in video pixels, one per seat).

Utterances per split and label:
{counts.to_string()}

Rendered from:
{params}"""


def _metadata(config: DemoConfig) -> dict[str, Any]:
    return {"dataset": "demo", "renderer_code": renderer_code(), "labels": list(config.labels),
            "params": config.as_dict()}


def _check_tools() -> None:
    if not espeak_available():
        raise RuntimeError("espeak-ng is not on PATH; the demo corpus needs it for speech (apt-get install espeak-ng)")
    if not ffmpeg_available():
        raise RuntimeError("ffmpeg is not on PATH; the demo corpus needs it to write mp4 (apt-get install ffmpeg)")


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a folder that holds something other than a demo corpus (e.g. `--root .`)."""
    if root.is_dir() and any(root.iterdir()) and not (root / ANNOTATIONS).is_file():
        raise ConfigError(
            f"params.yaml: 'dataset.root' is {str(root)!r}, a non-empty folder that is not a demo corpus; "
            "refusing to replace it (point dataset.root or --root at a new or empty folder)"
        )
    if root.exists() and not root.is_dir():
        raise ConfigError(f"params.yaml: 'dataset.root' is {str(root)!r}, which is a file, not a folder")


def _swap_into_place(work: Path, root: Path) -> None:
    """Rename the finished corpus over `root`; an old corpus is moved aside first, then deleted."""
    old = None
    if root.exists() or root.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
        os.replace(root, old / "corpus")
    os.replace(work, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_current(demo_params: Mapping[str, Any], root: Path) -> bool:
    """True when `root` holds a finished corpus rendered from exactly these params."""
    path = Path(root) / ANNOTATIONS
    return path.is_file() and not stale_keys(parse(demo_params), read_metadata(path))
