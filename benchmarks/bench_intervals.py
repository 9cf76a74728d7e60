"""Time cir_lib.intervals at CIRR-val size: 4181 queries, 7 metrics, 3 to 8 rows, 1000 replicates.

Run from the project root on one core:
    OMP_NUM_THREADS=1 python -m benchmarks.bench_intervals [--n-boot 1000] [--repeats 3]
Prints the best of a few runs per row count (random ranks with the real query counts).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cir_lib.intervals import cirr_intervals, fashioniq_intervals

CIRR_VAL_QUERIES = 4181
FASHIONIQ_VAL_QUERIES = {"dress": 2017, "shirt": 2038, "toptee": 1961}


def _best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for rows in (3, 8):
        ranks = {f"row {i}": {"ranks": rng.integers(0, 2000, CIRR_VAL_QUERIES),
                              "subset_ranks": rng.integers(0, 5, CIRR_VAL_QUERIES)} for i in range(rows)}
        t = _best_of(lambda: cirr_intervals(ranks, n_boot=args.n_boot), args.repeats)
        print(f"CIRR val size ({CIRR_VAL_QUERIES} queries, 7 metrics), {rows} rows, {args.n_boot} replicates: {t:.3f} s")
        ranks = {f"row {i}": {c: rng.integers(0, 3000, n) for c, n in FASHIONIQ_VAL_QUERIES.items()}
                 for i in range(rows)}
        t = _best_of(lambda: fashioniq_intervals(ranks, n_boot=args.n_boot), args.repeats)
        print(f"FashionIQ val size (6016 queries, 8 metrics), {rows} rows, {args.n_boot} replicates: {t:.3f} s")


if __name__ == "__main__":
    main()
