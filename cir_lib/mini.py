"""The embedded mini benchmarks: procedurally generated FashionIQ-like and CIRR-like data.

`make_mini(out, preset, seed)` writes, byte-identical for a given seed and preset:

    out/fashionIQ_dataset/   images/<name>.jpg, captions/cap.<category>.<split>.json,
                             image_splits/split.<category>.<split>.json   (the real layout)
    out/cirr_dataset/        train/<k>/<name>.png, dev/<name>.png, test1/<name>.png,
                             cirr/captions/cap.rc2.<split>.json,
                             cirr/image_splits/split.rc2.<split>.json      (the real layout)
    out/mini_pool/           images/ + captions.json: images with absolute captions, for
                             pretraining the tiny backbone (not part of either benchmark)
    out/MINI_BENCHMARK.json  preset, seed, counts, kit version

The content is built so that composition matters:

- FashionIQ-like: garments of three categories with distinct silhouettes (dress, shirt, toptee),
  varying in colour, pattern, sleeve length, neckline, dress length and a graphic (lettering, logo,
  star) with its own colour; nuisance: position, scale, background shade, non-square aspect ratios.
  A pair differs in 1-3 attributes; its two relative captions each mention only some of the
  changes, in many paraphrases, sometimes vaguely ("is more casual").
- CIRR-like: scenes of 2-5 simple objects (dog, cat, bird, car, tree, house, ball, cup) on a
  background. Each img_set holds 6 variants of one base scene; captions add, remove, recolour,
  count or move objects or change the background, again mentioning only some of the changes.

Every image is drawn from its own random generator, seeded by (seed, dataset, split, ..., index),
so the output does not depend on the order of work. JSON files follow the real files' formatting
(FashionIQ: indent 4; CIRR: one line; key order as in the real files), images are saved with fixed
encoder settings (JPEG quality 90, PNG without timestamps): the same seed gives the same bytes with
the same Pillow / libjpeg / zlib builds.

Sizes live in `PRESETS` ("smoke" for CI, "mini" for the pipeline); tune them there.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from cir_lib import __version__
from cir_lib.constants import (
    CIRR_DIR,
    CIRR_SET_SIZE,
    CIRR_SPLITS,
    CIRR_VERSION,
    FASHIONIQ_CATEGORIES,
    FASHIONIQ_DIR,
    FASHIONIQ_SPLITS,
    MINI_CHECKPOINT,
    MINI_POOL_DIR,
)
from cir_lib.errors import ConfigError
from cir_lib.progress import progress_bar

logger = logging.getLogger(__name__)

MINI_GENERATOR_VERSION = 1  # bump when the generated content changes for a given seed
MANIFEST_NAME = "MINI_BENCHMARK.json"
JPEG_QUALITY = 90  # fixed so that output is byte-identical
PNG_COMPRESS_LEVEL = 6
CIRR_SPLIT_DIRS = {"train": "train", "val": "dev", "test1": "test1"}  # image folder and name prefix


# ------------------------------------------------------------------------------------------ presets


@dataclass(frozen=True)
class MiniPreset:
    """Sizes of one mini benchmark. FashionIQ counts are per category."""

    fashioniq_train_images: int  # images in split.<category>.train.json
    fashioniq_train_queries: int  # pairs in cap.<category>.train.json
    fashioniq_val_images: int  # index size of one category's val split
    fashioniq_val_queries: int  # pairs in cap.<category>.val.json
    fashioniq_test_images: int  # images in split.<category>.test.json
    fashioniq_test_queries: int  # pairs in cap.<category>.test.json (no targets written)
    cirr_train_sets: int  # img_sets of 6 images in CIRR train
    cirr_val_sets: int  # img_sets in CIRR val (dev)
    cirr_test1_sets: int  # img_sets in CIRR test1
    cirr_train_folders: int  # numbered subfolders of cirr_dataset/train/
    pool_fashion_images: int  # garments with absolute captions in mini_pool/
    pool_scene_images: int  # scenes with absolute captions in mini_pool/

    def __post_init__(self):
        for split in FASHIONIQ_SPLITS:
            images = getattr(self, f"fashioniq_{split}_images")
            queries = getattr(self, f"fashioniq_{split}_queries")
            if queries < 1 or images < queries + 1:
                raise ConfigError(
                    f"mini preset: FashionIQ {split} needs at least 1 query and more images than "
                    f"queries (got {queries} queries, {images} images)"
                )
        for split in CIRR_SPLITS:
            if getattr(self, f"cirr_{split}_sets") < 1:
                raise ConfigError(f"mini preset: CIRR {split} needs at least one img_set")
        if self.cirr_train_folders < 1:
            raise ConfigError("mini preset: cirr_train_folders must be at least 1")


PRESETS = {
    # Tiny, for CI: about 60-100 images per FashionIQ category-split and per CIRR split.
    "smoke": MiniPreset(
        fashioniq_train_images=90, fashioniq_train_queries=60,
        fashioniq_val_images=72, fashioniq_val_queries=40,
        fashioniq_test_images=60, fashioniq_test_queries=30,
        cirr_train_sets=16, cirr_val_sets=12, cirr_test1_sets=10, cirr_train_folders=3,
        pool_fashion_images=80, pool_scene_images=40,
    ),
    # Large enough for the pipeline to show the method working on 2 CPU cores in minutes.
    "mini": MiniPreset(
        fashioniq_train_images=1500, fashioniq_train_queries=1200,
        fashioniq_val_images=1200, fashioniq_val_queries=600,
        fashioniq_test_images=900, fashioniq_test_queries=450,
        cirr_train_sets=500, cirr_val_sets=200, cirr_test1_sets=180, cirr_train_folders=10,
        pool_fashion_images=3000, pool_scene_images=1500,
    ),
}


# --------------------------------------------------------------------------------- random helpers


def _key(part) -> int:
    if isinstance(part, str):
        return zlib.crc32(part.encode("utf-8"))
    return int(part)


def seeded_rng(seed: int, *keys) -> np.random.Generator:
    """A generator for one item, seeded by the benchmark seed and the item's keys."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(_key, keys)]))


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _pick_weighted(rng: np.random.Generator, weights: dict):
    u = rng.random() * sum(weights.values())
    for key, w in weights.items():
        u -= w
        if u < 0:
            return key
    return key  # rounding at the very end of the range


def _chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def _jitter(rgb, rng, amount: int):
    deltas = rng.integers(-amount, amount + 1, size=len(rgb))
    return tuple(min(255, max(0, int(c) + int(d))) for c, d in zip(rgb, deltas))


def _shade(rgb, factor: float):
    """Darker (factor < 1) or mixed with white (factor > 1, 2 = white)."""
    if factor <= 1:
        return tuple(int(c * factor) for c in rgb)
    t = factor - 1
    return tuple(int(c + (255 - c) * t) for c in rgb)


def _luminance(rgb) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def _saturation(rgb) -> float:
    return (max(rgb) - min(rgb)) / 255.0


