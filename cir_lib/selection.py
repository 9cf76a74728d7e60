"""Model-selection scores: which validation number picks a run's best checkpoint.

FashionIQ: (average R@10 + average R@50) / 2 over the three categories. CIRR: a mean of the seven
metrics R@1, R@5, R@10, R@50, Rsubset@1, @2, @3. The original code keeps three CIRR bests, by the
arithmetic, the harmonic and the geometric mean, computed with Python's `statistics.mean`,
`statistics.harmonic_mean` and `statistics.geometric_mean` on the seven values (in percent). A
recipe names the one that picks best.pt (`selection`, default "arithmetic"); a run's history can
record all three.

Example:
    >>> selection_scores("cirr", metrics)
    {'arithmetic': 71.2, 'harmonic': 63.9, 'geometric': 67.8}
"""

from __future__ import annotations

import math
import statistics

from cir_lib.errors import ConfigError

SELECTION_CHOICES = ("arithmetic", "harmonic", "geometric")  # CIRR means; FashionIQ has one score
CIRR_SELECTION_KEYS = ("recall_subset@1", "recall_subset@2", "recall_subset@3",
                       "recall@1", "recall@5", "recall@10", "recall@50")  # the original's order


def _geometric(values: list) -> float:
    # statistics.geometric_mean refuses zeros (Python < 3.12); its limit there is 0, which is what a
    # model with a zero recall deserves, so an early epoch does not crash the run as it did the original.
    if any(v == 0 for v in values):
        return 0.0
    return float(statistics.geometric_mean(values))


def selection_scores(dataset: str, metrics: dict) -> dict:
    """Every model-selection score of one validation pass.

    Args:
        dataset: "fashioniq" or "cirr".
        metrics: flat validation metrics in percent: FashionIQ needs "average_recall@10" and
            "average_recall@50"; CIRR needs the seven keys of `CIRR_SELECTION_KEYS`.

    Returns:
        FashionIQ: {"fashioniq": (average R@10 + average R@50) / 2}. CIRR: {"arithmetic": ...,
        "harmonic": ..., "geometric": ...}, the three means of the seven metrics.

    Raises:
        ConfigError: an unknown dataset, a missing metric, or a negative / non-finite value.

    Example:
        >>> selection_scores("fashioniq", {"average_recall@10": 30.0, "average_recall@50": 50.0})
        {'fashioniq': 40.0}
    """
    if dataset == "fashioniq":
        keys = ("average_recall@10", "average_recall@50")
    elif dataset == "cirr":
        keys = CIRR_SELECTION_KEYS
    else:
        raise ConfigError(f"unknown dataset {dataset!r} for model selection; use 'fashioniq' or 'cirr'")
    missing = [k for k in keys if k not in metrics]
    if missing:
        raise ConfigError(f"{dataset} model selection needs the validation metrics {missing}; "
                          f"got only {sorted(metrics)}")
    values = [float(metrics[k]) for k in keys]
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"{dataset} model selection got invalid metric values {dict(zip(keys, values))}")
    if dataset == "fashioniq":
        return {"fashioniq": (values[0] + values[1]) / 2}
    return {
        "arithmetic": float(statistics.mean(values)),
        "harmonic": float(statistics.harmonic_mean(values)),
        "geometric": _geometric(values),
    }


def selection_score(dataset: str, metrics: dict, selection: str = "arithmetic") -> float:
    """The one number that picks best.pt: FashionIQ's score, or the CIRR mean named by `selection`.

    Args:
        dataset: "fashioniq" or "cirr".
        metrics: flat validation metrics (see `selection_scores`).
        selection: "arithmetic" | "harmonic" | "geometric" (CIRR only; ignored for FashionIQ).

    Returns:
        The score (higher is better).

    Example:
        >>> selection_score("cirr", metrics, "harmonic")
        63.9
    """
    if selection not in SELECTION_CHOICES:
        raise ConfigError(f"unknown selection {selection!r}; choose one of {', '.join(SELECTION_CHOICES)}")
    scores = selection_scores(dataset, metrics)
    return scores["fashioniq"] if dataset == "fashioniq" else scores[selection]
