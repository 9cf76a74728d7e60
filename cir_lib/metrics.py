"""Exact retrieval metrics of the two benchmarks, and the rankings the CIRR submission needs.

Protocol (the paper's, and the CIRR server's):
- Ranking by descending cosine similarity; ties broken by the lower index position first.
- FashionIQ: the whole index is ranked, the reference included (the paper's protocol).
- CIRR: the reference is removed from the ranking, and recall_subset@K ranks only the img_set
  members other than the reference (5 images).

How it is computed. Nothing is sorted and no names are compared: for each query, the rank of
its target (0 = first) is

    #{j : s_j > s_t} + #{j < t : s_j == s_t}        (minus 1 if the removed reference is ahead)

where s is the query's row of cosine similarities. Queries are processed in blocks of rows; a
block's similarities come from one matrix product `q_block @ index.T`, and the target's
similarity is read out of that same product (never recomputed by another route). Matrix
products may round the same dot product differently depending on the shapes involved, so
reading every number of a comparison out of one product is what makes exact ties (duplicate
index images, duplicate or quantized features) detected consistently: within one product, two
identical index vectors get bit-identical similarities (checked with MKL on CPU; GEMM kernels
reduce every output element in the same order). Blocks have at least 64 rows: with fewer, MKL
switches to matrix-vector kernels that round differently, so a chunked run could differ from an
unchunked one in the last bit (and hence on near-ties).

On the CPU the counting passes go through NumPy (compare + count_nonzero), several times faster
than torch's boolean reductions; at CIRR-val size the whole metric costs about 1.5x the bare
similarity product.

Memory: besides the inputs, one normalized copy of the queries and of the index
((Q + N) * d * 4 bytes in float32) and one block of about 6 bytes * rows * N (similarities,
a boolean scratch buffer, slack) of rows to 2 * rows - 1 rows, where
rows = clamp(max_block_bytes // 2 // (6 * N), 64, Q) (half the budget: a block may hold up to twice
that); both buffers are allocated once and reused by every block. With the default
256 MiB budget, 100,000 queries x 1,000,000 index images at d = 640 need the 2.56 GB index copy
plus blocks of 64-65 rows (about 390 MB), whatever the number of queries.

Features may live on any device; the work happens there. Half-precision features are upcast to
float32.
"""

from __future__ import annotations

import logging
from typing import Iterator, Sequence

import numpy as np
import torch

from cir_lib.constants import CIRR_KS, CIRR_SET_SIZE, CIRR_SUBSET_KS, FASHIONIQ_KS
from cir_lib.errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_MAX_BLOCK_BYTES = 256 * 2**20  # similarity block budget (plus masks), per block of queries
MIN_BLOCK_ROWS = 64  # below this, BLAS switches kernels (matrix-vector paths), rounding differently
_BYTES_PER_BLOCK_ENTRY = 6  # float32 similarity + boolean scratch + slack (tie-row masks)
MISS_RANK = torch.iinfo(torch.long).max  # rank of a target that cannot be retrieved (CIRR target == reference)


# --------------------------------------------------------------------------- validation


