"""Sentences for the demo corpus: per-emotion templates with slot fillers.

Templates are many and slots are combinatorial so a text model has to learn the emotional words,
not memorise whole sentences. Neutral templates carry no emotion words at all.
"""

from __future__ import annotations

import numpy as np

SLOTS: dict[str, tuple[str, ...]] = {
    "person": (
        "Sam", "Priya", "Jonas", "Maria", "Dev", "Alice", "Tom", "Keiko", "Omar", "Lena",
        "my brother", "your aunt", "the new neighbour", "the manager", "our teacher", "Grandpa",
    ),
    "object": (
        "the car", "the laptop", "the blue jacket", "the garden hose", "the report", "the tickets",
        "the old piano", "the coffee machine", "the bike", "the parcel", "the photo album", "the keys",
    ),
    "place": (
        "the kitchen", "the office", "the station", "the park", "the library", "the garage",
        "the beach house", "the market", "the hospital", "the school", "the hotel lobby", "the bakery",
    ),
    "time": (
        "tomorrow", "on Friday", "next week", "this morning", "at noon", "tonight",
        "on Monday", "after lunch", "last night", "in ten minutes", "at seven", "this weekend",
    ),
    "activity": (
        "the meeting", "the dinner", "the trip", "the interview", "the concert", "the football match",
        "the exam", "the wedding", "the move", "the party", "the renovation", "the flight",
    ),
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "neutral": (
        "I think {object} is still in {place}.",
        "{person} said {activity} starts {time}.",
        "Can you bring {object} to {place} {time}?",
        "We should check the schedule for {activity}.",
        "The bus to {place} leaves {time}.",
        "{person} moved {object} to {place}.",
        "I will call {person} about {activity} {time}.",
        "Did you put {object} back in {place}?",
        "The forms for {activity} are on the table.",
        "{person} is working at {place} {time}.",
        "Let me write down the address of {place}.",
        "We need two more chairs for {activity}.",
        "I saw {person} near {place} {time}.",
        "The price of {object} is on the receipt.",
        "Please tell {person} that {activity} is {time}.",
        "I usually take the train to {place}.",
    ),
    "joy": (
        "I am so happy that {activity} went well!",
        "This is wonderful, {person} fixed {object}!",
        "I love {place}, it is the best!",
        "What a great day, {activity} was amazing!",
        "Hooray, we got the tickets for {activity}!",
        "I am thrilled that {person} is coming {time}!",
        "That is fantastic news about {activity}!",
        "I can't stop smiling, {person} loved {object}!",
        "We had so much fun at {place}!",
        "Yes! {activity} was a huge success!",
        "I'm delighted, {object} looks perfect!",
        "Oh, this makes me so glad, thank you {person}!",
        "Best surprise ever, {person} found {object}!",
        "I feel wonderful about {activity} {time}!",
    ),
    "sadness": (
        "I miss {person} so much.",
        "It's sad that {activity} was cancelled.",
        "I feel so lonely at {place} without {person}.",
        "I lost {object}, and it meant a lot to me.",
        "{person} is leaving {time}, and I feel empty.",
        "Nothing went right at {activity}, I'm heartbroken.",
        "I cried after {activity}, it was so hard.",
        "I'm sorry, I just feel really down {time}.",
        "We used to go to {place} together, and now it's gone.",
        "It hurts that {person} never called back.",
        "I feel hopeless about {activity}.",
        "{object} reminds me of better days, it's so sad.",
        "I am tired and miserable after {activity}.",
        "It's a gloomy day, and I feel so alone.",
    ),
    "anger": (
        "I am furious that {person} broke {object}!",
        "This is ridiculous, {activity} is late again!",
        "Stop it! I told you to leave {object} alone!",
        "I can't believe {person} lied about {activity}!",
        "Get out of {place} right now!",
        "That is outrageous, who took {object}?",
        "I'm so angry at {person}, it's unacceptable!",
        "Don't you dare touch {object} again!",
        "I hate how {person} ruined {activity}!",
        "Enough! I am sick of waiting at {place}!",
        "You never listen, {activity} is a disaster because of you!",
        "I'm fed up with {person} and their excuses!",
        "How dare they cancel {activity} {time}!",
        "This is the last time I lend {object} to {person}!",
    ),
    "surprise": (
        "Wow, I didn't expect {person} at {place}!",
        "What? {activity} is {time}?",
        "No way, {person} bought {object}?",
        "Really? I had no idea about {activity}!",
        "Whoa, {place} looks completely different!",
        "Oh my, is that {object}?",
        "Seriously? {person} is here already?",
        "I can't believe it, {activity} moved to {time}!",
        "Wait, you found {object} in {place}?",
        "Huh, that's unexpected, {person} said yes!",
    ),
    "fear": (
        "I'm scared to go to {place} alone.",
        "What if {activity} goes wrong {time}?",
        "I heard a strange noise near {object}, I'm afraid.",
        "Please don't leave me at {place}, I'm terrified.",
        "I'm nervous that {person} won't come back.",
        "Something is wrong, I'm frightened about {activity}.",
        "I'm worried {object} will break again.",
        "Oh no, I'm so afraid of {activity}.",
        "I can't sleep, I'm scared of what {person} will say.",
        "Hide, someone is in {place}!",
    ),
    "disgust": (
        "Ugh, {object} smells awful.",
        "That's disgusting, who left food in {place}?",
        "Gross, I won't touch {object}.",
        "Yuck, {place} is filthy.",
        "I find the way {person} behaved at {activity} revolting.",
        "Eww, there's mould on {object}.",
        "That's nasty, {place} hasn't been cleaned in weeks.",
        "It makes me sick how {person} treats people.",
        "Ugh, the food at {activity} was vile.",
        "Disgusting, {object} is covered in grease.",
    ),
}

EMOTIONS = tuple(TEMPLATES)


def fill(template: str, rng: np.random.Generator) -> str:
    """Fill every `{slot}` of a template with a random filler."""
    values = {name: options[int(rng.integers(len(options)))] for name, options in SLOTS.items()}
    text = template.format(**values)
    return text[0].upper() + text[1:]


def sentence(emotion: str, rng: np.random.Generator) -> str:
    """A random sentence whose wording carries `emotion` (no emotion words for neutral)."""
    templates = TEMPLATES[emotion]
    return fill(templates[int(rng.integers(len(templates)))], rng)
