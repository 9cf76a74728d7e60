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
  A pair differs in 2-4 attributes; its two relative captions each mention some of the changes
  (and often an attribute of the target that did not change), in many paraphrases, sometimes
  vaguely ("is more casual"). Most index distractors are near-duplicates of a reference.
- CIRR-like: scenes of 2-5 simple objects (dog, cat, bird, car, tree, house, ball, cup) on a
  background. Each img_set holds 6 variants of one base scene (1-3 edits each), and img_sets come in
  families of related base scenes (hard negatives in the index); captions add, remove, recolour,
  count or move objects or change the background, mostly naming every change, often with what the
  target shows besides, in over half of them describing the whole target.

Generator versions 2 and 3 were calibrated against the real datasets' published zero-shot ablations
(`cir_lib.mini_calibration`, docs/mini-calibration.md); the pool is the same as version 1's.

Every image is drawn from its own random generator, seeded by (seed, dataset, split, ..., index),
so the output does not depend on the order of work. JSON files follow the real files' formatting
(FashionIQ: indent 4; CIRR: one line; key order as in the real files), images are saved with fixed
encoder settings (JPEG quality 90, PNG without timestamps): the same seed gives the same bytes with
the same Pillow / libjpeg / zlib builds.

Sizes live in `PRESETS` ("smoke" for CI, "mini" for the pipeline, "mini-x2" twice the mini); tune them
there. The garments and their captions are generated in `cir_lib.mini_garments`, the scenes in
`cir_lib.mini_scenes`; this module holds the presets and writes the benchmark.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from PIL import Image

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
from cir_lib.locks import folder_lock
from cir_lib.mini_common import chance, pick, pick_weighted, seeded_rng
from cir_lib.mini_garments import (
    CHANGES_PER_PAIR,
    Garment,
    absolute_garment_caption,
    fashioniq_captions,
    mutate_garment,
    random_garment,
    render_garment,
)
from cir_lib.mini_scenes import (
    absolute_scene_caption,
    cirr_caption,
    random_scene,
    related_scene,
    render_scene,
    scene_variants,
)
from cir_lib.progress import progress_bar
from cir_lib.storage import writing

logger = logging.getLogger(__name__)

# Bump when the generated content changes for a given seed. It is written into each data root's
# manifest, enters the feature-cache key of the images under it (`cir_lib.features`) and the records
# beside the result tables; a data root of another version is refused (`check_generator_version`).
# 2: calibrated against the real datasets' published zero-shot ablations (docs/mini-calibration.md).
# 3: the CIRR-like captions describe the target more often, img_set members lie 2-4 edits from their
#    base scene: the CIRR-like Recall@K order of the zero-shot rows now matches the published one.
MINI_GENERATOR_VERSION = 3
MANIFEST_NAME = "MINI_BENCHMARK.json"
JPEG_QUALITY = 90  # fixed so that output is byte-identical
PNG_COMPRESS_LEVEL = 6
CIRR_SPLIT_DIRS = {"train": "train", "val": "dev", "test1": "test1"}  # image folder and name prefix
FASHIONIQ_REFERENCE_REUSE = 0.6  # chance that a pair reuses an image of the split as its reference
FASHIONIQ_RANDOM_DISTRACTORS = 0.2  # share of index distractors drawn at random (the rest: near-duplicates)
CIRR_SETS_PER_FAMILY = 3  # img_sets sharing related base scenes (hard negatives for one another)
CIRR_VARIANT_EDITS = (2, 4)  # the fewest and most edits from its base scene of an img_set member ((1, 3) in version 2)


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


def scaled_preset(preset: MiniPreset, factor: int) -> MiniPreset:
    """`preset` with every split's counts (images, queries, img_sets, CIRR train folders) times
    `factor` and the same pool: the pool is drawn image by image from (seed, "pool", ...), so the
    same pool sizes give the same pool bytes and the same pretrained cir-mini."""
    return replace(preset, **{f.name: getattr(preset, f.name) * factor for f in fields(preset)
                              if not f.name.startswith("pool_")})


# Large enough for the pipeline to show the method working on 2 CPU cores in minutes.
_MINI = MiniPreset(
    fashioniq_train_images=1500, fashioniq_train_queries=1200,
    fashioniq_val_images=1200, fashioniq_val_queries=600,
    fashioniq_test_images=900, fashioniq_test_queries=450,
    cirr_train_sets=500, cirr_val_sets=200, cirr_test1_sets=180, cirr_train_folders=10,
    pool_fashion_images=3000, pool_scene_images=1500,
)

