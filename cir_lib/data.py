"""Readers for the real FashionIQ and CIRR layouts (and the mini benchmarks, which share them).

Layouts (the data root is the folder holding both datasets; it is always an argument):

    <root>/fashionIQ_dataset/images/<name>.jpg
    <root>/fashionIQ_dataset/captions/cap.<category>.<split>.json      [{"candidate", "target", "captions": [c1, c2]}]
    <root>/fashionIQ_dataset/image_splits/split.<category>.<split>.json  [name, ...]
    <root>/cirr_dataset/<relative path from the split file>            e.g. ./dev/dev-244-0-img0.png
    <root>/cirr_dataset/cirr/captions/cap.rc2.<split>.json             [{"pairid", "reference", "target_hard", "caption", "img_set": {"members"}}]
    <root>/cirr_dataset/cirr/image_splits/split.rc2.<split>.json       {name: "./dev/<name>.png"}

Test entries (FashionIQ test, CIRR test1) carry no target.

Public API:

    Query            frozen dataclass: reference, captions (tuple), target (None on test), pairid
                     (CIRR), members (CIRR img_set, 6 names incl. reference), category (FashionIQ)
    SkipReport       dataclass: queries, images (counts removed by skip_missing; images split
                     into missing_images and unreadable_images), details (list of str), groups
                     (per split/category counts); `to_dict()`
    Split            dataclass: dataset, split, category, data_root, image_names (index order =
                     split-file order), image_paths, queries, skipped (SkipReport)
                     .name_to_index (dict), .indices(names) -> LongTensor,
                     .reference_indices / .target_indices -> LongTensor [Q],
                     .member_indices -> LongTensor [Q, 6]
    load_split(data_root, dataset, split, category=None, *, skip_missing=False, check_files=True,
               skip_members=True, max_queries=None)   (max_queries: a capped load, for dry runs)
    capped_image_files(data_root, dataset, split, category=None, max_queries=None) -> [Path]
                     (the image files a capped load needs)
    annotation_fingerprint(data_root, dataset) -> {"files": {path: sha256}, "sha256", ...} (resume check)
    merge_splits(splits) -> Split   (pools FashionIQ categories; images de-duplicated by name)
    read_annotations(data_root, dataset, split, category=None) -> Annotations (every problem
                     collected, nothing raised for entry-level problems; used by check-data)
    eval_captions(split) -> the caption each query is evaluated with (the dataset's `eval_caption`)
    eval_captions(split) -> the evaluation caption of every query

The image files themselves (opening, verifying, `ImageDataset`) are in `cir_lib.images`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import torch

from cir_lib.constants import CIRR_SET_SIZE
from cir_lib.datasets import get_dataset
from cir_lib.datasets.base import EntryPlace, Query, check_data_root, read_json, relative_path  # noqa: F401 (re-exported)
from cir_lib.datasets.fashioniq import caption_variants as fashioniq_caption_variants  # noqa: F401
from cir_lib.datasets.fashioniq import eval_caption as fashioniq_eval_caption  # noqa: F401
from cir_lib.errors import AnnotationError, ConfigError, ImageError
from cir_lib.images import MISSING, SKIP_MISSING_CLI, image_status
from cir_lib.mini import check_generator_version

logger = logging.getLogger(__name__)

MAX_LISTED = 5  # names / problems quoted in one error message


# ----------------------------------------------------------------------------------------- records


@dataclass
class SkipReport:
    """What `skip_missing=True` removed. Carry it with anything computed from the split.

    An image is unusable when its file is absent (`missing_images`) or present but unreadable
    (`unreadable_images`: empty, truncated, not an image, a folder); `images` counts both.
    """

    queries: int = 0  # queries removed (their reference, target or an img_set member is unusable)
    images: int = 0  # index images removed (missing_images + unreadable_images)
    details: list = field(default_factory=list)  # one human-readable line per split / category
    groups: dict = field(default_factory=dict)  # "fashioniq dress val" -> {"queries", "images", "missing_images", "unreadable_images"}
    missing_images: int = 0  # of `images`: the file is absent
    unreadable_images: int = 0  # of `images`: the file is there but is no readable image (reason in details)

    @property
    def is_empty(self) -> bool:
        """True when nothing was removed."""
        return self.queries == 0 and self.images == 0

    def to_dict(self) -> dict:
        """Plain dict for JSON / result tables."""
        return {
            "queries": self.queries,
            "images": self.images,
            "details": list(self.details),
            "groups": {k: dict(v) for k, v in self.groups.items()},
            "missing_images": self.missing_images,
            "unreadable_images": self.unreadable_images,
        }

    @staticmethod
    def combine(reports: Iterable["SkipReport"]) -> "SkipReport":
        """Sum several reports (e.g. the three FashionIQ categories)."""
        out = SkipReport()
        for r in reports:
            out.queries += r.queries
            out.images += r.images
            out.missing_images += r.missing_images
            out.unreadable_images += r.unreadable_images
            out.details.extend(r.details)
            for key, counts in r.groups.items():
                g = out.groups.setdefault(key, dict.fromkeys(_GROUP_KEYS, 0))
                for k in _GROUP_KEYS:
                    g[k] = g.get(k, 0) + counts.get(k, 0)
        return out


_GROUP_KEYS = ("queries", "images", "missing_images", "unreadable_images")


@dataclass
class Split:
    """The index (gallery) and the queries of one split (one FashionIQ category, or pooled).

    Treat it as read-only: `name_to_index` is computed once.
    """

    dataset: str  # "fashioniq" or "cirr"
    split: str  # train / val / test (FashionIQ), train / val / test1 (CIRR)
    category: str | None  # FashionIQ category, "dress+shirt+toptee" when pooled; None for CIRR
    data_root: Path  # folder holding fashionIQ_dataset/ and cirr_dataset/
    image_names: list  # index image names, in split-file order
    image_paths: list  # Path of each index image
    queries: list  # Query records, in caption-file order
    skipped: SkipReport = field(default_factory=SkipReport)  # what skip_missing removed
    capped: int | None = None  # max_queries of a capped load (a dry run: NOT the benchmark), else None

    @property
    def label(self) -> str:
        """Human-readable name used in messages, e.g. "fashioniq dress val" or "cirr test1"."""
        parts = [self.dataset] + ([self.category] if self.category else []) + [self.split]
        if self.capped is not None:
            parts.append(f"(capped to {self.capped} queries)")
        return " ".join(parts)

    @property
    def has_targets(self) -> bool:
        """True when every query has a target (False on test splits)."""
        return all(q.target is not None for q in self.queries)

    @cached_property
    def name_to_index(self) -> dict:
        """Image name -> position in the index."""
        return {name: i for i, name in enumerate(self.image_names)}

    def indices(self, names: Iterable[str]) -> torch.Tensor:
        """Positions of `names` in the index, as a LongTensor.

        Example: split.indices(["B0084Y8XIU"]) -> tensor([1])
        """
        lookup = self.name_to_index
        out = []
        for name in names:
            try:
                out.append(lookup[name])
            except KeyError:
                raise AnnotationError(f"image {name!r} is not in the index of {self.label}") from None
        return torch.tensor(out, dtype=torch.long)

    @property
    def reference_indices(self) -> torch.Tensor:
        """LongTensor [Q]: index position of each query's reference."""
        return self.indices(q.reference for q in self.queries)

    @property
    def target_indices(self) -> torch.Tensor:
        """LongTensor [Q]: index position of each query's target. Raises ConfigError on test splits."""
        if not self.has_targets:
            n = sum(q.target is None for q in self.queries)
            raise ConfigError(
                f"{self.label} has no targets ({n} of {len(self.queries)} queries without one; test "
                f"splits do not publish them): evaluate on val, or for CIRR test1 write a submission "
                f"for the evaluation server (cir-lib submit-cirr)"
            )
        return self.indices(q.target for q in self.queries)

    @property
    def member_indices(self) -> torch.Tensor:
        """LongTensor [Q, 6]: index positions of each query's CIRR img_set members."""
        if not get_dataset(self.dataset).has_members:
            raise ConfigError(f"{self.label}: img_set members exist only in CIRR (datasets with image sets)")
        lookup = self.name_to_index
        rows = []
        for q in self.queries:
            try:
                rows.append([lookup[m] for m in q.members])
            except KeyError as err:
                raise AnnotationError(
                    f"{self.label}: pairid {q.pairid} names img_set member {err.args[0]!r}, which is "
                    f"not in the index"
                ) from None
        if not rows:
            return torch.empty((0, CIRR_SET_SIZE), dtype=torch.long)
        return torch.tensor(rows, dtype=torch.long)


