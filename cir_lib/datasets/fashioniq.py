"""FashionIQ: three garment categories (dress, shirt, toptee), each its own index and queries,
scored by recall@10 / @50 per category and their average; the reference stays in the ranking.

Example:
    >>> from cir_lib.datasets import get_dataset
    >>> get_dataset("fashioniq").groups
    ('dress', 'shirt', 'toptee')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from cir_lib.constants import (
    FASHIONIQ_CATEGORIES,
    FASHIONIQ_DIR,
    FASHIONIQ_KS,
    FASHIONIQ_POSTER_ORDER,
    FASHIONIQ_SPLITS,
)
from cir_lib.datasets.base import (
    Dataset,
    EntryPlace,
    Query,
    describe,
    is_name,
    metric_value,
    read_json,
    relative_path,
)
from cir_lib.errors import AnnotationError, ConfigError
from cir_lib.intervals import fashioniq_intervals

GROUPS = tuple(FASHIONIQ_POSTER_ORDER) + ("average",)  # the published table's column groups
COLUMNS = tuple(f"{g}_recall@{k}" for g in GROUPS for k in FASHIONIQ_KS)


def caption_variants(c1: str, c2: str) -> tuple:
    """The four training captions of a FashionIQ pair, each drawn with probability 1/4.

    Exactly the original's strings: "C1 and c2", "C2 and c1", "C1", "C2" (the first caption of a
    joined pair capitalized, the second only stripped of ".?, ").

    Example:
        >>> caption_variants("is red.", "Has long sleeves ")
        ('Is red and Has long sleeves', 'Has long sleeves and is red', 'Is red', 'Has long sleeves')
    """
    s1, s2 = c1.strip(".?, "), c2.strip(".?, ")
    return (f"{s1.capitalize()} and {s2}", f"{s2.capitalize()} and {s1}", s1.capitalize(), s2.capitalize())


def eval_caption(c1: str, c2: str) -> str:
    """The evaluation caption of a FashionIQ pair: "C1 and c2".

    Example:
        >>> eval_caption("is red.", "has long sleeves")
        'Is red and has long sleeves'
    """
    return f"{c1.strip('.?, ').capitalize()} and {c2.strip('.?, ')}"


@dataclass(frozen=True)
class FashionIQ(Dataset):
    """FashionIQ (Wu et al. 2021) in the layout of the README's *Data layout* section."""

    def annotation_files(self, root: Path, split: str, category: Optional[str]) -> tuple:
        base = Path(root) / self.folder
        return (base / "captions" / f"cap.{category}.{split}.json",
                base / "image_splits" / f"split.{category}.{split}.json")

    def read_index(self, split_file: Path, root: Path, problems: list) -> tuple:
        data = read_json(split_file, root, "split")
        rel = relative_path(split_file, root)
        if not isinstance(data, list):
            raise AnnotationError(
                f"{split_file}: expected a JSON list of image names, got {type(data).__name__}"
            )
        names, seen = [], {}
        for i, name in enumerate(data):
            if not is_name(name):
                problems.append(f"{rel} item {i}: expected an image name (non-empty string), got {describe(name)}")
            elif name in seen:
                problems.append(f"{rel} item {i}: duplicate image name {name!r} (first at item {seen[name]})")
            else:
                seen[name] = i
                names.append(name)
        return names, [root / FASHIONIQ_DIR / "images" / f"{n}.jpg" for n in names]

    def read_entry(self, entry, i: int, place: EntryPlace, seen: dict, problems: list) -> Optional[Query]:
        q = self._entry(entry, i, place, problems)
        # An exact repeat would be trained on and scored twice. Test entries carry no target:
        # identical ones may be different queries whose targets are hidden, so they are kept.
        if q is not None and q.target is not None:
            triplets = seen.setdefault("triplets", {})
            key = (q.reference, q.target, q.captions)
            if key in triplets:
                problems.append(
                    f"{place.rel} entry {i} (candidate {q.reference!r}): exact duplicate of entry "
                    f"{triplets[key]} (same candidate, target and captions), which would be "
                    f"counted twice; delete entry {i} from {place.captions_file}"
                )
                return None
            triplets[key] = i
        return q

    def _entry(self, entry, i: int, place: EntryPlace, problems: list) -> Optional[Query]:
        rel, split, known, split_rel, category = place.rel, place.split, place.known, place.split_rel, place.category
        who = f"{rel} entry {i}"
        if not isinstance(entry, dict):
            problems.append(f"{who}: expected an object with candidate/target/captions, got {describe(entry)}")
            return None
        cand = entry.get("candidate")
        if is_name(cand):
            who = f"{rel} entry {i} (candidate {cand!r})"
        bad = []
        required = ("candidate", "captions") if split == self.test_split else ("candidate", "target", "captions")
        missing = [k for k in required if k not in entry]
        if missing:
            bad.append(f"missing key(s) {', '.join(missing)}")
        if "candidate" in entry and not is_name(cand):
            bad.append(f"candidate must be an image name, got {describe(cand)}")
        target = entry.get("target")
        if "target" in entry and not is_name(target):
            bad.append(f"target must be an image name, got {describe(target)}")
        caps = entry.get("captions")
        if "captions" in entry and not (
            isinstance(caps, list) and len(caps) == 2 and all(isinstance(c, str) for c in caps)
        ):
            bad.append(f"captions must be a list of two strings, got {describe(caps)}")
        if not bad and known is not None:
            for key, name in (("candidate", cand), ("target", target)):
                if name is not None and name not in known:
                    bad.append(f"{key} {name!r} is not in {split_rel}")
        if bad:
            problems.append(f"{who}: {'; '.join(bad)}")
            return None
        return Query(reference=cand, captions=tuple(caps), target=target, category=category)

    def eval_caption(self, query: Query) -> str:
        return eval_caption(*query.captions)

    def training_captions(self, query: Query) -> list:
        return list(caption_variants(*query.captions))

    def dataset_present(self, folder: Path) -> bool:
        return (folder / "images").is_dir()

    def image_folders_text(self, folder: Path) -> str:
        return str(folder / "images")

    @property
    def selection_keys(self) -> tuple:
        return tuple(f"average_recall@{k}" for k in self.ks)

    def _scores(self, values: list) -> dict:
        return {self.name: sum(values) / len(values)}

    def table_values(self, metrics: Mapping, where: str) -> dict:
        flat: dict = {}
        for cat in FASHIONIQ_POSTER_ORDER:
            if cat not in metrics:
                raise ConfigError(f"{where}: category {cat!r} is missing (have {sorted(metrics)})")
            for k in self.ks:
                flat[f"{cat}_recall@{k}"] = metric_value(metrics[cat], f"recall@{k}", f"{where}/{cat}")
        for k in self.ks:
            if "average" in metrics:
                flat[f"average_recall@{k}"] = metric_value(metrics["average"], f"recall@{k}", f"{where}/average")
            else:  # the protocol's average: plain mean over the three categories
                flat[f"average_recall@{k}"] = float(np.mean([flat[f"{c}_recall@{k}"] for c in FASHIONIQ_POSTER_ORDER]))
        return flat

    def cited_values(self, entry: Mapping) -> dict:
        return {f"{g}_recall@{k}": entry[g][i] for g in GROUPS for i, k in enumerate(self.ks)}

    def intervals(self, ranks: Mapping, n_boot: int, seed: int):
        return fashioniq_intervals(ranks, n_boot=n_boot, seed=seed)

    def interval_note(self) -> str:
        return "; FashionIQ categories resampled independently"

    def latex_header(self, columns: list, n_ids: int, id_header: str) -> list:
        m, nk, pad = n_ids, len(self.ks), " & " * (n_ids - 1)
        groups = " & ".join(rf"\multicolumn{{{nk}}}{{c}}{{{g.capitalize()}}}" for g in GROUPS)
        rules = "".join(rf"\cmidrule(lr){{{m + 1 + i * nk}-{m + (i + 1) * nk}}}" for i in range(len(GROUPS)))
        return [pad + " & " + groups + r" \\", rules,
                id_header + " & " + " & ".join(f"R@{c.split('@')[1]}" for c in columns) + r" \\"]

    def format_result(self, result: Mapping, hidden: tuple) -> list:
        rows = [k for k in result if k not in hidden]
        keys = list(result[rows[0]])
        lines = [f"{'category':<10}" + "".join(f"{k:>12}" for k in keys)]
        lines += [f"{r:<10}" + "".join(f"{result[r][k]:>12.2f}" for k in keys) for r in rows]
        return lines


FASHIONIQ = FashionIQ(
    name="fashioniq", title="FashionIQ", folder=FASHIONIQ_DIR, splits=FASHIONIQ_SPLITS, test_split="test",
    categories=FASHIONIQ_CATEGORIES, ks=FASHIONIQ_KS, subset_ks=(), removes_reference=False, has_members=False,
    selection_means=(), table_columns=COLUMNS, context_split="val",
    published_note="published: the poster's stage 1 + Combiner on the real FashionIQ val split",
    cited_note="cited: earlier methods as the poster's comparison table prints them (FashionIQ val)",
    test_server=False,
)
