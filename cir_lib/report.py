"""Result tables and figures, built from evaluation dicts and run folders (never typed in).

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
- source "this run": this run's rows per backbone, `METHODS` in order, then the ablation rows
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

Figures (PNG + PDF, optionally SVG, sized for a paper page, byte-identical on reruns): recall bars
of this run's rows, training curves of both stages (from each run's history.csv), the
distribution of the Combiner's lambda, retrieval grids, triplets.

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
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from cir_lib.constants import (
    CIRR_KS,
    CIRR_SUBSET_KS,
    CITED_RESULTS,
    FASHIONIQ_KS,
    FASHIONIQ_POSTER_ORDER,
    PAPER_RESULTS,
)
from cir_lib.errors import ConfigError
from cir_lib.intervals import DEFAULT_N_BOOT, BootstrapIntervals, cirr_intervals, fashioniq_intervals
from cir_lib.runs import atomic_write_text, jsonable, read_history

logger = logging.getLogger(__name__)

METHODS = ("zero-shot sum", "stage 1 sum", "stage 1 + Combiner")  # main rows, in this order
ABLATIONS = ("zero-shot image only", "zero-shot text only", "stage 1 image only", "stage 1 text only")
DATASET_NAMES = {"fashioniq": "FashionIQ", "cirr": "CIRR"}  # for titles
THIS_RUN, PUBLISHED, CITED = "this run", "published", "cited"  # the `source` column
CONTEXT_SOURCES = (CITED, PUBLISHED)  # rows that can be put beside this run's
PAPER_BACKBONES = ("RN50", "RN50x4")
PUBLISHED_METHOD = "stage 1 + Combiner"  # the poster's rows are its full method
CONTEXT_SPLIT = {"fashioniq": "val", "cirr": "test1"}  # the split of the cited and published rows
ID_COLUMNS = ("source", "backbone", "method", "split", "cited_from")

FASHIONIQ_GROUPS = tuple(FASHIONIQ_POSTER_ORDER) + ("average",)
FASHIONIQ_COLUMNS = tuple(f"{g}_recall@{k}" for g in FASHIONIQ_GROUPS for k in FASHIONIQ_KS)
CIRR_COLUMNS = tuple(f"recall@{k}" for k in CIRR_KS) + tuple(f"recall_subset@{k}" for k in CIRR_SUBSET_KS)
TABLE_COLUMNS = {"fashioniq": FASHIONIQ_COLUMNS, "cirr": CIRR_COLUMNS}
CI_SUFFIXES = ("_ci_low", "_ci_high")

PUBLISHED_NOTE = {
    "fashioniq": "published: the poster's stage 1 + Combiner on the real FashionIQ val split",
    "cirr": "published: the poster's stage 1 + Combiner on the real CIRR test1 split (evaluation server)",
}
CITED_NOTE = {
    "fashioniq": "cited: earlier methods as the poster's comparison table prints them (FashionIQ val)",
    "cirr": "cited: earlier methods as the poster's comparison table prints them (CIRR test1)",
}

# Sizes that stay legible when a figure is printed at the width of a two-column paper page.
PAGE_WIDTH_IN = 6.9
FIG_RC = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 7, "figure.dpi": 100, "savefig.dpi": 200,
    "savefig.bbox": "tight", "svg.hashsalt": "cir_lib",  # fixed SVG ids: byte-identical reruns
}
FIGURE_FORMATS = ("png", "pdf", "svg")
# Metadata that would change from one save to the next (dates) or with the installed versions.
_SAVE_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None},
                  "svg": {"Date": None, "Creator": None}}
METHOD_COLORS = {"zero-shot sum": "#9e9e9e", "stage 1 sum": "#4c72b0", "stage 1 + Combiner": "#dd8452",
                 "zero-shot image only": "#d4d4d4", "zero-shot text only": "#d4d4d4",
                 "stage 1 image only": "#a9bcdc", "stage 1 text only": "#a9bcdc"}
ABLATION_HATCH = {"image only": "////", "text only": "...."}


# --------------------------------------------------------------------------- tables


def is_ablation(method: str) -> bool:
    """Whether a method name is one of the ablation rows (`ABLATIONS`)."""
    return method in ABLATIONS


def _metric_value(metrics: Mapping[str, Any], key: str, where: str) -> float:
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


def _check_methods(rows: Mapping[str, Any], where: str) -> list[str]:
    known = METHODS + ABLATIONS
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
    if all(k in METHODS + ABLATIONS for k in rows):
        return {backbone: rows}
    for key, value in rows.items():
        if not isinstance(value, Mapping) or not all(m in METHODS + ABLATIONS for m in value):
            raise ConfigError(f"{what}: {key!r} is an unknown method (use names from {METHODS + ABLATIONS}) "
                              "and not a backbone holding {method: ...}")
    return dict(rows)


def _fashioniq_flat(per_category: Mapping[str, Mapping[str, Any]], where: str) -> dict[str, float]:
    flat: dict[str, float] = {}
    for cat in FASHIONIQ_POSTER_ORDER:
        if cat not in per_category:
            raise ConfigError(f"{where}: category {cat!r} is missing (have {sorted(per_category)})")
        for k in FASHIONIQ_KS:
            flat[f"{cat}_recall@{k}"] = _metric_value(per_category[cat], f"recall@{k}", f"{where}/{cat}")
    for k in FASHIONIQ_KS:
        if "average" in per_category:
            flat[f"average_recall@{k}"] = _metric_value(per_category["average"], f"recall@{k}", f"{where}/average")
        else:  # the protocol's average: plain mean over the three categories
            flat[f"average_recall@{k}"] = float(np.mean([flat[f"{c}_recall@{k}"] for c in FASHIONIQ_POSTER_ORDER]))
    return flat


def _cirr_flat(metrics: Mapping[str, Any], where: str) -> dict[str, float]:
    return {c: _metric_value(metrics, c, where) for c in CIRR_COLUMNS}


def table_columns(dataset: str) -> list[str]:
    """The columns of a result table (and of its CSV): `ID_COLUMNS`, then each metric followed by
    its `_ci_low` / `_ci_high` bounds, e.g. ..., "shirt_recall@10", "shirt_recall@10_ci_low", ...."""
    if dataset not in TABLE_COLUMNS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose from {', '.join(TABLE_COLUMNS)}")
    out = list(ID_COLUMNS)
    for column in TABLE_COLUMNS[dataset]:
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
    split, records = CONTEXT_SPLIT[dataset], []
    if CITED in context:
        for entry in CITED_RESULTS[dataset]:
            if dataset == "fashioniq":
                values = {f"{g}_recall@{k}": entry[g][i] for g in FASHIONIQ_GROUPS for i, k in enumerate(FASHIONIQ_KS)}
            else:
                values = {**{f"recall@{k}": entry["recall"][i] for i, k in enumerate(CIRR_KS)},
                          **{f"recall_subset@{k}": entry["recall_subset"][i] for i, k in enumerate(CIRR_SUBSET_KS)}}
            records.append(_record(CITED, entry.get("backbone", ""), entry["method"], split, values,
                                   entry.get("cited_from", "")))
    if PUBLISHED in context:
        records += [_record(PUBLISHED, b, PUBLISHED_METHOD, split, PAPER_RESULTS[dataset][b]) for b in PAPER_BACKBONES]
    return records


def _bootstrap(dataset: str, backbone: str, methods: list[str], flat: Mapping[str, Mapping[str, float]],
               ranks: Mapping[str, Any], n_boot: int, seed: int) -> BootstrapIntervals:
    """Intervals of the rows that have ranks, checked against the metric values the rows carry."""
    where = f"{dataset} table, backbone {backbone!r}" if backbone else f"{dataset} table"
    unknown = [m for m in ranks if m not in methods]
    if unknown:
        raise ConfigError(f"{where}: ranks given for method(s) {unknown} that have no row; rows are {methods}")
    ordered = {m: ranks[m] for m in methods if m in ranks}
    compute = fashioniq_intervals if dataset == "fashioniq" else cirr_intervals
    boot = compute(ordered, n_boot=n_boot, seed=seed)
    for m in ordered:
        for column in TABLE_COLUMNS[dataset]:
            if abs(boot.value[m][column] - flat[m][column]) > 1e-6:
                raise ConfigError(
                    f"{where}: the ranks of {m!r} give {column} = {boot.value[m][column]:.4f} but the row says "
                    f"{flat[m][column]:.4f}; pass the ranks from the same evaluation as the metrics")
    return boot


def _this_run_table(dataset: str, rows, backbone: str, ranks, context: Sequence[str], n_boot: int, seed: int,
                    flatten, test_results=None) -> pd.DataFrame:
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
        flat = {m: flatten(bb_rows[m], f"{dataset} row {m!r}") for m in methods}
        boot = _bootstrap(dataset, bb, methods, flat, ranks_by[bb], n_boot, seed) if ranks_by.get(bb) else None
        if boot is not None:
            boots[bb] = boot
        tests = test_by.get(bb, {})
        if tests:
            tests = {m: _cirr_flat(tests[m], f"cirr test1 row {bb}/{m}")
                     for m in _check_methods(tests, f"cirr test1 results of {bb!r}")}
        for m in [m for m in METHODS + ABLATIONS if m in flat or m in tests]:
            if m in flat:
                values = dict(flat[m])
                if boot is not None and m in boot.value:
                    for c in TABLE_COLUMNS[dataset]:
                        values[c + "_ci_low"], values[c + "_ci_high"] = boot.low[m][c], boot.high[m][c]
                records.append(_record(THIS_RUN, bb, m, "val", values))
            if m in tests:
                records.append(_record(THIS_RUN, bb, m, "test1", tests[m]))
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
    return _this_run_table("fashioniq", rows, backbone, ranks, context, n_boot, seed, _fashioniq_flat)


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
    return _this_run_table("cirr", rows, backbone, ranks, context, n_boot, seed, _cirr_flat, test_results)


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
    fix = "see report.read_cirr_test_results for the format"
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
            if method not in METHODS + ABLATIONS:
                raise ConfigError(f"{path}: {key!r}: unknown method {method!r}; use one of {METHODS + ABLATIONS}")
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
    Combiner - zero-shot sum), then this run's stage 1 + Combiner minus each published row.
    Ablation rows are left out. Intervals: the paired bootstrap interval (same resamples for both
    rows) when the table was built with ranks; for a difference to a published number, this run's
    own interval shifted by that number (the published value is taken as fixed); blank otherwise.

    Returns:
        DataFrame with columns comparison, then each metric column with `_ci_low` / `_ci_high`.
    """
    dataset = table_dataset(table)
    columns = TABLE_COLUMNS[dataset]
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


