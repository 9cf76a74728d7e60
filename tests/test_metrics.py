"""The exact metrics and rankings against naive per-query sorts, with exact ties, on random data
and on the real CIRR val / FashionIQ val structures (random features)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cir_lib import metrics
from cir_lib.errors import CirError, InputError
from cir_lib.metrics import cirr_rankings, cirr_recall, fashioniq_recall, rank_subset, target_ranks, top_k


# --------------------------------------------------------------------------- naive reference


def naive_similarities(q: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    """Cosine similarities from one float32 product of the normalized features (ties exact)."""
    return (F.normalize(q.float(), dim=-1) @ F.normalize(x.float(), dim=-1).T).numpy()


def naive_order(row: np.ndarray, exclude: int | None = None) -> list[int]:
    """Index positions by descending similarity, lower position first on ties (python sort)."""
    values = row.tolist()
    order = sorted(range(len(values)), key=lambda j: (-values[j], j))
    return [j for j in order if j != exclude]


def position(order, j: int) -> int:
    """Place of j in an order (list or array); one past the end when absent."""
    hits = np.flatnonzero(np.asarray(order) == j)
    return int(hits[0]) if len(hits) else len(order) + 1


def lexsort_ranks(sims: np.ndarray, targets, exclude=None) -> list[int]:
    """Target ranks from a full lexicographic sort of every row (keys: -similarity, position);
    a second naive route, fast enough for the real val sizes."""
    positions = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
    order = np.lexsort((positions, -sims), axis=-1)
    targets = np.asarray(targets)[:, None]
    rank = np.argmax(order == targets, axis=1)
    if exclude is not None:
        ref_place = np.argmax(order == np.asarray(exclude)[:, None], axis=1)
        rank = rank - (ref_place < rank)
    return rank.tolist()


def naive_fashioniq(q, x, targets, ks, fast=False):
    sims = naive_similarities(q, x)
    if fast:
        ranks = lexsort_ranks(sims, targets)
    else:
        ranks = [position(naive_order(sims[i]), int(targets[i])) for i in range(len(targets))]
    return {f"recall@{k}": 100.0 * sum(r < k for r in ranks) / len(ranks) for k in ks}, ranks


def naive_cirr(q, x, refs, targets, members, ks=(1, 5, 10, 50), subset_ks=(1, 2, 3), fast=False):
    sims = naive_similarities(q, x)
    ranks, subset_ranks = [], []
    if fast:  # (the real structures never have target == reference)
        ranks = lexsort_ranks(sims, targets, exclude=refs)
    for i in range(len(targets)):
        ref, tgt = int(refs[i]), int(targets[i])
        if not fast:
            ranks.append(position(naive_order(sims[i], exclude=ref), tgt))
        subset = sorted((int(m) for m in members[i] if int(m) != ref), key=lambda j: (-float(sims[i, j]), j))
        subset_ranks.append(subset.index(tgt) if tgt in subset else len(subset) + 1)
    out = {f"recall@{k}": 100.0 * sum(r < k for r in ranks) / len(ranks) for k in ks}
    out.update({f"recall_subset@{k}": 100.0 * sum(r < k for r in subset_ranks) / len(ranks) for k in subset_ks})
    return out, ranks, subset_ranks


# --------------------------------------------------------------------------- data makers


def quantized(n: int, d: int, gen: torch.Generator, nonzeros: int = 4) -> torch.Tensor:
    """Rows with `nonzeros` entries of +-1 (norm 2 for 4): every cosine is a multiple of 1/4 and is
    computed exactly in float32, so ties are massive and exact whatever the summation order."""
    out = torch.zeros(n, d)
    for i in range(n):
        cols = torch.randperm(d, generator=gen)[:nonzeros]
        out[i, cols] = torch.randint(0, 2, (nonzeros,), generator=gen).float() * 2 - 1
    return out


def feature_sets(seed: int, nq: int, n: int, d: int):
    """(name, queries, index) with random, duplicated and quantized features."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(nq, d, generator=gen)
    x = torch.randn(n, d, generator=gen)
    # duplicated index: each image a copy of one of n // 4 distinct vectors (exact ties for targets)
    base = torch.randn(max(2, n // 4), d, generator=gen)
    x_dup = base[torch.randint(0, base.shape[0], (n,), generator=gen)] * (1 + torch.randint(0, 3, (n, 1), generator=gen))
    # duplicated queries: several queries share a feature, and some equal index features
    q_dup = q[torch.randint(0, max(1, nq // 3), (nq,), generator=gen)].clone()
    q_dup[: nq // 4] = x_dup[torch.randint(0, n, (nq // 4,), generator=gen)]
    return [
        ("random", q, x),
        ("duplicate index", q, x_dup),
        ("duplicate queries", q_dup, x_dup),
        ("quantized", quantized(nq, 16, gen), quantized(n, 16, gen)),
    ]


def random_cirr_structure(nq: int, n: int, gen: torch.Generator):
    """members [nq, 6] distinct, reference = one member, target = another member."""
    members = torch.stack([torch.randperm(n, generator=gen)[:6] for _ in range(nq)])
    pick = torch.stack([torch.randperm(6, generator=gen)[:2] for _ in range(nq)])
    refs = members.gather(1, pick[:, :1]).squeeze(1)
    targets = members.gather(1, pick[:, 1:]).squeeze(1)
    return refs, targets, members


def assert_metrics_equal(got: dict, want: dict):
    assert list(got) == list(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


# --------------------------------------------------------------------------- random data


@pytest.mark.parametrize("seed", [0, 1])
def test_fashioniq_recall_matches_naive(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    for name, q, x in feature_sets(seed, 120, 90, 24):
        targets = torch.randint(0, x.shape[0], (q.shape[0],), generator=gen)
        ks = (1, 5, 10, 50)
        want, want_ranks = naive_fashioniq(q, x, targets, ks)
        assert target_ranks(q, x, targets).tolist() == want_ranks, name
        assert_metrics_equal(fashioniq_recall(q, x, targets, ks=ks), want)


def test_fashioniq_ties_break_by_lower_index():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])  # 0, 1, 3 tie for query e0
    q = torch.tensor([[1.0, 0.0]] * 3)
    assert target_ranks(q, x, torch.tensor([0, 1, 3])).tolist() == [0, 1, 2]
    assert fashioniq_recall(q, x, torch.tensor([0, 1, 3]), ks=(1, 2, 3)) == pytest.approx(
        {"recall@1": 100 / 3, "recall@2": 200 / 3, "recall@3": 100.0})


def test_fashioniq_keeps_the_reference_in_the_ranking():
    """target == reference (query = the reference's own feature) is found first, not removed."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(50, 8, generator=gen)
    refs = torch.randint(0, 50, (40,), generator=gen)
    queries = x[refs] * 3.0  # scale does not matter: cosine similarity
    assert fashioniq_recall(queries, x, refs, ks=(1,)) == {"recall@1": 100.0}
    # and a reference that is not the target stays in the ranking ahead of a worse target
    targets = (refs + 1) % 50
    want, want_ranks = naive_fashioniq(queries, x, targets, (1, 10))
    assert min(want_ranks) >= 1
    assert target_ranks(queries, x, targets).tolist() == want_ranks
    assert_metrics_equal(fashioniq_recall(queries, x, targets, ks=(1, 10)), want)


@pytest.mark.parametrize("seed", [0, 1])
def test_cirr_recall_matches_naive(seed):
    gen = torch.Generator().manual_seed(200 + seed)
    for name, q, x in feature_sets(seed, 120, 90, 24):
        refs, targets, members = random_cirr_structure(q.shape[0], x.shape[0], gen)
        want, want_ranks, want_sub = naive_cirr(q, x, refs, targets, members)
        ranks, sub = metrics.cirr_ranks(q, x, refs, targets, members)
        assert ranks.tolist() == want_ranks, name
        assert sub.tolist() == want_sub, name
        assert_metrics_equal(cirr_recall(q, x, refs, targets, members), want)


def test_cirr_removes_the_reference():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8], [0.1, 0.9]])
    q = torch.tensor([[1.0, 0.0]])
    members = torch.tensor([[0, 1, 2, 3, 4, 5]])
    # reference 0 ties with target 1 and has a lower index: removed, the target is first
    got = cirr_recall(q, x, torch.tensor([0]), torch.tensor([1]), members, ks=(1,), subset_ks=(1,))
    assert got == {"recall@1": 100.0, "recall_subset@1": 100.0}
    # reference 1 is not ahead of target 0: nothing changes
    got = cirr_recall(q, x, torch.tensor([1]), torch.tensor([2]), members, ks=(1, 2), subset_ks=(1, 2))
    assert got == {"recall@1": 0.0, "recall@2": 100.0, "recall_subset@1": 0.0, "recall_subset@2": 100.0}
    # target == reference cannot be retrieved once the reference is removed
    got = cirr_recall(q, x, torch.tensor([2]), torch.tensor([2]), members, ks=(1, 50), subset_ks=(3,))
    assert got == {"recall@1": 0.0, "recall@50": 0.0, "recall_subset@3": 0.0}


def test_chunked_equals_unchunked():
    gen = torch.Generator().manual_seed(5)
    for name, q, x in feature_sets(7, 300, 150, 32):
        refs, targets, members = random_cirr_structure(q.shape[0], x.shape[0], gen)
        whole = dict(chunk_size=q.shape[0])
        for kw in (dict(chunk_size=64), dict(chunk_size=100), dict(max_block_bytes=1)):
            assert torch.equal(target_ranks(q, x, targets, **kw), target_ranks(q, x, targets, **whole)), name
            assert torch.equal(torch.stack(metrics.cirr_ranks(q, x, refs, targets, members, **kw)),
                               torch.stack(metrics.cirr_ranks(q, x, refs, targets, members, **whole))), name
            assert torch.equal(top_k(q, x, 20, refs, **kw), top_k(q, x, 20, refs, **whole)), name
            a = cirr_rankings(q, x, refs, members, 10, 3, **kw)
            b = cirr_rankings(q, x, refs, members, 10, 3, **whole)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), name


def test_block_rows_bounds_memory():
    assert metrics.block_rows(100_000, 1_000_000) == metrics.MIN_BLOCK_ROWS
    assert metrics.block_rows(4181, 2297) == 4181  # CIRR val fits in one block
    rows = metrics.block_rows(100_000, 10_000, max_block_bytes=64 * 2**20)
    assert 2 * rows * 10_000 * 6 <= 64 * 2**20  # blocks hold up to 2 * rows - 1 rows
    assert metrics.query_blocks(130, 64) == [(0, 65), (65, 130)]  # never below 64 rows
    assert metrics.query_blocks(64, 64) == [(0, 64)] and metrics.query_blocks(20, 64) == [(0, 20)]
    for q in (64, 127, 128, 1000, 100_000):
        sizes = [b - a for a, b in metrics.query_blocks(q, 64)]
        assert sum(sizes) == q and min(sizes) >= 64 and max(sizes) <= 127


# --------------------------------------------------------------------------- rankings


def test_top_k_matches_naive_with_ties():
    gen = torch.Generator().manual_seed(11)
    for name, q, x in feature_sets(11, 60, 80, 16):
        refs = torch.randint(0, x.shape[0], (q.shape[0],), generator=gen)
        sims = naive_similarities(q, x)
        got = top_k(q, x, 12).tolist()
        got_ex = top_k(q, x, 12, exclude_indices=refs).tolist()
        for i in range(q.shape[0]):
            assert got[i] == naive_order(sims[i])[:12], name
            assert got_ex[i] == naive_order(sims[i], exclude=int(refs[i]))[:12], name
        full = top_k(q, x, x.shape[0] - 1, exclude_indices=refs).tolist()
        assert all(int(refs[i]) not in full[i] for i in range(q.shape[0]))


def test_top_k_tie_straddling_the_cut():
    x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [1.0, 0.1]])
    q = torch.tensor([[1.0, 0.0]])
    assert top_k(q, x, 2).tolist() == [[1, 2]]
    assert top_k(q, x, 3).tolist() == [[1, 2, 3]]
    assert top_k(q, x, 3, exclude_indices=torch.tensor([2])).tolist() == [[1, 3, 4]]


def test_subset_rankings_agree_with_recall_subset():
    gen = torch.Generator().manual_seed(12)
    for name, q, x in feature_sets(12, 100, 70, 16):
        refs, targets, members = random_cirr_structure(q.shape[0], x.shape[0], gen)
        sims = naive_similarities(q, x)
        order = rank_subset(q, x, refs, members)
        top, sub3 = cirr_rankings(q, x, refs, members, k=50, subset_k=3)
        assert order.shape == (100, 5) and torch.equal(sub3, order[:, :3])
        for i in range(q.shape[0]):
            ref = int(refs[i])
            want = sorted((int(m) for m in members[i] if int(m) != ref), key=lambda j: (-float(sims[i, j]), j))
            assert order[i].tolist() == want, name
            assert top[i].tolist() == naive_order(sims[i], exclude=ref)[:50], name
        _, sub_ranks = metrics.cirr_ranks(q, x, refs, targets, members)
        assert ((order == targets[:, None]).int().argmax(1) == sub_ranks).all(), name


# --------------------------------------------------------------------------- real structures


def _cirr_val_structure(real_annotations):
    root = real_annotations / "cirr"
    names = list(json.loads((root / "image_splits" / "split.rc2.val.json").read_text()))
    pos = {n: i for i, n in enumerate(names)}
    triplets = json.loads((root / "captions" / "cap.rc2.val.json").read_text())
    refs = torch.tensor([pos[t["reference"]] for t in triplets])
    targets = torch.tensor([pos[t["target_hard"]] for t in triplets])
    members = torch.tensor([[pos[m] for m in t["img_set"]["members"]] for t in triplets])
    return len(names), refs, targets, members


def test_cirr_val_structure_matches_naive(real_annotations):
    n, refs, targets, members = _cirr_val_structure(real_annotations)
    assert (n, len(targets)) == (2297, 4181)
    gen = torch.Generator().manual_seed(21)
    d = 64
    q = torch.randn(len(targets), d, generator=gen)
    x = torch.randn(n, d, generator=gen)
    # tied variant: the index holds only 400 distinct vectors, queries partly equal to index vectors
    x_tied = torch.randn(400, d, generator=gen)[torch.randint(0, 400, (n,), generator=gen)]
    q_tied = q.clone()
    q_tied[::3] = x_tied[torch.randint(0, n, (q_tied[::3].shape[0],), generator=gen)]
    for name, qq, xx in (("random", q, x), ("tied", q_tied, x_tied), ("quantized", quantized(len(q), 16, gen),
                                                                      quantized(n, 16, gen))):
        want, want_ranks, want_sub = naive_cirr(qq, xx, refs, targets, members, fast=True)
        ranks, sub = metrics.cirr_ranks(qq, xx, refs, targets, members)
        assert ranks.tolist() == want_ranks, name
        assert sub.tolist() == want_sub, name
        got = cirr_recall(qq, xx, refs, targets, members)
        assert_metrics_equal(got, want)
        assert all(0.0 <= v <= 100.0 for v in got.values())


@pytest.mark.parametrize("category", ["dress", "shirt", "toptee"])
def test_fashioniq_val_structure_matches_naive(real_annotations, category):
    root = real_annotations / "fashionIQ"
    names = json.loads((root / "image_splits" / f"split.{category}.val.json").read_text())
    pos = {n: i for i, n in enumerate(names)}
    triplets = json.loads((root / "captions" / f"cap.{category}.val.json").read_text())
    targets = torch.tensor([pos[t["target"]] for t in triplets])
    refs = torch.tensor([pos[t["candidate"]] for t in triplets])
    gen = torch.Generator().manual_seed(31)
    d = 32
    x = torch.randn(len(names), d, generator=gen)
    # query = reference + noise: the reference competes with the target, as in the real task
    q = x[refs] + 0.8 * torch.randn(len(refs), d, generator=gen)
    x_tied = x.clone()
    x_tied[torch.randperm(len(names), generator=gen)[:1000]] = x[targets[:1000]]  # copies of targets
    for name, qq, xx in (("random", q, x), ("tied", q, x_tied),
                         ("quantized", quantized(len(q), 16, gen), quantized(len(names), 16, gen))):
        want, want_ranks = naive_fashioniq(qq, xx, targets, (10, 50), fast=True)
        assert target_ranks(qq, xx, targets).tolist() == want_ranks, name
        got = fashioniq_recall(qq, xx, targets)
        assert_metrics_equal(got, want)
        assert list(got) == ["recall@10", "recall@50"]


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
    q, x = torch.randn(4, 8), torch.randn(10, 8)
    t = torch.tensor([0, 1, 2, 3])
    members = torch.tensor([[0, 1, 2, 3, 4, 5]] * 4)
    refs = torch.tensor([4, 4, 4, 4])
    cases = [
        (lambda: fashioniq_recall(q, torch.randn(10, 9), t), "dim 8"),
        (lambda: fashioniq_recall(q[0], x, t[:1]), "2-D"),
        (lambda: fashioniq_recall(q.long(), x, t), "floats"),
        (lambda: fashioniq_recall(q[:0], x, t[:0]), "empty"),
        (lambda: fashioniq_recall(torch.full((4, 8), float("nan")), x, t), "NaN"),
        (lambda: fashioniq_recall(q, x, torch.tensor([0, 1, 2, 10])), "target_indices[3] = 10 is out of range"),
        (lambda: fashioniq_recall(q, x, torch.tensor([0, -1, 2, 3])), "out of range"),
        (lambda: fashioniq_recall(q, x, t.float()), "integer"),
        (lambda: fashioniq_recall(q, x, t[:3]), "shape (4,)"),
        (lambda: fashioniq_recall(q, x, t, ks=(0, 10)), "positive integers"),
        (lambda: cirr_recall(q, x, refs, t, members[:, :5].clone().fill_(0) + torch.arange(5) + 5), "reference"),
        (lambda: cirr_recall(q, x, refs, torch.tensor([0, 1, 2, 9]), members), "does not contain the target"),
        (lambda: cirr_recall(q, x, refs, t, torch.tensor([[0, 0, 1, 2, 3, 4]] * 4)), "repeats"),
        (lambda: cirr_recall(q, x, refs, t, members[0]), "shape (4, 6)"),
        (lambda: cirr_recall(q, x, refs, t, members + 5), "out of range"),
        (lambda: top_k(q, x, 11), "k must be"),
        (lambda: top_k(q, x, 10, exclude_indices=refs), "k must be"),
        (lambda: top_k(q, x, 3, chunk_size=0), "chunk_size"),
        (lambda: cirr_rankings(q, x, refs, members, k=5, subset_k=6), "subset_k"),
    ]
    for call, fragment in cases:
        with pytest.raises(InputError) as info:
            call()
        assert fragment in str(info.value)
        assert isinstance(info.value, ValueError) and isinstance(info.value, CirError)


def test_recall_from_ranks_gives_the_metric_functions_numbers():
    g = torch.Generator().manual_seed(21)
    q, x = torch.randn(130, 16, generator=g), torch.randn(300, 16, generator=g)
    target = torch.randint(0, 300, (130,), generator=g)
    ranks = target_ranks(q, x, target)
    assert metrics.recall_from_ranks(ranks, (10, 50)) == fashioniq_recall(q, x, target)
    assert metrics.recall_from_ranks(ranks.numpy(), (10, 50)) == fashioniq_recall(q, x, target)
    members = torch.stack([torch.randperm(300, generator=g)[:6] for _ in range(130)])
    reference, target = members[:, 0], members[:, 1]
    r, s = metrics.cirr_ranks(q, x, reference, target, members)
    got = {**metrics.recall_from_ranks(r, (1, 5, 10, 50)), **metrics.recall_from_ranks(s, (1, 2, 3), "recall_subset")}
    assert got == cirr_recall(q, x, reference, target, members)
    with pytest.raises(InputError, match="1-D integer"):
        metrics.recall_from_ranks(torch.zeros(3), (1,))
    with pytest.raises(InputError, match="ks"):
        metrics.recall_from_ranks(ranks, (0,))
