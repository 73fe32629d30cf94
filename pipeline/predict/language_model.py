"""A word-bigram language model of a corpus's own transcripts, for the offline recogniser.

PocketSphinx's bundled model expects broadcast-news English; conversations about a corpus's topics
are recognised far better with a language model of how its speakers talk. `bigram_arpa` estimates
one from the train split's transcripts (absolute discounting with back-off to unigrams, written in
the ARPA text format every Sphinx-family recogniser reads), keeping only words the recogniser's
pronunciation dictionary knows. Test transcripts are never read.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

MODEL_PATH = Path("artifacts/asr_lm/words.arpa")  # written by the `asr_lm` stage, in the project
START, END = "<s>", "</s>"


def pocketsphinx_vocabulary() -> set[str]:
    """Words of the pronunciation dictionary inside the pocketsphinx wheel (alternates folded)."""
    from pocketsphinx import get_model_path

    dictionary = Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"
    with dictionary.open(encoding="utf-8") as lines:
        return {re.sub(r"\(\d+\)$", "", line.split(" ", 1)[0]) for line in lines if line.strip()}


def words(text: str, vocabulary: set[str]) -> list[str]:
    """Lower-cased words of `text` the dictionary knows (others are dropped)."""
    return [word for word in re.findall(r"[a-z']+", text.lower()) if word in vocabulary]


def bigram_arpa(texts: Iterable[str], vocabulary: set[str], discount: float = 0.5) -> tuple[str, dict[str, int]]:
    """The ARPA text of a bigram model of `texts`, and counts (sentences, words, distinct words, dropped)."""
    unigrams: Counter[str] = Counter()
    bigrams: Counter[tuple[str, str]] = Counter()
    sentences = dropped = 0
    for text in texts:
        known = words(text, vocabulary)
        dropped += len(re.findall(r"[a-z']+", text.lower())) - len(known)
        if not known:
            continue
        sentences += 1
        tokens = [START, *known, END]
        unigrams.update(tokens)
        bigrams.update(zip(tokens[:-1], tokens[1:]))
    if not sentences:
        raise ValueError("no transcript holds a word the recogniser's dictionary knows")
    total = sum(count for word, count in unigrams.items() if word != START)
    unigram = {word: (count / total if word != START else 0.0) for word, count in unigrams.items()}
    following: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for (first, second), count in bigrams.items():
        following[first].append((second, count))
    history = {first: sum(count for _, count in seen) for first, seen in following.items()}
    backoff = {}
    for first, seen in following.items():
        left = 1.0 - sum(unigram[second] for second, _ in seen)
        backoff[first] = (discount * len(seen) / history[first]) / left if left > 1e-9 else 1e-9
    lines = ["\\data\\", f"ngram 1={len(unigrams)}", f"ngram 2={len(bigrams)}", "", "\\1-grams:"]
    for word in sorted(unigrams):
        probability = -99.0 if word == START else math.log10(unigram[word])
        weight = f" {math.log10(backoff[word]):.4f}" if word in backoff else ""
        lines.append(f"{probability:.4f} {word}{weight}")
    lines += ["", "\\2-grams:"]
    for (first, second), count in sorted(bigrams.items()):
        lines.append(f"{math.log10((count - discount) / history[first]):.4f} {first} {second}")
    lines += ["", "\\end\\", ""]
    counts = {"sentences": sentences, "words": total - sentences, "distinct_words": len(unigrams) - 2,
              "dropped_words": dropped}
    return "\n".join(lines), counts
