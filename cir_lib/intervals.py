"""Bootstrap confidence intervals of the recall metrics, from per-query target ranks.

A recall@K is a mean over queries of the indicator `rank < K` (ranks 0-based, as
`cir_lib.metrics.target_ranks` / `cir_lib.metrics.cirr_ranks` return them), so its sampling
uncertainty over the query set is estimated by resampling queries with replacement:

- each row (method) gets a 95% percentile interval of each metric;
- each row after the first gets a PAIRED interval of its difference to the row above: the rows
  were evaluated on the same queries, so every bootstrap replicate resamples the same queries for
  all rows and the difference is taken replicate by replicate (much tighter than two separate
  intervals when the rows are correlated, as they are here);
- FashionIQ: each category's queries are resampled independently (the categories are separate
  query sets with separate indexes), within the same replicate; the average's replicate is the
  mean of the three categories' replicates, as the protocol's average is the mean of the
  per-category recalls;
- CIRR: recall@K and recall_subset@K come from the same queries and share each replicate's
  resample.

Vectorised: a replicate is a vector of counts (how often each query was drawn), so every
replicate of every metric of every row is one matrix product `counts @ hits`, with hits the
[queries, rows x metrics] 0/1 matrix. The resamples are drawn from `numpy.random.default_rng(seed)`,
one `integers(0, Q, size=(n_boot, Q))` call per group in the given group order, so a result is
reproducible from its seed (the tests re-draw them to check against a plain loop).

Example:
    >>> ranks = {"stage 1 sum": {"ranks": r1, "subset_ranks": s1}, "stage 1 + Combiner": {...}}
    >>> out = cirr_intervals(ranks)
    >>> out.low["stage 1 + Combiner"]["recall@1"], out.diff_high["stage 1 + Combiner"]["recall@1"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from cir_lib.constants import CIRR_KS, CIRR_SUBSET_KS, FASHIONIQ_CATEGORIES, FASHIONIQ_KS
from cir_lib.errors import InputError

DEFAULT_N_BOOT = 1000  # bootstrap replicates
DEFAULT_LEVEL = 0.95  # two-sided coverage of the percentile intervals

Bounds = dict[str, dict[str, float]]  # {row: {metric: value}}


@dataclass(eq=False)  # compared by identity: pandas compares table.attrs when concatenating
class BootstrapIntervals:
    """Point estimates and percentile intervals of each row's metrics, in percent.

    `value`, `low`, `high`: {row: {metric: float}}. `diff_value`, `diff_low`, `diff_high`:
    {row: {metric: float}} for every row after the first: the row minus the row above it, with
    its paired interval. `rows` keeps the given order; `n_boot`, `seed`, `level` say how the
    intervals were made.
    """

    rows: list[str]
    metrics: list[str]
    value: Bounds
    low: Bounds
    high: Bounds
    diff_value: Bounds = field(default_factory=dict)
    diff_low: Bounds = field(default_factory=dict)
    diff_high: Bounds = field(default_factory=dict)
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0
    level: float = DEFAULT_LEVEL
    replicates: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # {row: [n_boot, metrics]}

    def paired_difference(self, row: str, other: str) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """`row` minus `other` (any two rows), with the paired percentile interval.

        Returns:
            ({metric: difference}, {metric: low}, {metric: high}).
        """
        for name in (row, other):
            if name not in self.replicates:
                raise InputError(f"no bootstrap replicates for row {name!r}; rows are {self.rows}")
        diff = self.replicates[row] - self.replicates[other]
        lo, hi = _percentiles(diff, self.level)
        value = {m: self.value[row][m] - self.value[other][m] for m in self.metrics}
        return value, dict(zip(self.metrics, lo.tolist())), dict(zip(self.metrics, hi.tolist()))


def _check_ranks(where: str, ranks: Any) -> np.ndarray:
    if hasattr(ranks, "detach"):  # a torch tensor, on any device
        ranks = ranks.detach().cpu().numpy()
    array = np.asarray(ranks)
    if array.ndim != 1 or array.size == 0:
        raise InputError(f"{where}: ranks must be a non-empty 1-D array (one rank per query); "
                         f"got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"{where}: ranks must be integers (0 = first), as cir_lib.metrics.target_ranks "
                         f"returns them; got dtype {array.dtype}")
    if (array < 0).any():
        raise InputError(f"{where}: ranks must be >= 0 (0 = first); got {int(array.min())}")
    return array


def _check_options(n_boot: int, level: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 2:
        raise InputError(f"n_boot must be an integer >= 2 (bootstrap replicates); got {n_boot!r}")
    if not 0.0 < float(level) < 1.0:
        raise InputError(f"level must be in (0, 1), e.g. 0.95; got {level!r}")


def _percentiles(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(replicates, [tail, 100 - tail], axis=0)
    return lo, hi


def resample_counts(num_queries: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """How often each query is drawn in each replicate: int array [n_boot, num_queries].

    Draws `rng.integers(0, num_queries, size=(n_boot, num_queries))` (the resampled query
    positions) and counts them per replicate.
    """
    draws = rng.integers(0, num_queries, size=(n_boot, num_queries))
    offsets = np.arange(n_boot, dtype=np.int64)[:, None] * num_queries
    return np.bincount((draws + offsets).ravel(), minlength=n_boot * num_queries).reshape(n_boot, num_queries)


def bootstrap_recalls(ranks: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[tuple[str, str, int]]],
                      averages: Mapping[str, Sequence[str]] | None = None, *, n_boot: int = DEFAULT_N_BOOT,
                      seed: int = 0, level: float = DEFAULT_LEVEL) -> BootstrapIntervals:
    """The general engine: recall metrics over groups of queries resampled independently.

    Args:
        ranks: {row: {rank name: per-query ranks}}; every row has the same rank names, and the
            ranks of one group have the same length in every row (the same queries).
        groups: {group: [(metric name, rank name, K), ...]}: the metrics of each group of
            queries; the rank names of one group share its resamples.
        averages: {metric name: [metric names]}: metrics that are the mean of others (in percent).
        n_boot: bootstrap replicates; seed: seeds `numpy.random.default_rng`; level: coverage.

    Returns:
        A `BootstrapIntervals` (metrics in group order, then the averages).
    """
    _check_options(n_boot, level)
    rows = list(ranks)
    if not rows:
        raise InputError("no rows to bootstrap: pass {row: {rank name: ranks}}")
    averages = dict(averages or {})
    rng = np.random.default_rng(seed)
    metrics: list[str] = []
    values: list[np.ndarray] = []  # per group: [rows, group metrics]
    reps: list[np.ndarray] = []  # per group: [n_boot, rows, group metrics]
    for group, specs in groups.items():
        names = sorted({name for _, name, _ in specs})
        size = None
        hits = []
        for row in rows:
            if not isinstance(ranks[row], Mapping):
                raise InputError(f"row {row!r}: expected {{rank name: ranks}}, got {type(ranks[row]).__name__}")
            arrays = {}
            for name in names:
                if name not in ranks[row]:
                    raise InputError(f"row {row!r}: ranks {name!r} are missing (have {sorted(ranks[row])})")
                arrays[name] = _check_ranks(f"row {row!r} {name}", ranks[row][name])
                if size is None:
                    size = arrays[name].size
                elif arrays[name].size != size:
                    raise InputError(f"row {row!r} {name}: {arrays[name].size} ranks, but group {group!r} has "
                                     f"{size} queries in another row or rank set: the rows must be evaluated on "
                                     "the same queries")
            hits.append(np.stack([arrays[name] < k for _, name, k in specs], axis=1))
        hit = np.concatenate(hits, axis=1).astype(np.float64)  # [Q, rows * metrics]
        counts = resample_counts(size, n_boot, rng).astype(np.float64)
        scale = 100.0 / size
        values.append((hit.sum(axis=0) * scale).reshape(len(rows), len(specs)))
        reps.append((counts @ hit * scale).reshape(n_boot, len(rows), len(specs)))
        metrics += [m for m, _, _ in specs]
    value = np.concatenate(values, axis=1)
    rep = np.concatenate(reps, axis=2)
    for name, parts in averages.items():
        unknown = [p for p in parts if p not in metrics]
        if unknown:
            raise InputError(f"average {name!r} of unknown metric(s) {unknown}; have {metrics}")
        idx = [metrics.index(p) for p in parts]
        value = np.concatenate([value, value[:, idx].mean(axis=1, keepdims=True)], axis=1)
        rep = np.concatenate([rep, rep[:, :, idx].mean(axis=2, keepdims=True)], axis=2)
        metrics.append(name)
    lo, hi = _percentiles(rep, level)  # [rows, metrics]
    as_dict = lambda a: {r: dict(zip(metrics, a[i].tolist())) for i, r in enumerate(rows)}  # noqa: E731
    out = BootstrapIntervals(rows, metrics, as_dict(value), as_dict(lo), as_dict(hi), n_boot=n_boot, seed=seed,
                             level=level, replicates={r: rep[:, i] for i, r in enumerate(rows)})
    if len(rows) > 1:
        d_lo, d_hi = _percentiles(rep[:, 1:] - rep[:, :-1], level)
        d_val = value[1:] - value[:-1]
        for i, r in enumerate(rows[1:]):
            out.diff_value[r] = dict(zip(metrics, d_val[i].tolist()))
            out.diff_low[r] = dict(zip(metrics, d_lo[i].tolist()))
            out.diff_high[r] = dict(zip(metrics, d_hi[i].tolist()))
    return out


def fashioniq_intervals(ranks: Mapping[str, Mapping[str, Any]], *, ks: Sequence[int] = FASHIONIQ_KS,
                        n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                        level: float = DEFAULT_LEVEL) -> BootstrapIntervals:
    """FashionIQ: intervals of `<category>_recall@K` and `average_recall@K` for each row.

    Args:
        ranks: {row: {"dress": ranks, "shirt": ranks, "toptee": ranks}}, each the per-query
            target ranks of that category's val queries (`cir_lib.metrics.target_ranks`), in the
            same query order in every row. Rows in table order (differences are to the row above).
        ks: cut-offs; n_boot, seed, level: see `bootstrap_recalls`.

    Returns:
        `BootstrapIntervals` with metrics named as the table's columns ("shirt_recall@10", ...,
        "average_recall@50"); each category resampled on its own, the average's replicate the
        mean of the categories' replicates.

    Example:
        >>> out = fashioniq_intervals({"stage 1 sum": {"dress": r_d, "shirt": r_s, "toptee": r_t}})
        >>> out.low["stage 1 sum"]["average_recall@10"]
    """
    groups = {c: [(f"{c}_recall@{k}", c, k) for k in ks] for c in FASHIONIQ_CATEGORIES}
    averages = {f"average_recall@{k}": [f"{c}_recall@{k}" for c in FASHIONIQ_CATEGORIES] for k in ks}
    return bootstrap_recalls(ranks, groups, averages, n_boot=n_boot, seed=seed, level=level)


def cirr_intervals(ranks: Mapping[str, Mapping[str, Any]], *, ks: Sequence[int] = CIRR_KS,
                   subset_ks: Sequence[int] = CIRR_SUBSET_KS, n_boot: int = DEFAULT_N_BOOT, seed: int = 0,
                   level: float = DEFAULT_LEVEL) -> BootstrapIntervals:
    """CIRR: intervals of `recall@K` and `recall_subset@K` for each row.

    Args:
        ranks: {row: {"ranks": ranks, "subset_ranks": subset ranks}} as `cir_lib.metrics.cirr_ranks`
            returns them (MISS_RANK counts as a miss), same queries in every row, rows in table order.
        ks, subset_ks: cut-offs; n_boot, seed, level: see `bootstrap_recalls`.

    Returns:
        `BootstrapIntervals` with metrics "recall@1" ... "recall_subset@3" (one resample per
        replicate shared by both rankings: they rank the same queries).

    Example:
        >>> r, s = cirr_ranks(q, x, split.reference_indices, split.target_indices, split.member_indices)
        >>> cirr_intervals({"stage 1 sum": {"ranks": r, "subset_ranks": s}}).high["stage 1 sum"]["recall@1"]
    """
    specs = [(f"recall@{k}", "ranks", k) for k in ks] + [(f"recall_subset@{k}", "subset_ranks", k) for k in subset_ks]
    return bootstrap_recalls(ranks, {"queries": specs}, n_boot=n_boot, seed=seed, level=level)
