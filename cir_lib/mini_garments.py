"""FashionIQ-like garments of the mini benchmark: attributes, pair mutations, drawing, captions.

Garments of three categories with distinct silhouettes (dress, shirt, toptee) vary in colour,
pattern, sleeve length, neckline, dress length and a graphic (lettering, logo, star) with its own
colour; a pair differs in 2-4 attributes (`mutate_garment`) and its two relative captions
(`fashioniq_captions`) each mention some of the changes, often with an attribute of the target that
did not change, in many paraphrases, sometimes vaguely. `render_garment` draws one on a shaded
background at a random position and scale.

Example:
    >>> rng = mini_common.seeded_rng(0, "example")
    >>> ref = random_garment("dress", rng); tgt, changed = mutate_garment(ref, 2, rng)
    >>> fashioniq_captions(ref, tgt, changed, rng)  # two relative captions
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from cir_lib.mini_common import (
    cap_first,
    chance,
    indefinite,
    jitter,
    join_list,
    luminance,
    pick,
    pick_weighted,
    saturation,
    shade,
)


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
CHANGES_PER_PAIR = {2: 0.2, 3: 0.4, 4: 0.4}  # two products of one category: often several differences
# How often a caption also describes an attribute of the target that did not change ("is black with
# a v-neck" where only the neckline changed): annotators often describe the target as they see it.
CAPTION_UNCHANGED = 0.4
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
    colour = pick(rng, list(FASHION_COLOURS))
    graphic = pick_weighted(rng, GRAPHIC_WEIGHTS[category])
    return Garment(
        category=category,
        colour=colour,
        pattern=pick_weighted(rng, PATTERN_WEIGHTS),
        sleeves=pick_weighted(rng, SLEEVE_WEIGHTS[category]),
        neck=pick(rng, NECKLINES),
        length=pick(rng, DRESS_LENGTHS) if category == "dress" else "regular",
        graphic=graphic,
        graphic_colour="" if graphic == "none" else _graphic_colour_for(colour, rng),
    )


def _graphic_colour_for(colour: str, rng, exclude: str = "") -> str:
    choices = [c for c in GRAPHIC_COLOURS if c != colour and c != exclude]
    return pick(rng, choices)


def mutate_garment(garment: Garment, n_changes: int, rng: np.random.Generator) -> tuple[Garment, list[str]]:
    """Change `n_changes` distinct attributes of `garment`.

    Returns:
        (the new garment, the names of the changed attributes in the order they were picked)
    """
    weights = dict(MUTABLE_ATTRIBUTES[garment.category])
    changed: list[str] = []
    g = garment
    for _ in range(min(n_changes, len(weights))):
        attr = pick_weighted(rng, weights)
        del weights[attr]
        changed.append(attr)
        if attr == "colour":
            choices = [c for c in FASHION_COLOURS if c not in (g.colour, g.graphic_colour)]
            g = replace(g, colour=pick(rng, choices))
        elif attr == "pattern":
            g = replace(g, pattern=pick(rng, [p for p in PATTERNS if p != g.pattern]))
        elif attr == "sleeves":
            g = replace(g, sleeves=pick(rng, [s for s in SLEEVES if s != g.sleeves]))
        elif attr == "neck":
            g = replace(g, neck=pick(rng, [n for n in NECKLINES if n != g.neck]))
        elif attr == "length":
            g = replace(g, length=pick(rng, [n for n in DRESS_LENGTHS if n != g.length]))
        elif attr == "graphic":
            if g.graphic == "none":
                g = replace(g, graphic=pick(rng, GRAPHICS[1:]), graphic_colour=_graphic_colour_for(g.colour, rng))
            else:
                action = pick_weighted(rng, {"remove": 0.35, "kind": 0.3, "colour": 0.35})
                if action == "remove":
                    g = replace(g, graphic="none", graphic_colour="")
                elif action == "kind":
                    kind = pick(rng, [k for k in GRAPHICS[1:] if k != g.graphic])
                    colour = g.graphic_colour if chance(rng, 0.6) else _graphic_colour_for(g.colour, rng)
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
    return shade(rgb, 1.65) if luminance(rgb) < 120 else shade(rgb, 0.45)


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
    colour = jitter(FASHION_COLOURS[g.graphic_colour], rng, 8)
    cx, cy = centre
    if g.graphic == "lettering":
        # A line (sometimes two) of blocky glyphs: vertical strokes with random cross bars.
        glyph_h = max(3.0, unit * 0.07)
        glyph_w = max(2.0, glyph_h * 0.6)
        n = int(rng.integers(3, 6))
        rows = 2 if chance(rng, 0.3) else 1
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
        draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=jitter(FASHION_COLOURS[g.colour], rng, 6))
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
    width, height = pick_weighted(rng, {s: w for s, w in FASHION_SIZES.items()})
    bg = jitter((int(rng.integers(215, 256)),) * 3, rng, 6)
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

    colour = jitter(FASHION_COLOURS[g.colour], rng, 12)
    outline = shade(colour, 0.55) if luminance(colour) > 60 else shade(colour, 1.4)
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
    return pick(rng, COLOUR_SYNONYMS[colour]) if colour in COLOUR_SYNONYMS else colour


def _noun(g: Garment, rng) -> str:
    return pick(rng, CATEGORY_NOUNS[g.category])


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
    noun = pick(rng, _GRAPHIC_NOUNS[kind])
    phrase = f"{colour} {noun}" if colour else noun
    if with_article and kind != "lettering":
        phrase = indefinite(phrase)
    return phrase


def _absolute_phrase(attr: str, g: Garment, rng) -> str:
    """A phrase describing the target's value of `attr` on its own ("is red", "has stripes")."""
    if attr == "colour":
        c = _colour_word(g.colour, rng)
        return pick(rng, (f"is {c}", f"is {c} colored", f"is {c} in color", f"is {indefinite(c)} {_noun(g, rng)}",
                           f"has {indefinite(c)} color", c))
    if attr == "pattern":
        return pick(rng, _PATTERN_ABSOLUTE[g.pattern])
    if attr == "sleeves":
        return pick(rng, _SLEEVE_ABSOLUTE[g.sleeves])
    if attr == "neck":
        return pick(rng, _NECK_ABSOLUTE[g.neck])
    if attr == "length":
        return pick(rng, _LENGTH_ABSOLUTE[g.length]) if g.category == "dress" else f"is a {_noun(g, rng)}"
    if attr == "graphic":
        if g.graphic == "none":
            return pick(rng, ("has no graphic", "has nothing on the front", "has no print on the front", "is plain"))
        np_ = _graphic_np(g.graphic, _colour_word(g.graphic_colour, rng), rng)
        return pick(rng, (f"has {np_}", f"has {np_} on the front", f"has {np_} on it"))
    raise ValueError(attr)


