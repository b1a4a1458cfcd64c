"""Generate ``tinyworld.txt``: a synthetic-grammar English corpus for the character-level GPT.

The text is written from scratch by a small probabilistic grammar (no external sources): short
stories about animals and objects in a few places, simple dialogue, counting and sums. It has
enough structure (agreement, recurring names, arithmetic facts, paragraph form) for a tiny
transformer to learn well beyond character frequencies. Deterministic for a given seed.

Usage::

    python trainers/corpus/generate.py [--seed 0] [--kb 120] [--out trainers/corpus/tinyworld.txt]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

NAMES = ["Ada", "Bo", "Cleo", "Dov", "Eli", "Fay", "Gus", "Hana", "Ivo", "Juno", "Kit", "Lev", "Mara", "Nils"]
ANIMALS = ["fox", "owl", "cat", "dog", "hare", "crow", "mole", "frog", "goat", "wren", "bear", "otter"]
THINGS = ["ball", "lamp", "key", "box", "kite", "drum", "cup", "map", "coin", "boat", "hat", "bell"]
COLORS = ["red", "blue", "green", "small", "old", "bright", "quiet", "heavy", "round", "golden"]
PLACES = ["the river", "the hill", "the barn", "the garden", "the market", "the forest", "the bridge",
          "the well", "the meadow", "the harbor"]
VERBS_T = [("sees", "saw"), ("finds", "found"), ("carries", "carried"), ("hides", "hid"), ("paints", "painted"),
           ("drops", "dropped"), ("wants", "wanted"), ("keeps", "kept")]
VERBS_I = [("sleeps", "slept"), ("sings", "sang"), ("runs", "ran"), ("waits", "waited"), ("laughs", "laughed"),
           ("dances", "danced")]
PREPS = ["near", "under", "behind", "beside", "above", "inside"]
TIMES = ["In the morning", "At noon", "Later", "That evening", "One day", "After the rain", "Before dark"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
                "nineteen", "twenty"]


def _np(rng: random.Random) -> str:
    """A noun phrase: a name, or an article + optional adjective + animal/thing."""
    if rng.random() < 0.3:
        return rng.choice(NAMES)
    noun = rng.choice(ANIMALS if rng.random() < 0.6 else THINGS)
    words = f"{rng.choice(COLORS)} {noun}" if rng.random() < 0.5 else noun
    article = "the" if rng.random() < 0.5 else ("an" if words[0] in "aeiou" else "a")
    return f"{article} {words}"


def _clause(rng: random.Random, past: bool) -> str:
    subj = _np(rng)
    if rng.random() < 0.6:
        verb = rng.choice(VERBS_T)[past]
        obj = _np(rng)
        tail = f" {rng.choice(PREPS)} {rng.choice(PLACES)}" if rng.random() < 0.5 else ""
        return f"{subj} {verb} {obj}{tail}"
    verb = rng.choice(VERBS_I)[past]
    return f"{subj} {verb} {rng.choice(PREPS)} {rng.choice(PLACES)}"


def _sentence(rng: random.Random, past: bool) -> str:
    s = _clause(rng, past)
    r = rng.random()
    if r < 0.2:
        s += f", and {_clause(rng, past)}"
    elif r < 0.3:
        s += f", because {_clause(rng, past)}"
    if rng.random() < 0.25:
        s = f"{rng.choice(TIMES)}, {s}"
    return s[0].upper() + s[1:] + "."


def _dialogue(rng: random.Random) -> str:
    a, b = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    place = rng.choice(PLACES)
    lines = [
        f'"Where is the {thing}?" asked {a}.',
        f'"It is {rng.choice(PREPS)} {place}," said {b}.',
    ]
    if rng.random() < 0.5:
        lines.append(f'"Thank you, {b}," said {a}, and went to {place}.')
    return " ".join(lines)


def _arithmetic(rng: random.Random) -> str:
    x, y = rng.randint(0, 10), rng.randint(0, 10)
    if rng.random() < 0.5:
        return f"{NUMBER_WORDS[x].capitalize()} plus {NUMBER_WORDS[y]} is {NUMBER_WORDS[x + y]}. {x} + {y} = {x + y}."
    hi, lo = max(x, y), min(x, y)
    animal = rng.choice(ANIMALS)
    plural = animal + ("es" if animal.endswith("x") else "s")
    return f"There were {hi} {plural} at {rng.choice(PLACES)}; {lo} went home, so {hi - lo} stayed."


def _paragraph(rng: random.Random) -> str:
    past = rng.random() < 0.6
    parts = []
    for _ in range(rng.randint(3, 7)):
        r = rng.random()
        parts.append(_dialogue(rng) if r < 0.15 else _arithmetic(rng) if r < 0.25 else _sentence(rng, past))
    return " ".join(parts)


def generate(seed: int = 0, kb: int = 120) -> str:
    """Paragraphs separated by blank lines until the text reaches ``kb`` kilobytes."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    size = 0
    while size < kb * 1024:
        p = _paragraph(rng)
        paragraphs.append(p)
        size += len(p) + 2
    return "\n\n".join(paragraphs) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kb", type=int, default=120)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("tinyworld.txt"))
    args = parser.parse_args()
    args.out.write_text(generate(args.seed, args.kb), encoding="utf-8")


if __name__ == "__main__":
    main()