def _cap_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _a(phrase: str) -> str:
    """The phrase with its indefinite article: "a red logo", "an orange star"."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _join_list(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six")


# ===================================================================================== FashionIQ

FASHION_COLOURS = {
    "black": (25, 25, 28), "white": (245, 245, 242), "grey": (128, 128, 130),
    "navy": (30, 40, 100), "blue": (40, 95, 210), "light blue": (140, 190, 235),
    "red": (200, 30, 35), "pink": (240, 140, 180), "purple": (120, 50, 150),
    "green": (40, 140, 60), "yellow": (240, 210, 40), "orange": (240, 130, 30),
    "brown": (120, 75, 40), "beige": (215, 195, 160),
}
COLOUR_SYNONYMS = {"grey": ("grey", "gray"), "beige": ("beige", "tan", "cream")}
GRAPHIC_COLOURS = ("white", "black", "red", "yellow", "blue", "green", "pink", "orange")
PATTERNS = ("plain", "striped", "dotted", "checked", "floral")
SLEEVES = ("sleeveless", "short", "long")  # ordered by length
NECKLINES = ("round", "v-neck")
DRESS_LENGTHS = ("short", "long")
GRAPHICS = ("none", "lettering", "logo", "star")
CATEGORY_NOUNS = {"dress": ("dress",), "shirt": ("shirt", "button up"), "toptee": ("top", "tee", "t-shirt")}

# Which attributes a pair may change, with how often each is picked.
MUTABLE_ATTRIBUTES = {
    "dress": {"colour": 3.0, "pattern": 2.5, "sleeves": 2.0, "graphic": 2.0, "neck": 1.0, "length": 1.5},
    "shirt": {"colour": 3.0, "pattern": 2.5, "sleeves": 2.0, "graphic": 2.0, "neck": 1.0},
    "toptee": {"colour": 3.0, "pattern": 2.5, "sleeves": 2.0, "graphic": 2.5, "neck": 1.0},
}
PATTERN_WEIGHTS = {"plain": 0.4, "striped": 0.15, "dotted": 0.15, "checked": 0.15, "floral": 0.15}
SLEEVE_WEIGHTS = {
    "dress": {"sleeveless": 0.4, "short": 0.35, "long": 0.25},
    "shirt": {"sleeveless": 0.1, "short": 0.45, "long": 0.45},
    "toptee": {"sleeveless": 0.3, "short": 0.45, "long": 0.25},
}
GRAPHIC_WEIGHTS = {
    "dress": {"none": 0.6, "lettering": 0.15, "logo": 0.1, "star": 0.15},
    "shirt": {"none": 0.5, "lettering": 0.2, "logo": 0.2, "star": 0.1},
    "toptee": {"none": 0.35, "lettering": 0.3, "logo": 0.15, "star": 0.2},
}
CHANGES_PER_PAIR = {1: 0.35, 2: 0.4, 3: 0.25}
# Canvas sizes (width, height): mostly portrait, some square and landscape, so targetpad matters.
FASHION_SIZES = {(64, 96): 3, (72, 96): 3, (56, 88): 2, (80, 96): 2, (80, 80): 1, (96, 72): 1, (96, 64): 1}


@dataclass(frozen=True)
class Garment:
    """The attributes of one garment image (nuisance is drawn at render time)."""

    category: str  # dress / shirt / toptee
    colour: str  # a FASHION_COLOURS name
    pattern: str  # a PATTERNS name
    sleeves: str  # sleeveless / short / long
    neck: str  # round / v-neck
    length: str  # dress: short / long; other categories: "regular"
    graphic: str  # none / lettering / logo / star
    graphic_colour: str  # a GRAPHIC_COLOURS name; "" when graphic is none


def random_garment(category: str, rng: np.random.Generator) -> Garment:
    """Draw a garment of `category` with random attributes."""
    colour = _pick(rng, list(FASHION_COLOURS))
    graphic = _pick_weighted(rng, GRAPHIC_WEIGHTS[category])
    return Garment(
        category=category,
        colour=colour,
        pattern=_pick_weighted(rng, PATTERN_WEIGHTS),
        sleeves=_pick_weighted(rng, SLEEVE_WEIGHTS[category]),
        neck=_pick(rng, NECKLINES),
        length=_pick(rng, DRESS_LENGTHS) if category == "dress" else "regular",
        graphic=graphic,
        graphic_colour="" if graphic == "none" else _graphic_colour_for(colour, rng),
    )


def _graphic_colour_for(colour: str, rng, exclude: str = "") -> str:
    choices = [c for c in GRAPHIC_COLOURS if c != colour and c != exclude]
    return _pick(rng, choices)


def mutate_garment(garment: Garment, n_changes: int, rng: np.random.Generator) -> tuple[Garment, list[str]]:
    """Change `n_changes` distinct attributes of `garment`.

    Returns:
        (the new garment, the names of the changed attributes in the order they were picked)
    """
    weights = dict(MUTABLE_ATTRIBUTES[garment.category])
    changed: list[str] = []
    g = garment
    for _ in range(min(n_changes, len(weights))):
        attr = _pick_weighted(rng, weights)
        del weights[attr]
        changed.append(attr)
        if attr == "colour":
            choices = [c for c in FASHION_COLOURS if c not in (g.colour, g.graphic_colour)]
            g = replace(g, colour=_pick(rng, choices))
        elif attr == "pattern":
            g = replace(g, pattern=_pick(rng, [p for p in PATTERNS if p != g.pattern]))
        elif attr == "sleeves":
            g = replace(g, sleeves=_pick(rng, [s for s in SLEEVES if s != g.sleeves]))
        elif attr == "neck":
            g = replace(g, neck=_pick(rng, [n for n in NECKLINES if n != g.neck]))
        elif attr == "length":
            g = replace(g, length=_pick(rng, [n for n in DRESS_LENGTHS if n != g.length]))
        elif attr == "graphic":
            if g.graphic == "none":
                g = replace(g, graphic=_pick(rng, GRAPHICS[1:]), graphic_colour=_graphic_colour_for(g.colour, rng))
            else:
                action = _pick_weighted(rng, {"remove": 0.35, "kind": 0.3, "colour": 0.35})
                if action == "remove":
                    g = replace(g, graphic="none", graphic_colour="")
                elif action == "kind":
                    kind = _pick(rng, [k for k in GRAPHICS[1:] if k != g.graphic])
                    colour = g.graphic_colour if _chance(rng, 0.6) else _graphic_colour_for(g.colour, rng)
                    g = replace(g, graphic=kind, graphic_colour=colour)
                else:
                    g = replace(g, graphic_colour=_graphic_colour_for(g.colour, rng, exclude=g.graphic_colour))
    return g, changed


# ---- garment drawing. Shapes are in garment units: height 1 (0 = shoulders), x centred on 0.

_SILHOUETTES = {
    # body polygon, shoulder point S, armpit point P (right side; mirrored), sleeve angle (deg
    # below horizontal), short / long sleeve length, graphic centre
    "dress": dict(shoulder=(0.13, 0.0), armpit=(0.15, 0.20), angle=62, sleeve={"short": 0.12, "long": 0.42},
                  graphic=(0.0, 0.23), width=0.7),
    "shirt": dict(shoulder=(0.20, 0.02), armpit=(0.22, 0.28), angle=72, sleeve={"short": 0.14, "long": 0.55},
                  graphic=(0.0, 0.42), width=0.75),
    "toptee": dict(shoulder=(0.24, 0.05), armpit=(0.26, 0.22), angle=30, sleeve={"short": 0.16, "long": 0.44},
                   graphic=(0.0, 0.36), width=1.05),
}


def _garment_body(g: Garment) -> list[tuple[float, float]]:
    if g.category == "dress":
        hem, half = (1.0, 0.34) if g.length == "long" else (0.66, 0.26)
        return [(-0.13, 0.0), (0.13, 0.0), (0.15, 0.22), (0.11, 0.36), (half, hem), (-half, hem),
                (-0.11, 0.36), (-0.15, 0.22)]
    if g.category == "shirt":
        return [(-0.20, 0.02), (0.20, 0.02), (0.22, 0.30), (0.22, 0.95), (0.0, 0.97), (-0.22, 0.95),
                (-0.22, 0.30)]
    return [(-0.24, 0.05), (0.24, 0.05), (0.26, 0.22), (0.24, 0.78), (-0.24, 0.78), (-0.26, 0.22)]


def _garment_sleeves(g: Garment) -> list[list[tuple[float, float]]]:
    if g.sleeves == "sleeveless":
        return []
    spec = _SILHOUETTES[g.category]
    length = spec["sleeve"][g.sleeves]
    angle = math.radians(spec["angle"])
    polys = []
    for side in (-1, 1):
        sx, sy = spec["shoulder"][0] * side, spec["shoulder"][1]
        px, py = spec["armpit"][0] * side, spec["armpit"][1]
        dx, dy = side * math.cos(angle) * length, math.sin(angle) * length
        polys.append([(sx, sy), (sx + dx, sy + dy), (px + dx * 0.85, py + dy * 0.85), (px, py)])
    return polys


def _garment_neck(g: Garment) -> list[tuple[float, float]]:
    top = _SILHOUETTES[g.category]["shoulder"][1]
    half = {"dress": 0.07, "shirt": 0.06, "toptee": 0.09}[g.category]
    if g.neck == "v-neck":
        return [(-half, top - 0.01), (half, top - 0.01), (0.0, top + (0.2 if g.category == "shirt" else 0.15))]
    depth = 0.06
    return [(half * math.cos(t), top - 0.01 + depth * math.sin(t)) for t in np.linspace(0, math.pi, 9)]


def _pattern_colour(rgb):
    return _shade(rgb, 1.65) if _luminance(rgb) < 120 else _shade(rgb, 0.45)


def _draw_pattern(draw: ImageDraw.ImageDraw, pattern: str, box, unit: float, colour, rng):
    """Fill `box` (pixel bbox) with a pattern; `unit` is the garment height in pixels."""
    x0, y0, x1, y1 = box
    if pattern == "plain":
        return
    period = max(3.0, unit * 0.10)
    ox, oy = rng.uniform(0, period), rng.uniform(0, period)  # phase is nuisance
    if pattern == "striped":
        thick = max(1, round(period * 0.4))
        y = y0 - oy
        while y < y1:
            draw.rectangle([x0, round(y), x1, round(y) + thick - 1], fill=colour)
            y += period
    elif pattern == "checked":
        thick = max(1, round(period * 0.3))
        y = y0 - oy
        while y < y1:
            draw.rectangle([x0, round(y), x1, round(y) + thick - 1], fill=colour)
            y += period
        x = x0 - ox
        while x < x1:
            draw.rectangle([round(x), y0, round(x) + thick - 1, y1], fill=colour)
            x += period
    elif pattern == "dotted":
        r = max(1.0, period * 0.25)
        for row, y in enumerate(np.arange(y0 - oy, y1 + period, period)):
            shift = period / 2 if row % 2 else 0.0
            for x in np.arange(x0 - ox + shift, x1 + period, period):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif pattern == "floral":
        step = period * 1.4
        r = max(1.0, step * 0.16)
        for row, y in enumerate(np.arange(y0 - oy, y1 + step, step)):
            shift = step / 2 if row % 2 else 0.0
            for x in np.arange(x0 - ox + shift, x1 + step, step):
                for dx, dy in ((r, 0), (-r, 0), (0, r), (0, -r)):
                    draw.ellipse([x + dx - r, y + dy - r, x + dx + r, y + dy + r], fill=colour)
                draw.point((round(x), round(y)), fill=(240, 220, 60))
    else:
        raise ValueError(f"unknown pattern {pattern!r}")


def _star(cx, cy, r_out, r_in, rotation=0.0):
    pts = []
    for i in range(10):
        r = r_out if i % 2 == 0 else r_in
        t = rotation - math.pi / 2 + i * math.pi / 5
        pts.append((cx + r * math.cos(t), cy + r * math.sin(t)))
    return pts


def _draw_graphic(draw: ImageDraw.ImageDraw, g: Garment, centre, unit: float, rng):
    if g.graphic == "none":
        return
    colour = _jitter(FASHION_COLOURS[g.graphic_colour], rng, 8)
    cx, cy = centre
    if g.graphic == "lettering":
        # A line (sometimes two) of blocky glyphs: vertical strokes with random cross bars.
        glyph_h = max(3.0, unit * 0.07)
        glyph_w = max(2.0, glyph_h * 0.6)
        n = int(rng.integers(3, 6))
        rows = 2 if _chance(rng, 0.3) else 1
        stroke = max(1, round(glyph_h / 4))
        for row in range(rows):
            y = cy - rows * glyph_h * 0.7 + row * glyph_h * 1.4
            x = cx - n * glyph_w * 0.65
            for _ in range(n):
                shape = int(rng.integers(4))
                gx0, gy0 = round(x), round(y)
                gx1, gy1 = round(x + glyph_w), round(y + glyph_h)
                draw.rectangle([gx0, gy0, gx0 + stroke - 1, gy1], fill=colour)
                if shape in (0, 1):
                    draw.rectangle([gx0, gy0, gx1, gy0 + stroke - 1], fill=colour)
                if shape in (1, 2):
                    draw.rectangle([gx0, gy1 - stroke + 1, gx1, gy1], fill=colour)
                if shape == 3:
                    draw.rectangle([gx1 - stroke + 1, gy0, gx1, gy1], fill=colour)
                x += glyph_w * 1.3
    elif g.graphic == "logo":
        r = max(2.0, unit * 0.075)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        ri = r * 0.45
        draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=_jitter(FASHION_COLOURS[g.colour], rng, 6))
    elif g.graphic == "star":
        r = max(2.5, unit * 0.09)
        draw.polygon(_star(cx, cy, r, r * 0.45, rng.uniform(-0.2, 0.2)), fill=colour)
    else:
        raise ValueError(f"unknown graphic {g.graphic!r}")


def render_garment(attrs: Garment, rng: np.random.Generator) -> Image.Image:
    """Draw one garment image; `rng` draws the nuisance (canvas size, scale, position, shades).

    Args:
        attrs: the garment's attributes.
        rng: the image's own generator.
    Returns:
        an RGB PIL image, about 56-96 px per side, often non-square.

    Example:
        >>> img = render_garment(random_garment("dress", seeded_rng(0, 1)), seeded_rng(0, 2))
    """
    g = attrs
    spec = _SILHOUETTES[g.category]
    width, height = _pick_weighted(rng, {s: w for s, w in FASHION_SIZES.items()})
    bg = _jitter((int(rng.integers(215, 256)),) * 3, rng, 6)
    canvas = Image.new("RGB", (width, height), bg)

    # Scale on the nominal extent of the category (height 1, widest sleeves), so that a short
    # dress or short sleeves look short instead of being blown up to fill the frame.
    nominal_w = spec["width"] + 0.1
    unit = min((height - 4) / 1.05, (width - 4) / nominal_w) * rng.uniform(0.72, 0.95)
    shapes = [_garment_body(g)] + _garment_sleeves(g)
    xs = [x for poly in shapes for x, _ in poly]
    ys = [y for poly in shapes for _, y in poly]
    ext_w, ext_h = (max(xs) - min(xs)) * unit, (max(ys) - min(ys)) * unit
    left = rng.uniform(1, max(1.0, width - ext_w - 1))
    top = rng.uniform(1, max(1.0, height - ext_h - 1))
    ox, oy = left - min(xs) * unit, top - min(ys) * unit

    def px(poly):
        return [(ox + x * unit, oy + y * unit) for x, y in poly]

    colour = _jitter(FASHION_COLOURS[g.colour], rng, 12)
    outline = _shade(colour, 0.55) if _luminance(colour) > 60 else _shade(colour, 1.4)
    mask = Image.new("L", (width, height), 0)
    mdraw = ImageDraw.Draw(mask)
    for poly in shapes:
        mdraw.polygon(px(poly), fill=255)
    layer = Image.new("RGB", (width, height), colour)
    bbox = (int(left) - 1, int(top) - 1, int(left + ext_w) + 2, int(top + ext_h) + 2)
    _draw_pattern(ImageDraw.Draw(layer), g.pattern, bbox, unit, _pattern_colour(colour), rng)
    canvas.paste(layer, (0, 0), mask)

    draw = ImageDraw.Draw(canvas)
    for poly in shapes:
        draw.polygon(px(poly), outline=outline)
    draw.polygon(px(_garment_neck(g)), fill=bg, outline=outline)
    if g.category == "shirt":
        draw.line(px([(0.0, 0.1), (0.0, 0.95)]), fill=outline)
        for v in (0.3, 0.5, 0.7, 0.88):
            bx, by = px([(0.0, v)])[0]
            draw.point((round(bx) + 1, round(by)), fill=outline)
        for side in (-1, 1):
            draw.polygon(px([(side * 0.01, 0.0), (side * 0.11, 0.0), (side * 0.1, 0.12)]), fill=colour, outline=outline)
    elif g.category == "dress":
        draw.line(px([(-0.11, 0.36), (0.11, 0.36)]), fill=outline)
    _draw_graphic(draw, g, px([spec["graphic"]])[0], unit, rng)
    return canvas


# ---- FashionIQ captions


def _colour_word(colour: str, rng) -> str:
    return _pick(rng, COLOUR_SYNONYMS[colour]) if colour in COLOUR_SYNONYMS else colour


def _noun(g: Garment, rng) -> str:
    return _pick(rng, CATEGORY_NOUNS[g.category])


_PATTERN_ABSOLUTE = {
    "plain": ("is solid", "is plain", "has no pattern", "is a solid color", "has no print", "is solid colored"),
    "striped": ("is striped", "has stripes", "has horizontal stripes", "is stripy", "has a striped pattern"),
    "dotted": ("has polka dots", "is dotted", "has dots", "is polka dot", "has a dotted pattern", "has spots"),
    "checked": ("is checkered", "is plaid", "has a checked pattern", "is checked", "has a plaid print"),
    "floral": ("is floral", "has a floral print", "has flowers on it", "has a flower pattern", "is flowery"),
}
_PATTERN_NOUNS = {"striped": "stripes", "dotted": "dots", "checked": "checks", "floral": "flowers"}
_PATTERN_ADJECTIVES = {"plain": ("plain", "solid"), "striped": ("striped",), "dotted": ("polka dot", "dotted"),
                       "checked": ("checked", "plaid"), "floral": ("floral",)}
_SLEEVE_ABSOLUTE = {
    "sleeveless": ("is sleeveless", "has no sleeves", "is without sleeves", "has straps instead of sleeves"),
    "short": ("has short sleeves", "is short sleeved", "has short sleeve", "has cap sleeves"),
    "long": ("has long sleeves", "is long sleeved", "has long sleeve", "has full sleeves"),
}
_NECK_ABSOLUTE = {
    "v-neck": ("has a v-neck", "has a v neck", "is v-neck", "has a v-neckline"),
    "round": ("has a round neck", "has a crew neck", "has a round neckline", "has a scoop neck"),
}
_LENGTH_ABSOLUTE = {
    "long": ("is long", "is a maxi dress", "is floor length", "is a long dress"),
    "short": ("is short", "is a mini dress", "is a short dress", "is above the knee"),
}
_GRAPHIC_NOUNS = {
    "lettering": ("lettering", "writing", "text", "letters", "words"),
    "logo": ("logo", "round logo", "circle logo", "emblem"),
    "star": ("star", "star graphic", "star print"),
}
VAGUE_FASHION_CAPTIONS = (
    "is more casual", "looks nicer", "is more elegant", "is prettier", "is more fashionable",
    "is more modern", "is more stylish", "is sportier", "is cuter", "is more formal", "looks better",
    "is similar", "different style", "is more trendy", "is more fun", "is more youthful",
    "is less boring", "is more mature", "is more simple", "looks more comfortable",
)


def _graphic_np(kind: str, colour: str, rng, with_article=True) -> str:
    """A noun phrase for a graphic: "white lettering", "a red logo"."""
    noun = _pick(rng, _GRAPHIC_NOUNS[kind])
    phrase = f"{colour} {noun}" if colour else noun
    if with_article and kind != "lettering":
        phrase = _a(phrase)
    return phrase


def _absolute_phrase(attr: str, g: Garment, rng) -> str:
    """A phrase describing the target's value of `attr` on its own ("is red", "has stripes")."""
    if attr == "colour":
        c = _colour_word(g.colour, rng)
        return _pick(rng, (f"is {c}", f"is {c} colored", f"is {c} in color", f"is {_a(c)} {_noun(g, rng)}",
                           f"has {_a(c)} color", c))
    if attr == "pattern":
        return _pick(rng, _PATTERN_ABSOLUTE[g.pattern])
    if attr == "sleeves":
        return _pick(rng, _SLEEVE_ABSOLUTE[g.sleeves])
    if attr == "neck":
        return _pick(rng, _NECK_ABSOLUTE[g.neck])
    if attr == "length":
        return _pick(rng, _LENGTH_ABSOLUTE[g.length]) if g.category == "dress" else f"is a {_noun(g, rng)}"
    if attr == "graphic":
        if g.graphic == "none":
            return _pick(rng, ("has no graphic", "has nothing on the front", "has no print on the front", "is plain"))
        np_ = _graphic_np(g.graphic, _colour_word(g.graphic_colour, rng), rng)
        return _pick(rng, (f"has {np_}", f"has {np_} on the front", f"has {np_} on it"))
    raise ValueError(attr)


