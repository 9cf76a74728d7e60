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

from cir_lib.datasets import get_dataset
from cir_lib.datasets.cirr import SELECTION_KEYS, SELECTION_MEANS
from cir_lib.errors import ConfigError

SELECTION_CHOICES = SELECTION_MEANS  # the means a recipe's `selection` can name (datasets with one score ignore it)
CIRR_SELECTION_KEYS = SELECTION_KEYS


def selection_scores(dataset, metrics: dict) -> dict:
    """Every model-selection score of one validation pass.

    Args:
        dataset: a dataset name ("fashioniq", "cirr") or a `cir_lib.datasets.base.Dataset`.
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
    return get_dataset(dataset).selection_scores(metrics)


def selection_score(dataset, metrics: dict, selection: str = "arithmetic") -> float:
    """The one number that picks best.pt: FashionIQ's score, or the CIRR mean named by `selection`.

    Args:
        dataset: a dataset name or a `Dataset`.
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
    return get_dataset(dataset).selection_score(metrics, selection)
