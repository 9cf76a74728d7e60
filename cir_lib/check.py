"""`cir-lib check-data`: account for every query and every image of a data root.

Reports, per split (and FashionIQ category), the number of queries, of index images and of
missing or unreadable images, plus every annotation problem (unknown image names, malformed
entries, duplicate pairids, img_sets without their reference), naming files and entries. Works on
annotation files alone: with no images at all every image is counted missing, so a download can
be checked before fetching the images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from cir_lib.constants import CIRR_DIR, DATASETS, FASHIONIQ_DIR
from cir_lib.data import annotation_files, format_listing, read_annotations, relative_path
from cir_lib.errors import ConfigError
from cir_lib.images import MISSING, image_status
from cir_lib.mini import check_generator_version
from cir_lib.datasets import get_dataset

MAX_MISSING_LISTED = 20  # missing images named per split; the count is always exact


def _groups(dataset: str) -> list:
    """(split, category) pairs of a dataset, in report order."""
    return get_dataset(dataset).split_groups()


def _listing(paths: list, limit: int, root: Path) -> str:
    return format_listing([relative_path(p, root) for p in paths], limit)


def check_data(data_root, datasets: Sequence[str] | None = None, verify_images: bool = True, *,
               workers: int | None = None, progress: bool = True) -> dict:
    """Validate the annotation files and images under a data root.

    Args:
        data_root: folder holding fashionIQ_dataset/ and/or cirr_dataset/.
        datasets: datasets to check; None checks whichever is present (a missing dataset folder is
            a problem only when the dataset is asked for explicitly, or when neither is present).
        verify_images: decode every present image (`images.verify_image`: empty, truncated, not an
            image -> unreadable_images); False only checks that the files exist (a folder where an
            image should be is unreadable either way).
        workers: threads decoding images (default min(8, 2 x cores)).
        progress: show a tqdm progress bar while decoding.
    Returns:
        {"fashioniq": {split: {category: counts}}, "cirr": {split: counts}, "problems": [str, ...]}
        with counts {"queries", "images", "missing_images" (absent files), "unreadable_images"
        (present, but no readable image; each named in problems with its reason)}.
        and "warnings" (what is used as it is but deserves a look: empty captions). Clean when
        "problems" is empty. Every split (and category) of a dataset that is there is expected: one
        without its annotation files is a problem; without `datasets`, both datasets are expected.

    Example:
        >>> report = check_data("/data", ["cirr"])
        >>> report["cirr"]["val"]
        {'queries': 4181, 'images': 2297, 'missing_images': 0, 'unreadable_images': 0}
    """
    root = Path(data_root)
    explicit = datasets is not None
    datasets = tuple(datasets) if explicit else DATASETS
    for ds in datasets:
        if ds not in DATASETS:
            raise ConfigError(f"unknown dataset {ds!r}; valid: {', '.join(DATASETS)}")
    report: dict = {ds: {} for ds in datasets}
    problems: list = []
    if not root.is_dir():
        report["problems"] = [f"data root {root} does not exist or is not a folder"]
        return report

    try:
        check_generator_version(root)
    except ConfigError as err:  # a mini benchmark of another generator version
        problems.append(str(err))
    present = [ds for ds in datasets if (root / get_dataset(ds).folder).is_dir()]
    hint = ""
    if root.name in {get_dataset(d).folder for d in DATASETS}:
        hint = f" ({root} looks like a dataset folder: pass its parent as the data root)"
    for ds in datasets:
        if ds not in present and explicit:
            problems.append(f"{ds}: folder {root / get_dataset(ds).folder} not found{hint}")
    if not present and not explicit:
        problems.append(
            f"neither {FASHIONIQ_DIR}/ nor {CIRR_DIR}/ found under {root}; the data root must be the "
            f"folder holding them{hint}"
        )
    elif not explicit:  # both are expected: one alone is said, with how to check it by itself
        for ds in datasets:
            if ds not in present:
                problems.append(f"{ds}: folder {root / get_dataset(ds).folder} not found; pass --dataset "
                                f"{present[0]} (datasets=[{present[0]!r}]) to check {present[0]} alone")

    # Annotations first (every problem collected), then the images of every split at once.
    found = []  # (dataset, split, category, Annotations)
    absent = []  # (dataset, split, category, captions file, split file) without either file
    warnings: list = []
    for ds in present:
        n_found = 0
        for split, category in _groups(ds):
            captions_file, split_file = annotation_files(root, ds, split, category)
            if not captions_file.exists() and not split_file.exists():
                absent.append((ds, split, category, captions_file, split_file))
                continue
            n_found += 1
            ann = read_annotations(root, ds, split, category, collect=True)
            problems.extend(ann.problems)
            warnings.extend(ann.warnings)
            found.append((ds, split, category, ann))
        if n_found == 0:
            problems.append(f"{ds}: no annotation files found under {root / get_dataset(ds).folder}")
        else:  # an interrupted download or generation: name each split (and category) without files
            for _, split, category, captions_file, split_file in (a for a in absent if a[0] == ds):
                label = " ".join([ds] + ([category] if category else []) + [split])
                problems.append(f"{label}: annotation files {relative_path(captions_file, root)} and "
                                f"{relative_path(split_file, root)} not found (an incomplete download or "
                                "an interrupted generation?)")

    all_paths = list(dict.fromkeys(p for *_, ann in found for p in ann.image_paths))
    status = image_status(all_paths, verify=verify_images, workers=workers, progress=progress)

    for ds, split, category, ann in found:
        missing = [p for p in ann.image_paths if status[p] == MISSING]
        broken = [(p, status[p]) for p in ann.image_paths if status[p] not in (None, MISSING)]
        counts = {"queries": ann.n_entries, "images": len(ann.image_paths),
                  "missing_images": len(missing), "unreadable_images": len(broken)}
        if category is None:
            report[ds][split] = counts
        else:
            report[ds].setdefault(split, {})[category] = counts
        if missing:
            if len(missing) == len(ann.image_paths):  # annotation files only: a short line
                hint, limit = " (none of them is there: annotation files only?)", 3
            else:
                hint, limit = "", MAX_MISSING_LISTED
            problems.append(
                f"{ann.label}: {len(missing)} of {len(ann.image_paths)} index images missing{hint}: "
                f"{_listing(missing, limit, root)}"
            )
        for p, reason in broken:
            problems.append(f"{ann.label}: unreadable image {relative_path(p, root)} ({reason})")
    report["problems"] = problems
    report["warnings"] = warnings
    return report


def format_report(report: dict) -> str:
    """The human-readable table printed by `cir-lib check-data`."""
    rows = [("dataset", "split", "category", "queries", "images", "missing", "unreadable")]
    for ds in DATASETS:
        for split, value in report.get(ds, {}).items():
            groups = [(None, value)] if "queries" in value else list(value.items())
            for category, c in groups:
                rows.append((ds, split, category or "-", str(c["queries"]), str(c["images"]),
                             str(c["missing_images"]), str(c.get("unreadable_images", 0))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [r[i].ljust(widths[i]) if i < 3 else r[i].rjust(widths[i]) for i in range(len(r))]
        lines.append("  ".join(cells).rstrip())
    if len(rows) == 1:
        lines.append("(nothing found)")
    problems = report.get("problems", [])
    lines.append("")
    if problems:
        lines.append(f"{len(problems)} problem(s):")
        lines.extend(f"  - {p}" for p in problems)
    else:
        lines.append("clean: every query and every image accounted for")
    warnings = report.get("warnings", [])
    if warnings:
        lines.append(f"{len(warnings)} warning(s) (used as they are):")
        lines.extend(f"  - {w}" for w in warnings)
    return "\n".join(lines)