def _change_phrase(attr: str, ref: Garment, tgt: Garment, rng) -> str:
    """A phrase for one changed attribute, absolute or relative to the reference."""
    if attr == "colour":
        c0, c1 = _colour_word(ref.colour, rng), _colour_word(tgt.colour, rng)
        l0, l1 = _luminance(FASHION_COLOURS[ref.colour]), _luminance(FASHION_COLOURS[tgt.colour])
        options = [_absolute_phrase("colour", tgt, rng)] * 4 + [
            f"is {c1} instead of {c0}", f"is {c1} not {c0}", f"is {c1} rather than {c0}",
            "is a different color", f"change the color to {c1}",
        ]
        if abs(l1 - l0) > 60:
            rel = "darker" if l1 < l0 else "lighter"
            options += [f"is {rel}", f"is a {rel} color", f"is {rel} in color", f"is {rel} and {c1}"]
        if _saturation(FASHION_COLOURS[tgt.colour]) - _saturation(FASHION_COLOURS[ref.colour]) > 0.35:
            options.append("is more colorful")
        return _pick(rng, options)
    if attr == "pattern":
        options = [_absolute_phrase("pattern", tgt, rng)] * 3
        if ref.pattern == "plain":
            options += ["has a pattern", "is patterned", "is printed", "has a print"]
        elif tgt.pattern == "plain":
            options += [f"has no {_PATTERN_NOUNS[ref.pattern]}", f"is without the {_PATTERN_NOUNS[ref.pattern]}"]
        else:
            options += [f"has {_PATTERN_NOUNS[tgt.pattern]} instead of {_PATTERN_NOUNS[ref.pattern]}",
                        "has a different pattern"]
        return _pick(rng, options)
    if attr == "sleeves":
        longer = SLEEVES.index(tgt.sleeves) > SLEEVES.index(ref.sleeves)
        rel = ("has longer sleeves", "sleeves are longer", "has more sleeve") if longer else (
            "has shorter sleeves", "sleeves are shorter", "is more revealing")
        return _pick(rng, [_absolute_phrase("sleeves", tgt, rng)] * 2 + list(rel))
    if attr == "neck":
        return _absolute_phrase("neck", tgt, rng)
    if attr == "length":
        rel = ("is longer", "is much longer") if tgt.length == "long" else ("is shorter", "is much shorter")
        return _pick(rng, [_absolute_phrase("length", tgt, rng)] * 2 + list(rel))
    if attr == "graphic":
        gc1 = _colour_word(tgt.graphic_colour, rng) if tgt.graphic_colour else ""
        if ref.graphic == "none":
            np_ = _graphic_np(tgt.graphic, gc1, rng)
            return _pick(rng, (f"has {np_}", f"has {np_} on the front", f"has {np_} on it",
                               "has a graphic on the front", "has a design on the front"))
        noun0 = _pick(rng, _GRAPHIC_NOUNS[ref.graphic])
        if tgt.graphic == "none":
            return _pick(rng, (f"has no {noun0}", "has no graphic", "has nothing on the front",
                               f"is without {noun0}", "has no print on the front"))
        if tgt.graphic != ref.graphic:
            np_ = _graphic_np(tgt.graphic, gc1 if _chance(rng, 0.6) else "", rng)
            return _pick(rng, (f"has {np_} instead of {noun0}", f"has {np_}", "has a different graphic"))
        gc0 = _colour_word(ref.graphic_colour, rng)
        noun = _pick(rng, _GRAPHIC_NOUNS[tgt.graphic])
        return _pick(rng, (f"has {gc1} {noun}", f"the {noun} is {gc1}", f"has {gc1} {noun} instead of {gc0}",
                           f"{gc1} {noun}"))
    raise ValueError(attr)


