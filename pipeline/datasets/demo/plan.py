"""What the demo corpus will contain, decided before anything is rendered.

Planning is cheap and sequential, so every random choice comes from one seeded generator and the
corpus is the same whatever order the dialogues are later rendered in. Each utterance's label is
shown by every modality independently: with probability `cue_fidelity.<m>` modality m shows the
true emotion, otherwise another label's cue, so each modality alone is informative but imperfect.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.datasets.demo.config import MODALITIES, DemoConfig
from pipeline.datasets.demo.faces import FACE_POOL
from pipeline.datasets.demo.text import sentence
from pipeline.datasets.demo.voice import VOICES, Delivery, Voice, delivery

SKIN_TONES = ((1.0, 0.86, 0.74), (0.98, 0.8, 0.66), (0.86, 0.68, 0.54), (0.7, 0.54, 0.42), (1.0, 0.9, 0.82))
GAP_SECONDS = (0.2, 0.6)  # silence between utterances
SWITCH_PROBABILITY = 0.85  # chance the next utterance comes from someone else
LISTENER_MOVES = 0.5  # chance a listener's mouth moves (out of sync) during an utterance
PLAN_ATTEMPTS = 50
SPLIT_ATTEMPTS = 500


@dataclass(frozen=True)
class Person:
    name: str
    face: int  # index into skimage's lfw_subset
    size: int  # face side in pixels
    tone: tuple[float, float, float]
    shirt: tuple[int, int, int]
    voice: Voice


@dataclass(frozen=True)
class ListenerMouth:
    """A listener's mouth follows another utterance's envelope, shifted, at low amplitude."""

    seat: int
    source_turn: int
    shift: float  # fraction of the envelope's length to roll it by
    amplitude: float


@dataclass(frozen=True)
class Turn:
    turn: int
    speaker: int  # seat index, left to right
    label: str
    cues: dict[str, str]  # modality -> emotion that modality shows
    text: str
    delivery: Delivery
    gap_before: float
    listeners: tuple[ListenerMouth, ...]


@dataclass(frozen=True)
class DialoguePlan:
    index: int
    dialogue_id: str
    people: tuple[Person, ...]
    turns: tuple[Turn, ...]
    render_seed: int
    split: str = field(default="train")


def plan_corpus(config: DemoConfig) -> list[DialoguePlan]:
    """Plan every dialogue; re-plan (deterministically) until every label occurs, then split."""
    best: list[DialoguePlan] = []
    best_missing = len(config.labels) + 1
    for attempt in range(PLAN_ATTEMPTS):
        rng = np.random.default_rng([config.seed, attempt])
        faces = _face_order(rng, config.dialogues * config.people[1])
        digits = max(3, len(str(config.dialogues - 1)))
        plans = [_plan_dialogue(config, index, rng, faces, digits) for index in range(config.dialogues)]
        present = {turn.label for plan in plans for turn in plan.turns}
        missing = len(set(config.labels) - present)
        if missing < best_missing:
            best, best_missing = plans, missing
        if missing == 0:
            break
    return assign_splits(best, config)


def _face_order(rng: np.random.Generator, needed: int) -> list[int]:
    """Faces are used without repetition until the pool runs out, then the pool is reshuffled."""
    order: list[int] = []
    while len(order) < needed:
        order.extend(int(i) for i in rng.permutation(FACE_POOL))
    return order


def _plan_dialogue(
    config: DemoConfig, index: int, rng: np.random.Generator, faces: list[int], digits: int = 3
) -> DialoguePlan:
    n_people = int(rng.integers(config.people[0], config.people[1] + 1))
    voices = rng.choice(len(VOICES), size=n_people, replace=False)
    people = []
    for seat in range(n_people):
        size = int(round(config.face_size * rng.uniform(0.82, 1.0)))
        tone = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
        voice = Voice(
            name=VOICES[int(voices[seat])],
            pitch=float(rng.uniform(32, 62)),
            rate=float(rng.uniform(145, 180)),
            amplitude=float(rng.uniform(70, 95)),
        )
        shirt = tuple(int(c) for c in rng.integers(30, 200, size=3))
        people.append(Person(f"d{index:0{digits}d}_s{seat + 1}", faces.pop(0), size, tone, shirt, voice))
    n_turns = int(rng.integers(config.turns[0], config.turns[1] + 1))
    weights = np.asarray(config.label_weights) / sum(config.label_weights)
    last_emotion: dict[int, str] = {}
    turns: list[Turn] = []
    speaker = int(rng.integers(n_people))
    for t in range(n_turns):
        if t > 0 and n_people > 1 and rng.random() < SWITCH_PROBABILITY:
            speaker = int(rng.choice([p for p in range(n_people) if p != speaker]))
        if speaker in last_emotion and rng.random() < config.stay_probability:
            label = last_emotion[speaker]
        else:
            label = config.labels[int(rng.choice(len(config.labels), p=weights))]
        last_emotion[speaker] = label
        cues = {m: _cue(label, config.labels, config.cue_fidelity.of(m), rng) for m in MODALITIES}
        listeners = []
        for seat in range(n_people):
            if seat != speaker and rng.random() < LISTENER_MOVES:
                others = [u for u in range(n_turns) if u != t] or [t]
                listeners.append(
                    ListenerMouth(
                        seat=seat,
                        source_turn=int(rng.choice(others)),
                        shift=float(rng.uniform(0.25, 0.75)),
                        amplitude=float(rng.uniform(0.25, 0.6)),
                    )
                )
        turns.append(
            Turn(
                turn=t,
                speaker=speaker,
                label=label,
                cues=cues,
                text=sentence(cues["text"], rng),
                delivery=delivery(people[speaker].voice, cues["audio"], rng),
                gap_before=float(rng.uniform(*GAP_SECONDS)),
                listeners=tuple(listeners),
            )
        )
    return DialoguePlan(
        index=index,
        dialogue_id=f"demo_d{index:0{digits}d}",
        people=tuple(people),
        turns=tuple(turns),
        render_seed=int(rng.integers(2**31)),
    )


def _cue(label: str, labels: tuple[str, ...], fidelity: float, rng: np.random.Generator) -> str:
    """The emotion a modality shows: the true one with probability `fidelity`, else another label's."""
    if rng.random() < fidelity:
        return label
    others = [other for other in labels if other != label]
    return others[int(rng.integers(len(others)))]