PRESETS = {
    # Tiny, for CI: about 60-100 images per FashionIQ category-split and per CIRR split.
    "smoke": MiniPreset(
        fashioniq_train_images=90, fashioniq_train_queries=60,
        fashioniq_val_images=72, fashioniq_val_queries=40,
        fashioniq_test_images=60, fashioniq_test_queries=30,
        cirr_train_sets=16, cirr_val_sets=12, cirr_test1_sets=10, cirr_train_folders=3,
        pool_fashion_images=80, pool_scene_images=40,
    ),
    "mini": _MINI,
    # Twice the mini in every split, the same pool (so the same cir-mini): what the mini's seed
    # tables cannot resolve, at double the size and about 1.5 times the time (profile mini-x2).
    "mini-x2": scaled_preset(_MINI, 2),
    # Between smoke and mini: for calibrating the generator (tools/zero_shot_profile.py) in minutes.
    "calibration": MiniPreset(
        fashioniq_train_images=60, fashioniq_train_queries=40,
        fashioniq_val_images=600, fashioniq_val_queries=300,
        fashioniq_test_images=30, fashioniq_test_queries=10,
        cirr_train_sets=10, cirr_val_sets=100, cirr_test1_sets=5, cirr_train_folders=3,
        pool_fashion_images=2000, pool_scene_images=1000,
    ),
}


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
        if garments and (must_reuse or chance(qrng, FASHIONIQ_REFERENCE_REUSE)):
            ref_i = int(qrng.integers(len(garments)))
        else:
            ref_i = new_image(random_garment(category, qrng))
        ref = garments[ref_i]
        tgt, changed = mutate_garment(ref, pick_weighted(qrng, CHANGES_PER_PAIR), qrng)
        tgt_i = new_image(tgt)
        pairs.append((ref_i, tgt_i, fashioniq_captions(ref, tgt, changed, qrng)))
    # Distractors: some random garments, most near-duplicates of a reference (garments like the
    # reference that are not the target: FashionIQ's index is one category's similar products).
    references = sorted({ref_i for ref_i, _, _ in pairs})
    d = 0
    while len(garments) < n_images:
        drng = seeded_rng(seed, "fashioniq", category, split, "distractor", d)
        d += 1
        if chance(drng, FASHIONIQ_RANDOM_DISTRACTORS):
            new_image(random_garment(category, drng))
        else:
            base = garments[references[int(drng.integers(len(references)))]]
            new_image(mutate_garment(base, 1 + int(chance(drng, 0.4)), drng)[0])
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
        # img_sets come in families whose base scenes are a few edits apart: outside its own set, the
        # index holds images like the reference (as CIRR's visually similar sets do).
        base = random_scene(seeded_rng(seed, "cirr", split, "family", s // CIRR_SETS_PER_FAMILY))
        if s % CIRR_SETS_PER_FAMILY:
            base = related_scene(base, srng)
        variants = scene_variants(base, CIRR_SET_SIZE, srng, edits=CIRR_VARIANT_EDITS)
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
        links = [(k, (k + 1) % CIRR_SET_SIZE) for k in range(CIRR_SET_SIZE) if chance(srng, 0.72)]
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
            if chance(prng, 0.1):  # as in the real files: a member marked as not the target
                others = [n for n in names if n not in (names[i_ref], names[i_tgt])]
                soft[pick(prng, others)] = -1.0
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
            g = random_garment(pick(rng, FASHIONIQ_CATEGORIES), rng)
            rel = f"images/fashion_{i:05d}.jpg"
            _save_jpg(render_garment(g, rng), pool / rel)
            entries.append({"image": rel, "caption": absolute_garment_caption(g, rng), "domain": "fashion"})
            progress.update(1)
        for i in range(preset.pool_scene_images):
            rng = seeded_rng(seed, "pool", "scene", i)
            scene = random_scene(rng)
            if chance(rng, 0.5):
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


_PARTIAL_PREFIX = ".make-mini-partial-"  # the temporary folder a generation is written into


def read_manifest(data_root) -> dict | None:
    """The data root's MINI_BENCHMARK.json (None where there is none: a real download)."""
    file = Path(data_root) / MANIFEST_NAME
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{file} is not valid JSON ({err}); regenerate the mini benchmark with "
                          f"`cir-lib make-mini --out {data_root} --overwrite`") from err
    if not isinstance(manifest, dict):
        raise ConfigError(f"{file} must hold a JSON object; regenerate the mini benchmark with "
                          f"`cir-lib make-mini --out {data_root} --overwrite`")
    return manifest


def generator_version(data_root) -> int | None:
    """The generator version a mini data root was made by (0 for a manifest without one; None for a
    folder without a manifest: real data, which has no generator)."""
    manifest = read_manifest(data_root)
    if manifest is None:
        return None
    version = manifest.get("generator_version", 0)
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


def generator_version_of_file(path, levels: int = 6) -> int | None:
    """The generator version of the mini data root holding the file `path` (found by looking for
    MINI_BENCHMARK.json in up to `levels` folders above it); None when it lies in no mini data root."""
    folder = Path(path).parent
    for _ in range(levels):
        if (folder / MANIFEST_NAME).is_file():
            try:
                return generator_version(folder)
            except ConfigError:
                return 0
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def check_generator_version(data_root) -> None:
    """Refuse a mini data root made by another generator version (real data passes).

    Its images and captions differ from what this kit generates for the same seed, and so would
    every number measured on it: such a root is never silently mixed with the current generator's.
    """
    version = generator_version(data_root)
    if version is None or version == MINI_GENERATOR_VERSION:
        return
    made_by = "an unversioned generator" if version == 0 else f"generator version {version}"
    raise ConfigError(
        f"{data_root} holds a mini benchmark made by {made_by}; this kit generates version "
        f"{MINI_GENERATOR_VERSION} (docs/mini-calibration.md says what changed). Regenerate it with "
        f"`cir-lib make-mini --out {data_root} --preset PRESET --overwrite` (the old benchmark and its "
        f"{MINI_CHECKPOINT} are moved aside, not deleted), or use another data root"
    )


def superseded_path(data_root, version: int) -> Path:
    """Where an older benchmark is moved aside: a sibling `<name>.generator-v<version>[-n]`."""
    root = Path(data_root).resolve()
    candidate = root.with_name(f"{root.name}.generator-v{version}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = root.with_name(f"{root.name}.generator-v{version}-{n}")
    return candidate


def _move_aside(out: Path, existing: list, version: int) -> Path:
    """Move an older generator's outputs (cir-mini.pt included) into a sibling folder, never deleting."""
    aside = superseded_path(out, version)
    with writing(aside, "superseded mini benchmark"):
        aside.mkdir(parents=True)
        for name in existing:
            os.replace(out / name, aside / name)
    logger.warning("moved the mini benchmark of generator version %d from %s aside to %s", version, out, aside)
    return aside


def _prepare_out(out: Path, overwrite: bool, remove: bool = True):
    """Refuse an `out` holding anything but a mini benchmark; with overwrite and `remove`, delete
    the earlier one (and the cir-mini checkpoint pretrained on it), or move it aside when it was made
    by another generator version."""
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
    if not remove:
        return
    try:
        version = generator_version(out)
    except ConfigError:  # an unreadable manifest: moved aside as unversioned, never deleted
        version = 0
    if version != MINI_GENERATOR_VERSION:
        _move_aside(out, existing, version)
        return
    for name in existing:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def make_mini(out, preset: str = "mini", seed: int = 0, overwrite: bool = False) -> dict:
    """Write the embedded mini benchmarks (FashionIQ-like, CIRR-like, and the pretraining pool).

    Args:
        out: the data root to write (created if needed); it receives fashionIQ_dataset/,
            cirr_dataset/, mini_pool/ and MINI_BENCHMARK.json.
        preset: a PRESETS name: "smoke" (tiny, for CI), "calibration" (for tuning the generator), "mini"
            or "mini-x2" (twice the mini, the same pool).
        seed: a non-negative integer; the output is byte-identical for a given preset and seed.
        overwrite: replace a mini benchmark already in `out` (refused for anything else). One made by
            another generator version is moved aside, with its cir-mini.pt, to the sibling folder
            `<out>.generator-v<version>` (`superseded_path`), never deleted.

    Everything is written into a temporary folder inside `out` and moved into place when complete,
    MINI_BENCHMARK.json last: an interrupted run (Ctrl-C, a full disk) leaves nothing that looks
    like a benchmark (and an earlier one, with overwrite, in place); its temporary folder is
    removed by the next run. A second generation into the same folder is refused while one runs.

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
    with folder_lock(out, "data root"):  # one generation at a time per folder
        _prepare_out(out, overwrite, remove=False)  # refuse before any work; replace only when complete
        for stale in out.glob(_PARTIAL_PREFIX + "*"):  # left by an interrupted generation
            logger.warning("removing %s, left by an interrupted make-mini", stale)
            shutil.rmtree(stale, ignore_errors=True)
        with writing(out, "mini benchmark"):
            stage = Path(tempfile.mkdtemp(prefix=_PARTIAL_PREFIX, dir=out))
        logger.info("writing the %s mini benchmark (seed %d) to %s", preset, seed, out)
        try:
            with writing(out, "mini benchmark"):
                manifest = _generate(stage, preset, seed)
                _prepare_out(out, overwrite)
                # Complete: moved into place, the manifest last (it marks a finished generation).
                for name in (FASHIONIQ_DIR, CIRR_DIR, MINI_POOL_DIR, MANIFEST_NAME):
                    os.replace(stage / name, out / name)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return manifest


def _generate(out: Path, preset: str, seed: int) -> dict:
    """Write the three benchmarks and the manifest into `out` (the temporary folder of `make_mini`)."""
    config = PRESETS[preset]
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