def _header_label(column: str) -> str:
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
        notes.append(CITED_NOTE[dataset])
        for paper in sorted({p for p in table["cited_from"].fillna("") if p}):
            notes.append(f"\u2020 numbers cited from the {paper}, as the poster prints them")
    if PUBLISHED in sources:
        notes.append(PUBLISHED_NOTE[dataset])
    if table["method"].isin(ABLATIONS).any():
        notes.append("(ablation): the query is one modality's feature alone (image only: the reference image; "
                     "text only: the caption), on that stage's encoders; never marked best, not in the differences")
    apart = "; this run's rows apart from the cited and published ones" if separate_marks else ""
    notes.append("bold: best, underlined: second best in each column among the rows of the same split "
                 f"(ablations excluded{apart})")
    boots = table.attrs.get("bootstrap") or {}
    if boots:
        boot = next(iter(boots.values()))
        per = "; FashionIQ categories resampled independently" if dataset == "fashioniq" else ""
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
    lines.append("| " + " | ".join(ids) + " | " + " | ".join(_header_label(c) for c in columns) + " |")
    lines.append("| " + " | ".join("---" for _ in ids) + " | " + " | ".join("---:" for _ in columns) + " |")
    for i, row in table.iterrows():
        cells = [_method_label(row) if c == "method" else str(row[c] if not _missing(row[c]) else "") for c in ids]
        cells += [_cell(row, c, signed=False, mark=marks.get((i, c)), latex=False) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if difference is not None and not difference.empty:
        lines += ["", "Difference (recall points):", ""]
        lines.append("| comparison | " + " | ".join(_header_label(c) for c in columns) + " |")
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
    if dataset == "fashioniq":
        groups = " & ".join(rf"\multicolumn{{{len(FASHIONIQ_KS)}}}{{c}}{{{g.capitalize()}}}" for g in FASHIONIQ_GROUPS)
        out.append(pad + " & " + groups + r" \\")
        rules = []
        for i in range(len(FASHIONIQ_GROUPS)):
            start = m + 1 + i * len(FASHIONIQ_KS)
            rules.append(rf"\cmidrule(lr){{{start}-{start + len(FASHIONIQ_KS) - 1}}}")
        out.append("".join(rules))
        out.append(id_header + " & " + " & ".join(f"R@{c.split('@')[1]}" for c in columns) + r" \\")
    else:
        nk, ns = len(CIRR_KS), len(CIRR_SUBSET_KS)
        out.append(pad + rf" & \multicolumn{{{nk}}}{{c}}{{Recall@K}} & "
                   rf"\multicolumn{{{ns}}}{{c}}{{Recall$_\mathrm{{subset}}$@K}} \\")
        out.append(rf"\cmidrule(lr){{{m + 1}-{m + nk}}}\cmidrule(lr){{{m + 1 + nk}-{m + nk + ns}}}")
        out.append(id_header + " & " + " & ".join(f"K={c.split('@')[1]}" for c in columns) + r" \\")
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


# --------------------------------------------------------------------------- figures

def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") and "ipykernel" not in sys.modules:
        matplotlib.use("Agg")  # scripts and tests: no display needed
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, out_stem):
    """Save when asked, and detach the figure from pyplot so a notebook shows it once (when returned)."""
    if out_stem is not None:
        save_figure(fig, out_stem)
    else:
        _pyplot().close(fig)
    return fig