# ----------------------------------------------------------------------------------------- captions


def eval_captions(split: Split) -> list:
    """The caption each query is evaluated with (FashionIQ: "C1 and c2"; CIRR: as is)."""
    ds = get_dataset(split.dataset)
    return [ds.eval_caption(q) for q in split.queries]


# ------------------------------------------------------------------------------ annotation parsing


@dataclass
class Annotations:
    """Everything read from one split's annotation files, with every problem found."""

    dataset: str  # "fashioniq" or "cirr"
    split: str  # split name
    category: str | None  # FashionIQ category or None
    data_root: Path  # the data root
    captions_file: Path  # the caption file read
    split_file: Path  # the split file read
    image_names: list  # valid, de-duplicated index names, split-file order
    image_paths: list  # their paths
    queries: list  # the valid queries
    n_entries: int  # entries in the caption file (valid or not)
    problems: list  # one line per problem, naming the file and the entry
    warnings: list = field(default_factory=list)  # what is used as it is but deserves a look (empty captions)

    @property
    def label(self) -> str:
        return " ".join([self.dataset] + ([self.category] if self.category else []) + [self.split])


def annotation_files(data_root, dataset: str, split: str, category: str | None = None) -> tuple:
    """(captions file, split file) of a split; nothing is read.

    Example: annotation_files(root, "cirr", "val") ->
        (root/cirr_dataset/cirr/captions/cap.rc2.val.json, root/cirr_dataset/cirr/image_splits/split.rc2.val.json)
    """
    _check_names(dataset, split, category)
    return get_dataset(dataset).annotation_files(Path(data_root), split, category)


