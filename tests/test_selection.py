"""Model-selection scores against the original's definitions, spelled out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cir_lib.errors import ConfigError
from cir_lib.selection import CIRR_SELECTION_KEYS, SELECTION_CHOICES, selection_score, selection_scores


def cirr_metrics(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {k: float(v) for k, v in zip(CIRR_SELECTION_KEYS, rng.uniform(1, 99, size=7))}


@pytest.mark.parametrize("seed", range(5))
def test_cirr_means_match_their_textbook_definitions(seed):
    metrics = {**cirr_metrics(seed), "extra": 1e9}  # other keys are ignored
    values = np.array([metrics[k] for k in CIRR_SELECTION_KEYS])
    scores = selection_scores("cirr", metrics)
    assert set(scores) == set(SELECTION_CHOICES)
    assert scores["arithmetic"] == pytest.approx(values.sum() / 7, rel=1e-12)
    assert scores["harmonic"] == pytest.approx(7 / (1 / values).sum(), rel=1e-12)
    assert scores["geometric"] == pytest.approx(math.exp(np.log(values).mean()), rel=1e-12)
    assert scores["harmonic"] < scores["geometric"] < scores["arithmetic"]  # AM-GM-HM, unequal values
    for choice in SELECTION_CHOICES:
        assert selection_score("cirr", metrics, choice) == scores[choice]


def test_the_three_means_can_disagree_on_the_best_epoch():
    balanced = dict(zip(CIRR_SELECTION_KEYS, [50.0] * 7))
    lopsided = dict(zip(CIRR_SELECTION_KEYS, [5.0, 90, 90, 90, 90, 90, 90]))
    assert selection_score("cirr", lopsided) > selection_score("cirr", balanced)
    assert selection_score("cirr", lopsided, "harmonic") < selection_score("cirr", balanced, "harmonic")


def test_a_zero_recall_gives_zero_instead_of_failing():
    metrics = {**cirr_metrics(0), "recall@1": 0.0}
    scores = selection_scores("cirr", metrics)
    assert scores["harmonic"] == 0.0 and scores["geometric"] == 0.0 and scores["arithmetic"] > 0


def test_fashioniq_score():
    m = {"average_recall@10": 30.0, "average_recall@50": 51.0, "dress_recall@10": 99.0}
    assert selection_scores("fashioniq", m) == {"fashioniq": 40.5}
    assert selection_score("fashioniq", m, "geometric") == 40.5  # one score for FashionIQ


def test_errors_name_what_is_wrong():
    with pytest.raises(ConfigError, match="recall@50"):
        selection_scores("cirr", {k: 1.0 for k in CIRR_SELECTION_KEYS if k != "recall@50"})
    with pytest.raises(ConfigError, match="unknown dataset"):
        selection_scores("shoes", {})
    with pytest.raises(ConfigError, match="median"):
        selection_score("cirr", cirr_metrics(0), "median")
    with pytest.raises(ConfigError, match="invalid"):
        selection_scores("cirr", {**cirr_metrics(0), "recall@5": float("nan")})