def _assemble(phrases: list[str], g: Garment, rng) -> str:
    text = phrases[0]
    for p in phrases[1:]:
        if p.startswith("has ") and _chance(rng, 0.5):
            text += " with " + p[4:]
        elif p.startswith("is ") and text.startswith("is ") and _chance(rng, 0.5):
            text += " and " + p[3:]
        else:
            text += _pick(rng, (" and ", " and ", ", ", " & ")) + p
    r = rng.random()
    if r < 0.08 and text.startswith(("is ", "has ")):
        text = "it " + text
    elif r < 0.13 and text.startswith(("is ", "has ")):
        text = f"the {_noun(g, rng)} " + text
    if _chance(rng, 0.15):
        text = _cap_first(text)
    if _chance(rng, 0.08):
        text += "."
    return text


def fashioniq_captions(ref: Garment, tgt: Garment, changed: list[str], rng: np.random.Generator) -> list[str]:
    """Two relative captions for a pair, as two annotators would write them.

    Each caption mentions a random subset of the changed attributes (the second prefers the
    changes the first left out), in varied paraphrases; some captions are vague, some mention an
    attribute that did not change.

    Returns:
        [c1, c2]
    """
    changes = [changed[i] for i in rng.permutation(len(changed))]
    unchanged = [a for a in MUTABLE_ATTRIBUTES[tgt.category] if a not in changed]
    sizes = {1: 0.55, 2: 0.3, 3: 0.15}
    k1 = min(len(changes), _pick_weighted(rng, sizes))
    first = changes[:k1]
    rest = changes[k1:]
    if rest and _chance(rng, 0.65):
        second = rest if _chance(rng, 0.6) else rest[: max(1, len(rest) - 1)]
    else:
        k2 = min(len(changes), _pick_weighted(rng, sizes))
        second = [changes[i] for i in sorted(rng.choice(len(changes), k2, replace=False))]

    captions = []
    vague_both = _chance(rng, 0.03)
    for idx, mention in enumerate((first, second)):
        if vague_both or _chance(rng, 0.1):
            captions.append(_pick(rng, VAGUE_FASHION_CAPTIONS))
            continue
        phrases = [_change_phrase(a, ref, tgt, rng) for a in mention]
        if idx == 1 and mention == first and unchanged and _chance(rng, 0.35):
            # Nothing new to say: describe something of the target that did not change.
            phrases = [_absolute_phrase(_pick(rng, unchanged), tgt, rng)]
        elif unchanged and _chance(rng, 0.12):
            phrases.insert(int(rng.integers(len(phrases) + 1)), _absolute_phrase(_pick(rng, unchanged), tgt, rng))
        captions.append(_assemble(phrases, tgt, rng))
    return captions


def absolute_garment_caption(g: Garment, rng: np.random.Generator) -> str:
    """A full description: "a red striped dress with short sleeves and white lettering"."""
    colour = _colour_word(g.colour, rng)
    pattern = _pick(rng, _PATTERN_ADJECTIVES[g.pattern])
    if g.pattern == "plain" and _chance(rng, 0.5):
        pattern = ""
    adjectives = [a for a in (g.length if g.category == "dress" else "", colour, pattern) if a]
    if g.sleeves == "sleeveless" and _chance(rng, 0.5):
        adjectives.insert(0, "sleeveless")
        sleeve = ""
    else:
        sleeve = {"sleeveless": "no sleeves", "short": "short sleeves", "long": "long sleeves"}[g.sleeves]
    extras = [e for e in (sleeve, "a v-neck" if g.neck == "v-neck" else "a round neck") if e]
    if g.graphic != "none":
        extras.append(_graphic_np(g.graphic, _colour_word(g.graphic_colour, rng), rng))
    order = [extras[i] for i in rng.permutation(len(extras))]
    return f"{_a(' '.join(adjectives + [_noun(g, rng)]))} with {_join_list(order)}"


# ========================================================================================== CIRR

