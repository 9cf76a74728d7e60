"""Result tables (CSV, Markdown, LaTeX) in the poster's layout, built from evaluation dicts (never typed in).

Tables follow the workshop poster's layout: FashionIQ R@10 / R@50 per category in the poster's
order (shirt, dress, toptee, then the average), CIRR R@1/5/10/50 and Rsubset@1/2/3. Every table
has the columns `source`, `backbone`, `method`, `split`, `cited_from`, then one column per metric,
each followed by its interval bounds (`<metric>_ci_low`, `<metric>_ci_high`, blank when unknown).

Rows, in the poster's order:
- source "cited": earlier methods as the poster's comparison tables print them
  (`cir_lib.constants.CITED_RESULTS`; `cited_from` names the paper the poster took them from when
  not the method's own: the poster's dagger, "CIRR paper");
- source "published": the poster's own stage 1 + Combiner rows, RN50 and RN50x4
  (`cir_lib.constants.PAPER_RESULTS`; FashionIQ val, CIRR test1);
- source "this run": this run's rows per backbone, `METHODS` in order, then the composer rows
  (`COMPOSER_ROWS`: zero-shot + Combiner, the predecessor's method, and TIRG / ARTEMIS on the same
  zero-shot and stage-1 features, for the composers the series trained), then the ablation rows
  (`ABLATIONS`: one modality alone as the query), and for CIRR the test1 rows read from the
  evaluation server's numbers (`read_cirr_test_results`) beside the val ones.

Intervals: with per-query ranks (`ranks=`), each of this run's val rows gets a 95% percentile
bootstrap interval over queries (`cir_lib.intervals`), and the differences table the PAIRED
bootstrap interval of each difference (same queries, same resamples). Markdown and LaTeX print
`value ±h`, h the half-width (high - low) / 2 of the percentile interval; the CSV keeps the exact
bounds. Rows without ranks (cited, published, test server) have no interval.

Marking: best in bold, second best underlined, per column, among the rows of the same split
(CIRR val rows are not compared with test1 rows); ablation rows are never marked and are left out
of the differences table (they are an explanation of the main rows, not a competing method).

Seed tables: this run's main rows per training seed, then their mean and std (`seed_table`).
Figures are in `cir_lib.figures`.

Example:
    >>> rows = {"zero-shot sum": {"recall@1": 10.0, ...}, "stage 1 sum": {...}, ...}
    >>> table = cirr_table(rows, backbone="RN50", ranks={"zero-shot sum": {"ranks": r0, "subset_ranks": s0}, ...})
    >>> write_table(table, "results/mini/tables", "cirr", title="CIRR val")
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from cir_lib.constants import CITED_RESULTS, PAPER_RESULTS
from cir_lib.datasets import dataset_names, get_dataset
from cir_lib.datasets.cirr import CIRR_DATASET
from cir_lib.datasets.fashioniq import FASHIONIQ
from cir_lib.errors import ConfigError
from cir_lib.intervals import DEFAULT_N_BOOT, BootstrapIntervals
from cir_lib.methods import (ABLATION_METHODS, ALL_METHODS, COMPOSER_DIFFERENCES, COMPOSER_METHODS, FULL_METHOD,
                             MAIN_METHODS, method_of)
from cir_lib.runs import atomic_write_text, jsonable

logger = logging.getLogger(__name__)

METHODS = tuple(m.label for m in MAIN_METHODS)  # the main rows' labels, in this order (`cir_lib.methods`)
ABLATIONS = tuple(m.label for m in ABLATION_METHODS)
COMPOSER_ROWS = tuple(m.label for m in COMPOSER_METHODS)  # zero-shot + Combiner, TIRG and ARTEMIS rows
ALL_ROWS = tuple(m.label for m in ALL_METHODS)  # every row of this run, in the tables' order
THIS_RUN, PUBLISHED, CITED = "this run", "published", "cited"  # the `source` column
CONTEXT_SOURCES = (CITED, PUBLISHED)  # rows that can be put beside this run's
PAPER_BACKBONES = ("RN50", "RN50x4")
PUBLISHED_METHOD = FULL_METHOD.label  # the poster's rows are its full method
ID_COLUMNS = ("source", "backbone", "method", "split", "cited_from")

FASHIONIQ_COLUMNS = FASHIONIQ.table_columns
CIRR_COLUMNS = CIRR_DATASET.table_columns
TABLE_COLUMNS = {name: get_dataset(name).table_columns for name in dataset_names()}  # {dataset: metric columns}
DATASET_NAMES = {name: get_dataset(name).title for name in dataset_names()}  # for titles
CI_SUFFIXES = ("_ci_low", "_ci_high")

def is_ablation(method: str) -> bool:
    """Whether a method (or its label) is one of the ablation rows (`ABLATIONS`)."""
    return method in ABLATIONS and method_of(method).ablation


def _check_methods(rows: Mapping[str, Any], where: str) -> list[str]:
    known = ALL_ROWS
    unknown = [m for m in rows if m not in known]
    if unknown:
        raise ConfigError(f"{where}: unknown method(s) {unknown}; use names from {known}")
    if not rows:
        raise ConfigError(f"{where}: no rows given; pass {{method: metrics}} for {METHODS}")
    return [m for m in known if m in rows]


def _by_backbone(rows: Mapping[str, Any], backbone: str, what: str) -> dict[str, Mapping[str, Any]]:
    """{backbone: {method: ...}} from either {method: ...} (one backbone) or {backbone: {method: ...}}."""
    if not isinstance(rows, Mapping) or not rows:
        raise ConfigError(f"{what}: pass {{method: metrics}} or {{backbone: {{method: metrics}}}}")
    if all(k in ALL_ROWS for k in rows):
        return {backbone: rows}
    for key, value in rows.items():
        if not isinstance(value, Mapping) or not all(m in ALL_ROWS for m in value):
            raise ConfigError(f"{what}: {key!r} is an unknown method (use names from {ALL_ROWS}) "
                              "and not a backbone holding {method: ...}")
    return dict(rows)


def table_columns(dataset: str) -> list[str]:
    """The columns of a result table (and of its CSV): `ID_COLUMNS`, then each metric followed by
    its `_ci_low` / `_ci_high` bounds, e.g. ..., "shirt_recall@10", "shirt_recall@10_ci_low", ...."""
    out = list(ID_COLUMNS)
    for column in get_dataset(dataset).table_columns:
        out += [column] + [column + s for s in CI_SUFFIXES]
    return out


def _record(source: str, backbone: str, method: str, split: str, values: Mapping[str, float],
            cited_from: str = "") -> dict[str, Any]:
    return {"source": source, "backbone": backbone, "method": method, "split": split, "cited_from": cited_from,
            **values}


def _context_records(dataset: str, context: Sequence[str]) -> list[dict[str, Any]]:
    unknown = [c for c in context if c not in CONTEXT_SOURCES]
    if unknown:
        raise ConfigError(f"unknown context row set(s) {unknown}; choose among {CONTEXT_SOURCES}")
    ds = get_dataset(dataset)
    split, records = ds.context_split, []
    if CITED in context:
        for entry in CITED_RESULTS.get(ds.name, ()):
            values = ds.cited_values(entry)
            records.append(_record(CITED, entry.get("backbone", ""), entry["method"], split, values,
                                   entry.get("cited_from", "")))
    if PUBLISHED in context:
        records += [_record(PUBLISHED, b, PUBLISHED_METHOD, split, PAPER_RESULTS[ds.name][b])
                    for b in PAPER_BACKBONES if b in PAPER_RESULTS.get(ds.name, {})]
    return records


def _bootstrap(dataset: str, backbone: str, methods: list[str], flat: Mapping[str, Mapping[str, float]],
               ranks: Mapping[str, Any], n_boot: int, seed: int) -> BootstrapIntervals:
    """Intervals of the rows that have ranks, checked against the metric values the rows carry."""
    where = f"{dataset} table, backbone {backbone!r}" if backbone else f"{dataset} table"
    unknown = [m for m in ranks if m not in methods]
    if unknown:
        raise ConfigError(f"{where}: ranks given for method(s) {unknown} that have no row; rows are {methods}")
    ordered = {m: ranks[m] for m in methods if m in ranks}
    ds = get_dataset(dataset)
    boot = ds.intervals(ordered, n_boot=n_boot, seed=seed)
    for m in ordered:
        for column in ds.table_columns:
            if abs(boot.value[m][column] - flat[m][column]) > 1e-6:
                raise ConfigError(
                    f"{where}: the ranks of {m!r} give {column} = {boot.value[m][column]:.4f} but the row says "
                    f"{flat[m][column]:.4f}; pass the ranks from the same evaluation as the metrics")
    return boot


def dataset_table(dataset, rows, *, backbone: str = "", ranks=None, context: Sequence[str] = ("published",),
                  test_results=None, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> pd.DataFrame:
    """A dataset's result table (`fashioniq_table`, `cirr_table` for the arguments); `dataset` is a
    name or a `cir_lib.datasets.base.Dataset`. `test_results` only where the dataset has a test server."""
    ds = get_dataset(dataset)
    dataset = ds.name
    per_backbone = _by_backbone(rows, backbone, f"{dataset} table rows")
    ranks_by = {} if ranks is None else _by_backbone(ranks, backbone, f"{dataset} table ranks")
    missing = [b for b in ranks_by if b not in per_backbone]
    if missing:
        raise ConfigError(f"{dataset} table: ranks given for backbone(s) {missing} that have no rows")
    test_by = dict(test_results or {})
    records = _context_records(dataset, context)
    boots: dict[str, BootstrapIntervals] = {}
    for bb in list(per_backbone) + [b for b in test_by if b not in per_backbone]:
        bb_rows = per_backbone.get(bb, {})
        methods = _check_methods(bb_rows, f"{dataset} table rows of {bb or 'this run'}") if bb_rows else []
        flat = {m: ds.table_values(bb_rows[m], f"{dataset} row {m!r}") for m in methods}
        boot = _bootstrap(dataset, bb, methods, flat, ranks_by[bb], n_boot, seed) if ranks_by.get(bb) else None
        if boot is not None:
            boots[bb] = boot
        tests = test_by.get(bb, {})
        if tests:
            tests = {m: ds.table_values(tests[m], f"{dataset} {ds.test_split} row {bb}/{m}")
                     for m in _check_methods(tests, f"{dataset} {ds.test_split} results of {bb!r}")}
        for m in [m for m in ALL_ROWS if m in flat or m in tests]:
            if m in flat:
                values = dict(flat[m])
                if boot is not None and m in boot.value:
                    for c in ds.table_columns:
                        values[c + "_ci_low"], values[c + "_ci_high"] = boot.low[m][c], boot.high[m][c]
                records.append(_record(THIS_RUN, bb, m, "val", values))
            if m in tests:
                records.append(_record(THIS_RUN, bb, m, ds.test_split, tests[m]))
    frame = pd.DataFrame(records, columns=table_columns(dataset))
    frame.attrs["bootstrap"] = boots
    return frame


def fashioniq_table(rows: Mapping[str, Any], *, backbone: str = "", ranks: Mapping[str, Any] | None = None,
                    context: Sequence[str] = (PUBLISHED,), n_boot: int = DEFAULT_N_BOOT,
                    seed: int = 0) -> pd.DataFrame:
    """The FashionIQ table: R@10 / R@50 for shirt, dress, toptee and their average, one row per method.

    Args:
        rows: {method: {"dress": {"recall@10": .., "recall@50": ..}, "shirt": .., "toptee": ..,
            "average": ..}} as returned by `cir_lib.evaluate.evaluate_fashioniq`, methods from
            `METHODS` and `ABLATIONS` (any subset; a missing "average" is the mean of the
            categories); or {backbone: {method: ...}} for several backbones.
        backbone: the backbone of this run's rows when `rows` is {method: ...} (e.g. "RN50").
        ranks: optional per-query target ranks, {method: {"dress": ranks, "shirt": ranks,
            "toptee": ranks}} (or keyed by backbone first, like `rows`), as
            `cir_lib.metrics.target_ranks` returns them on each category's val queries; they
            must reproduce the rows' recalls. They give the bootstrap intervals.
        context: which rows to put beside this run's: "cited" (earlier methods) and/or
            "published" (the poster's RN50 / RN50x4 rows); () for this run's rows only.
        n_boot, seed: bootstrap replicates and seed (`cir_lib.intervals`).

    Returns:
        DataFrame: the `ID_COLUMNS`, then each metric column (shirt_recall@10 ...
        average_recall@50) followed by its `_ci_low` / `_ci_high`. The bootstrap results are kept in
        `table.attrs["bootstrap"]` ({backbone: BootstrapIntervals}) for `difference_table`.

    Example:
        >>> fashioniq_table({"stage 1 sum": evaluate_fashioniq(root, backbone, ElementwiseSum(), ...)},
        ...                 backbone="RN50", context=("cited", "published"))
    """
    return dataset_table("fashioniq", rows, backbone=backbone, ranks=ranks, context=context, n_boot=n_boot, seed=seed)


def cirr_table(rows: Mapping[str, Any], *, backbone: str = "", ranks: Mapping[str, Any] | None = None,
               context: Sequence[str] = (PUBLISHED,), test_results: Mapping[str, Any] | None = None,
               n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> pd.DataFrame:
    """The CIRR table: R@1/5/10/50 and Rsubset@1/2/3, one row per method; this run's rows on val.

    Args:
        rows: {method: {"recall@1": .., ..., "recall_subset@3": ..}} as returned by
            `cir_lib.evaluate.evaluate_cirr` on val (methods from `METHODS` and `ABLATIONS`), or
            {backbone: {method: ...}}.
        backbone: the backbone of this run's rows when `rows` is {method: ...}.
        ranks: optional {method: {"ranks": ranks, "subset_ranks": subset ranks}} (or keyed by
            backbone first) as `cir_lib.metrics.cirr_ranks` returns them; give the intervals.
        context: "cited" and/or "published" rows beside this run's (both on test1), or ().
        test_results: this run's test1 numbers from the evaluation server, as
            `read_cirr_test_results` returns them ({backbone: {method: metrics}}); each becomes a
            "test1" row beside the val row of the same backbone and method.
        n_boot, seed: bootstrap replicates and seed.

    Returns:
        DataFrame: the `ID_COLUMNS`, then recall@1 ... recall_subset@3 each followed by its
        `_ci_low` / `_ci_high`; `table.attrs["bootstrap"]` as in `fashioniq_table`.

    Example:
        >>> cirr_table({"zero-shot sum": {"recall@1": 12.5, ...}}, backbone="RN50",
        ...            test_results=read_cirr_test_results("results/cirr_test1.json"))
    """
    return dataset_table("cirr", rows, backbone=backbone, ranks=ranks, context=context, test_results=test_results,
                         n_boot=n_boot, seed=seed)


def read_cirr_test_results(path: str | os.PathLike) -> dict[str, dict[str, dict[str, float]]]:
    """Read this run's CIRR test1 numbers, as the evaluation server reported them, from a JSON file.

    Format: one object per backbone, one object per method (names from `METHODS` / `ABLATIONS`),
    the seven metrics in percent; top-level keys starting with "_" are ignored (for a note):

        {"_note": "server results of 2026-12-01",
         "RN50": {"stage 1 + Combiner": {"recall@1": 35.1, "recall@5": 68.2, "recall@10": 80.0,
                                         "recall@50": 95.0, "recall_subset@1": 66.3,
                                         "recall_subset@2": 85.0, "recall_subset@3": 93.0}}}

    Args:
        path: the JSON file.

    Returns:
        {backbone: {method: {metric: value}}} for `cirr_table(..., test_results=...)`.

    Raises:
        ConfigError naming the file and the key at fault (unknown method or metric, missing
        metric, a value that is not a number in [0, 100]).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: CIRR test results file not found") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err})") from None
    fix = "see cir_lib.tables.read_cirr_test_results for the format"
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object {{backbone: {{method: {{metric: value}}}}}}; {fix}")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for backbone, methods in data.items():
        if backbone.startswith("_"):
            continue
        if not isinstance(methods, dict) or not methods:
            raise ConfigError(f"{path}: {backbone!r} must hold {{method: {{metric: value}}}}; {fix}")
        for method, metrics in methods.items():
            key = f"{backbone}/{method}"
            if method not in ALL_ROWS:
                raise ConfigError(f"{path}: {key!r}: unknown method {method!r}; use one of {ALL_ROWS}")
            if not isinstance(metrics, dict):
                raise ConfigError(f"{path}: {key!r} must be an object {{metric: value}}; {fix}")
            extra = sorted(set(metrics) - set(CIRR_COLUMNS))
            missing = [c for c in CIRR_COLUMNS if c not in metrics]
            if extra or missing:
                raise ConfigError(f"{path}: {key!r}: " + "; ".join(
                    ([f"unknown metric(s) {extra}"] if extra else []) + ([f"missing {missing}"] if missing else []))
                    + f" (the seven are {list(CIRR_COLUMNS)})")
            for column in CIRR_COLUMNS:
                value = metrics[column]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
                    raise ConfigError(f"{path}: {key}/{column} = {value!r} is not a recall in percent (0-100)")
            out.setdefault(backbone, {})[method] = {c: float(metrics[c]) for c in CIRR_COLUMNS}
    if not out:
        raise ConfigError(f"{path}: no backbone entries; {fix}")
    return out