def split_sizes(n: int, shares: tuple[float, float, float]) -> tuple[int, int, int]:
    """Dialogues per split, each split at least one (needs n >= 3)."""
    total = sum(shares)
    dev = max(1, int(round(n * shares[1] / total)))
    test = max(1, int(round(n * shares[2] / total)))
    while n - dev - test < 1:
        if dev >= test and dev > 1:
            dev -= 1
        else:
            test -= 1
    return n - dev - test, dev, test


def assign_splits(plans: list[DialoguePlan], config: DemoConfig) -> list[DialoguePlan]:
    """Split by dialogue; among seeded shuffles, keep the first where every split has every label."""
    sizes = split_sizes(len(plans), config.split)
    names = ["train"] * sizes[0] + ["dev"] * sizes[1] + ["test"] * sizes[2]
    labels_of = [{turn.label for turn in plan.turns} for plan in plans]
    rng = np.random.default_rng([config.seed, 1_000_003])
    best_order, best_score = list(range(len(plans))), -1
    target = 3 * len(config.labels)
    for _ in range(SPLIT_ATTEMPTS):
        order = [int(i) for i in rng.permutation(len(plans))]
        covered: dict[str, set[str]] = {"train": set(), "dev": set(), "test": set()}
        for position, index in enumerate(order):
            covered[names[position]] |= labels_of[index]
        score = sum(len(found) for found in covered.values())
        if score > best_score:
            best_order, best_score = order, score
        if score == target:
            break
    split_of = {index: names[position] for position, index in enumerate(best_order)}
    return [replace(plan, split=split_of[plan.index]) for plan in plans]