SCENE_COLOURS = {
    "red": (210, 35, 35), "blue": (40, 80, 215), "green": (40, 160, 60), "yellow": (245, 215, 40),
    "orange": (245, 135, 30), "purple": (130, 50, 170), "pink": (245, 140, 190), "brown": (130, 80, 40),
    "black": (30, 30, 30), "white": (245, 245, 245), "grey": (135, 135, 135),
}
OBJECT_KINDS = ("dog", "cat", "bird", "car", "tree", "house", "ball", "cup")
OBJECT_WORDS = {  # (singular synonyms, plural of each)
    "dog": (("dog", "dog", "puppy"), ("dogs", "dogs", "puppies")),
    "cat": (("cat", "cat", "kitten"), ("cats", "cats", "kittens")),
    "bird": (("bird",), ("birds",)),
    "car": (("car", "car", "vehicle"), ("cars", "cars", "vehicles")),
    "tree": (("tree",), ("trees",)),
    "house": (("house", "house", "building"), ("houses", "houses", "buildings")),
    "ball": (("ball",), ("balls",)),
    "cup": (("cup", "cup", "mug"), ("cups", "cups", "mugs")),
}
BACKGROUNDS = {  # sky / wall colour, ground / floor colour, phrases
    "grass": ((150, 200, 240), (80, 160, 70), ("on the grass", "on a grassy field", "in a park")),
    "beach": ((150, 200, 240), (225, 205, 150), ("on a beach", "on the sand")),
    "snow": ((200, 210, 220), (245, 245, 250), ("in the snow", "on snow")),
    "night": ((20, 25, 60), (40, 50, 45), ("at night", "in the dark")),
    "road": ((160, 200, 235), (105, 105, 110), ("on a road", "on the street")),
    "room": ((225, 215, 190), (150, 100, 60), ("indoors", "in a room", "inside a room")),
}
GRID_COLUMNS = ("left", "middle", "right")
GRID_ROWS = ("top", "bottom")
CELLS = tuple((col, row) for row in range(len(GRID_ROWS)) for col in range(len(GRID_COLUMNS)))
MAX_OBJECTS = 5
MIN_OBJECTS = 2
SCENE_SIZES = {(96, 72): 3, (96, 64): 2, (88, 88): 2, (80, 80): 1, (72, 96): 1, (96, 96): 1}
EDIT_WEIGHTS = {"add": 2.0, "count": 1.0, "remove": 1.5, "recolour": 2.0, "move": 1.5, "background": 1.0}
VAGUE_SCENE_CAPTIONS = (
    "make it look different", "a similar picture", "change the scene a little",
    "something similar but different", "show a different version", "same kind of picture",
)


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene; `uid` follows the object through the variants of a base scene."""

    uid: int  # identity within the base scene's family of variants
    kind: str  # an OBJECT_KINDS name
    colour: str  # a SCENE_COLOURS name
    cell: tuple  # (column, row) in the 3 x 2 grid


@dataclass(frozen=True)
class Scene:
    """A background and 2-5 objects in distinct grid cells."""

    background: str  # a BACKGROUNDS name
    objects: tuple = field(default_factory=tuple)  # SceneObject, in uid order

    def signature(self) -> tuple:
        """What the scene shows, ignoring object identities (two equal signatures look alike)."""
        return self.background, tuple(sorted((o.kind, o.colour, o.cell) for o in self.objects))

    def free_cells(self) -> list:
        used = {o.cell for o in self.objects}
        return [c for c in CELLS if c not in used]


def random_scene(rng: np.random.Generator) -> Scene:
    """A random base scene of 2-4 objects."""
    n = _pick_weighted(rng, {2: 0.35, 3: 0.4, 4: 0.25})
    cells = [CELLS[i] for i in rng.choice(len(CELLS), n, replace=False)]
    objects = []
    for uid, cell in enumerate(cells):
        if objects and _chance(rng, 0.2):  # a second object of a kind already there
            kind = objects[int(rng.integers(len(objects)))].kind
        else:
            kind = _pick(rng, OBJECT_KINDS)
        objects.append(SceneObject(uid, kind, _pick(rng, list(SCENE_COLOURS)), cell))
    return Scene(_pick(rng, list(BACKGROUNDS)), tuple(objects))


def edit_scene(scene: Scene, rng: np.random.Generator, next_uid: int) -> Scene:
    """Apply one random edit (add, count, remove, recolour, move, background)."""
    weights = dict(EDIT_WEIGHTS)
    n = len(scene.objects)
    if n >= MAX_OBJECTS or not scene.free_cells():
        weights.pop("add"), weights.pop("count")
        weights["move"] = 0.0 if not scene.free_cells() else weights["move"]
    if n <= MIN_OBJECTS:
        weights.pop("remove")
    op = _pick_weighted(rng, {k: v for k, v in weights.items() if v > 0})
    objs = list(scene.objects)
    if op in ("add", "count"):
        cell = _pick(rng, scene.free_cells())
        if op == "count":
            like = _pick(rng, objs)
            colour = like.colour if _chance(rng, 0.6) else _pick(rng, list(SCENE_COLOURS))
            objs.append(SceneObject(next_uid, like.kind, colour, cell))
        else:
            objs.append(SceneObject(next_uid, _pick(rng, OBJECT_KINDS), _pick(rng, list(SCENE_COLOURS)), cell))
    elif op == "remove":
        objs.pop(int(rng.integers(n)))
    elif op == "recolour":
        i = int(rng.integers(n))
        objs[i] = replace(objs[i], colour=_pick(rng, [c for c in SCENE_COLOURS if c != objs[i].colour]))
    elif op == "move":
        i = int(rng.integers(n))
        objs[i] = replace(objs[i], cell=_pick(rng, scene.free_cells()))
    else:
        return replace(scene, background=_pick(rng, [b for b in BACKGROUNDS if b != scene.background]))
    return replace(scene, objects=tuple(sorted(objs, key=lambda o: o.uid)))


def scene_variants(base: Scene, n: int, rng: np.random.Generator) -> list[Scene]:
    """`n` visually similar, pairwise distinct scenes: the base and edits of it (1-2 edits each)."""
    variants = [base]
    seen = {base.signature()}
    next_uid = max(o.uid for o in base.objects) + 1
    attempts = 0
    while len(variants) < n:
        attempts += 1
        if attempts > 200:
            raise RuntimeError("could not draw distinct scene variants")  # cannot happen with 6 cells
        v = base
        for _ in range(1 + int(_chance(rng, 0.5))):
            v = edit_scene(v, rng, next_uid)
            next_uid += 1
        if v.signature() not in seen:
            seen.add(v.signature())
            variants.append(v)
    return variants


# ---- scene drawing


def _draw_object(draw: ImageDraw.ImageDraw, kind: str, x: float, y: float, r: float, colour, rng):
    dark = (35, 35, 35) if _luminance(colour) > 70 else (110, 110, 110)
    edge = _shade(colour, 0.6) if _luminance(colour) > 60 else _shade(colour, 1.5)
    w = max(1, round(r / 5))
    facing = 1 if _chance(rng, 0.5) else -1  # nuisance: left / right facing animals and cars

    def fx(dx):  # x of an offset given in units of r, mirrored when facing left
        return x + facing * dx * r

    if kind == "dog":
        for dx in (-0.85, -0.5, 0.25, 0.55):
            draw.rectangle([fx(dx) - 0.1 * r, y + 0.1 * r, fx(dx) + 0.1 * r, y + 0.85 * r], fill=colour)
        draw.line([(fx(-1.0), y - 0.15 * r), (fx(-1.4), y - 0.65 * r)], fill=colour, width=w)
        draw.ellipse(_box(fx(-1.1), y - 0.45 * r, fx(0.75), y + 0.35 * r), fill=colour, outline=edge)
        hx, hy = fx(0.95), y - 0.5 * r
        draw.ellipse([hx - 0.42 * r, hy - 0.42 * r, hx + 0.42 * r, hy + 0.42 * r], fill=colour, outline=edge)
        draw.ellipse(_box(hx - facing * 0.35 * r, hy - 0.3 * r, hx - facing * 0.05 * r, hy + 0.35 * r), fill=edge)
        draw.point((round(hx + facing * 0.18 * r), round(hy - 0.08 * r)), fill=dark)
    elif kind == "cat":
        for dx in (-0.55, 0.3):
            draw.rectangle([fx(dx) - 0.1 * r, y + 0.2 * r, fx(dx) + 0.1 * r, y + 0.75 * r], fill=colour)
        draw.line([(fx(-0.75), y + 0.2 * r), (fx(-1.05), y - 0.3 * r), (fx(-0.85), y - 0.75 * r)], fill=colour, width=w)
        draw.ellipse(_box(fx(-0.8), y - 0.25 * r, fx(0.55), y + 0.45 * r), fill=colour, outline=edge)
        hx, hy = fx(0.6), y - 0.45 * r
        for ex in (-0.3, 0.3):
            draw.polygon([(hx + (ex - 0.12) * r, hy - 0.2 * r), (hx + ex * r, hy - 0.7 * r),
                          (hx + (ex + 0.12) * r, hy - 0.2 * r)], fill=colour, outline=edge)
        draw.ellipse([hx - 0.38 * r, hy - 0.38 * r, hx + 0.38 * r, hy + 0.38 * r], fill=colour, outline=edge)
        draw.point((round(hx + facing * 0.15 * r), round(hy - 0.05 * r)), fill=dark)
    elif kind == "bird":
        draw.polygon([(fx(-0.55), y), (fx(-1.05), y - 0.35 * r), (fx(-1.05), y + 0.3 * r)], fill=colour, outline=edge)
        draw.ellipse(_box(fx(-0.65), y - 0.4 * r, fx(0.5), y + 0.4 * r), fill=colour, outline=edge)
        hx, hy = fx(0.55), y - 0.4 * r
        draw.ellipse([hx - 0.3 * r, hy - 0.3 * r, hx + 0.3 * r, hy + 0.3 * r], fill=colour, outline=edge)
        draw.polygon([(hx + facing * 0.25 * r, hy - 0.1 * r), (hx + facing * 0.65 * r, hy + 0.02 * r),
                      (hx + facing * 0.25 * r, hy + 0.12 * r)], fill=(235, 170, 30))
        draw.polygon([(fx(-0.3), y - 0.1 * r), (fx(0.2), y - 0.1 * r), (fx(-0.2), y - 0.75 * r)], fill=edge)
        draw.line([(fx(-0.05), y + 0.4 * r), (fx(-0.05), y + 0.75 * r)], fill=dark, width=1)
    elif kind == "car":
        draw.polygon([(x - 0.7 * r, y - 0.2 * r), (x - 0.45 * r, y - 0.65 * r), (x + 0.45 * r, y - 0.65 * r),
                      (x + 0.7 * r, y - 0.2 * r)], fill=colour, outline=edge)
        draw.rectangle([x - 0.35 * r, y - 0.55 * r, x + 0.35 * r, y - 0.28 * r], fill=(190, 215, 235))
        draw.rectangle([x - 1.2 * r, y - 0.2 * r, x + 1.2 * r, y + 0.45 * r], fill=colour, outline=edge)
        for wx in (-0.7, 0.7):
            draw.ellipse([x + (wx - 0.3) * r, y + 0.2 * r, x + (wx + 0.3) * r, y + 0.8 * r], fill=(30, 30, 30))
    elif kind == "tree":
        draw.rectangle([x - 0.15 * r, y, x + 0.15 * r, y + r], fill=(100, 65, 35))
        draw.polygon([(x, y - 1.15 * r), (x - 0.8 * r, y + 0.35 * r), (x + 0.8 * r, y + 0.35 * r)],
                     fill=colour, outline=edge)
    elif kind == "house":
        draw.rectangle([x - 0.75 * r, y - 0.25 * r, x + 0.75 * r, y + 0.95 * r], fill=colour, outline=edge)
        draw.polygon([(x - 0.95 * r, y - 0.2 * r), (x, y - 1.0 * r), (x + 0.95 * r, y - 0.2 * r)], fill=edge)
        draw.rectangle([x - 0.18 * r, y + 0.35 * r, x + 0.18 * r, y + 0.95 * r], fill=dark)
    elif kind == "ball":
        draw.ellipse([x - 0.6 * r, y - 0.6 * r, x + 0.6 * r, y + 0.6 * r], fill=colour, outline=edge)
        draw.arc([x - 0.6 * r, y - 0.25 * r, x + 0.6 * r, y + 0.25 * r], 0, 180, fill=edge, width=1)
    elif kind == "cup":
        draw.ellipse([x + 0.3 * r, y - 0.35 * r, x + 0.95 * r, y + 0.35 * r], outline=colour, width=w + 1)
        draw.polygon([(x - 0.6 * r, y - 0.6 * r), (x + 0.6 * r, y - 0.6 * r), (x + 0.45 * r, y + 0.7 * r),
                      (x - 0.45 * r, y + 0.7 * r)], fill=colour, outline=edge)
    else:
        raise ValueError(f"unknown object kind {kind!r}")


def _box(x0, y0, x1, y1):
    """A PIL bounding box from two corners in any order."""
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


def render_scene(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Draw one scene; `rng` draws the nuisance (size, horizon, positions within cells, sizes).

    Args:
        scene: background and objects.
        rng: the image's own generator.
    Returns:
        an RGB PIL image, 64-96 px per side.

    Example:
        >>> img = render_scene(random_scene(seeded_rng(0, 1)), seeded_rng(0, 2))
    """
    width, height = _pick_weighted(rng, {s: w for s, w in SCENE_SIZES.items()})
    sky, ground, _ = BACKGROUNDS[scene.background]
    canvas = Image.new("RGB", (width, height), _jitter(sky, rng, 10))
    draw = ImageDraw.Draw(canvas)
    horizon = int(height * rng.uniform(0.38, 0.55))
    draw.rectangle([0, horizon, width, height], fill=_jitter(ground, rng, 10))
    if scene.background == "night":
        for _ in range(int(rng.integers(3, 8))):
            sx, sy = int(rng.integers(width)), int(rng.integers(max(1, horizon - 2)))
            draw.point((sx, sy), fill=(240, 240, 200))
    base_r = min(width, height) * rng.uniform(0.11, 0.135)
    # Top row first, so that objects lower in the frame overlap the ones behind them.
    for obj in sorted(scene.objects, key=lambda o: (o.cell[1], o.cell[0])):
        col, row = obj.cell
        x = (col + 0.5) / len(GRID_COLUMNS) * width + rng.uniform(-0.05, 0.05) * width
        y = (0.3 if row == 0 else 0.72) * height + rng.uniform(-0.05, 0.05) * height
        r = base_r * rng.uniform(0.85, 1.15)
        _draw_object(draw, obj.kind, x, y, r, _jitter(SCENE_COLOURS[obj.colour], rng, 12), rng)
    return canvas