def table_dataset(table: pd.DataFrame) -> str:
    """"fashioniq" or "cirr", from the table's metric columns."""
    for dataset, columns in TABLE_COLUMNS.items():
        if all(c in table.columns for c in columns):
            return dataset
    raise ConfigError(f"not a result table: columns {list(table.columns)}")


def metric_columns(table: pd.DataFrame) -> list[str]:
    """The metric columns of a result or difference table, in the poster's order (no bounds)."""
    for columns in TABLE_COLUMNS.values():
        if all(c in table.columns for c in columns):
            return list(columns)
    raise ConfigError(f"not a result table: columns {list(table.columns)}")


def _label(backbone: str, split: str) -> str:
    return "this run (" + ", ".join(x for x in (backbone, split) if x) + ")"


def difference_table(table: pd.DataFrame) -> pd.DataFrame:
    """Differences in recall points, each row labelled with what it compares, with paired intervals.

    Rows, per backbone and split of this run: each main method minus the one above it (stage 1
    sum - zero-shot sum, stage 1 + Combiner - stage 1 sum), the last minus the first (stage 1 +
    Combiner - zero-shot sum), the composer rows' differences present in the table
    (`cir_lib.methods.COMPOSER_DIFFERENCES`: stage 1 + Combiner - zero-shot + Combiner, the Combiner
    minus TIRG and minus ARTEMIS on the same encoders, stage 1 - zero-shot for TIRG and ARTEMIS),
    then this run's stage 1 + Combiner minus each published row.
    Ablation rows are left out. Intervals: the paired bootstrap interval (same resamples for both
    rows) when the table was built with ranks; for a difference to a published number, this run's
    own interval shifted by that number (the published value is taken as fixed); blank otherwise.

    Returns:
        DataFrame with columns comparison, then each metric column with `_ci_low` / `_ci_high`.
    """
    dataset = table_dataset(table)
    columns = get_dataset(dataset).table_columns
    boots: Mapping[str, BootstrapIntervals] = table.attrs.get("bootstrap", {})
    ours = table[(table["source"] == THIS_RUN) & ~table["method"].isin(ABLATIONS)]
    published = table[table["source"] == PUBLISHED]
    records = []

    def add(label: str, a: pd.Series, b: pd.Series, bounds=None) -> None:
        rec: dict[str, Any] = {"comparison": label}
        for c in columns:
            rec[c] = float(a[c]) - float(b[c])
            rec[c + "_ci_low"], rec[c + "_ci_high"] = (bounds[0][c], bounds[1][c]) if bounds else (np.nan, np.nan)
        records.append(rec)

    for (bb, split), group in ours.groupby(["backbone", "split"], sort=False):
        rows = {r["method"]: r for _, r in group.iterrows()}
        present = [m for m in METHODS if m in rows]
        boot = boots.get(bb) if split == "val" else None
        pairs = list(zip(present[1:], present[:-1]))
        if len(present) >= 3:
            pairs.append((present[-1], present[0]))
        pairs += [(a.label, b.label) for a, b in COMPOSER_DIFFERENCES if a.label in rows and b.label in rows]
        for a, b in pairs:
            bounds = None
            if boot is not None and a in boot.replicates and b in boot.replicates:
                _, lo, hi = boot.paired_difference(a, b)
                bounds = (lo, hi)
            add(f"{_label(bb, split)}: {a} - {b}", rows[a], rows[b], bounds)
        if PUBLISHED_METHOD in rows:
            mine = rows[PUBLISHED_METHOD]
            for _, pub in published.iterrows():
                bounds = None
                if not any(pd.isna(mine[c + "_ci_low"]) for c in columns):
                    bounds = ({c: float(mine[c + "_ci_low"]) - float(pub[c]) for c in columns},
                              {c: float(mine[c + "_ci_high"]) - float(pub[c]) for c in columns})
                add(f"{_label(bb, split)}: {PUBLISHED_METHOD} - published {pub['backbone']} ({pub['split']})",
                    mine, pub, bounds)
    frame_columns = ["comparison"] + [x for c in columns for x in (c, c + "_ci_low", c + "_ci_high")]
    return pd.DataFrame(records, columns=frame_columns)


