"""Tiny corpus trees that mimic the real MELD, IEMOCAP and table layouts (empty placeholder media)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pipeline.config import load_params

PROJECT = Path(__file__).resolve().parents[1]
MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"


def project_params() -> dict[str, Any]:
    """The project's own params.yaml, copied so a test can change it freely."""
    return copy.deepcopy(load_params(PROJECT / "params.yaml"))


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def meld_row(number: int, text: str, speaker: str, emotion: str, dialogue: int, utterance: int) -> str:
    return (f'{number},"{text}",{speaker},{emotion},neutral,{dialogue},{utterance},8,21,'
            f'"00:16:16,059","00:16:21,731"\n')


def build_meld(root: Path, *, missing: tuple[str, ...] = ()) -> Path:
    """Three splits; train is cp1252 bytes (0x92 quotes), dev is UTF-8 mojibake, test repeats train's dialogue 0.

    `missing` names clips (e.g. "train_splits/dia0_utt1.mp4") that are not created.
    """
    train = MELD_HEADER + "".join([
        meld_row(1, "I\u2019m the point person\u2026", "Chandler", "neutral", 0, 0),
        meld_row(2, "You must\u2019ve had \u2014 your hands full.", "The Interviewer", "Joy", 0, 1),
        meld_row(3, "That I did.", "Chandler", "surprise", 1, 0),
    ])
    (root / "train_sent_emo.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "train_sent_emo.csv").write_bytes(train.encode("cp1252"))
    dev = MELD_HEADER + meld_row(1, "donâ€™t go", "Ross", "anger", 0, 0) + meld_row(2, "Oh.", "Rachel", "fear", 0, 1)
    (root / "dev_sent_emo.csv").write_text(dev, encoding="utf-8")
    test = MELD_HEADER + meld_row(1, "Hi.", "Joey", "sadness", 0, 0) + meld_row(2, "Hey.", "Monica", "disgust", 0, 1)
    (root / "test_sent_emo.csv").write_text(test, encoding="utf-8")
    clips = {"train_splits": [(0, 0), (0, 1), (1, 0)], "dev_splits_complete": [(0, 0), (0, 1)],
             "output_repeated_splits_test": [(0, 0), (0, 1)]}
    for folder, pairs in clips.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for dia, utt in pairs:
            name = f"{folder}/dia{dia}_utt{utt}.mp4"
            if name not in missing:
                touch(root / name)
    return root


def iemocap_dialogue(root: Path, session: int, dialogue: str, utterances: list[tuple[str, float, float, str, str]],
                     *, untranscribed: tuple[str, ...] = ()) -> None:
    """One dialogue: (utterance suffix e.g. F000, start, end, label, text); EmoEvaluation in the given order."""
    dialog = root / f"Session{session}" / "dialog"
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
    transcript = []
    for suffix, start, end, label, text in utterances:
        utt = f"{dialogue}_{suffix}"
        lines += [f"[{start:.4f} - {end:.4f}]\t{utt}\t{label}\t[2.5000, 2.5000, 2.5000]",
                  "C-E1:\tNeutral;\t()", "A-E1:\tval 3; act 2; dom  2;\t()", ""]
        if utt not in untranscribed:
            transcript.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {text}")
    transcript.append("M: [BREATHING]")
    (dialog / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
    (dialog / "EmoEvaluation" / f"{dialogue}.txt").write_text("\n".join(lines) + "\n")
    (dialog / "transcriptions").mkdir(parents=True, exist_ok=True)
    (dialog / "transcriptions" / f"{dialogue}.txt").write_text("\n".join(transcript) + "\n")
    touch(dialog / "avi" / "DivX" / f"{dialogue}.avi")


def build_iemocap(root: Path) -> Path:
    """Sessions 1, 2 and 5: four dialogues in sessions 1-2 (dev is carved from these), one in 5."""
    iemocap_dialogue(root, 1, "Ses01F_impro01", [
        ("M000", 7.5712, 10.475, "fru", "Do you have your forms?"),
        ("F000", 6.2901, 8.2357, "neu", "Excuse me."),
        ("F001", 10.01, 11.3925, "xxx", "Yeah."),
        ("M001", 12.0, 14.0, "sur", "Really?"),
    ])
    iemocap_dialogue(root, 1, "Ses01F_script01_1", [
        ("F000", 1.0, 2.0, "hap", "[LAUGHTER] Great."),
        ("M000", 2.5, 4.0, "exc", "Wonderful!"),
    ])
    iemocap_dialogue(root, 2, "Ses02M_impro03", [("F000", 1.0, 2.0, "sad", "Oh no."), ("M000", 3.0, 4.0, "ang", "No!")])
    iemocap_dialogue(root, 2, "Ses02F_impro05", [("M000", 1.0, 2.0, "neu", "Okay."), ("F000", 2.0, 3.0, "fea", "Eek")])
    iemocap_dialogue(root, 5, "Ses05F_impro07", [("F000", 0.5, 1.5, "ang", "Stop."), ("M000", 2.0, 3.0, "hap", "Yay.")])
    (root / "Session1" / "dialog" / "EmoEvaluation" / "Categorical").mkdir(exist_ok=True)  # real trees have these
    (root / "Session1" / "dialog" / "EmoEvaluation" / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07")
    return root
