"""Bootstrap intervals of cir_lib.intervals against a plain loop on seeded random ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cir_lib import intervals
from cir_lib.errors import InputError
from cir_lib.metrics import MISS_RANK


def _naive_replicates(rank_sets, specs, n_boot, rng):
    """One loop iteration per replicate, drawing as the module does: {row: [n_boot, metrics]}."""
    size = len(next(iter(rank_sets.values()))[specs[0][1]])
    draws = rng.integers(0, size, size=(n_boot, size))
    out = {row: np.empty((n_boot, len(specs))) for row in rank_sets}
    for b in range(n_boot):
        for row, ranks in rank_sets.items():
            for j, (_, name, k) in enumerate(specs):
                out[row][b, j] = 100.0 * np.mean(np.asarray(ranks[name])[draws[b]] < k)
    return out


def _naive_interval(samples, level=0.95):
    tail = (1 - level) / 2 * 100
    return np.percentile(samples, tail), np.percentile(samples, 100 - tail)


def _cirr_ranks(rng, rows, n):
    out = {}
    for row in rows:
        ranks = rng.integers(0, 80, n)
        ranks[rng.random(n) < 0.02] = MISS_RANK
        subset = rng.integers(0, 5, n)
        out[row] = {"ranks": ranks, "subset_ranks": torch.as_tensor(subset)}  # tensors accepted too
    return out


def test_cirr_intervals_match_a_plain_loop():
    rng = np.random.default_rng(3)
    rows = ["zero-shot sum", "stage 1 sum", "stage 1 + Combiner"]
    ranks = _cirr_ranks(rng, rows, 157)
    got = intervals.cirr_intervals(ranks, n_boot=60, seed=11)
    specs = [(f"recall@{k}", "ranks", k) for k in (1, 5, 10, 50)] + \
            [(f"recall_subset@{k}", "subset_ranks", k) for k in (1, 2, 3)]
    reps = _naive_replicates(ranks, specs, 60, np.random.default_rng(11))
    for row in rows:
        for j, (metric, name, k) in enumerate(specs):
            point = 100.0 * np.mean(np.asarray(ranks[row][name]) < k)
            assert got.value[row][metric] == pytest.approx(point)
            lo, hi = _naive_interval(reps[row][:, j])
            assert got.low[row][metric] == pytest.approx(lo) and got.high[row][metric] == pytest.approx(hi)
    for above, row in zip(rows, rows[1:]):
        for j, (metric, _, _) in enumerate(specs):
            lo, hi = _naive_interval(reps[row][:, j] - reps[above][:, j])
            assert got.diff_low[row][metric] == pytest.approx(lo)
            assert got.diff_high[row][metric] == pytest.approx(hi)
            assert got.diff_value[row][metric] == pytest.approx(got.value[row][metric] - got.value[above][metric])
    assert rows[0] not in got.diff_value
    value, lo, hi = got.paired_difference(rows[2], rows[0])
    naive = _naive_interval(reps[rows[2]][:, 0] - reps[rows[0]][:, 0])
    assert (lo["recall@1"], hi["recall@1"]) == pytest.approx(naive)


def test_fashioniq_categories_resampled_independently_and_averaged():
    rng = np.random.default_rng(5)
    sizes = {"dress": 61, "shirt": 77, "toptee": 53}
    rows = ["stage 1 sum", "stage 1 + Combiner"]
    ranks = {r: {c: rng.integers(0, 120, n) for c, n in sizes.items()} for r in rows}
    got = intervals.fashioniq_intervals(ranks, n_boot=40, seed=2)
    draw = np.random.default_rng(2)  # the module draws one block per category, in category order
    reps = {}
    for c in ("dress", "shirt", "toptee"):
        specs = [(f"{c}_recall@{k}", c, k) for k in (10, 50)]
        for row, r in _naive_replicates({row: ranks[row] for row in rows}, specs, 40, draw).items():
            reps.setdefault(row, {}).update({m: r[:, j] for j, (m, _, _) in enumerate(specs)})
    for row in rows:
        for k in (10, 50):
            avg = np.mean([reps[row][f"{c}_recall@{k}"] for c in sizes], axis=0)
            assert (got.low[row][f"average_recall@{k}"], got.high[row][f"average_recall@{k}"]) == \
                pytest.approx(_naive_interval(avg))
            points = [100 * np.mean(ranks[row][c] < k) for c in sizes]
            assert got.value[row][f"average_recall@{k}"] == pytest.approx(np.mean(points))
            lo, hi = _naive_interval(reps[row][f"shirt_recall@{k}"])
            assert (got.low[row][f"shirt_recall@{k}"], got.high[row][f"shirt_recall@{k}"]) == pytest.approx((lo, hi))
    other = np.mean([reps["stage 1 + Combiner"][f"{c}_recall@10"] - reps["stage 1 sum"][f"{c}_recall@10"]
                     for c in sizes], axis=0)
    assert (got.diff_low["stage 1 + Combiner"]["average_recall@10"],
            got.diff_high["stage 1 + Combiner"]["average_recall@10"]) == pytest.approx(_naive_interval(other))


def test_seeded_and_width_near_the_normal_approximation():
    rng = np.random.default_rng(0)
    n, p = 4000, 0.3
    ranks = {"a": {"ranks": (rng.random(n) >= p).astype(np.int64) * 10, "subset_ranks": np.zeros(n, np.int64)}}
    one = intervals.cirr_intervals(ranks, n_boot=2000, seed=1)
    assert one.low == intervals.cirr_intervals(ranks, n_boot=2000, seed=1).low
    assert one.low != intervals.cirr_intervals(ranks, n_boot=2000, seed=2).low
    r = one.value["a"]["recall@1"] / 100
    half = (one.high["a"]["recall@1"] - one.low["a"]["recall@1"]) / 2
    expect = 1.96 * np.sqrt(r * (1 - r) / n) * 100
    assert half == pytest.approx(expect, rel=0.1)
    assert one.low["a"]["recall@1"] < one.value["a"]["recall@1"] < one.high["a"]["recall@1"]
    assert one.low["a"]["recall_subset@1"] == one.high["a"]["recall_subset@1"] == 100.0


def test_paired_difference_of_identical_rows_is_exactly_zero():
    rng = np.random.default_rng(1)
    r = rng.integers(0, 30, 300)
    got = intervals.cirr_intervals({"x": {"ranks": r, "subset_ranks": r % 5},
                                    "y": {"ranks": r.copy(), "subset_ranks": r % 5}}, n_boot=50)
    assert set(got.diff_low["y"].values()) == {0.0} and set(got.diff_high["y"].values()) == {0.0}


def test_bad_inputs_are_refused():
    good = np.arange(10)
    with pytest.raises(InputError, match="subset_ranks"):
        intervals.cirr_intervals({"a": {"ranks": good}})
    with pytest.raises(InputError, match="same queries"):
        intervals.cirr_intervals({"a": {"ranks": good, "subset_ranks": good},
                                  "b": {"ranks": good[:5], "subset_ranks": good[:5]}})
    with pytest.raises(InputError, match="integers"):
        intervals.cirr_intervals({"a": {"ranks": good * 0.5, "subset_ranks": good}})
    with pytest.raises(InputError, match="n_boot"):
        intervals.cirr_intervals({"a": {"ranks": good, "subset_ranks": good}}, n_boot=1)
    with pytest.raises(InputError, match="toptee"):
        intervals.fashioniq_intervals({"a": {"dress": good, "shirt": good}})


def test_point_estimates_equal_the_metric_functions():
    from cir_lib.metrics import cirr_ranks, cirr_recall

    g = torch.Generator().manual_seed(8)
    q, x = torch.randn(211, 12, generator=g), torch.randn(150, 12, generator=g)
    members = torch.stack([torch.randperm(150, generator=g)[:6] for _ in range(211)])
    reference, target = members[:, 0], members[:, 1]
    r, s = cirr_ranks(q, x, reference, target, members)
    got = intervals.cirr_intervals({"a": {"ranks": r, "subset_ranks": s}}, n_boot=10).value["a"]
    want = cirr_recall(q, x, reference, target, members)
    assert got == pytest.approx(want, abs=1e-9)