def header_label(column: str) -> str:
    """"dress_recall@10" -> "dress R@10"; "recall_subset@2" -> "Rs@2"."""
    group, _, metric = column.rpartition("_recall")
    if column.startswith("recall_subset@"):
        return "Rs@" + column.split("@")[1]
    if column.startswith("recall@"):
        return "R@" + column.split("@")[1]
    return f"{group} R{metric}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or bool(pd.isna(value))


def _marks(table: pd.DataFrame, separate: bool = False) -> dict[tuple[int, str], str]:
    """{(row position, column): "best" | "second"} per column among the non-ablation rows of each split
    (and, when `separate`, apart for this run's rows and for the cited / published rows).

    Compared at the printed precision (2 decimals), so rows printed equal get the same mark."""
    marks: dict[tuple[int, str], str] = {}
    table = table.reset_index(drop=True)
    eligible = table[~table["method"].isin(ABLATIONS)]
    keys = [eligible["split"]] + ([eligible["source"] == THIS_RUN] if separate else [])
    for _, group in eligible.groupby(keys, sort=False):
        for c in metric_columns(table):
            values = {i: round(float(v), 2) for i, v in group[c].items() if not _missing(v)}
            levels = sorted(set(values.values()), reverse=True)
            for i, v in values.items():
                if v == levels[0]:
                    marks[(i, c)] = "best"
                elif len(levels) > 1 and v == levels[1]:
                    marks[(i, c)] = "second"
    return marks