def save_figure(fig, stem: str | os.PathLike, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save `fig` as `<stem>.<format>` for each format (folders created) and close it in pyplot.

    The files are byte-identical from one run to the next (no dates or version strings in the
    metadata, fixed SVG ids), so regenerated figures show no spurious diffs. The figure object
    stays usable: a notebook can still show it with `display(fig)`.

    Args:
        fig: a matplotlib Figure.
        stem: path without extension.
        formats: among "png", "pdf", "svg".

    Returns:
        The written paths, in `formats` order.

    Example:
        >>> save_figure(plot_recall_bars(table), "results/mini/figures/recall_bars_cirr", ("png", "pdf", "svg"))
    """
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown or not formats:
        raise ConfigError(f"figure formats must be among {FIGURE_FORMATS}; got {list(formats)}")
    plt = _pyplot()
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]
    with plt.rc_context(FIG_RC):
        for fmt, path in zip(formats, paths):
            fig.savefig(path, format=fmt, metadata=_SAVE_METADATA[fmt])
    plt.close(fig)
    logger.info("wrote figure %s.{%s}", stem, ",".join(formats))
    return paths


def _bar_rows(table: pd.DataFrame) -> pd.DataFrame:
    """This run's val rows, main methods then ablations, backbone by backbone."""
    ours = table[(table["source"] == THIS_RUN) & (table["split"] == "val")]
    order = {m: i for i, m in enumerate(METHODS + ABLATIONS)}
    backbones = pd.Categorical(ours["backbone"], ours["backbone"].unique())  # first-seen order
    ours = ours.assign(_order=ours["method"].map(order), _bb=backbones)
    return ours.sort_values(["_bb", "_order"], kind="stable").drop(columns=["_order", "_bb"])


def plot_recall_bars(table: pd.DataFrame, *, title: str = "", out_stem: str | os.PathLike | None = None):
    """Grouped bars of this run's val rows: the main methods, then the ablations (hatched, lighter).

    Error bars show the 95% bootstrap interval where the table has one.

    Args:
        table: from `fashioniq_table` / `cirr_table` (only the "this run" val rows are drawn; with
            several backbones, one bar per method and backbone).
        title: axes title.
        out_stem: when given, save `<out_stem>.png/.pdf`.

    Returns:
        The matplotlib Figure.
    """
    import seaborn as sns
    from matplotlib.container import BarContainer

    plt = _pyplot()
    columns = metric_columns(table)
    ours = _bar_rows(table)
    several = ours["backbone"].nunique() > 1
    labels, colors, long = [], [], []
    for _, row in ours.iterrows():
        label = f"{row['method']} ({row['backbone']})" if several else row["method"]
        label += " (ablation)" if is_ablation(row["method"]) else ""
        labels.append(label)
        colors.append(METHOD_COLORS.get(row["method"], "#777777"))
        for c in columns:
            long.append({"metric": _header_label(c).replace(" ", "\n"), "recall": float(row[c]), "row": label,
                         "low": row.get(c + "_ci_low"), "high": row.get(c + "_ci_high")})
    long = pd.DataFrame(long, columns=["metric", "recall", "row", "low", "high"])
    with plt.rc_context(FIG_RC):
        fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 2.4))
        if labels:
            sns.barplot(data=long, x="metric", y="recall", hue="row", hue_order=labels, palette=colors,
                        errorbar=None, width=0.8, saturation=1.0, legend=False, ax=ax)
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        for label, container, (_, row) in zip(labels, bars, ours.iterrows()):
            part = long[long["row"] == label]
            hatch = next((h for key, h in ABLATION_HATCH.items() if row["method"].endswith(key)), None)
            for patch in container:
                patch.set_edgecolor("white" if hatch is None else "#555555")
                patch.set_linewidth(0.3)
                if hatch:
                    patch.set_hatch(hatch)
            if part["low"].notna().all() and part["high"].notna().all():
                x = [p.get_x() + p.get_width() / 2 for p in container]
                v = part["recall"].to_numpy(float)
                yerr = np.vstack([v - part["low"].to_numpy(float), part["high"].to_numpy(float) - v])
                ax.errorbar(x, v, yerr=yerr, fmt="none", ecolor="#222222", elinewidth=0.6, capsize=1.2)
            if not is_ablation(row["method"]) and len(labels) <= 4:
                ax.bar_label(container, fmt="%.0f", fontsize=5.5, padding=1)
        ax.set_xlabel("")
        ax.set_ylabel("recall (%)")
        ax.set_ylim(0, 106)
        ax.set_yticks(range(0, 101, 20))
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        if labels:
            ax.legend([c[0] for c in bars], labels, ncol=min(len(labels), 4), loc="lower center",
                      bbox_to_anchor=(0.5, 1.0), frameon=False)
        if title:
            ax.set_title(title, pad=16 + 9 * ((len(labels) - 1) // 4))
        fig.tight_layout()
    return _finish(fig, out_stem)


def plot_training_curves(runs: Mapping[str, Mapping[str, str | os.PathLike]], *, title: str = "",
                         out_stem: str | os.PathLike | None = None):
    """Training loss and validation score per epoch for both stages, one line per dataset.

    Args:
        runs: {stage label: {dataset: run_dir}}, e.g. {"stage 1": {"fashioniq": d1, "cirr": d2},
            "Combiner": {...}}; each run_dir holds the history.csv cir_lib.train writes (`epoch`,
            `loss`, and `score` on the validated epochs).
        title: figure title.
        out_stem: when given, save `<out_stem>.png/.pdf`.

    Returns:
        The matplotlib Figure (rows: stages; columns: loss, validation score).
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    stages = list(runs)
    with plt.rc_context(FIG_RC):
        fig, axes = plt.subplots(len(stages), 2, figsize=(PAGE_WIDTH_IN, 2.0 * len(stages) + 0.3), squeeze=False)
        for r, stage in enumerate(stages):
            ax_loss, ax_score = axes[r]
            for dataset, run_dir in runs[stage].items():
                hist = read_history(run_dir)
                ax_loss.plot(hist["epoch"], hist["loss"], marker="o", ms=2.5, label=dataset)
                if "score" in hist.columns and hist["score"].notna().any():
                    ok = hist["score"].notna()
                    ax_score.plot(hist["epoch"][ok], hist["score"][ok], marker="o", ms=2.5, label=dataset)
            ax_loss.set_title(f"{stage}: training loss")
            ax_score.set_title(f"{stage}: validation score (%)")
            for ax in (ax_loss, ax_score):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("epoch")
                ax.grid(alpha=0.3)
                if ax.lines:
                    ax.legend(frameon=False)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return _finish(fig, out_stem)


def plot_lambda_distribution(lambdas: Mapping[str, Sequence[float] | np.ndarray], *, title: str = "",
                             out_stem: str | os.PathLike | None = None):
    """Histograms of the Combiner's lambda (weight of the text feature), overall and per dataset.

    lambda near 1 means the Combiner leans on the caption's feature, near 0 on the reference
    image's feature (output = normalize(mixture + lambda * text + (1 - lambda) * image)).

    Args:
        lambdas: {dataset: lambda per validation query}.
        title: figure title.
        out_stem: when given, save `<out_stem>.png/.pdf`.

    Returns:
        The matplotlib Figure (first panel: all datasets pooled; then one per dataset).
    """
    import seaborn as sns

    plt = _pyplot()
    values = {k: np.asarray(v, dtype=float).ravel() for k, v in lambdas.items()}
    if not values or not any(len(v) for v in values.values()):
        raise ConfigError("no lambda values to plot: pass {dataset: lambdas} from the Combiner runs")
    panels = [("all datasets", np.concatenate(list(values.values())))] + list(values.items())
    bins = np.linspace(0, 1, 41)
    with plt.rc_context(FIG_RC):
        fig, axes = plt.subplots(1, len(panels), figsize=(PAGE_WIDTH_IN, 2.2), sharey=False, squeeze=False)
        for ax, (label, v) in zip(axes[0], panels):
            sns.histplot(x=v, bins=bins, color="#dd8452" if label == "all datasets" else "#4c72b0", alpha=0.9,
                         edgecolor="white", linewidth=0.3, ax=ax)
            ax.axvline(float(np.mean(v)), color="k", lw=1, ls="--")
            ax.set_title(f"{label} (n={len(v)}, mean {np.mean(v):.2f})")
            ax.set_xlabel("lambda (weight of text)")
            ax.set_ylabel("")
            ax.set_xlim(0, 1)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("queries")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return _finish(fig, out_stem)


def plot_retrieval_grid(examples: Sequence[Mapping[str, Any]], *, title: str = "",
                        out_stem: str | os.PathLike | None = None, thumb_in: float = 0.62):
    """Retrieval grid: per query the reference, the caption, and the top-k of sum and Combiner.

    Args:
        examples: one dict per query with keys `reference` (image path), `caption` (str),
            `target` (image name or None), and `rankings`: {method label: [(name, path), ...]}
            (top-k, best first), e.g. {"stage 1 sum": [...], "stage 1 + Combiner": [...]};
            optionally `lambda` (the Combiner's lambda, printed under the caption), `group`
            (e.g. the FashionIQ category, printed over the reference), `target_path` (the target
            image, drawn under the reference) and `target_ranks` ({method: the target's rank in the
            whole index, 1 = first}, printed under each method's name).
            A retrieved image equal to the target gets a green frame.
        title: figure title.
        out_stem: when given, save `<out_stem>.png/.pdf`.
        thumb_in: thumbnail size in inches.

    Returns:
        The matplotlib Figure.
    """
    from PIL import Image

    plt = _pyplot()
    if not examples:
        raise ConfigError("no retrieval examples to draw")
    k = max(len(r) for ex in examples for r in ex["rankings"].values())
    gap = 0.25  # spacer row between queries, in thumbnail heights
    heights = []
    for i, ex in enumerate(examples):
        heights += [1.0] * len(ex["rankings"]) + ([gap] if i < len(examples) - 1 else [])
    with plt.rc_context(FIG_RC):
        height = thumb_in * 1.15 * sum(heights) + 0.4
        fig = plt.figure(figsize=(thumb_in * (k + 1) + 2.8, height))
        grid = fig.add_gridspec(len(heights), k + 3, width_ratios=[1, 2.1, 1.05] + [1] * k,
                                height_ratios=heights, wspace=0.06, hspace=0.28,
                                top=1 - 0.35 / height, bottom=0.1 / height)
        row = 0
        for ex in examples:
            methods = list(ex["rankings"])
            span = slice(row, row + len(methods))
            with_target = ex.get("target_path") is not None and len(methods) > 1
            ax_ref = fig.add_subplot(grid[row, 0] if with_target else grid[span, 0])
            ax_ref.imshow(Image.open(ex["reference"]).convert("RGB"))
            ax_ref.set_title(f"reference ({ex['group']})" if ex.get("group") else "reference", fontsize=6.5, pad=2)
            ax_ref.axis("off")
            if with_target:
                ax_tgt = fig.add_subplot(grid[row + 1, 0])
                ax_tgt.imshow(Image.open(ex["target_path"]).convert("RGB"))
                ax_tgt.set_xticks([])
                ax_tgt.set_yticks([])
                for spine in ax_tgt.spines.values():
                    spine.set_edgecolor("#2ca02c")
                    spine.set_linewidth(2.5)
                ax_tgt.set_title("target", fontsize=6.5, color="#2ca02c", pad=2)
            ax_txt = fig.add_subplot(grid[span, 1])
            ax_txt.axis("off")
            text = _wrap(f"\u201c{ex['caption']}\u201d", 21)
            if ex.get("lambda") is not None:
                text += f"\n\nCombiner \u03bb = {float(ex['lambda']):.2f}"
            ax_txt.text(0.04, 0.5, text, va="center", ha="left", fontsize=6.5, style="italic",
                        transform=ax_txt.transAxes)
            for m in methods:
                ax_lab = fig.add_subplot(grid[row, 2])
                ax_lab.axis("off")
                label = _wrap(m, 12)
                if (ex.get("target_ranks") or {}).get(m) is not None:
                    label += f"\ntarget #{ex['target_ranks'][m]}"
                ax_lab.text(0.95, 0.5, label, va="center", ha="right", fontsize=6.5, weight="bold",
                            color=METHOD_COLORS.get(m, "k"), transform=ax_lab.transAxes)
                for j, (name, path) in enumerate(ex["rankings"][m][:k]):
                    ax = fig.add_subplot(grid[row, 3 + j])
                    ax.imshow(Image.open(path).convert("RGB"))
                    ax.set_xticks([])
                    ax.set_yticks([])
                    hit = ex.get("target") is not None and name == ex["target"]
                    for spine in ax.spines.values():
                        spine.set_visible(hit)
                        spine.set_edgecolor("#2ca02c")
                        spine.set_linewidth(2.5)
                    if hit:
                        ax.set_title("target", fontsize=6, color="#2ca02c", pad=1.5)
                    elif row == 0:
                        ax.set_title(f"#{j + 1}", fontsize=6, pad=1.5)
                row += 1
            row += 1  # the spacer row
        if title:
            fig.suptitle(title, y=1.0)
    return _finish(fig, out_stem)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:5])


def plot_triplets(split, n: int = 4, *, seed: int = 0, title: str = "", out_stem: str | os.PathLike | None = None):
    """A few triplets of a split: reference image, caption, target image (one column per triplet).

    Args:
        split: a `cir_lib.data.Split` with targets (train or val).
        n: how many triplets (drawn at random, seeded).
        seed: the draw's seed.
        title: figure title.
        out_stem: when given, save `<out_stem>.png/.pdf`.

    Returns:
        The matplotlib Figure.
    """
    from PIL import Image

    from cir_lib.data import eval_captions

    plt = _pyplot()
    queries = split.queries
    if not queries:
        raise ConfigError(f"{split.label} has no queries to draw")
    picks = np.random.default_rng(seed).choice(len(queries), size=min(n, len(queries)), replace=False)
    captions = eval_captions(split)
    paths = dict(zip(split.image_names, split.image_paths))
    with plt.rc_context(FIG_RC):
        fig, axes = plt.subplots(3, len(picks), figsize=(max(PAGE_WIDTH_IN, 1.25 * len(picks)), 3.8), squeeze=False,
                                 gridspec_kw={"height_ratios": [1, 0.55, 1]})
        for c, i in enumerate(picks):
            q = queries[int(i)]
            for r, (name, label) in ((0, (q.reference, "reference")), (2, (q.target, "target"))):
                ax = axes[r][c]
                ax.axis("off")
                if name is not None and name in paths:
                    ax.imshow(Image.open(paths[name]).convert("RGB"))
                ax.set_title(label, fontsize=6.5, pad=2)
            axes[1][c].axis("off")
            axes[1][c].text(0.5, 0.5, _wrap(captions[int(i)], 20), ha="center", va="center", fontsize=6,
                            style="italic", transform=axes[1][c].transAxes)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return _finish(fig, out_stem)


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
    lines += ["| seed | backbone | method | " + " | ".join(_header_label(c) for c in columns) + " |",
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
