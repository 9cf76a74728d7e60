"""The dataset interface: what varies from one benchmark to the next, in one object.

A benchmark (FashionIQ, CIRR, ...) is a `Dataset`: its name, its folder and splits under the data
root, how its annotation files are read, the metrics and Ks it is scored with and how its categories
aggregate, the model-selection score, how the tables' intervals group its queries, the table's
columns, whether a query's reference is removed from the ranking, and whether it has a test server.
The rest of the kit asks the object, never "which dataset is this?": a new benchmark is one module
beside `fashioniq.py` and `cirr.py`, its registration in `cir_lib/datasets/__init__.py`, and its test.

This module also holds the annotation record (`Query`) and the JSON helpers every reader shares.

Example:
    >>> from cir_lib.datasets import get_dataset
    >>> ds = get_dataset("cirr")
    >>> ds.splits, ds.groups, ds.removes_reference
    (('train', 'val', 'test1'), ('cirr',), True)
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from cir_lib.constants import CIRR_DIR, FASHIONIQ_DIR
from cir_lib.errors import AnnotationError, ConfigError
from cir_lib.mini import check_generator_version
from cir_lib.storage import link_problem


@dataclass(frozen=True)
class Query:
    """One query: a reference image and its caption(s), with the target when the split has one."""

    reference: str  # image name of the reference (FashionIQ "candidate")
    captions: tuple  # FashionIQ: the two raw captions (c1, c2); CIRR: (caption,)
    target: str | None = None  # image name of the target (FashionIQ "target", CIRR "target_hard"); None on test
    pairid: int | None = None  # CIRR pair id (keys the test submission)
    members: tuple | None = None  # CIRR img_set members (6 names, reference included)
    category: str | None = None  # FashionIQ category (dress / shirt / toptee)


@dataclass(frozen=True)
class EntryPlace:
    """Where an annotation entry is read, for the reader's checks and messages."""

    captions_file: Path  # the captions file read
    rel: str  # the captions file, relative to the data root
    split: str  # the split name
    split_rel: str  # the split file, relative to the data root
    known: Optional[set]  # the index's image names (None when the split file could not be read)
    category: Optional[str]  # the category read, or None


@dataclass(frozen=True)
class Dataset(ABC):
    """One benchmark behind the kit's interface. Instances are registered by `name` (`get_dataset`)."""

    name: str  # registry key: run folders `<name>-<stage>`, `--dataset`, table file stems
    title: str  # display name ("FashionIQ")
    folder: str  # its folder under the data root
    splits: tuple  # every split name, training split first
    test_split: str  # the split whose targets are hidden (no recall is computed on it)
    categories: tuple  # categories evaluated apart and averaged; () when the split is one group
    ks: tuple  # recall@K
    subset_ks: tuple  # recall_subset@K (within the query's image set); () when there is none
    removes_reference: bool  # the reference is never ranked (removed from the index per query)
    has_members: bool  # queries carry an image set (recall_subset)
    selection_means: tuple  # the means a run keeps a best checkpoint by; () = one score
    table_columns: tuple  # the table's metric columns, in the published table's order
    context_split: str  # the split of the published and cited rows
    published_note: str  # the note under the table for the published rows
    cited_note: str  # the note under the table for the cited rows
    test_server: bool  # this run's test-split rankings can be written for an evaluation server

    @property
    def metrics_title(self) -> str:
        """What its tables report, for titles: "Recall@K", or "Recall@K and Recall_subset@K"."""
        return "Recall@K and Recall_subset@K" if self.subset_ks else "Recall@K"

    # ------------------------------------------------------------------------------ reading

    @property
    def groups(self) -> tuple:
        """The groups evaluated apart: the categories, or (name,) when there is one."""
        return self.categories or (self.name,)

    def group_category(self, group: str) -> Optional[str]:
        """The `category` argument of `load_split` for a group (None for the one-group datasets)."""
        return group if self.categories else None

    def split_groups(self, splits=None) -> list:
        """(split, category) pairs of `splits` (default: every split), in report order."""
        return [(s, c) for s in (self.splits if splits is None else splits) for c in (self.categories or (None,))]

    def check_names(self, split: str, category: Optional[str]) -> None:
        """ConfigError on an unknown split or category (a category is required when there are any)."""
        if split not in self.splits:
            raise ConfigError(f"unknown {self.name} split {split!r}; valid: {', '.join(self.splits)}")
        if self.categories:
            if category not in self.categories:
                raise ConfigError(f"unknown {self.title} category {category!r}; valid: {', '.join(self.categories)}")
        elif category is not None:
            raise ConfigError(f"{self.title} has no categories (got category={category!r})")

    @abstractmethod
    def annotation_files(self, root: Path, split: str, category: Optional[str]) -> tuple:
        """(captions file, split file) of a split under the data root `root`; nothing is read."""

    @abstractmethod
    def read_index(self, split_file: Path, root: Path, problems: list) -> tuple:
        """(image names, image paths) of a split file; entry-level problems appended to `problems`."""

    @abstractmethod
    def read_entry(self, entry, i: int, place: EntryPlace, seen: dict, problems: list) -> Optional[Query]:
        """One caption-file entry as a Query, or None (its problem appended to `problems`).

        `seen` is one dict per captions file, for the reader's duplicate checks.
        """

    @abstractmethod
    def eval_caption(self, query: Query) -> str:
        """The caption a query is evaluated with."""

    @abstractmethod
    def training_captions(self, query: Query) -> list:
        """The caption variants a training step draws one of, with equal probability."""

    def dataset_present(self, folder: Path) -> bool:
        """Whether `folder` (this dataset's folder under a data root) holds its image folders."""
        return folder.is_dir()

    def image_folders_text(self, folder: Path) -> str:
        """The image folders `dataset_present` looks for, for messages."""
        return str(folder)

    # ------------------------------------------------------------------------------ scoring

    def aggregate(self, per_group: Mapping[str, Mapping[str, float]]) -> dict:
        """Flat validation metrics from {group: metrics}: each category's keys prefixed and their
        `average_` means when there are categories; the one group's metrics as they are otherwise."""
        if not self.categories:
            return dict(per_group[self.name])
        flat = {f"{g}_{k}": v for g, m in per_group.items() for k, v in m.items()}
        keys = list(next(iter(per_group.values())))
        for k in keys:
            flat[f"average_{k}"] = sum(per_group[g][k] for g in per_group) / len(per_group)
        return flat

    @property
    @abstractmethod
    def selection_keys(self) -> tuple:
        """The flat validation metrics the selection score reads."""

    @abstractmethod
    def _scores(self, values: list) -> dict:
        """Every selection score from the values of `selection_keys`."""

    def selection_scores(self, metrics: Mapping[str, float]) -> dict:
        """Every model-selection score of one validation pass (see `cir_lib.selection`)."""
        keys = self.selection_keys
        missing = [k for k in keys if k not in metrics]
        if missing:
            raise ConfigError(f"{self.name} model selection needs the validation metrics {missing}; "
                              f"got only {sorted(metrics)}")
        values = [float(metrics[k]) for k in keys]
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ConfigError(f"{self.name} model selection got invalid metric values {dict(zip(keys, values))}")
        return self._scores(values)

    def selection_score(self, metrics: Mapping[str, float], selection: str) -> float:
        """The one number that picks best.pt (`selection` names the mean where there are several)."""
        scores = self.selection_scores(metrics)
        return scores[selection] if self.selection_means else next(iter(scores.values()))

    @abstractmethod
    def table_values(self, metrics: Mapping, where: str) -> dict:
        """{table column: value} of one method's evaluation output (`evaluate(...)`'s dict)."""

    @abstractmethod
    def cited_values(self, entry: Mapping) -> dict:
        """{table column: value} of one cited row (`constants.CITED_RESULTS`)."""

    @abstractmethod
    def intervals(self, ranks: Mapping, n_boot: int, seed: int):
        """Bootstrap intervals of the table's columns from {method: per-query ranks}."""

    @abstractmethod
    def latex_header(self, columns: list, n_ids: int, id_header: str) -> list:
        """The LaTeX header lines above the table's rows."""

    @abstractmethod
    def format_result(self, result: Mapping, hidden: tuple) -> list:
        """Readable lines of one `evaluate(...)` result (keys in `hidden` are records, not metrics)."""

    def interval_note(self) -> str:
        """What the intervals' note adds about how the queries are resampled ("" when nothing)."""
        return ""

    def no_targets_hint(self) -> str:
        """What to do instead of evaluating on the test split."""
        return f"{self.title} test targets are not public"


