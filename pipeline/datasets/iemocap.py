"""IEMOCAP adapter: long dyadic recordings cut by the time stamps of the EmoEvaluation files.

Layout under `IEMOCAP_full_release/`: `SessionN/dialog/EmoEvaluation/<dialogue>.txt` (times and
majority label per utterance), `SessionN/dialog/transcriptions/<dialogue>.txt` (text) and
`SessionN/dialog/avi/DivX/<dialogue>.avi` (the video both speakers share). The usual protocol keeps
six classes and holds out Session 5 as test; dev dialogues are carved from sessions 1–4 by a seeded
shuffle so model selection never sees the test speakers. `dataset.iemocap.merge` maps raw labels to
the class they count as before the label filter: the 4-class protocol (DRKF and others) keeps
`[hap, sad, neu, ang]` with `merge: {exc: hap}`, where without it excited utterances are dropped.

`dataset.iemocap.layout: tables` reads the standard 6-class utterance tables instead
(`IEMOCAP_{train,dev,test}.csv` in `dataset.root`, splits as given there); their media paths name
the release's videos, so without the release beside them the run is text-only (`dataset.media: false`).

Two IEMOCAP facts travel in optional manifest columns, so no other module needs IEMOCAP's naming:
`session` (`Ses01`..., for leave-one-session-out folds) and `seat_hint` (`left` or `right`, the
speaker's half of the shared video, for `speaker.method: gender_side`).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import setting
from pipeline.config import ConfigError
from pipeline.datasets.base import CorpusManifest, RowFailure, adapter_config
from pipeline.datasets.encoding import read_text, repair_text
from pipeline.schema import MANIFEST_COLUMNS, MANIFEST_OPTIONAL_COLUMNS, SPLITS

DEFAULT_LABELS = ["hap", "sad", "neu", "ang", "exc", "fru"]
TEST_SESSION = 5
LAYOUTS = ("release", "tables")  # the full release tree, or the three utterance tables
RELEASE_DIR = "IEMOCAP_full_release/"

# `[6.2901 - 8.2357]	Ses01F_impro01_F000	neu	[2.5000, 2.5000, 2.5000]`
_EVALUATION_LINE = re.compile(
    r"^\[\s*(?P<start>\d+(?:\.\d*)?)\s*-\s*(?P<end>\d+(?:\.\d*)?)\s*\]\s+(?P<utt>Ses\w+)\s+(?P<label>\w+)"
)
# `Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.`
_TRANSCRIPT_LINE = re.compile(r"^(?P<utt>Ses\w+)\s*\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s*:\s?(?P<text>.*)$")
_SESSION = re.compile(r"^Ses(?P<number>\d+)")
_SESSION_NAME = re.compile(r"^(Ses\d\d)")
COLUMNS = (*MANIFEST_COLUMNS, *MANIFEST_OPTIONAL_COLUMNS)


def parse_evaluation(path: Path) -> list[tuple[str, float, float, str]]:
    """(utterance id, start, end, label) for every utterance header line of an EmoEvaluation file."""
    found = []
    for line in read_text(path).splitlines():
        match = _EVALUATION_LINE.match(line.strip())
        if match:
            found.append((match["utt"], float(match["start"]), float(match["end"]), match["label"].lower()))
    return found


def parse_transcription(path: Path) -> dict[str, str]:
    """Utterance id -> text; lines of unannotated turns (e.g. `M: breathing`) are ignored."""
    texts = {}
    for line in read_text(path).splitlines():
        match = _TRANSCRIPT_LINE.match(line.strip())
        if match:
            texts[match["utt"]] = repair_text(match["text"]).strip()
    return texts


def speaker_of(utt_id: str) -> str:
    """`Ses01F_impro01_M003` -> `Ses01_M`: the session's male or female actor.

    The gender letter of the last part names who speaks; the letter in `Ses01F` only says who wore
    the motion-capture markers, so it must not be used.
    """
    match = _SESSION.match(utt_id)
    session = f"Ses{match['number']}" if match else utt_id.split("_", 1)[0]
    return f"{session}_{utt_id.rsplit('_', 1)[-1][:1].upper()}"


def session_of(dialogue_id: str) -> str:
    """`Ses03M_script01_2` -> `Ses03`; '' for ids that do not follow IEMOCAP's naming."""
    match = _SESSION_NAME.match(str(dialogue_id))
    return match.group(1) if match else ""