def _as_features(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except Exception as err:  # noqa: BLE001 - report any conversion failure the same way
            raise InputError(f"{name} must be a 2-D float tensor [count, dim]; got {type(value).__name__}") from err
    if value.ndim != 2:
        raise InputError(f"{name} must be a 2-D float tensor [count, dim]; got shape {tuple(value.shape)}")
    if not value.is_floating_point():
        raise InputError(f"{name} must hold floats; got dtype {value.dtype} (convert it with .float())")
    if value.shape[0] == 0:
        raise InputError(f"{name} is empty (shape {tuple(value.shape)}): nothing to rank")
    if value.shape[1] == 0:
        raise InputError(f"{name} has zero feature dimensions (shape {tuple(value.shape)})")
    return value


def _normalized(name: str, value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """L2-normalize rows exactly as F.normalize does, checking finiteness on the norms only
    (a NaN or infinite entry makes its row's norm NaN or infinite)."""
    value = value.to(dtype)
    norms = torch.linalg.vector_norm(value, ord=2, dim=1, keepdim=True)
    if not bool(torch.isfinite(norms).all()):
        bad = int((~torch.isfinite(norms)).squeeze(1).nonzero()[0, 0])
        raise InputError(f"{name} holds NaN or infinite values (first in row {bad}); "
                         "check the encoder's output (e.g. fp16 overflow) before ranking")
    return value / norms.clamp_min(1e-12)


def _prepare_features(query_features, index_features) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate both feature matrices and return them L2-normalized in a common float dtype."""
    q = _as_features("query_features", query_features)
    x = _as_features("index_features", index_features)
    if q.shape[1] != x.shape[1]:
        raise InputError(
            f"query_features have dim {q.shape[1]} but index_features have dim {x.shape[1]}: "
            "encode queries and index with the same backbone (and combiner output dim)")
    if q.device != x.device:
        raise InputError(f"query_features are on {q.device} but index_features on {x.device}: "
                         "move both to the same device")
    dtype = torch.promote_types(q.dtype, x.dtype)
    if dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32
    q, x = q.detach(), x.detach()  # metrics never need gradients
    return _normalized("query_features", q, dtype), _normalized("index_features", x, dtype)


def _to_tensor(name: str, value, shape_text: str) -> torch.Tensor:
    """`value` as a tensor, or an InputError naming the integer shape it should have."""
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except Exception as err:  # noqa: BLE001 - report any conversion failure the same way
        raise InputError(f"{name} must be an integer tensor of shape {shape_text}; "
                         f"got {type(value).__name__}") from err


def _as_indices(name: str, value, shape: tuple[int, ...], num_index: int, device) -> torch.Tensor:
    """An integer tensor of `shape` with every entry a position in an index of `num_index`."""
    value = _to_tensor(name, value, str(tuple(shape)))
    if value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
        raise InputError(f"{name} must hold integer index positions; got dtype {value.dtype} "
                         "(use Split.target_indices / reference_indices / member_indices)")
    if tuple(value.shape) != tuple(shape):
        raise InputError(f"{name} must have shape {tuple(shape)} (one entry per query); "
                         f"got {tuple(value.shape)}")
    value = value.to(device=device, dtype=torch.long)
    if value.numel():
        out = (value < 0) | (value >= num_index)
        if bool(out.any()):
            pos = tuple(int(i) for i in out.nonzero()[0])
            where = pos[0] if len(pos) == 1 else pos
            raise InputError(
                f"{name}[{where}] = {int(value[pos])} is out of range for an index of {num_index} "
                f"images: entries must be positions 0..{num_index - 1} into index_features")
    return value


def _check_ks(name: str, ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise InputError(f"{name} must be a non-empty sequence of positive integers; got {ks!r}")
    return ks


def _check_members(members: torch.Tensor, reference: torch.Tensor, target: torch.Tensor | None) -> None:
    """Each row of members holds distinct positions including the reference (and the target)."""
    if members.shape[1] < 2:
        raise InputError(f"member_indices must have at least 2 columns (CIRR img_set: 6 members, "
                         f"the reference included); got shape {tuple(members.shape)}")
    sorted_m = members.sort(dim=1).values
    dup = (sorted_m[:, 1:] == sorted_m[:, :-1]).any(dim=1)
    if bool(dup.any()):
        q = int(dup.nonzero()[0, 0])
        raise InputError(f"member_indices[{q}] = {members[q].tolist()} repeats a member: "
                         "each img_set must list distinct images")
    for name, idx in (("reference", reference), ("target", target)):
        if idx is None:
            continue
        missing = ~(members == idx[:, None]).any(dim=1)
        if bool(missing.any()):
            q = int(missing.nonzero()[0, 0])
            raise InputError(f"member_indices[{q}] = {members[q].tolist()} does not contain the "
                             f"{name} {int(idx[q])}: the CIRR img_set must include both the reference "
                             "and the target")


# --------------------------------------------------------------------------- blocks


def block_rows(num_queries: int, num_index: int, max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES) -> int:
    """Queries per block so a block's similarities and masks stay near `max_block_bytes`.

    Args:
        num_queries: number of query rows (Q).
        num_index: number of index images (N).
        max_block_bytes: the budget; never fewer than 64 rows per block (or Q when smaller). A block
            holds `rows` to 2 * rows - 1 rows (see `query_blocks`), so `rows` is sized from half of it.
    Returns:
        The number of rows per block.
    Example:
        >>> block_rows(100_000, 1_000_000)
        64
    """
    rows = max_block_bytes // 2 // (_BYTES_PER_BLOCK_ENTRY * max(num_index, 1))
    return int(max(1, min(num_queries, max(MIN_BLOCK_ROWS, rows))))


def query_blocks(num_queries: int, rows: int) -> list[tuple[int, int]]:
    """Balanced [start, end) blocks of `rows` to 2 * rows - 1 rows (one block when Q <= rows).

    Never smaller than `rows`: below 64 rows BLAS changes kernels and rounding (module docstring)."""
    count = max(1, num_queries // rows)
    base, extra = divmod(num_queries, count)  # the first `extra` blocks get one row more
    bounds = [0]
    for i in range(count):
        bounds.append(bounds[-1] + base + (i < extra))
    return list(zip(bounds[:-1], bounds[1:]))


def _similarity_blocks(q: torch.Tensor, x: torch.Tensor, chunk_size: int | None,
                       max_block_bytes: int) -> Iterator[tuple[int, int, torch.Tensor, np.ndarray | None]]:
    """Yield (start, end, q[start:end] @ x.T, scratch) over blocks of normalized queries.

    The similarity tensor and the boolean scratch buffer (CPU only, else None) are reused from
    block to block: use them before asking for the next block."""
    if chunk_size is None:
        rows = block_rows(q.shape[0], x.shape[0], max_block_bytes)
    else:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise InputError(f"chunk_size must be a positive integer (queries per block); got {chunk_size!r}")
        rows = chunk_size
    xt = x.T
    blocks = query_blocks(q.shape[0], rows)
    # one buffer reused by every block: fresh multi-hundred-MB allocations per block would cost
    # page faults (system time) comparable to the product itself at 1,000,000 index images
    buffer = torch.empty(blocks[0][1] - blocks[0][0], x.shape[0], dtype=q.dtype, device=q.device)
    scratch = np.empty(tuple(buffer.shape), dtype=bool) if buffer.device.type == "cpu" else None
    for start, end in blocks:
        sims = buffer[: end - start]
        with torch.no_grad():
            torch.matmul(q[start:end], xt, out=sims)
        yield start, end, sims, scratch


# --------------------------------------------------------------------------- ranks


def _count_above(sims: torch.Tensor, threshold: torch.Tensor, strict: bool = True,
                 scratch: np.ndarray | None = None) -> torch.Tensor:
    """Per row, how many entries are > (strict) or >= the row's threshold: LongTensor [B].

    On the CPU this goes through NumPy, whose compare-and-count is several times faster than
    torch's boolean reductions (the counting passes would otherwise cost as much as the product).
    `scratch`: a reusable boolean buffer of at least sims' size (see `_similarity_blocks`)."""
    if sims.device.type == "cpu":
        a, b = sims.numpy(), threshold.numpy()
        mask = np.empty(a.shape, dtype=bool) if scratch is None else scratch.reshape(-1)[: a.size].reshape(a.shape)
        (np.greater if strict else np.greater_equal)(a, b, out=mask)
        return torch.from_numpy(np.count_nonzero(mask, axis=1)).to(torch.long)
    return (sims > threshold if strict else sims >= threshold).sum(dim=1)


def _block_target_ranks(sims: torch.Tensor, target: torch.Tensor, exclude: torch.Tensor | None,
                        scratch: np.ndarray | None = None) -> torch.Tensor:
    """Rank (0-based) of each row's target in a block of similarities, under the tie rule.

    `exclude` (one index position per row, or None) is removed from the ranking; a row whose
    target is its excluded item gets MISS_RANK (never retrieved)."""
    n = sims.shape[1]
    t = sims.gather(1, target[:, None])  # the target's similarity, from the same product
    rank = _count_above(sims, t, strict=True, scratch=scratch)
    tied = (_count_above(sims, t, strict=False, scratch=scratch) - rank) > 1  # another image has exactly the target's similarity
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(1)
        cols = torch.arange(n, device=sims.device)
        before = ((sims[rows] == t[rows]) & (cols[None, :] < target[rows, None])).sum(dim=1)
        rank[rows] += before
    if exclude is not None:
        s_ex = sims.gather(1, exclude[:, None]).squeeze(1)
        t1 = t.squeeze(1)
        ahead = (s_ex > t1) | ((s_ex == t1) & (exclude < target))
        rank -= ahead.to(torch.long)
        rank[exclude == target] = MISS_RANK
    return rank


def _block_subset_order(sims: torch.Tensor, members: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Members other than the reference, best first under the tie rule: LongTensor [B, M - 1]."""
    keep = members != reference[:, None]
    # each row has exactly one reference entry (checked), so the kept ones reshape to M - 1 columns
    kept = members[keep].view(members.shape[0], members.shape[1] - 1)
    s = sims.gather(1, kept)
    # sort by index position, then stable sort by descending similarity: ties keep lower index first
    by_index = kept.argsort(dim=1)
    kept, s = kept.gather(1, by_index), s.gather(1, by_index)
    by_sim = s.argsort(dim=1, descending=True, stable=True)
    return kept.gather(1, by_sim)


def _block_top_k(sims: torch.Tensor, k: int, exclude: torch.Tensor | None,
                 scratch: np.ndarray | None = None) -> torch.Tensor:
    """Top-k index positions per row (descending similarity, lower index first on ties)."""
    if exclude is not None:
        sims.scatter_(1, exclude[:, None], float("-inf"))
    vals, idx = sims.topk(k, dim=1)
    # topk's choice among equal values is unspecified: put selected ties in index order ...
    by_index = idx.argsort(dim=1)
    idx, vals = idx.gather(1, by_index), vals.gather(1, by_index)
    idx = idx.gather(1, vals.argsort(dim=1, descending=True, stable=True))
    # ... and where ties straddle the k-th place, take the lowest-index ones by a full stable sort
    kth = vals.min(dim=1, keepdim=True).values
    spill = _count_above(sims, kth, strict=False, scratch=scratch) > k
    if bool(spill.any()):
        rows = spill.nonzero().squeeze(1)
        idx[rows] = sims[rows].argsort(dim=1, descending=True, stable=True)[:, :k]
    return idx


def target_ranks(query_features, index_features, target_indices, exclude_indices=None, *,
                 chunk_size: int | None = None,
                 max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES) -> torch.Tensor:
    """Rank (0 = first) of each query's target in the index, by descending cosine similarity.

    Args:
        query_features: [Q, d] float tensor (normalized inside).
        index_features: [N, d] float tensor (normalized inside).
        target_indices: [Q] integer positions of the targets in the index.
        exclude_indices: optional [Q] positions removed from each query's ranking (CIRR: the
            reference). A query whose target is its excluded image gets MISS_RANK (a miss).
        chunk_size: queries per block (default: from max_block_bytes, see the module docstring).
        max_block_bytes: memory budget of one block.
    Returns:
        LongTensor [Q] on the features' device.
    Example:
        >>> q = torch.eye(3); x = torch.eye(3)
        >>> target_ranks(q, x, torch.tensor([0, 2, 1])).tolist()
        [0, 1, 1]
    """
    q, x = _prepare_features(query_features, index_features)
    nq, n = q.shape[0], x.shape[0]
    target = _as_indices("target_indices", target_indices, (nq,), n, q.device)
    exclude = None
    if exclude_indices is not None:
        exclude = _as_indices("exclude_indices", exclude_indices, (nq,), n, q.device)
    ranks = torch.empty(nq, dtype=torch.long, device=q.device)
    for start, end, sims, scratch in _similarity_blocks(q, x, chunk_size, max_block_bytes):
        ranks[start:end] = _block_target_ranks(
            sims, target[start:end], None if exclude is None else exclude[start:end], scratch)
    return ranks


def recall_from_ranks(ranks, ks: Sequence[int], prefix: str = "recall") -> dict[str, float]:
    """Recall@K in percent from per-query ranks (0 = first), exactly as the metric functions compute it.

    Lets a caller keep the ranks (e.g. for `cir_lib.intervals`) and still get the same numbers as
    `fashioniq_recall` / `cirr_recall`, from one ranking pass.

    Args:
        ranks: [Q] integer ranks, from `target_ranks` or `cirr_ranks` (MISS_RANK is a miss).
        ks: cut-offs K.
        prefix: key prefix, "recall" or "recall_subset".
    Returns:
        {f"{prefix}@{k}": percent}.
    Example:
        >>> recall_from_ranks(torch.tensor([0, 3, 12]), (1, 10))
        {'recall@1': 33.33333333333333, 'recall@10': 66.66666666666666}
    """
    ks = _check_ks("ks", ks)
    ranks = _to_tensor("ranks", ranks, "(Q,)")
    if ranks.ndim != 1 or ranks.numel() == 0 or ranks.is_floating_point() or ranks.dtype == torch.bool:
        raise InputError(f"ranks must be a non-empty 1-D integer tensor (one rank per query); "
                         f"got shape {tuple(ranks.shape)}, dtype {ranks.dtype}")
    return {f"{prefix}@{k}": float((ranks < k).double().mean().item() * 100.0) for k in ks}


# --------------------------------------------------------------------------- metrics


def fashioniq_recall(query_features, index_features, target_indices, ks: Sequence[int] = FASHIONIQ_KS, *,
                     chunk_size: int | None = None,
                     max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES) -> dict[str, float]:
    """FashionIQ Recall@K in percent: the target among the whole index (reference kept).

    Args:
        query_features: [Q, d] query features (combined reference + caption), any scale.
        index_features: [N, d] index image features, any scale.
        target_indices: [Q] positions of the targets in the index.
        ks: cut-offs K.
        chunk_size / max_block_bytes: memory control, see `target_ranks`.
    Returns:
        {"recall@10": ..., "recall@50": ...} in percent.
    Example:
        >>> fashioniq_recall(torch.eye(4), torch.eye(4), torch.arange(4), ks=(1,))
        {'recall@1': 100.0}
    """
    ks = _check_ks("ks", ks)
    ranks = target_ranks(query_features, index_features, target_indices,
                         chunk_size=chunk_size, max_block_bytes=max_block_bytes)
    return recall_from_ranks(ranks, ks, "recall")


def cirr_ranks(query_features, index_features, reference_indices, target_indices, member_indices, *,
               chunk_size: int | None = None,
               max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query CIRR ranks of the target: in the index without the reference, and in the subset.

    Args:
        query_features: [Q, d]; index_features: [N, d] (normalized inside).
        reference_indices, target_indices: [Q] index positions.
        member_indices: [Q, M] index positions of each img_set (M = 6, the reference and the
            target among them, all distinct).
        chunk_size / max_block_bytes: memory control, see `target_ranks`.
    Returns:
        (ranks [Q], subset_ranks [Q]) as LongTensors, 0 = first. The subset rank is the target's
        place among the members other than the reference. A target equal to its reference is
        removed with it: MISS_RANK in both (a warning is logged).
    Example:
        >>> members = torch.tensor([[0, 1, 2]])
        >>> cirr_ranks(torch.eye(3)[:1], torch.eye(3), torch.tensor([0]), torch.tensor([2]), members)
        (tensor([1]), tensor([1]))
    """
    q, x = _prepare_features(query_features, index_features)
    nq, n = q.shape[0], x.shape[0]
    reference = _as_indices("reference_indices", reference_indices, (nq,), n, q.device)
    target = _as_indices("target_indices", target_indices, (nq,), n, q.device)
    members = _as_indices_2d("member_indices", member_indices, nq, n, q.device)
    _check_members(members, reference, target)
    same = reference == target
    if bool(same.any()):
        logger.warning("%d CIRR queries have target == reference; with the reference removed from "
                       "the ranking they count as misses", int(same.sum()))
    ranks = torch.empty(nq, dtype=torch.long, device=q.device)
    subset_ranks = torch.empty(nq, dtype=torch.long, device=q.device)
    for start, end, sims, scratch in _similarity_blocks(q, x, chunk_size, max_block_bytes):
        tgt, ref, mem = target[start:end], reference[start:end], members[start:end]
        ranks[start:end] = _block_target_ranks(sims, tgt, ref, scratch)
        subset_ranks[start:end] = _block_subset_ranks(sims, tgt, ref, mem)
    return ranks, subset_ranks


def _block_subset_ranks(sims: torch.Tensor, tgt: torch.Tensor, ref: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
    """The target's rank among the img_set members other than the reference, under the tie rule."""
    t = sims.gather(1, tgt[:, None])
    s_m = sims.gather(1, mem)
    ahead = (s_m > t) | ((s_m == t) & (mem < tgt[:, None]))
    ahead &= (mem != ref[:, None]) & (mem != tgt[:, None])
    sub = ahead.sum(dim=1)
    sub[ref == tgt] = MISS_RANK  # the target was removed with the reference: a miss
    return sub


def ranks_from_scores(scores, target_indices, exclude_indices=None, member_indices=None) -> dict:
    """Per-query ranks from a score matrix (a composer of kind "scores"), by the same tie rule and
    exclusion as `target_ranks` / `cirr_ranks` on features.

    Args:
        scores: [Q, N] float scores of each query against each index image (higher is better).
        target_indices: [Q] positions of the targets.
        exclude_indices: optional [Q] positions removed from each query's ranking (CIRR: the reference).
        member_indices: optional [Q, M] img_set positions (with `exclude_indices` as the reference):
            adds "subset_ranks".
    Returns:
        {"ranks": LongTensor [Q]} and, with members, "subset_ranks".
    Example:
        >>> ranks_from_scores(torch.eye(3), torch.tensor([0, 2, 1]))["ranks"].tolist()
        [0, 1, 1]
    """
    sims = torch.as_tensor(scores)
    if sims.ndim != 2 or not sims.is_floating_point():
        raise InputError(f"scores must be a float matrix [queries, index], got {tuple(sims.shape)} {sims.dtype}")
    sims = sims.float().contiguous()
    nq, n = sims.shape
    target = _as_indices("target_indices", target_indices, (nq,), n, sims.device)
    exclude = None if exclude_indices is None else _as_indices("exclude_indices", exclude_indices, (nq,), n,
                                                                sims.device)
    out = {"ranks": _block_target_ranks(sims, target, exclude)}
    if member_indices is not None:
        if exclude is None:
            raise InputError("member_indices need exclude_indices (the reference of each query)")
        members = _as_indices_2d("member_indices", member_indices, nq, n, sims.device)
        _check_members(members, exclude, target)
        out["subset_ranks"] = _block_subset_ranks(sims, target, exclude, members)
    return out


def _as_indices_2d(name: str, value, nq: int, n: int, device) -> torch.Tensor:
    """[Q, M] integer positions (the CIRR img_sets)."""
    value = _to_tensor(name, value, f"({nq}, {CIRR_SET_SIZE})")
    if value.ndim != 2:
        raise InputError(f"{name} must be an integer tensor of shape ({nq}, {CIRR_SET_SIZE}) (the img_set of each "
                         f"query, reference included); got shape {tuple(value.shape)}")
    return _as_indices(name, value, (nq, value.shape[1]), n, device)


def cirr_recall(query_features, index_features, reference_indices, target_indices, member_indices,
                ks: Sequence[int] = CIRR_KS, subset_ks: Sequence[int] = CIRR_SUBSET_KS, *,
                chunk_size: int | None = None,
                max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES) -> dict[str, float]:
    """CIRR Recall@K and Recall_subset@K in percent (the reference removed from both rankings).

    Args:
        query_features: [Q, d] query features; index_features: [N, d] index image features.
        reference_indices, target_indices: [Q] index positions.
        member_indices: [Q, 6] index positions of each img_set (reference and target included).
        ks: cut-offs of the full ranking; subset_ks: cut-offs of the subset ranking.
        chunk_size / max_block_bytes: memory control, see `target_ranks`.
    Returns:
        {"recall@1": ..., "recall@5": ..., "recall@10": ..., "recall@50": ...,
         "recall_subset@1": ..., "recall_subset@2": ..., "recall_subset@3": ...}
    Example:
        >>> split = load_split(root, "cirr", "val")
        >>> cirr_recall(queries, index, split.reference_indices, split.target_indices,
        ...             split.member_indices)["recall@1"]
    """
    ks = _check_ks("ks", ks)
    subset_ks = _check_ks("subset_ks", subset_ks)
    ranks, subset_ranks = cirr_ranks(query_features, index_features, reference_indices, target_indices,
                                     member_indices, chunk_size=chunk_size, max_block_bytes=max_block_bytes)
    return {**recall_from_ranks(ranks, ks, "recall"), **recall_from_ranks(subset_ranks, subset_ks, "recall_subset")}


# --------------------------------------------------------------------------- rankings


def top_k(query_features, index_features, k: int, exclude_indices=None, *,
          chunk_size: int | None = None, max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES) -> torch.Tensor:
    """The k best index positions per query, best first (ties: lower index first).

    Args:
        query_features: [Q, d]; index_features: [N, d] (normalized inside).
        k: how many to return (at most N, or N - 1 with exclusions).
        exclude_indices: optional [Q] positions never returned (CIRR: the reference).
    Returns:
        LongTensor [Q, k].
    Example:
        >>> top_k(torch.eye(3), torch.eye(3), 2).tolist()
        [[0, 1], [1, 0], [2, 0]]
    """
    q, x = _prepare_features(query_features, index_features)
    nq, n = q.shape[0], x.shape[0]
    exclude = None
    if exclude_indices is not None:
        exclude = _as_indices("exclude_indices", exclude_indices, (nq,), n, q.device)
    limit = n - (exclude is not None)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limit:
        raise InputError(f"k must be an integer in 1..{limit} (index of {n} images"
                         f"{', one excluded per query' if exclude is not None else ''}); got {k!r}")
    out = torch.empty(nq, k, dtype=torch.long, device=q.device)
    for start, end, sims, scratch in _similarity_blocks(q, x, chunk_size, max_block_bytes):
        out[start:end] = _block_top_k(sims, k, None if exclude is None else exclude[start:end], scratch)
    return out


def rank_subset(query_features, index_features, reference_indices, member_indices, *,
                chunk_size: int | None = None, max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES) -> torch.Tensor:
    """The img_set members other than the reference, best first (ties: lower index first).

    Similarities come from the same block products as `cirr_recall`, so the order agrees with
    recall_subset exactly, ties included.

    Args:
        query_features: [Q, d]; index_features: [N, d].
        reference_indices: [Q] positions; member_indices: [Q, M] positions (reference included).
    Returns:
        LongTensor [Q, M - 1] of index positions.
    Example:
        >>> rank_subset(q, x, split.reference_indices, split.member_indices)[:, :3]
    """
    return cirr_rankings(query_features, index_features, reference_indices, member_indices, k=None,
                         chunk_size=chunk_size, max_block_bytes=max_block_bytes)[1]


def cirr_rankings(query_features, index_features, reference_indices, member_indices, k: int | None = 50,
                  subset_k: int | None = None, *, chunk_size: int | None = None,
                  max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Both CIRR rankings in one pass: top-k of the index and the ordered subset, reference removed.

    Args:
        query_features: [Q, d]; index_features: [N, d].
        reference_indices: [Q] positions; member_indices: [Q, M] positions (reference included).
        k: length of the full ranking (None: skip it).
        subset_k: how many subset members to keep (None: all M - 1).
    Returns:
        (top [Q, k] or None, subset [Q, subset_k]) as LongTensors of index positions.
    Example:
        >>> top, subset = cirr_rankings(q, x, split.reference_indices, split.member_indices, 50, 3)
    """
    q, x = _prepare_features(query_features, index_features)
    nq, n = q.shape[0], x.shape[0]
    reference = _as_indices("reference_indices", reference_indices, (nq,), n, q.device)
    members = _as_indices_2d("member_indices", member_indices, nq, n, q.device)
    _check_members(members, reference, None)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n - 1):
        raise InputError(f"k must be an integer in 1..{n - 1} (index of {n} images, the reference "
                         f"excluded); got {k!r}")
    width = members.shape[1] - 1
    if subset_k is None:
        subset_k = width
    if isinstance(subset_k, bool) or not isinstance(subset_k, int) or not 1 <= subset_k <= width:
        raise InputError(f"subset_k must be an integer in 1..{width}; got {subset_k!r}")
    top = None if k is None else torch.empty(nq, k, dtype=torch.long, device=q.device)
    subset = torch.empty(nq, subset_k, dtype=torch.long, device=q.device)
    for start, end, sims, scratch in _similarity_blocks(q, x, chunk_size, max_block_bytes):
        ref = reference[start:end]
        subset[start:end] = _block_subset_order(sims, members[start:end], ref)[:, :subset_k]
        if top is not None:
            top[start:end] = _block_top_k(sims, k, ref, scratch)  # modifies sims: do it last
    return top, subset


def rankings_from_scores(scores, k: int | None, exclude_indices=None, member_indices=None,
                         subset_k: int | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Top-k and, with members, the ordered subset from a score matrix (a composer of kind
    "scores"), by the same tie rule and exclusion as `top_k` / `cirr_rankings` on features.

    Args:
        scores: [Q, N] float scores (higher is better).
        k: length of the full ranking (None: skip it).
        exclude_indices: optional [Q] positions never returned (CIRR: the reference).
        member_indices: optional [Q, M] img_set positions (needs `exclude_indices`): adds the subset.
        subset_k: subset members kept (None: all M - 1).
    Returns:
        (top [Q, k] or None, subset [Q, subset_k] or None) LongTensors of index positions.
    Example:
        >>> rankings_from_scores(torch.tensor([[0.1, 0.9, 0.5]]), 2)[0].tolist()
        [[1, 2]]
    """
    sims = torch.as_tensor(scores)
    if sims.ndim != 2 or not sims.is_floating_point():
        raise InputError(f"scores must be a float matrix [queries, index], got {tuple(sims.shape)} {sims.dtype}")
    sims = sims.float().clone()  # _block_top_k writes the exclusions into it
    nq, n = sims.shape
    exclude = None if exclude_indices is None else _as_indices("exclude_indices", exclude_indices, (nq,), n,
                                                                sims.device)
    subset = None
    if member_indices is not None:
        if exclude is None:
            raise InputError("member_indices need exclude_indices (the reference of each query)")
        members = _as_indices_2d("member_indices", member_indices, nq, n, sims.device)
        _check_members(members, exclude, None)
        width = members.shape[1] - 1
        subset_k = width if subset_k is None else subset_k
        if isinstance(subset_k, bool) or not isinstance(subset_k, int) or not 1 <= subset_k <= width:
            raise InputError(f"subset_k must be an integer in 1..{width}; got {subset_k!r}")
        subset = _block_subset_order(sims, members, exclude)[:, :subset_k]
    top = None
    if k is not None:
        limit = n - (1 if exclude is not None else 0)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limit:
            raise InputError(f"k must be an integer in 1..{limit}; got {k!r}")
        top = _block_top_k(sims, k, exclude)
    return top, subset


def fashioniq_flat(per_category: dict) -> dict:
    """Flat FashionIQ metrics: "<category>_recall@K" for each category and "average_recall@K", the
    mean over the categories (the paper's averages).

    Args:
        per_category: {category: {"recall@10": .., "recall@50": ..}}.
    """
    out = {}
    for cat, m in per_category.items():
        for k, v in m.items():
            out[f"{cat}_{k}"] = v
    for k in next(iter(per_category.values())):
        out[f"average_{k}"] = sum(m[k] for m in per_category.values()) / len(per_category)
    return out

