"""The mini benchmark's calibration target: the real datasets' published zero-shot ablations.

The generators (`cir_lib.mini_garments`, `cir_lib.mini_scenes`) are tuned so that the pretrained
cir-mini's zero-shot profile on the mini data (image only, text only, their sum) looks like CLIP's
on the real FashionIQ and CIRR: the same ORDER of the three on every metric, and a few key ratios
within `RATIO_FACTOR` of the published ones. Nothing trained by the kit (stage 1, the Combiner)
enters the target: it is independent of every method the mini benchmark ranks.

The numbers and their sources are in docs/mini-calibration.md; `tools/zero_shot_profile.py`
measures a data root against them.

Example:
    >>> checks = profile_checks({"fashioniq": {...}, "cirr": {...}})   # measured, per composer
    >>> all(c["ok"] for c in checks)
"""

from __future__ import annotations

from typing import Mapping

from cir_lib.errors import ConfigError
from cir_lib.methods import Method

ZERO_SHOT_COMPOSERS = ("image_only", "text_only", "sum")  # the three zero-shot rows, by composer name

# SEARLE (Baldrati et al., ICCV 2023), CLIP ViT-B/32, the baselines of Table 1 (FashionIQ val, per
# category) and Table 2 (CIRR test1). Quoted from memory: see the doc.
PUBLISHED_FASHIONIQ_CATEGORIES = {
    "image_only": {"dress": (4.46, 12.19), "shirt": (6.92, 14.23), "toptee": (6.32, 13.77)},
    "text_only": {"dress": (15.42, 35.05), "shirt": (19.87, 34.99), "toptee": (20.81, 40.49)},
    "sum": {"dress": (13.83, 30.88), "shirt": (13.44, 26.25), "toptee": (17.08, 31.67)},
}  # {composer: {category: (R@10, R@50)}}


def _category_average(rows: Mapping[str, tuple]) -> dict:
    """{"recall@10", "recall@50"}: the mean over the categories, as the FashionIQ tables average them
    (rounded to the two decimals the tables print). Derived, not typed: a slip in one quoted average
    cannot disagree with its categories."""
    return {metric: round(sum(r[i] for r in rows.values()) / len(rows), 2)
            for i, metric in enumerate(("recall@10", "recall@50"))}


PUBLISHED_ZERO_SHOT = {
    "fashioniq": {composer: _category_average(rows) for composer, rows in PUBLISHED_FASHIONIQ_CATEGORIES.items()},
    "cirr": {
        "image_only": {"recall@1": 6.89, "recall@5": 22.99, "recall@10": 33.68, "recall@50": 59.23,
                       "recall_subset@1": 21.04, "recall_subset@2": 41.04, "recall_subset@3": 60.31},
        "text_only": {"recall@1": 21.81, "recall@5": 45.22, "recall@10": 57.42, "recall@50": 81.01,
                      "recall_subset@1": 62.24, "recall_subset@2": 81.39, "recall_subset@3": 90.70},
        "sum": {"recall@1": 11.71, "recall@5": 35.06, "recall@10": 48.94, "recall@50": 77.49,
                "recall_subset@1": 32.77, "recall_subset@2": 56.89, "recall_subset@3": 74.96},
    },
}

# Fixed before any measurement (docs/mini-calibration.md): a measured ratio passes when it lies
# within this factor of the published one, either way.
RATIO_FACTOR = 2.0
# (dataset, metric, numerator composer, denominator composer): the ratios checked.
KEY_RATIOS = (
    ("fashioniq", "recall@10", "text_only", "image_only"),
    ("fashioniq", "recall@50", "text_only", "image_only"),
    ("fashioniq", "recall@10", "sum", "image_only"),
    ("cirr", "recall@1", "text_only", "image_only"),
    ("cirr", "recall@10", "text_only", "image_only"),
    ("cirr", "recall@1", "sum", "image_only"),
    ("cirr", "recall_subset@1", "text_only", "sum"),
    ("cirr", "recall_subset@1", "text_only", "image_only"),
)


def ordering(metrics: Mapping[str, Mapping[str, float]], metric: str) -> tuple:
    """The composers ranked best first on one metric (ties keep ZERO_SHOT_COMPOSERS' order)."""
    return tuple(sorted(ZERO_SHOT_COMPOSERS, key=lambda c: -metrics[c][metric]))


def profile_checks(measured: Mapping[str, Mapping[str, Mapping[str, float]]],
                   published: Mapping = PUBLISHED_ZERO_SHOT, factor: float = RATIO_FACTOR) -> list[dict]:
    """Compare a measured zero-shot profile with the published one.

    Args:
        measured: {dataset: {composer: {metric: value}}}, FashionIQ as the category average.
        published: the target, same shape (default: `PUBLISHED_ZERO_SHOT`).
        factor: how far a ratio may lie from the published one (a factor, either way).

    Returns:
        one dict per check: {"check", "measured", "published", "ok"}; an ordering check per metric
        of the target, then the `KEY_RATIOS`.
    """
    checks = []
    for dataset, target in published.items():
        if dataset not in measured:
            continue
        for metric in target["sum"]:
            want, got = ordering(target, metric), ordering(measured[dataset], metric)
            checks.append({"check": f"{dataset} {metric} order", "measured": " > ".join(got),
                           "published": " > ".join(want), "ok": got == want})
    for dataset, metric, num, den in KEY_RATIOS:
        if dataset not in measured:
            continue
        want = published[dataset][num][metric] / published[dataset][den][metric]
        m_den = measured[dataset][den][metric]
        got = measured[dataset][num][metric] / m_den if m_den > 0 else float("inf")
        checks.append({"check": f"{dataset} {metric} {num}/{den}", "measured": round(got, 2),
                       "published": round(want, 2), "ok": want / factor <= got <= want * factor})
    return checks


def measured_from_metrics(val_metrics: Mapping, backbone: str | None = None) -> dict:
    """The zero-shot profile of a finished run, from its `metrics/val_metrics.json` (notebook 03's
    {dataset: {backbone: {method label: metrics}}}): {dataset: {composer: metrics}} for
    `profile_checks`, FashionIQ as the category average. Nothing is recomputed.

    Args:
        val_metrics: the loaded JSON.
        backbone: which backbone's rows (None: the only one; ConfigError when there are several).
    """
    measured = {}
    for dataset in PUBLISHED_ZERO_SHOT:
        if dataset not in val_metrics:
            continue
        rows = val_metrics[dataset]
        if backbone is None:
            if len(rows) != 1:
                raise ConfigError(f"{dataset}: rows of several backbones ({', '.join(rows)}); name one")
            backbone = next(iter(rows))
        if backbone not in rows:
            raise ConfigError(f"{dataset}: no rows of backbone {backbone!r} (there are: {', '.join(rows)})")
        labels = {c: Method(c, "zero-shot").label for c in ZERO_SHOT_COMPOSERS}
        missing = [label for label in labels.values() if label not in rows[backbone]]
        if missing:
            raise ConfigError(f"{dataset}: the metrics hold no {', '.join(missing)} row (the ablations "
                              "are written by notebook 03)")
        measured[dataset] = {c: rows[backbone][label].get("average", rows[backbone][label])
                             for c, label in labels.items()}
    return measured
