"""The composer registry and methods as data; the "scores" path of retrieval with a trivial score composer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cir_lib.composers import Combiner, ElementwiseSum
from cir_lib.composers import COMPOSER_KINDS, composer_kind, composer_names, get_composer
from cir_lib.data import load_split
from cir_lib.datasets import dataset_names, get_dataset
from cir_lib.errors import ConfigError
from cir_lib.evaluate import EncodedSplit, compose_queries, compose_scores, split_metrics
from cir_lib.methods import ABLATION_METHODS, FULL_METHOD, MAIN_METHODS, Method, method_of
from cir_lib.tables import ABLATIONS, METHODS, PUBLISHED_METHOD


class ScoreSum(torch.nn.Module):
    """A composer of kind "scores": the element-wise sum's cosine scores, as a matrix."""

    kind = "scores"

    def scores(self, image_features, text_features, index_features):
        return F.normalize(image_features + text_features, dim=-1) @ F.normalize(index_features, dim=-1).T


def test_the_six_composers_are_registered_with_their_kind():
    assert composer_names() == ("sum", "combiner", "image_only", "text_only", "tirg", "artemis")
    assert all(get_composer(n).kind in COMPOSER_KINDS for n in composer_names())
    assert isinstance(get_composer("sum").build(8), ElementwiseSum)
    assert get_composer("combiner").trained and get_composer("combiner").build is None
    assert composer_kind(Combiner(8, 16, 16)) == "vector" and composer_kind(ScoreSum()) == "scores"
    assert get_composer("tirg").kind == "vector" and get_composer("artemis").kind == "scores"
    assert all(get_composer(n).trained and get_composer(n).for_training is not None for n in ("tirg", "artemis"))
    with pytest.raises(ConfigError, match="unknown composer 'maaf'; valid: sum, combiner"):
        get_composer("maaf")


def test_methods_are_data_and_their_labels_are_the_tables_rows():
    assert METHODS == ("zero-shot sum", "stage 1 sum", "stage 1 + Combiner")
    assert ABLATIONS == ("zero-shot image only", "zero-shot text only", "stage 1 image only", "stage 1 text only")
    assert PUBLISHED_METHOD == FULL_METHOD.label
    for m in MAIN_METHODS + ABLATION_METHODS:
        assert method_of(m.label) == m and method_of(m) is m
    assert not Method("sum", "zero-shot").trained and Method("sum").trained and FULL_METHOD.trained
    assert [m.ablation for m in ABLATION_METHODS] == [True] * 4 and not any(m.ablation for m in MAIN_METHODS)
    assert Method("combiner", "zero-shot").trained and Method("combiner", "zero-shot").label == "zero-shot + Combiner"
    with pytest.raises(ConfigError, match="unknown encoders"):
        Method("combiner", "stage 2")
    with pytest.raises(ConfigError, match="unknown method 'stage 2'"):
        method_of("stage 2")


@pytest.mark.parametrize("name", dataset_names())
def test_a_score_composer_ranks_as_the_same_vector_composer(smoke_root, name):
    ds = get_dataset(name)
    split = load_split(smoke_root, name, "val", ds.group_category(ds.groups[0]))
    g = torch.Generator().manual_seed(0)
    index = torch.randn(len(split.image_names), 8, generator=g)
    reference, text = index[split.reference_indices], torch.randn(len(split.queries), 8, generator=g)
    query, _ = compose_queries(ElementwiseSum(8), reference, text)
    by_vector = EncodedSplit(split, index, reference, text, query, None)
    scores = compose_scores(ScoreSum(), reference, text, index, batch_size=3)
    assert scores.shape == (len(split.queries), len(split.image_names))
    by_scores = EncodedSplit(split, index, reference, text, None, None, scores=scores)
    assert split_metrics(by_scores) == split_metrics(by_vector)
    for key, ranks in by_vector.ranks.items():
        assert torch.equal(by_scores.ranks[key], ranks), key