# ---- CIRR captions


def _word(kind: str, rng, plural=False) -> str:
    singular, plurals = OBJECT_WORDS[kind]
    i = int(rng.integers(len(singular)))
    return plurals[i] if plural else singular[i]


def _cell_phrase(cell, rng) -> str:
    col, row = GRID_COLUMNS[cell[0]], GRID_ROWS[cell[1]]
    if _chance(rng, 0.5):
        return "in the middle" if col == "middle" else f"on the {col}"
    return f"at the {row}" if col == "middle" and _chance(rng, 0.5) else f"at the {row} {col}"


def _refer(obj: SceneObject, scene: Scene, rng) -> str:
    """A referring expression for `obj` in `scene`: "the dog", "the red dog", "the dog on the left"."""
    same_kind = [o for o in scene.objects if o.kind == obj.kind]
    same_colour = [o for o in same_kind if o.colour == obj.colour]
    if len(same_kind) == 1:
        return f"the {obj.colour} {_word(obj.kind, rng)}" if _chance(rng, 0.3) else f"the {_word(obj.kind, rng)}"
    if len(same_colour) == 1:
        return f"the {obj.colour} {_word(obj.kind, rng)}"
    return f"the {_word(obj.kind, rng)} {_cell_phrase(obj.cell, rng)}"


def scene_diff(ref: Scene, tgt: Scene) -> list[tuple]:
    """What changed from `ref` to `tgt`: a list of (operation, ...) tuples, operations being
    background, add, remove, recolour, move."""
    items: list[tuple] = []
    if ref.background != tgt.background:
        items.append(("background", tgt.background))
    ref_by, tgt_by = {o.uid: o for o in ref.objects}, {o.uid: o for o in tgt.objects}
    for uid, o in tgt_by.items():
        if uid not in ref_by:
            items.append(("add", o))
    for uid, o in ref_by.items():
        if uid not in tgt_by:
            items.append(("remove", o))
        else:
            t = tgt_by[uid]
            if t.colour != o.colour:
                items.append(("recolour", o, t))
            if t.cell != o.cell:
                items.append(("move", o, t))
    return items


def _count(scene: Scene, kind: str) -> int:
    return sum(o.kind == kind for o in scene.objects)


def _diff_phrase(item: tuple, ref: Scene, tgt: Scene, rng) -> str:
    op = item[0]
    if op == "background":
        phrase = _pick(rng, BACKGROUNDS[item[1]][2])
        return _pick(rng, (f"change the background so it is {phrase}", f"make it {phrase}",
                           f"put everything {phrase}", f"{phrase} instead", f"the scene is {phrase}",
                           f"move them {phrase}"))
    if op == "add":
        o = item[1]
        n_ref, n_tgt = _count(ref, o.kind), _count(tgt, o.kind)
        if n_ref > 0 and n_tgt > n_ref and _chance(rng, 0.6):
            w = _word(o.kind, rng, plural=True)
            return _pick(rng, (f"show {NUMBER_WORDS[n_tgt]} {w}", f"there are {NUMBER_WORDS[n_tgt]} {w}",
                               f"add another {_word(o.kind, rng)}", f"add one more {_word(o.kind, rng)}",
                               f"make it {NUMBER_WORDS[n_tgt]} {w}"))
        thing = _a(f"{o.colour} {_word(o.kind, rng)}" if _chance(rng, 0.85) else _word(o.kind, rng))
        if _chance(rng, 0.3):
            where = _cell_phrase(o.cell, rng)
            return _pick(rng, (f"add {thing} {where}", f"put {thing} {where}", f"include {thing} {where}",
                               f"there is also {thing} {where}"))
        return _pick(rng, (f"add {thing}", f"include {thing}", f"there is also {thing}",
                           f"add {thing} to the scene", f"with {thing} too"))
    if op == "remove":
        o = item[1]
        n_tgt = _count(tgt, o.kind)
        if 0 < n_tgt < _count(ref, o.kind) and _chance(rng, 0.6):
            w = _word(o.kind, rng, plural=n_tgt > 1)
            return _pick(rng, (f"only {NUMBER_WORDS[n_tgt]} {w}", f"remove one of the {_word(o.kind, rng, True)}",
                               f"there should be {NUMBER_WORDS[n_tgt]} {w}"))
        r = _refer(o, ref, rng)
        options = [f"remove {r}", f"take away {r}", f"get rid of {r}", f"without {r}", f"delete {r}"]
        if n_tgt == 0:
            options.append(f"no {_word(o.kind, rng, plural=True)}")
        return _pick(rng, options)
    if op == "recolour":
        o, t = item[1], item[2]
        r = _refer(o, ref, rng)
        w = _word(o.kind, rng)
        return _pick(rng, (f"make {r} {t.colour}", f"change the color of {r} to {t.colour}",
                           f"{r} is {t.colour} now", f"paint {r} {t.colour}",
                           f"{_a(t.colour)} {w} instead of the {o.colour} one", f"turn {r} {t.colour}"))
    if op == "move":
        o, t = item[1], item[2]
        r = _refer(o, ref, rng)
        if t.cell[0] != o.cell[0] and t.cell[1] != o.cell[1]:
            where = f"to the {GRID_ROWS[t.cell[1]]} {GRID_COLUMNS[t.cell[0]]}"
        elif t.cell[0] != o.cell[0]:
            where = "to the middle" if t.cell[0] == 1 else f"to the {GRID_COLUMNS[t.cell[0]]}"
        else:
            where = f"to the {GRID_ROWS[t.cell[1]]}"
        return _pick(rng, (f"move {r} {where}", f"put {r} {where}", f"{r} should go {where}",
                           f"shift {r} {where}"))
    raise ValueError(op)


