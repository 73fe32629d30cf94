"""Text for utterances nobody transcribed: a local Whisper-family folder, else PocketSphinx, else none.

`recogniser("auto", folder)` picks the best one this machine has: a speech-recognition model folder
the user points to (any `transformers` automatic-speech-recognition checkpoint, e.g. a Whisper
download, loaded with `local_files_only`), otherwise PocketSphinx, whose US-English model ships in
its wheel (decoding with the project's own language model of its train transcripts when the
`asr_lm` stage made one), otherwise `None`: no text, and the emotion model's text input is masked as when a
modality is missing in training. What was used is recorded in the outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import ConfigError
from pipeline.predict.segments import SAMPLE_RATE

RECOGNISERS = ("auto", "whisper", "pocketsphinx", "none")


@dataclass(frozen=True)
class Recogniser:
    name: str  # what the outputs record: `whisper:<folder>`, `pocketsphinx`, `none`
    transcribe: Callable[[np.ndarray], str | None]


def recogniser(choice: str, folder: str | Path | None = None, language_model: Path | None = None) -> Recogniser:
    """The recogniser `choice` names (`auto`: a Whisper folder if given, else PocketSphinx, else none).
    PocketSphinx decodes with `language_model` (an ARPA file, e.g. the `asr_lm` stage's) when given."""
    if choice not in RECOGNISERS:
        raise ConfigError(f"--asr is {choice!r}; allowed values: {', '.join(RECOGNISERS)}")
    if choice == "none":
        return Recogniser("none", lambda samples: None)
    if choice == "whisper" or (choice == "auto" and folder):
        if not folder:
            raise ConfigError("--asr whisper needs --asr-model FOLDER (a local speech-recognition checkpoint)")
        return _whisper(Path(folder))
    try:
        return _pocketsphinx(language_model)
    except ImportError:
        if choice == "pocketsphinx":
            raise ConfigError("--asr pocketsphinx: the pocketsphinx package is not installed") from None
        return Recogniser("none", lambda samples: None)


def _whisper(folder: Path) -> Recogniser:
    if not folder.is_dir():
        raise ConfigError(f"--asr-model: {folder} is not a folder")
    from transformers import pipeline

    try:
        recognise = pipeline("automatic-speech-recognition", model=str(folder), device="cpu",
                             model_kwargs={"local_files_only": True})
    except (OSError, ValueError) as error:
        raise ConfigError(f"--asr-model: {folder} is not a speech-recognition checkpoint: {error}") from None

    def transcribe(samples: np.ndarray) -> str | None:
        text = recognise({"raw": samples.astype(np.float32), "sampling_rate": SAMPLE_RATE})["text"].strip()
        return text or None

    return Recogniser(f"whisper:{folder}", transcribe)


def _pocketsphinx(language_model: Path | None) -> Recogniser:
    from pocketsphinx import Decoder

    own_model = {} if language_model is None else {"lm": str(language_model)}
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", **own_model)

    def transcribe(samples: np.ndarray) -> str | None:
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        text = hypothesis.hypstr.strip() if hypothesis is not None else ""
        return text or None

    return Recogniser("pocketsphinx" if language_model is None else "pocketsphinx+corpus-lm", transcribe)