def seat_of(dialogue_id: str, speaker: str) -> str:
    """`left` or `right`: where an IEMOCAP speaker sits in the dialogue video ('' when the ids do not say).

    IEMOCAP dialogue videos show the two actors of a session side by side. The letter after the
    session number (`Ses01F_...`) names the actor wearing the motion-capture markers, and that actor
    is on the left half; the speaker's own letter (`Ses01_F` in the manifest, from `..._F000`) says
    who talks. Same letter: left half, else the right half. This is the rule MERBench uses
    (`func_find_tgt_pos` in MERTools' IEMOCAP preprocessing).
    """
    marker = str(dialogue_id)[5:6].upper()
    gender = str(speaker).strip()[-1:].upper()
    if marker not in ("F", "M") or gender not in ("F", "M"):
        return ""
    return "left" if marker == gender else "right"


def build_manifest(dataset_params: Mapping[str, Any], root: Path) -> CorpusManifest:
    """Utterances with a label in `dataset.iemocap.labels`; others are counted in `excluded`."""
    cfg = adapter_config(IemocapConfig, dataset_params, "iemocap")
    labels, dev_count, dev_seed, layout, merge = cfg.labels, cfg.dev_dialogues, cfg.dev_seed, cfg.layout, cfg.merge
    root = Path(root)
    if layout == "tables":
        return _from_tables(root, labels, merge)
    sessions = sorted(p for p in root.glob("Session*") if (p / "dialog" / "EmoEvaluation").is_dir())
    if not sessions:
        raise ConfigError(f"params.yaml: 'dataset.root' is {root}, which holds no SessionN/dialog/EmoEvaluation "
                          "folders; point it at IEMOCAP_full_release/")
    rows: list[dict[str, Any]] = []
    failures: list[RowFailure] = []
    excluded: Counter[str] = Counter()
    for session in sessions:
        dialog = session / "dialog"
        for evaluation in sorted(dialog.glob("EmoEvaluation/*.txt")):
            if evaluation.name.startswith("."):
                continue  # macOS resource forks (`._Ses01F_impro01.txt`) ship in some copies
            dialogue = evaluation.stem
            transcript = dialog / "transcriptions" / f"{dialogue}.txt"
            texts = parse_transcription(transcript) if transcript.is_file() else {}
            for utt, start, end, label in parse_evaluation(evaluation):
                label = merge.get(label, label)
                if label not in labels:
                    excluded[f"label {label!r} not in dataset.iemocap.labels"] += 1
                    continue
                if utt not in texts:
                    where = transcript.relative_to(root).as_posix()
                    failures.append(RowFailure(utt, f"no transcription line for this utterance in {where}"))
                    continue
                rows.append({
                    "utt_id": utt, "dialogue_id": dialogue, "speaker": speaker_of(utt), "text": texts[utt],
                    "label": label, "start": start, "end": end,
                    "media": f"{session.name}/dialog/avi/DivX/{dialogue}.avi",
                    "session_number": _session_number(session.name),
                })
    frame = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, "session_number"])
    frame["split"] = _splits(frame, dev_count, dev_seed)
    frame = _number_turns(frame.drop(columns="session_number"))
    return CorpusManifest(frame=frame, root=root, labels=labels, failures=failures, excluded=dict(excluded))


def load_reference_tables(folder: str | Path) -> pd.DataFrame:
    """The standard 6-class utterance tables `IEMOCAP_{train,dev,test}.csv` as one manifest frame.

    Their `Video_Path` points into an `IEMOCAP_full_release/` tree; `media` keeps the part below it,
    so the frame matches what `build_manifest` gives for the same release (`layout: tables`).
    """
    folder = Path(folder)
    frames = []
    for split in SPLITS:
        path = folder / f"IEMOCAP_{split}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (expected IEMOCAP_train.csv, IEMOCAP_dev.csv, IEMOCAP_test.csv)")
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        video = raw["Video_Path"].str.replace("\\", "/", regex=False)
        frames.append(pd.DataFrame({
            "utt_id": raw["Speaker"].str.strip(),
            "dialogue_id": raw["Dialogue_ID"].str.strip(),
            "speaker": raw["Speaker"].str.strip().map(speaker_of),
            "text": raw["Utterance"].map(repair_text).str.strip(),
            "label": raw["Emotion"].str.strip().str.lower(),
            "split": split,
            "media": video.map(lambda p: p.split(RELEASE_DIR, 1)[-1].removeprefix("./")),
            "start": pd.to_numeric(raw["Start_Time"], errors="coerce"),
            "end": pd.to_numeric(raw["End_Time"], errors="coerce"),
        }))
    return _number_turns(pd.concat(frames, ignore_index=True))