def absolute_scene_caption(scene: Scene, rng: np.random.Generator, positions: float = 0.3) -> str:
    """A description of the whole scene: "two red dogs and a blue ball on the grass"."""
    groups: dict = {}
    for o in scene.objects:
        groups.setdefault((o.kind, o.colour), []).append(o)
    parts = []
    for key in [list(groups)[i] for i in rng.permutation(len(groups))]:
        kind, colour = key
        objs = groups[key]
        if len(objs) == 1:
            part = _a(f"{colour} {_word(kind, rng)}")
            if _chance(rng, positions):
                part += " " + _cell_phrase(objs[0].cell, rng)
        else:
            part = f"{NUMBER_WORDS[len(objs)]} {colour} {_word(kind, rng, plural=True)}"
        parts.append(part)
    text = f"{_join_list(parts)} {_pick(rng, BACKGROUNDS[scene.background][2])}"
    return _pick(rng, ("", "", "a picture of ", "a scene with ")) + text


def cirr_caption(ref: Scene, tgt: Scene, rng: np.random.Generator) -> str:
    """One relative caption from `ref` to `tgt`, mentioning all or only some of the changes."""
    r = rng.random()
    if r < 0.04:
        return _pick(rng, VAGUE_SCENE_CAPTIONS)
    if r < 0.12:
        opening = _pick(rng, ("the target shows ", "the target photo has ", "show "))
        return opening + absolute_scene_caption(tgt, rng, 0.2)
    items = scene_diff(ref, tgt)
    items = [items[i] for i in rng.permutation(len(items))]
    if len(items) > 1 and _chance(rng, 0.5):
        items = items[: int(rng.integers(1, len(items)))]
    items = items[:3]
    phrases = [_diff_phrase(it, ref, tgt, rng) for it in items]
    text = phrases[0]
    for p in phrases[1:]:
        text += _pick(rng, (" and ", ", ", " and ", "; ")) + p
    if _chance(rng, 0.5):
        text = _cap_first(text)
    if _chance(rng, 0.3):
        text += "."
    return text


# ===================================================================================== writers


def _write_json(path: Path, obj, indent=None, sort_keys=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=indent, sort_keys=sort_keys)


def _save_jpg(img: Image.Image, path: Path):
    img.save(path, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False, subsampling=2)