def _cell(row: pd.Series, column: str, *, signed: bool, mark: str | None, latex: bool) -> str:
    value = row[column]
    if _missing(value):
        return "-"
    text = f"{float(value):+.2f}" if signed else f"{float(value):.2f}"
    if mark == "best":
        text = rf"\textbf{{{text}}}" if latex else f"**{text}**"
    elif mark == "second":
        text = rf"\underline{{{text}}}" if latex else f"<u>{text}</u>"
    lo, hi = row.get(column + "_ci_low"), row.get(column + "_ci_high")
    if not (_missing(lo) or _missing(hi)):
        half = (float(hi) - float(lo)) / 2
        text += rf"\,{{\scriptsize$\pm${half:.2f}}}" if latex else f" ±{half:.2f}"
    return text


def _method_label(row: pd.Series) -> str:
    cited = row.get("cited_from")
    label = str(row["method"]) + ("\u2020" if not _missing(cited) and cited else "")
    return label + (" (ablation)" if is_ablation(row["method"]) else "")


def _shown_id_columns(table: pd.DataFrame) -> list[str]:
    """source and method always; backbone when any row has one; split when the rows differ in it."""
    shown = ["source"]
    if (table["backbone"].fillna("") != "").any():
        shown.append("backbone")
    shown.append("method")
    if table["split"].nunique() > 1:
        shown.append("split")
    return shown