def _change_phrase(attr: str, ref: Garment, tgt: Garment, rng) -> str:
    """A phrase for one changed attribute, absolute or relative to the reference."""
    if attr == "colour":
        c0, c1 = _colour_word(ref.colour, rng), _colour_word(tgt.colour, rng)
        l0, l1 = luminance(FASHION_COLOURS[ref.colour]), luminance(FASHION_COLOURS[tgt.colour])
        options = [_absolute_phrase("colour", tgt, rng)] * 8 + [
            f"is {c1} instead of {c0}", f"is {c1} not {c0}", f"is {c1} rather than {c0}",
            "is a different color", f"change the color to {c1}",
        ]
        if abs(l1 - l0) > 60:
            rel = "darker" if l1 < l0 else "lighter"
            options += [f"is {rel}", f"is a {rel} color", f"is {rel} in color", f"is {rel} and {c1}"]
        if saturation(FASHION_COLOURS[tgt.colour]) - saturation(FASHION_COLOURS[ref.colour]) > 0.35:
            options.append("is more colorful")
        return pick(rng, options)
    if attr == "pattern":
        options = [_absolute_phrase("pattern", tgt, rng)] * 5
        if ref.pattern == "plain":
            options += ["has a pattern", "is patterned", "is printed", "has a print"]
        elif tgt.pattern == "plain":
            options += [f"has no {_PATTERN_NOUNS[ref.pattern]}", f"is without the {_PATTERN_NOUNS[ref.pattern]}"]
        else:
            options += [f"has {_PATTERN_NOUNS[tgt.pattern]} instead of {_PATTERN_NOUNS[ref.pattern]}",
                        "has a different pattern"]
        return pick(rng, options)
    if attr == "sleeves":
        longer = SLEEVES.index(tgt.sleeves) > SLEEVES.index(ref.sleeves)
        rel = ("has longer sleeves", "sleeves are longer", "has more sleeve") if longer else (
            "has shorter sleeves", "sleeves are shorter", "is more revealing")
        return pick(rng, [_absolute_phrase("sleeves", tgt, rng)] * 4 + list(rel))
    if attr == "neck":
        return _absolute_phrase("neck", tgt, rng)
    if attr == "length":
        rel = ("is longer", "is much longer") if tgt.length == "long" else ("is shorter", "is much shorter")
        return pick(rng, [_absolute_phrase("length", tgt, rng)] * 3 + list(rel))
    if attr == "graphic":
        gc1 = _colour_word(tgt.graphic_colour, rng) if tgt.graphic_colour else ""
        if ref.graphic == "none":
            np_ = _graphic_np(tgt.graphic, gc1, rng)
            return pick(rng, (f"has {np_}", f"has {np_} on the front", f"has {np_} on it",
                               "has a graphic on the front", "has a design on the front"))
        noun0 = pick(rng, _GRAPHIC_NOUNS[ref.graphic])
        if tgt.graphic == "none":
            return pick(rng, (f"has no {noun0}", "has no graphic", "has nothing on the front",
                               f"is without {noun0}", "has no print on the front"))
        if tgt.graphic != ref.graphic:
            np_ = _graphic_np(tgt.graphic, gc1 if chance(rng, 0.6) else "", rng)
            return pick(rng, (f"has {np_} instead of {noun0}", f"has {np_}", "has a different graphic"))
        gc0 = _colour_word(ref.graphic_colour, rng)
        noun = pick(rng, _GRAPHIC_NOUNS[tgt.graphic])
        return pick(rng, (f"has {gc1} {noun}", f"the {noun} is {gc1}", f"has {gc1} {noun} instead of {gc0}",
                           f"{gc1} {noun}"))
    raise ValueError(attr)


