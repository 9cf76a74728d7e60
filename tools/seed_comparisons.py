"""Which comparisons a seed series resolves: the README's "Over the seeds" reading, from the tables.

    python tools/seed_comparisons.py results/mini/tables                 # one series
    python tools/seed_comparisons.py results/mini/tables results/mini-x2/tables   # side by side

Reads `<dataset>_seeds.csv` (written by notebook 03 for `--set seeds=...`: one row per seed and
method, then the mean and the sample std over the seeds) and prints, for the differences the kit's
tables compute (and the Combiner against the stage-1 caption alone), the difference of the seed means and whether it is resolved: the two rows'
mean ± std ranges do not overlap (|difference| > std_a + std_b). That is a reading rule, not a
test: three seeds give a rough std, and the single-seed paired bootstrap intervals
(`<dataset>_differences.csv`) answer another question (the queries' sampling, one training run).

This is a development script, not part of the `cir_lib` library.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from cir_lib.methods import COMPOSER_DIFFERENCES, FULL_METHOD, MAIN_METHODS, Method

# (a, b) for "a - b": the differences the kit's tables compute (each main row minus the one above
# it, `methods.COMPOSER_DIFFERENCES`), and the Combiner against the stage-1 caption alone
COMPARISONS = (tuple(zip(MAIN_METHODS[1:], MAIN_METHODS[:-1])) + COMPOSER_DIFFERENCES
               + ((FULL_METHOD, Method("text_only", "finetune")),))
METRICS = {"fashioniq": ("average_recall@10",), "cirr": ("recall@1", "recall@10", "recall_subset@1")}
SHORT = {"average_recall@10": "FIQ avg R@10", "recall@1": "CIRR R@1", "recall@10": "CIRR R@10",
         "recall_subset@1": "CIRR Rs@1"}


def read_series(tables: Path) -> dict:
    """{metric: {method: (mean, std)}} over the datasets whose seed table is in `tables`."""
    series = {}
    for dataset, metrics in METRICS.items():
        path = tables / f"{dataset}_seeds.csv"
        if not path.is_file():
            continue
        rows = list(csv.DictReader(path.open(encoding="utf-8")))
        means = {r["method"]: r for r in rows if r["seed"] == "mean"}
        stds = {r["method"]: r for r in rows if r["seed"] == "std"}
        if not means:
            sys.exit(f"{path} has no mean/std rows: is it a seed table (notebook 03 with seeds=...)?")
        for metric in metrics:
            series[metric] = {m: (float(means[m][metric]), float(stds[m][metric])) for m in means}
    return series


def compare(series: dict) -> list[dict]:
    """One dict per (comparison, metric): difference, the two stds, resolved."""
    out = []
    for a, b in COMPARISONS:
        for metric, rows in series.items():
            if a.label not in rows or b.label not in rows:
                continue
            (mean_a, std_a), (mean_b, std_b) = rows[a.label], rows[b.label]
            diff = mean_a - mean_b
            out.append({"comparison": f"{a.label} - {b.label}", "metric": metric, "difference": diff, "std_a": std_a,
                        "std_b": std_b, "resolved": abs(diff) > std_a + std_b})
    return out


def format_table(names: list[str], results: list[list[dict]]) -> str:
    lines = ["| comparison | metric | " + " | ".join(names) + " |",
             "| --- | --- |" + " ---: |" * len(names)]
    keyed = [{(r["comparison"], r["metric"]): r for r in rs} for rs in results]
    for key in dict.fromkeys(k for k_ in keyed for k in k_):
        cells = []
        for k_ in keyed:
            r = k_.get(key)
            cells.append("—" if r is None else
                         f"{r['difference']:+.2f} (±{r['std_a']:.2f}/±{r['std_b']:.2f})"
                         + (" **yes**" if r["resolved"] else " no"))
        lines.append(f"| {key[0]} | {SHORT[key[1]]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tables", nargs="+", type=Path, help="tables folders holding <dataset>_seeds.csv")
    args = parser.parse_args(argv)
    missing = [str(t) for t in args.tables if not any((t / f"{d}_seeds.csv").is_file() for d in METRICS)]
    if missing:
        sys.exit(f"no <dataset>_seeds.csv in {', '.join(missing)}: run `cir-lib reproduce --profile P "
                 "--set seeds=0,1,2` first")
    names = [t.parent.name if t.name == "tables" else t.name for t in args.tables]
    print(format_table(names, [compare(read_series(t)) for t in args.tables]))
    print("\ndifference of the seed means (a - b), (±std of a / ±std of b); resolved: |difference| > std_a + std_b")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
