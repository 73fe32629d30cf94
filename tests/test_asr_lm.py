"""`asr_lm`: a bigram model of the train transcripts, read by `merc predict`'s PocketSphinx."""

from __future__ import annotations

import json
import math
import shutil
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ConfigError
from pipeline.manifest import write_manifest
from pipeline.predict.asr import recogniser
from pipeline.predict.language_model import MODEL_PATH, bigram_arpa, pocketsphinx_vocabulary, words
from pipeline.predict.run import corpus_language_model, inside
from pipeline.runner import PlainRunner
from pipeline.stages import get_stage

TRAIN = ["Please bring the blue jacket to the garage.", "Did you put the keys back in the kitchen?",
         "Please bring the old piano to the station.", "We need two more chairs for the dinner."]


def parse_arpa(text: str) -> tuple[dict[str, float], dict[str, float], dict[tuple[str, str], float]]:
    unigram, backoff, bigram = {}, {}, {}
    section = None
    for line in text.splitlines():
        if line.startswith("\\"):
            section = line
            continue
        parts = line.split()
        if section == "\\1-grams:" and parts:
            unigram[parts[1]] = 10 ** float(parts[0])
            backoff[parts[1]] = 10 ** float(parts[2]) if len(parts) > 2 else 1.0
        elif section == "\\2-grams:" and parts:
            bigram[(parts[1], parts[2])] = 10 ** float(parts[0])
    return unigram, backoff, bigram


def test_every_history_gives_a_proper_distribution():
    vocabulary = pocketsphinx_vocabulary()
    arpa, counts = bigram_arpa(TRAIN, vocabulary, discount=0.5)
    unigram, backoff, bigram = parse_arpa(arpa)
    assert math.isclose(sum(p for w, p in unigram.items() if w != "<s>"), 1.0, rel_tol=1e-3)
    seen = defaultdict(dict)
    for (first, second), p in bigram.items():
        seen[first][second] = p
    for first, following in seen.items():
        unseen = sum(p for w, p in unigram.items() if w not in following and w != "<s>")
        assert math.isclose(sum(following.values()) + backoff[first] * unseen, 1.0, rel_tol=1e-3), first
    assert counts["sentences"] == 4 and counts["dropped_words"] == 0
    assert words("Hello, Zorblaxq!", vocabulary) == ["hello"]  # words the dictionary lacks are dropped
    with pytest.raises(ValueError, match="no transcript"):
        bigram_arpa(["", "Zzxq"], vocabulary)


def word_errors(reference: str, hypothesis: str | None) -> int:
    ref, hyp = reference.lower().strip(".?").split(), (hypothesis or "").split()
    table = np.arange(len(hyp) + 1)
    for i, word in enumerate(ref, 1):
        previous, table = table, np.zeros_like(table)
        table[0] = i
        for j, other in enumerate(hyp, 1):
            table[j] = min(previous[j] + 1, table[j - 1] + 1, previous[j - 1] + (word != other))
    return int(table[-1])


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_the_corpus_model_recognises_the_corpus_s_sentences_better(tmp_path):
    from tests.media_factory import speech

    arpa, _ = bigram_arpa(TRAIN, pocketsphinx_vocabulary())
    path = tmp_path / "words.arpa"
    path.write_text(arpa)
    sentence = "Please bring the blue jacket to the station."  # a new sentence from the corpus's words
    audio = speech(sentence)
    generic = recogniser("pocketsphinx").transcribe(audio)
    corpus = recogniser("pocketsphinx", language_model=path)
    assert corpus.name == "pocketsphinx+corpus-lm"
    assert word_errors(sentence, corpus.transcribe(audio)) < word_errors(sentence, generic)


def test_the_stage_reads_train_transcripts_only_and_predict_finds_its_model(tmp_path, base_params):
    rows = [{"utt_id": f"u{i}", "dialogue_id": f"d{i}", "turn": 0, "speaker": "A", "text": text, "label": "joy",
             "split": split, "media": "", "start": None, "end": None}
            for i, (text, split) in enumerate([(TRAIN[0], "train"), (TRAIN[1], "train"),
                                               ("The ukulele is purple.", "dev"), ("Bananas everywhere.", "test")])]
    with inside(tmp_path):
        write_manifest(pd.DataFrame(rows), tmp_path, ["joy"], "table", media=False)
        summary = get_stage("asr_lm")(base_params, PlainRunner(1), None)
        arpa = MODEL_PATH.read_text()
    assert summary["learned"] and summary["sentences"] == 2
    assert " jacket" in arpa and "ukulele" not in arpa and "bananas" not in arpa
    assert corpus_language_model(tmp_path, "auto") == tmp_path / MODEL_PATH
    assert corpus_language_model(tmp_path, "generic") is None
    assert corpus_language_model(tmp_path / "elsewhere", "auto") is None
    with pytest.raises(ConfigError, match="--asr-lm.*auto, generic"):
        corpus_language_model(tmp_path, "mine")


def test_a_corpus_without_text_gets_no_model_and_a_reason(tmp_path, base_params):
    rows = [{"utt_id": f"u{i}", "dialogue_id": "d", "turn": i, "speaker": "A", "text": "", "label": "joy",
             "split": "train", "media": "", "start": None, "end": None} for i in range(2)]
    with inside(tmp_path):
        write_manifest(pd.DataFrame(rows), tmp_path, ["joy"], "table", media=False)
        summary = get_stage("asr_lm")(base_params, PlainRunner(1), None)
        assert not summary["learned"] and "no transcript" in summary["reason"]
        assert not MODEL_PATH.exists() and json.loads((MODEL_PATH.parent / "none.json").read_text())["reason"]
    with inside(tmp_path), pytest.raises(ConfigError, match=r"asr_lm\.discount"):
        get_stage("asr_lm")({**base_params, "asr_lm": {"discount": 1.5}}, PlainRunner(1), None)