def context_notes(table: pd.DataFrame, separate_marks: bool = False) -> list[str]:
    """The notes a table needs to be read: what its context rows are, the dagger, marks, intervals."""
    dataset = table_dataset(table)
    notes = []
    sources = set(table["source"])
    if CITED in sources:
        notes.append(get_dataset(dataset).cited_note)
        for paper in sorted({p for p in table["cited_from"].fillna("") if p}):
            notes.append(f"\u2020 numbers cited from the {paper}, as the poster prints them")
    if PUBLISHED in sources:
        notes.append(get_dataset(dataset).published_note)
    if table["method"].isin(ABLATIONS).any():
        notes.append("(ablation): the query is one modality's feature alone (image only: the reference image; "
                     "text only: the caption), on that stage's encoders; never marked best, not in the differences")
    apart = "; this run's rows apart from the cited and published ones" if separate_marks else ""
    notes.append("bold: best, underlined: second best in each column among the rows of the same split "
                 f"(ablations excluded{apart})")
    boots = table.attrs.get("bootstrap") or {}
    if boots:
        boot = next(iter(boots.values()))
        per = get_dataset(dataset).interval_note()
        notes.append(f"\u00b1h: half-width of the {boot.level:.0%} percentile bootstrap interval over the val queries "
                     f"({boot.n_boot} resamples, seed {boot.seed}{per}); exact bounds in the CSV; differences: "
                     "paired bootstrap (same resamples for both rows); rows without \u00b1 have no per-query ranks")
    return notes