TRAINING_SPLITS = ("train", "val")  # the splits a training run reads (trains on, validates on)


def annotation_fingerprint(data_root, dataset: str, splits: Sequence[str] = TRAINING_SPLITS) -> dict:
    """A stable hash of the annotation files a run reads: resuming on other annotations is refused.

    Args:
        data_root: folder holding fashionIQ_dataset/ and cirr_dataset/.
        dataset: "fashioniq" (every category) or "cirr".
        splits: the splits covered (default: train and val, what training reads).

    Returns:
        {"dataset", "splits", "files": {path relative to the data root: SHA-256 of its bytes, or None
        when absent}, "sha256": one digest over all of them}. JSON-able; the same files give the same
        dict wherever the data root is.

    Example:
        >>> annotation_fingerprint("/data", "cirr")["files"]["cirr_dataset/cirr/captions/cap.rc2.val.json"]
        '5f0c...'
    """
    root = Path(data_root)
    categories = get_dataset(dataset).categories or (None,)
    files = {}
    for split in splits:
        for category in categories:
            for path in annotation_files(root, dataset, split, category):
                try:
                    files[relative_path(path, root)] = hashlib.sha256(path.read_bytes()).hexdigest()
                except FileNotFoundError:
                    files[relative_path(path, root)] = None
    total = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"dataset": dataset, "splits": list(splits), "files": files, "sha256": total}


def _check_names(dataset: str, split: str, category: str | None) -> None:
    get_dataset(dataset).check_names(split, category)