# --------------------------------------------------------------------------- shared reading helpers


def relative_path(path: Path, root: Path) -> str:
    """`path` relative to `root` for messages (as it is when outside root)."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def check_data_root(root) -> Path:
    """The data root as a Path; AnnotationError when it does not exist or is not a folder,
    ConfigError when it holds a mini benchmark of another generator version (`cir_lib.mini`).

    Example:
        >>> check_data_root("data/mini")  # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        state = "is a file, not a folder" if root.exists() else (link_problem(root) or "does not exist")
        raise AnnotationError(f"data root {root} {state}: pass the folder holding {FASHIONIQ_DIR}/ and "
                              f"{CIRR_DIR}/ (the README's *Data layout* section)")
    check_generator_version(root)
    return root


def read_json(path: Path, root: Path, kind: str):
    """Load a JSON file; missing or malformed -> AnnotationError naming it."""
    if not path.is_file():
        hint = ""
        check_data_root(root)
        if not path.parent.is_dir():
            hint = (f"; the data root must be the folder holding {FASHIONIQ_DIR}/ and {CIRR_DIR}/ "
                    f"in the layout of the README's *Data layout* section")
            if root.name in (FASHIONIQ_DIR, CIRR_DIR):
                hint += f" (--data-root {root} looks like a dataset folder; pass its parent)"
        link = link_problem(path)
        raise AnnotationError(f"{kind} file {path} is {link}; replace it with the file" if link
                              else f"{kind} file {path} is missing{hint}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise AnnotationError(
            f"{path}: malformed JSON at line {err.lineno} column {err.colno} ({err.msg}); "
            f"re-download or repair this {kind} file"
        ) from None
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not UTF-8 text ({err}); re-download this {kind} file") from None


def is_name(x) -> bool:
    return isinstance(x, str) and x != ""


def describe(x) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def metric_value(metrics, key: str, where: str) -> float:
    """One metric of an evaluation dict as a float; ConfigError naming `where` when absent or not a number."""
    if not isinstance(metrics, Mapping):
        raise ConfigError(f"{where}: expected a dict of metrics, got {type(metrics).__name__}")
    if key not in metrics:
        raise ConfigError(f"{where}: metric {key!r} is missing (have {sorted(metrics)}); "
                          "pass the dict returned by cir_lib.evaluate")
    value = metrics[key]
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: metric {key!r} is not a number ({value!r})") from None