def _save_png(img: Image.Image, path: Path):
    img.save(path, "PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)


def _asin_names(rng: np.random.Generator, n: int, taken: set) -> list[str]:
    """`n` new unique FashionIQ-style names ("B00" + 7 upper-case letters / digits)."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    names = []
    while len(names) < n:
        name = "B00" + "".join(alphabet[i] for i in rng.integers(len(alphabet), size=7))
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


# ---------------------------------------------------------------------------------- FashionIQ


def _plan_fashioniq_split(preset: MiniPreset, seed: int, category: str, split: str) -> tuple[list, list]:
    """Garments (index order) and pairs (reference index, target index, [c1, c2]) of one split."""
    n_images = getattr(preset, f"fashioniq_{split}_images")
    n_queries = getattr(preset, f"fashioniq_{split}_queries")
    garments: list[Garment] = []
    pairs: list[tuple[int, int, list[str]]] = []

    def new_image(g: Garment) -> int:
        garments.append(g)
        return len(garments) - 1

    for q in range(n_queries):
        qrng = seeded_rng(seed, "fashioniq", category, split, "query", q)
        # The reference is sometimes an image already used (as reference or target) in the split,
        # always when the image budget would not allow a new one: a new reference costs one
        # image, and every query still to come needs one for its target.
        must_reuse = len(garments) + 2 + (n_queries - q - 1) > n_images
        if garments and (must_reuse or _chance(qrng, 0.4)):
            ref_i = int(qrng.integers(len(garments)))
        else:
            ref_i = new_image(random_garment(category, qrng))
        ref = garments[ref_i]
        tgt, changed = mutate_garment(ref, _pick_weighted(qrng, CHANGES_PER_PAIR), qrng)
        tgt_i = new_image(tgt)
        pairs.append((ref_i, tgt_i, fashioniq_captions(ref, tgt, changed, qrng)))
    # Distractors: half random garments, half near-duplicates of images of the split.
    d = 0
    while len(garments) < n_images:
        drng = seeded_rng(seed, "fashioniq", category, split, "distractor", d)
        d += 1
        if _chance(drng, 0.5):
            new_image(random_garment(category, drng))
        else:
            base = garments[int(drng.integers(len(garments)))]
            new_image(mutate_garment(base, 1 + int(_chance(drng, 0.4)), drng)[0])
    return garments, pairs


def _make_fashioniq_split(root: Path, preset: MiniPreset, seed: int, category: str, split: str, taken: set,
                          progress) -> dict:
    garments, pairs = _plan_fashioniq_split(preset, seed, category, split)
    rng = seeded_rng(seed, "fashioniq", category, split, "plan")
    names = _asin_names(rng, len(garments), taken)
    image_dir = root / FASHIONIQ_DIR / "images"
    for i, g in enumerate(garments):
        image = render_garment(g, seeded_rng(seed, "fashioniq", category, split, "image", i))
        _save_jpg(image, image_dir / f"{names[i]}.jpg")
        progress.update(1)

    entries = []
    for ref_i, tgt_i, caps in pairs:
        if split == "test":
            entries.append({"candidate": names[ref_i], "captions": caps})
        else:
            entries.append({"target": names[tgt_i], "candidate": names[ref_i], "captions": caps})
    entries = [entries[i] for i in rng.permutation(len(entries))]
    split_names = [names[i] for i in rng.permutation(len(names))]
    _write_json(root / FASHIONIQ_DIR / "captions" / f"cap.{category}.{split}.json", entries, indent=4)
    _write_json(root / FASHIONIQ_DIR / "image_splits" / f"split.{category}.{split}.json", split_names, indent=4)
    return {"queries": len(entries), "images": len(split_names)}


def _make_fashioniq(root: Path, preset: MiniPreset, seed: int) -> dict:
    (root / FASHIONIQ_DIR / "images").mkdir(parents=True, exist_ok=True)
    total = len(FASHIONIQ_CATEGORIES) * sum(getattr(preset, f"fashioniq_{s}_images") for s in FASHIONIQ_SPLITS)
    taken: set = set()
    counts: dict = {}
    with progress_bar(total=total, desc="FashionIQ images", unit="img", disable=None, leave=False) as progress:
        for category in FASHIONIQ_CATEGORIES:
            counts[category] = {}
            for split in FASHIONIQ_SPLITS:
                counts[category][split] = _make_fashioniq_split(root, preset, seed, category, split, taken, progress)
    return counts


# --------------------------------------------------------------------------------------- CIRR


def _plan_cirr_split(preset: MiniPreset, seed: int, split: str) -> tuple[list, list]:
    """Scenes (name, folder, Scene) and pairs (dict without pairid) of one CIRR split."""
    n_sets = getattr(preset, f"cirr_{split}_sets")
    prefix = CIRR_SPLIT_DIRS[split]
    rng = seeded_rng(seed, "cirr", split, "plan")
    bases = sorted(int(b) for b in rng.choice(max(3 * n_sets, 10), n_sets, replace=False))
    set_ids = [int(i) for i in rng.permutation(n_sets)]
    slots = [(k, j) for k in range(4) for j in range(2)]  # NLVR2-style "<base>-<k>-img<j>"
    images, pairs = [], []
    for s, base_id in enumerate(bases):
        srng = seeded_rng(seed, "cirr", split, "set", s)
        variants = scene_variants(random_scene(srng), CIRR_SET_SIZE, srng)
        chosen = [slots[i] for i in sorted(srng.choice(len(slots), CIRR_SET_SIZE, replace=False))]
        names = [f"{prefix}-{base_id}-{k}-img{j}" for k, j in chosen]
        folder = f"{prefix}/{base_id % preset.cirr_train_folders}" if split == "train" else prefix
        for name, scene in zip(names, variants):
            images.append((name, folder, scene))
        ranks = [int(r) for r in srng.permutation(CIRR_SET_SIZE)]  # rank of each variant
        by_rank = {r: i for i, r in enumerate(ranks)}
        members = [names[i] for i in srng.permutation(CIRR_SET_SIZE)]
        # Pairs as in CIRR: a chain rank k -> k+1 (mod 6), some links missing, plus a few extra
        # pairs from rank 0 to other members.
        links = [(k, (k + 1) % CIRR_SET_SIZE) for k in range(CIRR_SET_SIZE) if _chance(srng, 0.72)]
        for _ in range(int(srng.integers(0, 3))):
            links.append((0, int(srng.integers(2, CIRR_SET_SIZE))))
        if not links:
            links.append((0, 1))
        seen = set()
        for r_ref, r_tgt in links:
            if (r_ref, r_tgt) in seen:
                continue
            seen.add((r_ref, r_tgt))
            i_ref, i_tgt = by_rank[r_ref], by_rank[r_tgt]
            prng = seeded_rng(seed, "cirr", split, "pair", s, r_ref, r_tgt)
            soft = {names[i_tgt]: 1.0}
            if _chance(prng, 0.1):  # as in the real files: a member marked as not the target
                others = [n for n in names if n not in (names[i_ref], names[i_tgt])]
                soft[_pick(prng, others)] = -1.0
            pairs.append({
                "reference": names[i_ref],
                "target_hard": names[i_tgt],
                "target_soft": soft,
                "caption": cirr_caption(variants[i_ref], variants[i_tgt], prng),
                "img_set": {"id": set_ids[s], "members": list(members),
                            "reference_rank": r_ref, "target_rank": r_tgt},
            })
    return images, pairs


def _make_cirr(root: Path, preset: MiniPreset, seed: int) -> dict:
    plans = {split: _plan_cirr_split(preset, seed, split) for split in CIRR_SPLITS}
    # Pair ids: unique over the three splits, interleaved between them as in the real files.
    n_pairs = sum(len(p) for _, p in plans.values())
    rng = seeded_rng(seed, "cirr", "pairids")
    pairids = [int(i) + 10000 for i in sorted(rng.choice(4 * n_pairs, n_pairs, replace=False))]
    pairids = [pairids[i] for i in rng.permutation(n_pairs)]
    base = root / CIRR_DIR
    counts = {}
    total = sum(len(images) for images, _ in plans.values())
    offset = 0
    with progress_bar(total=total, desc="CIRR images", unit="img", disable=None, leave=False) as progress:
        for split in CIRR_SPLITS:
            images, pairs = plans[split]
            split_map = {}
            for i, (name, folder, scene) in enumerate(images):
                (base / folder).mkdir(parents=True, exist_ok=True)
                _save_png(render_scene(scene, seeded_rng(seed, "cirr", split, "image", name)), base / folder / f"{name}.png")
                split_map[name] = f"./{folder}/{name}.png"
                progress.update(1)
            entries = []
            for pair in pairs:
                entry = {"pairid": pairids[offset], **pair}
                offset += 1
                if split == "test1":
                    entry = {"pairid": entry["pairid"], "reference": entry["reference"], "caption": entry["caption"],
                             "img_set": {k: v for k, v in entry["img_set"].items() if k != "target_rank"}}
                entries.append(entry)
            entries.sort(key=lambda e: e["pairid"])
            order = seeded_rng(seed, "cirr", split, "order").permutation(len(images))
            split_map = {images[i][0]: split_map[images[i][0]] for i in order}
            _write_json(base / "cirr" / "captions" / f"cap.{CIRR_VERSION}.{split}.json", entries)
            _write_json(base / "cirr" / "image_splits" / f"split.{CIRR_VERSION}.{split}.json", split_map)
            counts[split] = {"queries": len(entries), "images": len(split_map),
                             "img_sets": getattr(preset, f"cirr_{split}_sets")}
    return counts


# ------------------------------------------------------------------------------------ the pool

POOL_README = """# mini_pool: images with absolute captions (not part of either benchmark)

`cir-lib make-mini` writes this folder beside `fashionIQ_dataset/` and `cirr_dataset/`. It holds
images drawn by the same generators as the two mini benchmarks, but none of them is a benchmark
image, each described by an absolute caption, for pretraining the tiny CLIP backbone ("cir-mini")
with the contrastive loss before the CLIP4Cir stages. Real FashionIQ / CIRR downloads have no such
folder; the kit's readers ignore it.

- `images/fashion_<n>.jpg`: garments (dress, shirt, toptee), like FashionIQ's images.
- `images/scene_<n>.png`: scenes of 2-5 objects on a background, like CIRR's images.
- `captions.json`: a JSON list, one entry per image:

      {"image": "images/fashion_00012.jpg",
       "caption": "a red striped dress with short sleeves and white lettering",
       "domain": "fashion"}

  `image` is relative to this folder; `domain` is "fashion" or "scene".

Counts: {fashion} fashion images, {scene} scene images (preset "{preset}", seed {seed}).
"""


def _make_pool(root: Path, preset: MiniPreset, seed: int, preset_name: str) -> dict:
    pool = root / MINI_POOL_DIR
    (pool / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    total = preset.pool_fashion_images + preset.pool_scene_images
    with progress_bar(total=total, desc="pool images", unit="img", disable=None, leave=False) as progress:
        for i in range(preset.pool_fashion_images):
            rng = seeded_rng(seed, "pool", "fashion", i)
            g = random_garment(_pick(rng, FASHIONIQ_CATEGORIES), rng)
            rel = f"images/fashion_{i:05d}.jpg"
            _save_jpg(render_garment(g, rng), pool / rel)
            entries.append({"image": rel, "caption": absolute_garment_caption(g, rng), "domain": "fashion"})
            progress.update(1)
        for i in range(preset.pool_scene_images):
            rng = seeded_rng(seed, "pool", "scene", i)
            scene = random_scene(rng)
            if _chance(rng, 0.5):
                scene = scene_variants(scene, 2, rng)[1]  # also 5-object scenes, as in the benchmark
            rel = f"images/scene_{i:05d}.png"
            _save_png(render_scene(scene, rng), pool / rel)
            entries.append({"image": rel, "caption": absolute_scene_caption(scene, rng), "domain": "scene"})
            progress.update(1)
    _write_json(pool / "captions.json", entries, indent=1)
    (pool / "README.md").write_text(
        POOL_README.replace("{fashion}", str(preset.pool_fashion_images))
        .replace("{scene}", str(preset.pool_scene_images)).replace("{preset}", preset_name)
        .replace("{seed}", str(seed)),
        encoding="utf-8",
    )
    return {"images": len(entries), "fashion": preset.pool_fashion_images, "scene": preset.pool_scene_images}


# ------------------------------------------------------------------------------------ entry point

# What make-mini writes, and what overwriting replaces: the cir-mini checkpoint pretrained on the
# previous pool goes too (pretrain-mini writes it beside the data), or the recipes would reuse it.
_OUTPUTS = (FASHIONIQ_DIR, CIRR_DIR, MINI_POOL_DIR, MANIFEST_NAME, MINI_CHECKPOINT)


def _prepare_out(out: Path, overwrite: bool):
    existing = [name for name in _OUTPUTS if (out / name).exists()]
    if not existing:
        return
    if not overwrite:
        raise ConfigError(
            f"{out} already holds {', '.join(existing)}; choose an empty folder or pass overwrite=True "
            f"(--overwrite) to replace a mini benchmark generated before"
        )
    if not (out / MANIFEST_NAME).is_file():
        raise ConfigError(
            f"{out} holds {', '.join(existing)} but no {MANIFEST_NAME}: it does not look like a generated "
            f"mini benchmark, so it is not overwritten; remove those folders yourself or choose another folder"
        )
    for name in existing:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def make_mini(out, preset: str = "mini", seed: int = 0, overwrite: bool = False) -> dict:
    """Write the embedded mini benchmarks (FashionIQ-like, CIRR-like, and the pretraining pool).

    Args:
        out: the data root to write (created if needed); it receives fashionIQ_dataset/,
            cirr_dataset/, mini_pool/ and MINI_BENCHMARK.json.
        preset: a PRESETS name: "smoke" (tiny, for CI) or "mini".
        seed: a non-negative integer; the output is byte-identical for a given preset and seed.
        overwrite: replace a mini benchmark already in `out` (refused for anything else).
    Returns:
        the manifest written to MINI_BENCHMARK.json: preset, seed, kit version and counts
        ({"fashioniq": {category: {split: {"queries", "images"}}}, "cirr": {split: {...}},
        "pool": {...}, "images_total": n}).

    Example:
        >>> summary = make_mini("data/mini", preset="smoke", seed=0)
        >>> summary["counts"]["cirr"]["val"]["queries"]
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown mini preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file; give a folder to write the mini benchmark into")
    out.mkdir(parents=True, exist_ok=True)
    _prepare_out(out, overwrite)
    config = PRESETS[preset]
    logger.info("writing the %s mini benchmark (seed %d) to %s", preset, seed, out)
    counts = {
        "fashioniq": _make_fashioniq(out, config, seed),
        "cirr": _make_cirr(out, config, seed),
        "pool": _make_pool(out, config, seed, preset),
    }
    counts["images_total"] = (
        sum(c[s]["images"] for c in counts["fashioniq"].values() for s in FASHIONIQ_SPLITS)
        + sum(counts["cirr"][s]["images"] for s in CIRR_SPLITS)
        + counts["pool"]["images"]
    )
    manifest = {
        "kit": "cir_lib",
        "kit_version": __version__,
        "generator_version": MINI_GENERATOR_VERSION,
        "preset": preset,
        "preset_config": asdict(config),
        "seed": seed,
        "counts": counts,
    }
    _write_json(out / MANIFEST_NAME, manifest, indent=2, sort_keys=True)
    return manifest