def read_annotations(data_root, dataset: str, split: str, category: str | None = None, *,
                     collect: bool = False) -> Annotations:
    """Read one split's annotation files, collecting every entry-level problem.

    Args:
        data_root: folder holding fashionIQ_dataset/ and cirr_dataset/.
        dataset: "fashioniq" or "cirr".
        split: FashionIQ train/val/test, CIRR train/val/test1.
        category: FashionIQ dress/shirt/toptee; None for CIRR.
        collect: also record file-level problems (missing file, malformed JSON, wrong top-level
            type) in `problems` instead of raising, and read what can be read (check-data).
    Returns:
        Annotations with the valid index names and queries and a list of problems (each naming
        the file and the entry). Image files are not looked at.
    Raises:
        AnnotationError: (collect=False) a file is missing, is not JSON, or has the wrong
            top-level type.
        ConfigError: unknown dataset / split / category.

    Example:
        >>> ann = read_annotations("/data", "cirr", "val"); ann.problems
        []
    """
    root = Path(data_root)
    captions_file, split_file = annotation_files(root, dataset, split, category)
    problems: list = []
    names, paths, known = [], [], None
    ds = get_dataset(dataset)
    try:
        names, paths = ds.read_index(split_file, root, problems)
        known = set(names)
    except AnnotationError as err:
        if not collect:
            raise
        problems.append(str(err))
    entries = []
    try:
        entries = read_json(captions_file, root, "captions")
        if not isinstance(entries, list):
            raise AnnotationError(
                f"{captions_file}: expected a JSON list of entries, got {type(entries).__name__}"
            )
    except AnnotationError as err:
        if not collect:
            raise
        problems.append(str(err))
        entries = []
    rel, split_rel = relative_path(captions_file, root), relative_path(split_file, root)
    queries = []
    place = EntryPlace(captions_file=captions_file, rel=rel, split=split, split_rel=split_rel, known=known,
                       category=category)
    seen: dict = {}  # the reader's duplicate checks over this file
    for i, entry in enumerate(entries):
        q = ds.read_entry(entry, i, place, seen, problems)
        if q is not None:
            queries.append(q)
    return Annotations(dataset, split, category, root, captions_file, split_file, names, paths,
                       queries, len(entries), problems, _empty_caption_warnings(queries, entries, rel))


def _empty_caption_warnings(queries: list, entries: list, rel: str) -> list:
    """One line naming the entries whose caption is empty (or blank). They are kept, as the official
    code keeps them (the real FashionIQ and CIRR files hold a few); the query then leans on its image."""
    empty = [i for i, e in enumerate(entries) if isinstance(e, dict) and any(
        isinstance(c, str) and not c.strip() for c in (e.get("captions") if isinstance(e.get("captions"), list)
                                                         else [e.get("caption")]))]
    if not empty or not queries:
        return []
    return [f"{rel}: {len(empty)} entr{'y has' if len(empty) == 1 else 'ies have'} an empty caption "
            f"(entr{'y' if len(empty) == 1 else 'ies'} {format_listing([str(i) for i in empty])}); they are used "
            "as they are (as the official code does): write the caption to query with text"]


# ------------------------------------------------------------------------------------------ loading