def _from_tables(root: Path, labels: list[str], merge: Mapping[str, str]) -> CorpusManifest:
    """`layout: tables`: the utterance tables' rows with a label in `dataset.iemocap.labels` (after `merge`)."""
    try:
        frame = load_reference_tables(root)
    except FileNotFoundError as error:
        raise ConfigError(f"params.yaml: 'dataset.root' with 'dataset.iemocap.layout: tables': {error}") from None
    frame["label"] = frame["label"].map(lambda label: merge.get(label, label))
    known = frame["label"].isin(labels)
    excluded = Counter(f"label {label!r} not in dataset.iemocap.labels" for label in frame.loc[~known, "label"])
    return CorpusManifest(frame=frame[known].reset_index(drop=True), root=root, labels=labels,
                          excluded=dict(excluded))


def _splits(frame: pd.DataFrame, dev_count: int, seed: int) -> pd.Series:
    """Session 5 is test; `dev_count` dialogues of sessions 1–4, drawn by a seeded shuffle, are dev."""
    candidates = sorted(frame.loc[frame["session_number"] != TEST_SESSION, "dialogue_id"].unique())
    if candidates and dev_count >= len(candidates):
        raise ConfigError(f"params.yaml: 'dataset.iemocap.dev_dialogues' is {dev_count}, but sessions 1-4 hold only "
                          f"{len(candidates)} usable dialogue(s); leave at least one for training")
    random.Random(seed).shuffle(candidates)
    dev = set(candidates[:dev_count])
    split = pd.Series("train", index=frame.index, dtype=object)
    split[frame["dialogue_id"].isin(dev)] = "dev"
    split[frame["session_number"] == TEST_SESSION] = "test"
    return split


def _number_turns(frame: pd.DataFrame) -> pd.DataFrame:
    """Turns follow start time inside each dialogue (ties by id, so the order is reproducible); sessions and seats."""
    frame = frame.sort_values(["dialogue_id", "start", "utt_id"], kind="stable").reset_index(drop=True)
    frame["turn"] = frame.groupby("dialogue_id").cumcount().astype("int64")
    frame["session"] = frame["dialogue_id"].map(session_of)
    frame["seat_hint"] = [seat_of(d, s) for d, s in zip(frame["dialogue_id"], frame["speaker"])]
    frame = frame[list(COLUMNS)]
    return frame.astype({"start": "float64", "end": "float64"})


def _session_number(folder_name: str) -> int:
    match = re.search(r"\d+", folder_name)
    return int(match.group(0)) if match else -1


def _labels_problem(value: Any) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return f"must be a non-empty list of label names (e.g. {', '.join(DEFAULT_LABELS)}), got {value!r}"
    if len({v.strip().lower() for v in value}) != len(value):
        return f"lists a label twice: {value!r}"
    return None


@dataclass(frozen=True)
class IemocapConfig:
    """`dataset.iemocap`: the class set (lower-cased), the dev share of sessions 1-4, and the layout."""

    labels: list[str] = setting(check=_labels_problem)
    dev_dialogues: int = setting(min=0)  # dialogues of sessions 1-4 drawn for dev (session 5 is test)
    dev_seed: int = setting(min=0)
    layout: str = setting("release", choices=LAYOUTS)  # release: the corpus folders; tables: the reference CSVs
    merge: dict[str, str] = setting(factory=dict, omit_default=True)  # raw label -> the class it counts as

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", [v.strip().lower() for v in self.labels])
        merge = {str(k).strip().lower(): str(v).strip().lower() for k, v in self.merge.items()}
        for source, target in merge.items():
            if target not in self.labels:
                raise ConfigError.at("merge", f"maps {source!r} to {target!r}, which is not among the labels "
                                              f"({', '.join(self.labels)})")
            if source in self.labels:
                raise ConfigError.at("merge", f"maps {source!r} away, but {source!r} is still one of the labels; "
                                              "remove it from the labels")
        object.__setattr__(self, "merge", merge)
