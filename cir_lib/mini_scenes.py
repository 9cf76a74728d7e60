"""CIRR-like scenes of the mini benchmark: objects on a background, edits, drawing, captions.

Scenes of 2-5 simple objects (dog, cat, bird, car, tree, house, ball, cup) in a grid of cells on a
background; each img_set holds 6 variants of one base scene (`scene_variants`), neighbouring img_sets
start from related base scenes (`related_scene`: hard negatives in the index), and a caption
(`cirr_caption`) adds, removes, recolours, counts or moves objects or changes the background, again
mentioning only some of the changes (`scene_diff`).

Example:
    >>> rng = mini_common.seeded_rng(0, "example")
    >>> a, b = scene_variants(random_scene(rng), 2, rng)
    >>> cirr_caption(a, b, rng), render_scene(b, rng).size
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

from cir_lib.mini_common import (
    NUMBER_WORDS,
    cap_first,
    chance,
    indefinite,
    jitter,
    join_list,
    luminance,
    pick,
    pick_weighted,
    shade,
)


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
    n = pick_weighted(rng, {2: 0.35, 3: 0.4, 4: 0.25})
    cells = [CELLS[i] for i in rng.choice(len(CELLS), n, replace=False)]
    objects = []
    for uid, cell in enumerate(cells):
        if objects and chance(rng, 0.2):  # a second object of a kind already there
            kind = objects[int(rng.integers(len(objects)))].kind
        else:
            kind = pick(rng, OBJECT_KINDS)
        objects.append(SceneObject(uid, kind, pick(rng, list(SCENE_COLOURS)), cell))
    return Scene(pick(rng, list(BACKGROUNDS)), tuple(objects))


def edit_scene(scene: Scene, rng: np.random.Generator, next_uid: int) -> Scene:
    """Apply one random edit (add, count, remove, recolour, move, background)."""
    weights = dict(EDIT_WEIGHTS)
    n = len(scene.objects)
    if n >= MAX_OBJECTS or not scene.free_cells():
        weights.pop("add"), weights.pop("count")
        weights["move"] = 0.0 if not scene.free_cells() else weights["move"]
    if n <= MIN_OBJECTS:
        weights.pop("remove")
    op = pick_weighted(rng, {k: v for k, v in weights.items() if v > 0})
    objs = list(scene.objects)
    if op in ("add", "count"):
        cell = pick(rng, scene.free_cells())
        if op == "count":
            like = pick(rng, objs)
            colour = like.colour if chance(rng, 0.6) else pick(rng, list(SCENE_COLOURS))
            objs.append(SceneObject(next_uid, like.kind, colour, cell))
        else:
            objs.append(SceneObject(next_uid, pick(rng, OBJECT_KINDS), pick(rng, list(SCENE_COLOURS)), cell))
    elif op == "remove":
        objs.pop(int(rng.integers(n)))
    elif op == "recolour":
        i = int(rng.integers(n))
        objs[i] = replace(objs[i], colour=pick(rng, [c for c in SCENE_COLOURS if c != objs[i].colour]))
    elif op == "move":
        i = int(rng.integers(n))
        objs[i] = replace(objs[i], cell=pick(rng, scene.free_cells()))
    else:
        return replace(scene, background=pick(rng, [b for b in BACKGROUNDS if b != scene.background]))
    return replace(scene, objects=tuple(sorted(objs, key=lambda o: o.uid)))


def related_scene(base: Scene, rng: np.random.Generator, edits: int = 1) -> Scene:
    """Another base scene close to `base` (`edits` edits away): the base of a neighbouring img_set, so
    that the index holds images like the reference outside its own set (CIRR's hard negatives)."""
    scene = base
    next_uid = max(o.uid for o in base.objects) + 1
    for _ in range(edits):
        scene = edit_scene(scene, rng, next_uid)
        next_uid += 1
    return scene


def scene_variants(base: Scene, n: int, rng: np.random.Generator, edits: tuple = (1, 2)) -> list[Scene]:
    """`n` visually similar, pairwise distinct scenes: the base and edits of it (`edits`: the fewest
    and most edits of one variant, each count equally likely)."""
    variants = [base]
    seen = {base.signature()}
    next_uid = max(o.uid for o in base.objects) + 1
    attempts = 0
    while len(variants) < n:
        attempts += 1
        if attempts > 200:
            raise RuntimeError("could not draw distinct scene variants")  # cannot happen with 6 cells
        v = base
        # (1, 2) keeps the draws of generator version 1, so the pool (which uses it) is unchanged
        n_edits = 1 + int(chance(rng, 0.5)) if edits == (1, 2) else int(rng.integers(edits[0], edits[1] + 1))
        for _ in range(n_edits):
            v = edit_scene(v, rng, next_uid)
            next_uid += 1
        if v.signature() not in seen:
            seen.add(v.signature())
            variants.append(v)
    return variants


# ---- scene drawing


def _draw_object(draw: ImageDraw.ImageDraw, kind: str, x: float, y: float, r: float, colour, rng):
    dark = (35, 35, 35) if luminance(colour) > 70 else (110, 110, 110)
    edge = shade(colour, 0.6) if luminance(colour) > 60 else shade(colour, 1.5)
    w = max(1, round(r / 5))
    facing = 1 if chance(rng, 0.5) else -1  # nuisance: left / right facing animals and cars

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
    width, height = pick_weighted(rng, {s: w for s, w in SCENE_SIZES.items()})
    sky, ground, _ = BACKGROUNDS[scene.background]
    canvas = Image.new("RGB", (width, height), jitter(sky, rng, 10))
    draw = ImageDraw.Draw(canvas)
    horizon = int(height * rng.uniform(0.38, 0.55))
    draw.rectangle([0, horizon, width, height], fill=jitter(ground, rng, 10))
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
        _draw_object(draw, obj.kind, x, y, r, jitter(SCENE_COLOURS[obj.colour], rng, 12), rng)
    return canvas


# ---- CIRR captions


def _word(kind: str, rng, plural=False) -> str:
    singular, plurals = OBJECT_WORDS[kind]
    i = int(rng.integers(len(singular)))
    return plurals[i] if plural else singular[i]


def _cell_phrase(cell, rng) -> str:
    col, row = GRID_COLUMNS[cell[0]], GRID_ROWS[cell[1]]
    if chance(rng, 0.5):
        return "in the middle" if col == "middle" else f"on the {col}"
    return f"at the {row}" if col == "middle" and chance(rng, 0.5) else f"at the {row} {col}"


def _refer(obj: SceneObject, scene: Scene, rng) -> str:
    """A referring expression for `obj` in `scene`: "the dog", "the red dog", "the dog on the left"."""
    same_kind = [o for o in scene.objects if o.kind == obj.kind]
    same_colour = [o for o in same_kind if o.colour == obj.colour]
    if len(same_kind) == 1:  # the colour named more often than not: the difference named explicitly
        return f"the {obj.colour} {_word(obj.kind, rng)}" if chance(rng, 0.6) else f"the {_word(obj.kind, rng)}"
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
        phrase = pick(rng, BACKGROUNDS[item[1]][2])
        return pick(rng, (f"change the background so it is {phrase}", f"make it {phrase}",
                           f"put everything {phrase}", f"{phrase} instead", f"the scene is {phrase}",
                           f"move them {phrase}"))
    if op == "add":
        o = item[1]
        n_ref, n_tgt = _count(ref, o.kind), _count(tgt, o.kind)
        if n_ref > 0 and n_tgt > n_ref and chance(rng, 0.6):
            w = _word(o.kind, rng, plural=True)
            return pick(rng, (f"show {NUMBER_WORDS[n_tgt]} {w}", f"there are {NUMBER_WORDS[n_tgt]} {w}",
                               f"add another {_word(o.kind, rng)}", f"add one more {_word(o.kind, rng)}",
                               f"make it {NUMBER_WORDS[n_tgt]} {w}"))
        thing = indefinite(f"{o.colour} {_word(o.kind, rng)}" if chance(rng, 0.85) else _word(o.kind, rng))
        if chance(rng, 0.3):
            where = _cell_phrase(o.cell, rng)
            return pick(rng, (f"add {thing} {where}", f"put {thing} {where}", f"include {thing} {where}",
                               f"there is also {thing} {where}"))
        return pick(rng, (f"add {thing}", f"include {thing}", f"there is also {thing}",
                           f"add {thing} to the scene", f"with {thing} too"))
    if op == "remove":
        o = item[1]
        n_tgt = _count(tgt, o.kind)
        if 0 < n_tgt < _count(ref, o.kind) and chance(rng, 0.6):
            w = _word(o.kind, rng, plural=n_tgt > 1)
            return pick(rng, (f"only {NUMBER_WORDS[n_tgt]} {w}", f"remove one of the {_word(o.kind, rng, True)}",
                               f"there should be {NUMBER_WORDS[n_tgt]} {w}"))
        r = _refer(o, ref, rng)
        options = [f"remove {r}", f"take away {r}", f"get rid of {r}", f"without {r}", f"delete {r}"]
        if n_tgt == 0:
            options.append(f"no {_word(o.kind, rng, plural=True)}")
        return pick(rng, options)
    if op == "recolour":
        o, t = item[1], item[2]
        r = _refer(o, ref, rng)
        w = _word(o.kind, rng)
        return pick(rng, (f"make {r} {t.colour}", f"change the color of {r} to {t.colour}",
                           f"{r} is {t.colour} now", f"paint {r} {t.colour}",
                           f"{indefinite(t.colour)} {w} instead of the {o.colour} one", f"turn {r} {t.colour}"))
    if op == "move":
        o, t = item[1], item[2]
        r = _refer(o, ref, rng)
        if t.cell[0] != o.cell[0] and t.cell[1] != o.cell[1]:
            where = f"to the {GRID_ROWS[t.cell[1]]} {GRID_COLUMNS[t.cell[0]]}"
        elif t.cell[0] != o.cell[0]:
            where = "to the middle" if t.cell[0] == 1 else f"to the {GRID_COLUMNS[t.cell[0]]}"
        else:
            where = f"to the {GRID_ROWS[t.cell[1]]}"
        return pick(rng, (f"move {r} {where}", f"put {r} {where}", f"{r} should go {where}",
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
            part = indefinite(f"{colour} {_word(kind, rng)}")
            if chance(rng, positions):
                part += " " + _cell_phrase(objs[0].cell, rng)
        else:
            part = f"{NUMBER_WORDS[len(objs)]} {colour} {_word(kind, rng, plural=True)}"
        parts.append(part)
    text = f"{join_list(parts)} {pick(rng, BACKGROUNDS[scene.background][2])}"
    return pick(rng, ("", "", "a picture of ", "a scene with ")) + text


# How captions are written (generator versions 2 and 3, docs/mini-calibration.md): as CIRR's annotators
# were asked to, they name what distinguishes the target from the reference, mostly all of it, and
# nearly always say what the target shows besides (its background, an object it keeps); version 3
# describes the whole target in over half of them (CIRR's captions often describe the target itself).
CAPTION_VAGUE = 0.03  # a vague caption ("a similar picture")
CAPTION_ABSOLUTE = 0.6  # (cumulative) a description of the whole target (0.3 in version 2)
CAPTION_PARTIAL = 0.15  # of several changes, only some are named
CAPTION_CONTEXT = 0.95  # the target's background or a kept object is named too (0.8 in version 2)


def _context_phrase(ref: Scene, tgt: Scene, rng) -> str:
    """What the target shows besides the changes: its background, or an object the reference had too."""
    ref_by = {o.uid: o for o in ref.objects}
    kept = [o for o in tgt.objects if o.uid in ref_by and ref_by[o.uid] == o]
    if kept and chance(rng, 0.6):
        o = pick(rng, kept)
        thing = f"the {o.colour} {_word(o.kind, rng)}"
        return pick(rng, (f" next to {thing}", f", keep {thing}", f" with {thing} still there", f" beside {thing}"))
    return " " + pick(rng, BACKGROUNDS[tgt.background][2])


def cirr_caption(ref: Scene, tgt: Scene, rng: np.random.Generator) -> str:
    """One relative caption from `ref` to `tgt`: the changes (all, or some), sometimes with what the
    target shows besides, sometimes a description of the whole target, rarely vague."""
    r = rng.random()
    if r < CAPTION_VAGUE:
        return pick(rng, VAGUE_SCENE_CAPTIONS)
    if r < CAPTION_ABSOLUTE:
        opening = pick(rng, ("the target shows ", "the target photo has ", "show "))
        return opening + absolute_scene_caption(tgt, rng, 0.2)
    items = scene_diff(ref, tgt)
    items = [items[i] for i in rng.permutation(len(items))]
    if len(items) > 1 and chance(rng, CAPTION_PARTIAL):
        items = items[: int(rng.integers(1, len(items)))]
    items = items[:3]
    phrases = [_diff_phrase(it, ref, tgt, rng) for it in items]
    text = phrases[0]
    for p in phrases[1:]:
        text += pick(rng, (" and ", ", ", " and ", "; ")) + p
    if chance(rng, CAPTION_CONTEXT):
        text += _context_phrase(ref, tgt, rng)
    if chance(rng, 0.5):
        text = cap_first(text)
    if chance(rng, 0.3):
        text += "."
    return text