def format_listing(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    """The first `limit` items joined by commas, then "... and N more"."""
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def _unusable_files(paths: Sequence[Path], verify: bool) -> dict:
    """{position: reason} of the unusable files among `paths` (reason MISSING when absent)."""
    status = image_status(paths, verify=verify, progress=verify and len(paths) > 1000)
    return {i: status[p] for i, p in enumerate(paths) if status[p] is not None}


def _cap_queries(names: list, paths: list, queries: list, max_queries: int | None) -> tuple:
    """(names, paths, queries) of a capped load: the first `max_queries` queries in file order and
    the index restricted to the images they name (reference, target, CIRR img_set members), in
    split-file order. None leaves everything as it is."""
    if max_queries is None:
        return names, paths, queries
    queries = queries[:max_queries]
    used = {n for q in queries for n in (q.reference, q.target, *(q.members or ())) if n is not None}
    keep = [i for i, n in enumerate(names) if n in used]
    return [names[i] for i in keep], [paths[i] for i in keep], queries


def _check_cap(max_queries) -> None:
    if max_queries is not None and (isinstance(max_queries, bool) or not isinstance(max_queries, int)
                                    or max_queries < 1):
        raise ConfigError(f"max_queries must be a positive integer or None (all queries); got {max_queries!r}")


def _load_one(root: Path, dataset: str, split: str, category: str | None, skip_missing: bool,
              check_files: bool, skip_members: bool = True, max_queries: int | None = None) -> Split:
    ann = read_annotations(root, dataset, split, category)
    if ann.problems:
        n = len(ann.problems)
        shown = "\n  - ".join(ann.problems[:MAX_LISTED])
        more = f"\n  ... and {n - MAX_LISTED} more" if n > MAX_LISTED else ""
        raise AnnotationError(
            f"{n} annotation problem(s) in {ann.label} (data root {root}):\n  - {shown}{more}\n"
            f"Repair or re-download these files; `cir-lib check-data --data-root {root}` lists every problem."
        )
    for warning in ann.warnings:
        logger.warning("%s", warning)
    # The cap comes before the file check: a root holding only the capped images loads.
    names, paths, queries = _cap_queries(ann.image_names, ann.image_paths, ann.queries, max_queries)
    label = ann.label + (f" (capped to {max_queries} queries)" if max_queries is not None else "")
    skipped = SkipReport()
    if check_files or skip_missing:
        # Without skip_missing only existence is checked (cheap); files are decoded when loaded.
        bad = _unusable_files(paths, verify=skip_missing)
        if bad and not skip_missing:
            listed = [relative_path(paths[i], root) + ("" if bad[i] == MISSING else f" ({bad[i]})") for i in bad]
            none_there = " None of them is there: check --data-root and that the images were " \
                "downloaded into the layout of the README's *Data layout* section." if len(bad) == len(paths) else ""
            what = "missing" if all(r == MISSING for r in bad.values()) else "missing or unreadable"
            raise ImageError(
                f"{label}: {len(bad)} of {len(paths)} index image files are {what} under "
                f"data root {root} ({format_listing(listed)}).{none_there} Pass skip_missing=True ({SKIP_MISSING_CLI}) "
                f"to drop them and the queries that use them (the counts are reported), or run "
                f"`cir-lib check-data --data-root {root}` for a full report."
            )
        if bad:
            gone = {names[i] for i in bad}
            keep = [i for i in range(len(names)) if names[i] not in gone]

            def uses_unusable(q: Query) -> bool:
                used = [q.reference, q.target, *((q.members or ()) if skip_members else ())]
                return any(n in gone for n in used if n is not None)

            kept_queries = [q for q in queries if not uses_unusable(q)]
            n_q = len(queries) - len(kept_queries)
            absent = [i for i in bad if bad[i] == MISSING]
            unreadable = [i for i in bad if bad[i] != MISSING]
            parts = []
            if absent:
                parts.append(f"missing image files: {format_listing([relative_path(paths[i], root) for i in absent])}")
            if unreadable:
                parts.append("unreadable image files: " + format_listing(
                    [f"{relative_path(paths[i], root)} ({bad[i]})" for i in unreadable]))
            detail = (
                f"{ann.label}: removed {n_q} of {len(queries)} queries and {len(bad)} of "
                f"{len(names)} index images ({len(absent)} missing, {len(unreadable)} unreadable; "
                f"{'; '.join(parts)})"
            )
            logger.warning("skip_missing: %s", detail)
            skipped = SkipReport(queries=n_q, images=len(bad), details=[detail],
                                 groups={ann.label: {"queries": n_q, "images": len(bad),
                                                     "missing_images": len(absent),
                                                     "unreadable_images": len(unreadable)}},
                                 missing_images=len(absent), unreadable_images=len(unreadable))
            names = [names[i] for i in keep]
            paths = [paths[i] for i in keep]
            queries = kept_queries
    if max_queries is not None:
        logger.info("%s: capped to the first %d queries and the %d index images they name (not the "
                    "benchmark's protocol)", ann.label, len(queries), len(names))
    return Split(dataset=dataset, split=split, category=category, data_root=root,
                 image_names=list(names), image_paths=list(paths), queries=list(queries), skipped=skipped,
                 capped=max_queries)


def load_split(data_root, dataset: str, split: str, category: str | None = None, *,
               skip_missing: bool = False, check_files: bool = True, skip_members: bool = True,
               max_queries: int | None = None) -> Split:
    """Read a split: its index (gallery) and its queries, validated strictly.

    Args:
        data_root: folder holding fashionIQ_dataset/ and cirr_dataset/.
        dataset: "fashioniq" or "cirr".
        split: FashionIQ "train" / "val" / "test"; CIRR "train" / "val" / "test1".
        category: FashionIQ "dress" / "shirt" / "toptee", or None to pool the three
            (merge_splits); must be None for CIRR.
        skip_missing: drop unusable index images and the queries that use them (reference, target
            or, with skip_members, a CIRR img_set member). Unusable: absent, empty, truncated, not an
            image, or a folder; every file is decoded once to find out (`cir_lib.images.verify_image`). The counts
            (missing and unreadable apart) go to Split.skipped and to a logged warning. Implies
            checking files.
        check_files: check that every index image file exists (missing -> ImageError; files are not
            decoded). False reads the annotation files alone.
        skip_members: with skip_missing, also drop CIRR queries whose img_set has an unusable member
            besides the reference and target. True for evaluation (recall_subset needs all six
            members); False for training, which uses only the reference and the target (kept queries
            may then name members that are not in the index: `member_indices` raises on them).
        max_queries: keep only the first N queries (caption-file order) and restrict the index to
            the images they name (reference, target, CIRR img_set members), before any file check:
            a data root holding just those images (`capped_image_files`) loads. FashionIQ pooled
            (category None) caps each category. The cap comes first: skip_missing may then drop
            some of the N. Recorded as `Split.capped`; for dry runs only, the numbers are not the
            benchmark's. None (default): the whole split.
    Returns:
        Split. Index order is the split-file order.
    Raises:
        AnnotationError: missing / malformed annotation files or entries (names file and entry).
        ImageError: missing image files when check_files and not skip_missing.
        ConfigError: unknown dataset / split / category; a mini benchmark of another generator
            version (`cir_lib.mini.check_generator_version`).

    Example:
        >>> val = load_split("/data", "fashioniq", "val", "dress", check_files=False)
        >>> len(val.queries), len(val.image_names)
        (2017, 3817)
    """
    root = Path(data_root)
    check_generator_version(root)
    _check_cap(max_queries)
    ds = get_dataset(dataset)
    if ds.categories and category is None:
        _check_names(dataset, split, ds.categories[0])
        return merge_splits([
            _load_one(root, dataset, split, c, skip_missing, check_files, skip_members, max_queries)
            for c in ds.categories
        ])
    _check_names(dataset, split, category)
    return _load_one(root, dataset, split, category, skip_missing, check_files, skip_members, max_queries)


def capped_image_files(data_root, dataset: str, split: str, category: str | None = None,
                       max_queries: int | None = None) -> list:
    """The image files a capped load (`load_split(..., max_queries=N)`) needs; only annotations are read.

    Args:
        data_root, dataset, split, category: as in `load_split` (FashionIQ category None: the three
            categories pooled, each capped).
        max_queries: the cap (None: every index image of the split).
    Returns:
        A list of Path, index order, no duplicates: put images there (real or placeholders) and the
        capped load finds every file it checks.

    Example:
        >>> capped_image_files("/data", "cirr", "val", max_queries=8)[:1]
        [PosixPath('/data/cirr_dataset/dev/dev-244-0-img0.png')]
    """
    split_ = load_split(data_root, dataset, split, category, check_files=False, max_queries=max_queries)
    return list(dict.fromkeys(Path(p) for p in split_.image_paths))


def merge_splits(splits: Sequence[Split]) -> Split:
    """Pool splits of the same dataset and split name (the FashionIQ categories, for training).

    Index images are unioned and de-duplicated by name (first occurrence order), queries
    concatenated (each keeps its category), skip counts summed.

    Example: merge_splits([load_split(r, "fashioniq", "train", c) for c in ("dress", "shirt")])
    """
    splits = list(splits)
    if not splits:
        raise ConfigError("merge_splits needs at least one split")
    first = splits[0]
    for s in splits[1:]:
        if (s.dataset, s.split, Path(s.data_root)) != (first.dataset, first.split, Path(first.data_root)):
            raise ConfigError(f"cannot pool {first.label} with {s.label}: dataset, split and data root must match")
    if len(splits) == 1:
        return first
    names, paths, seen = [], [], set()
    for s in splits:
        for n, p in zip(s.image_names, s.image_paths):
            if n not in seen:
                seen.add(n)
                names.append(n)
                paths.append(p)
    cats = [s.category for s in splits if s.category]
    category = "+".join(dict.fromkeys(c for cat in cats for c in cat.split("+"))) or None
    return Split(dataset=first.dataset, split=first.split, category=category, data_root=Path(first.data_root),
                 image_names=names, image_paths=paths, queries=[q for s in splits for q in s.queries],
                 skipped=SkipReport.combine(s.skipped for s in splits),
                 capped=first.capped if all(s.capped == first.capped for s in splits) else None)