def to_markdown(table: pd.DataFrame, difference: pd.DataFrame | None = None, *, title: str = "",
                notes: Sequence[str] = (), separate_marks: bool = False) -> str:
    """The table (and its difference section) as GitHub Markdown, numbers to 2 decimals.

    Cells read `21.22 ±1.91` (± the half-width of the 95% interval) where intervals are known;
    best in bold and second best underlined per column, among the rows of the same split.

    Args:
        table: from `fashioniq_table` / `cirr_table`.
        difference: from `difference_table`, printed under the table (None: none).
        title: heading; notes: lines printed as a list under the tables.
        separate_marks: mark this run's rows apart from the cited / published ones (for runs on
            other data than the paper's, e.g. the mini benchmark, where ranking them together
            would mean nothing).

    Returns:
        The Markdown text.
    """
    columns = metric_columns(table)
    ids = _shown_id_columns(table)
    table = table.reset_index(drop=True)
    marks = _marks(table, separate_marks)
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(ids) + " | " + " | ".join(header_label(c) for c in columns) + " |")
    lines.append("| " + " | ".join("---" for _ in ids) + " | " + " | ".join("---:" for _ in columns) + " |")
    for i, row in table.iterrows():
        cells = [_method_label(row) if c == "method" else str(row[c] if not _missing(row[c]) else "") for c in ids]
        cells += [_cell(row, c, signed=False, mark=marks.get((i, c)), latex=False) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if difference is not None and not difference.empty:
        lines += ["", "Difference (recall points):", ""]
        lines.append("| comparison | " + " | ".join(header_label(c) for c in columns) + " |")
        lines.append("| --- | " + " | ".join("---:" for _ in columns) + " |")
        for _, row in difference.iterrows():
            lines.append(f"| {row['comparison']} | "
                         + " | ".join(_cell(row, c, signed=True, mark=None, latex=False) for c in columns) + " |")
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "\u2020": r"$^\dagger$", "\u00b1": r"$\pm$"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame, difference: pd.DataFrame | None = None, *, caption: str = "",
             label: str = "", separate_marks: bool = False) -> str:
    """The table as a booktabs LaTeX `table` (needs \\usepackage{booktabs}), poster layout.

    Cells as in `to_markdown` (`\\textbf` best, `\\underline` second best, `$\\pm$h` in small type).

    Args:
        table, difference, separate_marks: as in `to_markdown`.
        caption, label: the table's `\\caption` and `\\label` (omitted when empty).

    Returns:
        The LaTeX text.
    """
    dataset = table_dataset(table)
    columns = metric_columns(table)
    ids = _shown_id_columns(table)
    table = table.reset_index(drop=True)
    marks = _marks(table, separate_marks)
    n, m = len(columns), len(ids)
    out = [r"\begin{table}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{4pt}",
           r"\begin{tabular}{" + "l" * m + "r" * n + "}", r"\toprule"]
    pad = " & " * (m - 1)
    id_header = " & ".join(c.capitalize() for c in ids)
    out.extend(get_dataset(dataset).latex_header(list(columns), m, id_header))
    out.append(r"\midrule")
    previous = None
    for i, row in table.iterrows():
        if previous is not None and row["source"] != previous:
            out.append(r"\midrule")
        previous = row["source"]
        cells = [_tex_escape(_method_label(row) if c == "method" else ("" if _missing(row[c]) else row[c]))
                 for c in ids]
        cells += [_cell(row, c, signed=False, mark=marks.get((i, c)), latex=True) for c in columns]
        out.append(" & ".join(cells) + r" \\")
    if difference is not None and not difference.empty:
        out.append(r"\midrule")
        out.append(rf"\multicolumn{{{n + m}}}{{l}}{{\emph{{Difference (recall points)}}}} \\")
        for _, row in difference.iterrows():
            out.append(rf"\multicolumn{{{m}}}{{l}}{{{_tex_escape(row['comparison'])}}} & "
                       + " & ".join(_cell(row, c, signed=True, mark=None, latex=True) for c in columns) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        out.append(rf"\caption{{{_tex_escape(caption)}}}")
    if label:
        out.append(rf"\label{{{label}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def write_table(table: pd.DataFrame, out_dir: str | os.PathLike, name: str, *, title: str = "",
                notes: Sequence[str] = (), meta: Mapping[str, Any] | None = None,
                separate_marks: bool = False) -> dict[str, Path]:
    """Write `<name>.csv`, `<name>_differences.csv`, `<name>.md`, `<name>.tex` and `<name>.meta.json`.

    The CSVs hold the table and its differences (`difference_table`) at full precision, interval
    bounds beside each metric (blank where unknown); the Markdown and LaTeX files show both with
    `±h`, the marks, `notes` and the table's own notes (`context_notes`); the sidecar records
    `meta` (run configs, environment, data root, ...).

    Args:
        table: from `fashioniq_table` / `cirr_table`.
        out_dir: folder for the files (created).
        name: file stem, "fashioniq" or "cirr".
        title: heading / caption of the Markdown and LaTeX versions.
        notes: lines printed under the table (what the rows are, which data), before the
            table's own notes.
        meta: JSON-serialisable record written to `<name>.meta.json` (and summarised in the .md).
        separate_marks: see `to_markdown` (True for the smoke / mini profiles).

    Returns:
        {"csv": path, "differences": path, "md": path, "tex": path, "meta": path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    difference = difference_table(table)
    notes = [*notes, *context_notes(table, separate_marks)]
    paths = {"csv": out / f"{name}.csv", "differences": out / f"{name}_differences.csv", "md": out / f"{name}.md",
             "tex": out / f"{name}.tex", "meta": out / f"{name}.meta.json"}
    for key, frame in (("csv", table), ("differences", difference)):
        atomic_write_text(paths[key], frame.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.6g"))
    md = to_markdown(table, difference, title=title, notes=notes, separate_marks=separate_marks)
    if meta:
        md += "\n" + _meta_markdown(meta)
    atomic_write_text(paths["md"], md)
    caption = ". ".join(t.strip().rstrip(".") for t in [title, *notes] if t.strip())
    atomic_write_text(paths["tex"], to_latex(table, difference, caption=caption + "." if caption else "",
                                              label=f"tab:{name}", separate_marks=separate_marks))
    atomic_write_text(paths["meta"], json.dumps(jsonable(dict(meta or {})), indent=2, sort_keys=True) + "\n")
    logger.info("wrote %s table to %s.{csv,md,tex}", name, out / name)
    return paths


def _meta_markdown(meta: Mapping[str, Any]) -> str:
    lines = ["#### How these numbers were made", ""]
    env = meta.get("environment", {})
    for key in ("profile", "data_root", "split"):
        if key in meta:
            lines.append(f"- {key}: `{meta[key]}`")
    if env:
        lines.append(f"- git commit: `{env.get('git_commit')}`{' (uncommitted changes)' if env.get('git_dirty') else ''}")
        lines.append(f"- device: {env.get('device')}; python {env.get('python')}; platform {env.get('platform')}")
        pkgs = ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items()))
        lines.append(f"- packages: {pkgs}")
    for label, config in (meta.get("runs") or {}).items():
        lines.append(f"- run `{label}`: " + ", ".join(f"{k}={v}" for k, v in _short_config(config).items()))
    lines.append("- full record: the `.meta.json` file beside this one")
    return "\n".join(lines) + "\n"


def _short_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        return {"config": config}
    keep = ("dataset", "recipe", "backbone", "pretrained", "train_encoders", "encoders", "epochs", "batch_size",
            "lr", "seed", "best_epoch", "run_dir", "path")
    flat = {k: config[k] for k in keep if k in config and not isinstance(config[k], (dict, list))}
    return flat or {k: v for k, v in list(config.items())[:6] if not isinstance(v, (dict, list))}


# --------------------------------------------------------------------------- seeds



def seed_table(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """This run's main rows for each training seed, then their mean and sample std across seeds.

    Args:
        tables: {seed: a table from `fashioniq_table` / `cirr_table` of that seed's runs}.

    Returns:
        Columns "seed" ("0", "1", ..., "mean", "std"), "backbone", "method", then the metric columns.
    """
    if not tables:
        raise ConfigError("seed_table needs at least one seed's table")
    frames = []
    for seed, table in tables.items():
        rows = table[(table["source"] == THIS_RUN) & (table["split"] == "val") & table["method"].isin(METHODS)]
        frame = rows[["backbone", "method", *metric_columns(table)]].copy()
        frame.insert(0, "seed", str(seed))
        frames.append(frame)
    per_seed = pd.concat(frames, ignore_index=True)
    columns = metric_columns(per_seed.drop(columns=["seed", "backbone", "method"]))
    summary = []
    for stat in ("mean", "std"):
        grouped = per_seed.groupby(["backbone", "method"], sort=False)[columns]
        values = grouped.mean() if stat == "mean" else grouped.std(ddof=1 if len(tables) > 1 else 0)
        values = values.reset_index()
        values.insert(0, "seed", stat)
        summary.append(values)
    return pd.concat([per_seed, *summary], ignore_index=True)


def write_seed_table(table: pd.DataFrame, out_dir: str | os.PathLike, name: str, *, title: str = "") -> dict[str, Path]:
    """Write `<name>_seeds.csv` (full precision) and `<name>_seeds.md` (per-seed rows, then
    mean ± std per method).

    Returns:
        {"csv": path, "md": path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}_seeds.csv", "md": out / f"{name}_seeds.md"}
    atomic_write_text(paths["csv"], table.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.6g"))
    columns = [c for c in table.columns if c not in ("seed", "backbone", "method")]
    seeds = [s for s in table["seed"].unique() if s not in ("mean", "std")]
    lines = [f"### {title}", ""] if title else []
    lines += ["| seed | backbone | method | " + " | ".join(header_label(c) for c in columns) + " |",
              "| --- | --- | --- | " + " | ".join("---:" for _ in columns) + " |"]
    for _, row in table[table["seed"].isin(seeds)].iterrows():
        lines.append(f"| {row['seed']} | {row['backbone']} | {row['method']} | "
                     + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
    mean = table[table["seed"] == "mean"].set_index(["backbone", "method"])
    std = table[table["seed"] == "std"].set_index(["backbone", "method"])
    for key in mean.index:
        lines.append(f"| mean ± std ({len(seeds)} seeds) | {key[0]} | {key[1]} | "
                     + " | ".join(f"{mean.loc[key, c]:.2f} ±{std.loc[key, c]:.2f}" for c in columns) + " |")
    lines += ["", "std: the sample standard deviation across the training seeds (same data, same recipe)."]
    atomic_write_text(paths["md"], "\n".join(lines) + "\n")
    return paths
