"""Time the exact metrics of cir_lib.metrics against the two references they must beat.

(a) "names": the straightforward approach of the original research code: argsort every row of
    the similarity matrix, look the sorted positions up in an array of image names, compare the
    names with the target's name (CIRR: drop the reference by a name mask, and find the subset by
    comparing names with the img_set names), and sum the hits.
(b) "matmul": the bare similarity product of already-normalized features (a lower bound: any
    exact metric must at least compute it).

Sizes: CIRR val (4181 queries x 2297 index images) and FashionIQ val per category, at d = 640
(RN50x4) and 1024 (RN50), then 100,000 queries x 1,000,000 index images at d = 640 (scale it
down with --large-scale; --large-scale 0 skips it). Also the image-feature cache: miss (encode
and store) vs hit (load) on generated images with a random-init backbone (--cache-images 0 skips). Features are random; structures (targets,
references, img_sets) are random with the real shapes. All three routes are checked to give the
same numbers before their times are printed.

Run:  python benchmarks/bench_metrics.py [--threads 2] [--repeat 7] [--large-scale 0.1]
      (the full large case holds about 6 GiB and runs for tens of minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from cir_lib import metrics

CIRR_VAL = (4181, 2297)
FASHIONIQ_VAL = {"dress": (2017, 3817), "shirt": (2038, 6346), "toptee": (1961, 5373)}
LARGE = (100_000, 1_000_000)


# --------------------------------------------------------------------------- the name-array route


def names_fashioniq(q, x, index_names: np.ndarray, target_names: np.ndarray, ks=(10, 50)) -> dict:
    """Recall@K by sorting rows and comparing name arrays (the original code's way)."""
    q, x = F.normalize(q, dim=-1), F.normalize(x, dim=-1)
    distances = 1 - q @ x.T
    sorted_indices = torch.argsort(distances, dim=-1).numpy()
    sorted_names = index_names[sorted_indices]
    labels = torch.tensor(sorted_names == np.repeat(target_names, len(index_names)).reshape(len(target_names), -1))
    assert torch.equal(labels.sum(dim=-1).int(), torch.ones(len(target_names)).int())
    return {f"recall@{k}": (labels[:, :k].sum() / len(labels)).item() * 100 for k in ks}


def names_cirr(q, x, index_names: np.ndarray, reference_names: np.ndarray, target_names: np.ndarray,
               member_names: np.ndarray, ks=(1, 5, 10, 50), subset_ks=(1, 2, 3)) -> dict:
    """CIRR recalls by sorting rows, masking the reference by name and matching names."""
    q, x = F.normalize(q, dim=-1), F.normalize(x, dim=-1)
    distances = 1 - q @ x.T
    sorted_indices = torch.argsort(distances, dim=-1).numpy()
    sorted_names = index_names[sorted_indices]
    n = len(index_names)
    keep = sorted_names != np.repeat(reference_names, n).reshape(len(target_names), -1)
    sorted_names = sorted_names[keep].reshape(sorted_names.shape[0], n - 1)
    labels = torch.tensor(sorted_names == np.repeat(target_names, n - 1).reshape(len(target_names), -1))
    in_group = (sorted_names[..., None] == member_names[:, None, :]).sum(-1).astype(bool)
    group_labels = labels[in_group].reshape(labels.shape[0], -1)
    out = {f"recall@{k}": (labels[:, :k].sum() / len(labels)).item() * 100 for k in ks}
    out.update({f"recall_subset@{k}": (group_labels[:, :k].sum() / len(group_labels)).item() * 100
                for k in subset_ks})
    return out


# --------------------------------------------------------------------------- helpers


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """(best, median) wall seconds over `repeat` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-3 for k in a)


def row(label: str, best: float, median: float, matmul: float | None = None, names: float | None = None) -> str:
    extra = ""
    if matmul is not None:
        extra += f"  {best / matmul:5.2f}x matmul"
    if names is not None:
        extra += f"  names/ours {names / best:6.1f}x"
    return f"  {label:<26} best {best * 1000:9.1f} ms  median {median * 1000:9.1f} ms{extra}"


def cirr_case(nq: int, n: int, d: int, repeat: int, name_repeat: int, gen: torch.Generator) -> None:
    q = torch.randn(nq, d, generator=gen)
    x = torch.randn(n, d, generator=gen)
    members = torch.argsort(torch.rand(nq, n, generator=gen), dim=1)[:, :6]
    refs, targets = members[:, 0].clone(), members[:, 1].clone()
    members = members.gather(1, torch.argsort(torch.rand(nq, 6, generator=gen), dim=1))  # shuffle
    names = np.array([f"dev-{i}-0-img{i % 2}" for i in range(n)])
    qn, xn = F.normalize(q, dim=-1), F.normalize(x, dim=-1)

    t_mm, m_mm, _ = timed(lambda: qn @ xn.T, repeat)
    t_ours, m_ours, ours = timed(lambda: metrics.cirr_recall(q, x, refs, targets, members), repeat)
    t_names, m_names, by_names = timed(
        lambda: names_cirr(q, x, names, names[refs.numpy()], names[targets.numpy()], names[members.numpy()]),
        name_repeat)
    print(f"CIRR val size: {nq} queries x {n} index, d = {d}  (same numbers as names: {same(ours, by_names)})")
    print(row("bare matmul", t_mm, m_mm))
    print(row("cir_lib.metrics.cirr_recall", t_ours, m_ours, matmul=t_mm, names=t_names))
    print(row("name arrays (original)", t_names, m_names, matmul=t_mm))


def fashioniq_case(category: str, nq: int, n: int, d: int, repeat: int, name_repeat: int,
                   gen: torch.Generator) -> None:
    q = torch.randn(nq, d, generator=gen)
    x = torch.randn(n, d, generator=gen)
    targets = torch.randint(0, n, (nq,), generator=gen)
    names = np.array([f"B00{i:07d}" for i in range(n)])
    qn, xn = F.normalize(q, dim=-1), F.normalize(x, dim=-1)
    t_mm, m_mm, _ = timed(lambda: qn @ xn.T, repeat)
    t_ours, m_ours, ours = timed(lambda: metrics.fashioniq_recall(q, x, targets), repeat)
    t_names, m_names, by_names = timed(lambda: names_fashioniq(q, x, names, names[targets.numpy()]), name_repeat)
    print(f"FashionIQ val {category}: {nq} queries x {n} index, d = {d}  (same numbers as names: {same(ours, by_names)})")
    print(row("bare matmul", t_mm, m_mm))
    print(row("cir_lib.metrics.fashioniq_recall", t_ours, m_ours, matmul=t_mm, names=t_names))
    print(row("name arrays (original)", t_names, m_names, matmul=t_mm))


def large_case(scale: float, d: int, gen: torch.Generator, max_block_bytes: int) -> None:
    nq, n = max(64, int(LARGE[0] * scale)), max(64, int(LARGE[1] * scale))
    rows = metrics.block_rows(nq, n, max_block_bytes)
    block = metrics._BYTES_PER_BLOCK_ENTRY * rows * n
    copies = (nq + n) * d * 4
    print(f"Large: {nq:,} queries x {n:,} index, d = {d}", flush=True)
    print(f"  memory bound: inputs {copies / 2**30:.2f} GiB + normalized copies {copies / 2**30:.2f} GiB"
          f" + one block of {rows} queries ({block / 2**20:.0f} MiB)")
    q = torch.randn(nq, d, generator=gen)
    x = torch.randn(n, d, generator=gen)
    targets = torch.randint(0, n, (nq,), generator=gen)
    refs = (targets + 1 + torch.randint(0, n - 1, (nq,), generator=gen)) % n
    # bare matmul at the same block shape, on a sample of blocks, extrapolated to all queries
    qn, xn = F.normalize(q, dim=-1), F.normalize(x, dim=-1)
    sample = min(nq, rows * 8)
    out = torch.empty(rows, n)
    wall, cpu = time.perf_counter(), time.process_time()
    for s in range(0, sample, rows):
        torch.matmul(qn[s:s + rows], xn.T, out=out[: min(rows, sample - s)])
    scale = nq / sample
    mm_wall, mm_cpu = (time.perf_counter() - wall) * scale, (time.process_time() - cpu) * scale
    del qn, xn, out
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    ranks = metrics.target_ranks(q, x, targets, refs, max_block_bytes=max_block_bytes)
    ours_wall, ours_cpu = time.perf_counter() - wall, time.process_time() - cpu
    recall = (ranks < 50).double().mean().item() * 100
    print(f"  bare matmul, same blocks ({sample} queries timed, extrapolated): wall {mm_wall:9.1f} s,"
          f" cpu {mm_cpu:9.1f} s")
    print(f"  cir_lib.metrics.target_ranks (reference removed):               wall {ours_wall:9.1f} s,"
          f" cpu {ours_cpu:9.1f} s  ({ours_cpu / mm_cpu:.2f}x matmul cpu; recall@50 = {recall:.4f})",
          flush=True)


def cache_case(n_images: int, backbone_name: str) -> None:
    """Feature-cache miss (encode and store) vs hit (load) on generated images."""
    import tempfile

    from PIL import Image

    from cir_lib.backbone import load_backbone
    from cir_lib.features import image_features
    from cir_lib.transform import PreprocessConfig

    backbone = load_backbone(backbone_name, "none")
    preprocess = PreprocessConfig("targetpad", image_size=backbone.image_size)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(n_images):
            path = f"{tmp}/img{i:05d}.png"
            Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(path)
            paths.append(path)
        cache = f"{tmp}/cache"
        start = time.perf_counter()
        miss = image_features(backbone, paths, preprocess, cache_dir=cache)
        t_miss = time.perf_counter() - start
        start = time.perf_counter()
        hit = image_features(backbone, paths, preprocess, cache_dir=cache)
        t_hit = time.perf_counter() - start
    print(f"Feature cache: {n_images} images (96x80 png), {backbone_name} at {backbone.image_size}px, CPU")
    print(f"  miss (encode + store) {t_miss * 1000:9.1f} ms   hit (load) {t_hit * 1000:9.1f} ms"
          f"   {t_miss / t_hit:6.1f}x   (same features: {torch.equal(miss, hit)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is 2 cores)")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls of the fast routes (best and median)")
    parser.add_argument("--name-repeat", type=int, default=2, help="timed calls of the name-array route")
    parser.add_argument("--dims", type=int, nargs="*", default=[640, 1024], help="feature dims of the val-size cases (none: skip them)")
    parser.add_argument("--large-scale", type=float, default=1.0,
                        help="fraction of 100,000 x 1,000,000 for the large case (0 skips it)")
    parser.add_argument("--max-block-bytes", type=int, default=metrics.DEFAULT_MAX_BLOCK_BYTES,
                        help="block budget passed to the metrics in the large case")
    parser.add_argument("--cache-images", type=int, default=512,
                        help="images of the feature-cache miss/hit case (0 skips it)")
    parser.add_argument("--cache-backbone", default="cir-mini", help="backbone of the cache case (random weights)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for d in args.dims:
        cirr_case(*CIRR_VAL, d, args.repeat, args.name_repeat, gen)
        for category, (nq, n) in FASHIONIQ_VAL.items():
            fashioniq_case(category, nq, n, d, args.repeat, args.name_repeat, gen)
        print()
    if args.cache_images > 0:
        cache_case(args.cache_images, args.cache_backbone)
        print()
    if args.large_scale > 0:
        large_case(args.large_scale, 640, gen, args.max_block_bytes)


if __name__ == "__main__":
    main()