def _assemble(phrases: list[str], g: Garment, rng) -> str:
    text = phrases[0]
    for p in phrases[1:]:
        if p.startswith("has ") and chance(rng, 0.5):
            text += " with " + p[4:]
        elif p.startswith("is ") and text.startswith("is ") and chance(rng, 0.5):
            text += " and " + p[3:]
        else:
            text += pick(rng, (" and ", " and ", ", ", " & ")) + p
    r = rng.random()
    if r < 0.08 and text.startswith(("is ", "has ")):
        text = "it " + text
    elif r < 0.13 and text.startswith(("is ", "has ")):
        text = f"the {_noun(g, rng)} " + text
    if chance(rng, 0.15):
        text = cap_first(text)
    if chance(rng, 0.08):
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
    sizes = {1: 0.2, 2: 0.4, 3: 0.4}
    k1 = min(len(changes), pick_weighted(rng, sizes))
    first = changes[:k1]
    rest = changes[k1:]
    if rest and chance(rng, 0.65):
        second = rest if chance(rng, 0.6) else rest[: max(1, len(rest) - 1)]
    else:
        k2 = min(len(changes), pick_weighted(rng, sizes))
        second = [changes[i] for i in sorted(rng.choice(len(changes), k2, replace=False))]

    captions = []
    vague_both = chance(rng, 0.02)
    for idx, mention in enumerate((first, second)):
        if vague_both or chance(rng, 0.05):
            captions.append(pick(rng, VAGUE_FASHION_CAPTIONS))
            continue
        phrases = [_change_phrase(a, ref, tgt, rng) for a in mention]
        if idx == 1 and mention == first and unchanged and chance(rng, 0.35):
            # Nothing new to say: describe something of the target that did not change.
            phrases = [_absolute_phrase(pick(rng, unchanged), tgt, rng)]
        elif unchanged and chance(rng, CAPTION_UNCHANGED):
            phrases.insert(int(rng.integers(len(phrases) + 1)), _absolute_phrase(pick(rng, unchanged), tgt, rng))
        captions.append(_assemble(phrases, tgt, rng))
    return captions


def absolute_garment_caption(g: Garment, rng: np.random.Generator) -> str:
    """A full description: "a red striped dress with short sleeves and white lettering"."""
    colour = _colour_word(g.colour, rng)
    pattern = pick(rng, _PATTERN_ADJECTIVES[g.pattern])
    if g.pattern == "plain" and chance(rng, 0.5):
        pattern = ""
    adjectives = [a for a in (g.length if g.category == "dress" else "", colour, pattern) if a]
    if g.sleeves == "sleeveless" and chance(rng, 0.5):
        adjectives.insert(0, "sleeveless")
        sleeve = ""
    else:
        sleeve = {"sleeveless": "no sleeves", "short": "short sleeves", "long": "long sleeves"}[g.sleeves]
    extras = [e for e in (sleeve, "a v-neck" if g.neck == "v-neck" else "a round neck") if e]
    if g.graphic != "none":
        extras.append(_graphic_np(g.graphic, _colour_word(g.graphic_colour, rng), rng))
    order = [extras[i] for i in rng.permutation(len(extras))]
    return f"{indefinite(' '.join(adjectives + [_noun(g, rng)]))} with {join_list(order)}"
