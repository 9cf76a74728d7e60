"""Result tables in the poster's layout, built from evaluation dicts (never typed in): this run's rows,
cited and published rows, intervals, differences, CIRR test-server rows, seed tables.

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
bootstrap interval of each difference (same queries, same resamples). Rows without ranks (cited,
published, test server) have no interval. Ablation rows are left out of the differences table (they
are an explanation of the main rows, not a competing method).

Seed tables: this run's main rows per training seed, then their mean and std (`seed_table`).
The files (CSV, Markdown, LaTeX, `.meta.json`) are written by `cir_lib.table_formats`; figures are
in `cir_lib.figures`.

Example:
    >>> rows = {"zero-shot sum": {"recall@1": 10.0, ...}, "stage 1 sum": {...}, ...}
    >>> table = cirr_table(rows, backbone="RN50", ranks={"zero-shot sum": {"ranks": r0, "subset_ranks": s0}, ...})
    >>> table_formats.write_table(table, "results/mini/tables", "cirr", title="CIRR val")
"""

from __future__ import annotations

import json
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


# --------------------------------------------------------------------------- seeds


def seed_table(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """This run's rows for each training seed (the main rows, the composer rows and the ablations of
    its val table), then their mean and sample std across seeds.

    Args:
        tables: {seed: a table from `fashioniq_table` / `cirr_table` of that seed's runs}.

    Returns:
        Columns "seed" ("0", "1", ..., "mean", "std"), "backbone", "method", then the metric columns.
    """
    if not tables:
        raise ConfigError("seed_table needs at least one seed's table")
    frames = []
    for seed, table in tables.items():
        rows = table[(table["source"] == THIS_RUN) & (table["split"] == "val")]
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

