"""Helpers shared by the mini benchmark's generators (`cir_lib.mini_garments`, `cir_lib.mini_scenes`):
one seeded random generator per item, weighted picks, colour arithmetic and caption wording."""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np


def _key(part) -> int:
    if isinstance(part, str):
        return zlib.crc32(part.encode("utf-8"))
    return int(part)


def seeded_rng(seed: int, *keys) -> np.random.Generator:
    """A generator for one item, seeded by the benchmark seed and the item's keys."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(_key, keys)]))


def pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def pick_weighted(rng: np.random.Generator, weights: dict):
    u = rng.random() * sum(weights.values())
    for key, w in weights.items():
        u -= w
        if u < 0:
            return key
    return key  # rounding at the very end of the range


def chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def jitter(rgb, rng, amount: int):
    deltas = rng.integers(-amount, amount + 1, size=len(rgb))
    return tuple(min(255, max(0, int(c) + int(d))) for c, d in zip(rgb, deltas))


def shade(rgb, factor: float):
    """Darker (factor < 1) or mixed with white (factor > 1, 2 = white)."""
    if factor <= 1:
        return tuple(int(c * factor) for c in rgb)
    t = factor - 1
    return tuple(int(c + (255 - c) * t) for c in rgb)


def luminance(rgb) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def saturation(rgb) -> float:
    return (max(rgb) - min(rgb)) / 255.0


def cap_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def indefinite(phrase: str) -> str:
    """The phrase with its indefinite article: "a red logo", "an orange star"."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def join_list(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six")
