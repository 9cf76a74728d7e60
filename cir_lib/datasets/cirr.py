"""CIRR: one index per split, queries with an image set of six (recall_subset), the reference
removed from each query's ranking, three means to select a model by, and an evaluation server for
test1.

Example:
    >>> from cir_lib.datasets import get_dataset
    >>> get_dataset("cirr").table_columns[:2]
    ('recall@1', 'recall@5')
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from cir_lib.constants import CIRR_DIR, CIRR_KS, CIRR_SET_SIZE, CIRR_SPLITS, CIRR_SUBSET_KS, CIRR_VERSION
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
from cir_lib.errors import AnnotationError
from cir_lib.intervals import cirr_intervals

COLUMNS = tuple(f"recall@{k}" for k in CIRR_KS) + tuple(f"recall_subset@{k}" for k in CIRR_SUBSET_KS)
SELECTION_MEANS = ("arithmetic", "harmonic", "geometric")  # the original keeps a best by each
SELECTION_KEYS = ("recall_subset@1", "recall_subset@2", "recall_subset@3",
                  "recall@1", "recall@5", "recall@10", "recall@50")  # the original's order


def _geometric(values: list) -> float:
    # statistics.geometric_mean refuses zeros (Python < 3.12); its limit there is 0, which is what a
    # model with a zero recall deserves, so an early epoch does not crash the run as it did the original.
    if any(v == 0 for v in values):
        return 0.0
    return float(statistics.geometric_mean(values))


@dataclass(frozen=True)
class CIRR(Dataset):
    """CIRR (Liu et al. 2021) in the layout of the README's *Data layout* section."""

    def annotation_files(self, root: Path, split: str, category: Optional[str]) -> tuple:
        base = Path(root) / self.folder / "cirr"
        return (base / "captions" / f"cap.{CIRR_VERSION}.{split}.json",
                base / "image_splits" / f"split.{CIRR_VERSION}.{split}.json")

    def read_index(self, split_file: Path, root: Path, problems: list) -> tuple:
        data = read_json(split_file, root, "split")
        rel = relative_path(split_file, root)
        if not isinstance(data, dict):
            raise AnnotationError(
                f"{split_file}: expected a JSON object mapping image names to paths like "
                f"\"./dev/<name>.png\", got {type(data).__name__}"
            )
        base = root / CIRR_DIR
        names, paths = [], []
        for name, value in data.items():
            if not is_name(value):
                problems.append(f"{rel} image {name!r}: expected a relative path (string), got {describe(value)}")
                continue
            if os.path.isabs(value) or ".." in value.replace("\\", "/").split("/"):
                problems.append(f"{rel} image {name!r}: path {value!r} must be relative to {CIRR_DIR}/ without '..'")
                continue
            names.append(name)
            paths.append(base / value)
        return names, paths

    def read_entry(self, entry, i: int, place: EntryPlace, seen: dict, problems: list) -> Optional[Query]:
        seen_pairids = seen.setdefault("pairids", {})
        rel, split, known, split_rel, category = place.rel, place.split, place.known, place.split_rel, place.category
        who = f"{rel} entry {i}"
        if not isinstance(entry, dict):
            problems.append(f"{who}: expected an object with pairid/reference/caption/img_set, got {describe(entry)}")
            return None
        pairid = entry.get("pairid")
        valid_pairid = isinstance(pairid, int) and not isinstance(pairid, bool)
        if valid_pairid:
            who = f"{rel} entry {i} (pairid {pairid})"
        has_target = split != self.test_split
        required = ["pairid", "reference", "caption", "img_set"] + (["target_hard"] if has_target else [])
        bad = []
        missing = [k for k in required if k not in entry]
        if missing:
            bad.append(f"missing key(s) {', '.join(missing)}")
        if "pairid" in entry and not valid_pairid:
            bad.append(f"pairid must be an integer, got {describe(pairid)}")
        elif valid_pairid:
            if pairid in seen_pairids:
                bad.append(f"duplicate pairid {pairid} (first at entry {seen_pairids[pairid]})")
            else:
                seen_pairids[pairid] = i
        ref = entry.get("reference")
        if "reference" in entry and not is_name(ref):
            bad.append(f"reference must be an image name, got {describe(ref)}")
        target = entry.get("target_hard")
        if "target_hard" in entry and not is_name(target):
            bad.append(f"target_hard must be an image name, got {describe(target)}")
        caption = entry.get("caption")
        if "caption" in entry and not isinstance(caption, str):
            bad.append(f"caption must be a string, got {describe(caption)}")
        img_set = entry.get("img_set")
        members = None
        if "img_set" in entry:
            members = img_set.get("members") if isinstance(img_set, dict) else None
            if not (isinstance(members, list) and all(is_name(m) for m in members)):
                bad.append(f"img_set must be an object with a list 'members' of image names, got {describe(img_set)}")
                members = None
            elif len(members) != CIRR_SET_SIZE or len(set(members)) != CIRR_SET_SIZE:
                bad.append(f"img_set members must be {CIRR_SET_SIZE} distinct names, got {describe(members)}")
                members = None
        if not bad:
            if ref not in members:
                bad.append(f"img_set members {describe(members)} do not include the reference {ref!r}")
            if target is not None and target not in members:
                bad.append(f"img_set members {describe(members)} do not include the target {target!r}")
            unknown = [n for n in [ref, target, *members] if n is not None and known is not None and n not in known]
            if unknown:
                unknown = list(dict.fromkeys(unknown))
                bad.append(f"image name(s) {', '.join(map(repr, unknown))} not in {split_rel}")
        if bad:
            problems.append(f"{who}: {'; '.join(bad)}")
            return None
        return Query(reference=ref, captions=(caption,), target=target, pairid=pairid, members=tuple(members))

    def eval_caption(self, query: Query) -> str:
        return query.captions[0]  # used as it is

    def training_captions(self, query: Query) -> list:
        return [query.captions[0]]

    def dataset_present(self, folder: Path) -> bool:
        return any((folder / d).is_dir() for d in ("train", "dev"))

    def image_folders_text(self, folder: Path) -> str:
        return f"{folder / 'train'} and {folder / 'dev'}"

    @property
    def selection_keys(self) -> tuple:
        return SELECTION_KEYS

    def _scores(self, values: list) -> dict:
        return {
            "arithmetic": float(statistics.mean(values)),
            "harmonic": float(statistics.harmonic_mean(values)),
            "geometric": _geometric(values),
        }

    def table_values(self, metrics: Mapping, where: str) -> dict:
        return {c: metric_value(metrics, c, where) for c in self.table_columns}

    def cited_values(self, entry: Mapping) -> dict:
        return {**{f"recall@{k}": entry["recall"][i] for i, k in enumerate(self.ks)},
                **{f"recall_subset@{k}": entry["recall_subset"][i] for i, k in enumerate(self.subset_ks)}}

    def intervals(self, ranks: Mapping, n_boot: int, seed: int):
        return cirr_intervals(ranks, n_boot=n_boot, seed=seed)

    def latex_header(self, columns: list, n_ids: int, id_header: str) -> list:
        m, nk, ns, pad = n_ids, len(self.ks), len(self.subset_ks), " & " * (n_ids - 1)
        return [pad + rf" & \multicolumn{{{nk}}}{{c}}{{Recall@K}} & "
                      rf"\multicolumn{{{ns}}}{{c}}{{Recall$_\mathrm{{subset}}$@K}} \\",
                rf"\cmidrule(lr){{{m + 1}-{m + nk}}}\cmidrule(lr){{{m + 1 + nk}-{m + nk + ns}}}",
                id_header + " & " + " & ".join(f"K={c.split('@')[1]}" for c in columns) + r" \\"]

    def format_result(self, result: Mapping, hidden: tuple) -> list:
        keys = [k for k in result if k not in hidden]
        width = max(len(k) for k in keys)
        return [f"{k:<{width}}  {result[k]:6.2f}" for k in keys]

    def no_targets_hint(self) -> str:
        return "write a submission for the evaluation server (cir-lib submit-cirr)"


CIRR_DATASET = CIRR(
    name="cirr", title="CIRR", folder=CIRR_DIR, splits=CIRR_SPLITS, test_split="test1", categories=(),
    ks=CIRR_KS, subset_ks=CIRR_SUBSET_KS, removes_reference=True, has_members=True,
    selection_means=SELECTION_MEANS, table_columns=COLUMNS, context_split="test1",
    published_note="published: the poster's stage 1 + Combiner on the real CIRR test1 split (evaluation server)",
    cited_note="cited: earlier methods as the poster's comparison table prints them (CIRR test1)",
    test_server=True,
)
