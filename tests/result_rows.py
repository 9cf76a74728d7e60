"""Test helpers (not a test file): synthetic evaluation rows and per-query ranks, as
`cir_lib.evaluate` would return them, for the tables and figures tests.

    >>> rows, ranks = cirr_ranked(METHODS, seed=1)
    >>> table = tables.cirr_table(rows, ranks=ranks)
"""

from __future__ import annotations

import numpy as np

from cir_lib.tables import METHODS

RNG = np.random.default_rng(0)


CATEGORIES = ("shirt", "dress", "toptee")


def fashioniq_rows(with_average=True, methods=METHODS):
    rows = {}
    for i, method in enumerate(reversed(methods)):  # given out of order on purpose
        per = {c: {"recall@10": float(RNG.uniform(0, 60)) + i / 7, "recall@50": float(RNG.uniform(40, 99))}
               for c in ("dress", "shirt", "toptee")}
        if with_average:
            per["average"] = {k: float(np.mean([per[c][k] for c in ("dress", "shirt", "toptee")]))
                              for k in ("recall@10", "recall@50")}
        per["skipped"] = {"queries": 0}  # extra keys from evaluate are ignored
        rows[method] = per
    return rows


def cirr_rows(methods=METHODS):
    keys = [f"recall@{k}" for k in (1, 5, 10, 50)] + [f"recall_subset@{k}" for k in (1, 2, 3)]
    return {m: {k: float(RNG.uniform(0, 100)) + 1 / 3 for k in keys} for m in methods}


def cirr_ranked(methods, n=400, seed=0):
    """Random per-query CIRR ranks and the metric rows they give (as evaluate would return them)."""
    rng = np.random.default_rng(seed)
    ranks, rows = {}, {}
    for i, m in enumerate(methods):
        r, s = rng.integers(0, 120 - 20 * i, n), rng.integers(0, 5, n)
        ranks[m] = {"ranks": r, "subset_ranks": s}
        rows[m] = {**{f"recall@{k}": 100 * float(np.mean(r < k)) for k in (1, 5, 10, 50)},
                   **{f"recall_subset@{k}": 100 * float(np.mean(s < k)) for k in (1, 2, 3)}}
    return rows, ranks


def fashioniq_ranked(methods, seed=0):
    rng = np.random.default_rng(seed)
    ranks, rows = {}, {}
    for i, m in enumerate(methods):
        ranks[m] = {c: rng.integers(0, 150 - 30 * i, n) for c, n in zip(CATEGORIES, (90, 110, 70))}
        rows[m] = {c: {f"recall@{k}": 100 * float(np.mean(ranks[m][c] < k)) for k in (10, 50)} for c in CATEGORIES}
    return rows, ranks
