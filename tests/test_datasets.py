"""The dataset interface: every registered dataset through reading, metrics, selection and tables on
the smoke data, and the registry's refusal of unknown names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cir_lib.constants import DATASETS
from cir_lib.data import load_split, read_annotations
from cir_lib.datasets import dataset_names, get_dataset
from cir_lib.datasets.base import Dataset
from cir_lib.errors import ConfigError
from cir_lib.evaluate import EncodedSplit, predict, split_metrics, split_ranks
from cir_lib.notebook import ranks_of
from cir_lib.selection import selection_score
from cir_lib.tables import dataset_table, table_columns, table_dataset


def test_unknown_dataset_is_refused_with_the_known_names():
    with pytest.raises(ConfigError, match="unknown dataset 'shoes'; valid: fashioniq, cirr"):
        get_dataset("shoes")
    with pytest.raises(ConfigError, match="valid: fashioniq, cirr"):
        load_split("/nowhere", "shoes", "val")


def test_every_dataset_is_a_dataset_under_its_name():
    assert dataset_names() == DATASETS == ("fashioniq", "cirr")  # DATASETS: the command line's choices
    for name in dataset_names():
        ds = get_dataset(name)
        assert isinstance(ds, Dataset) and ds.name == name and get_dataset(ds) is ds
        assert ds.test_split in ds.splits and ds.context_split in ds.splits
        with pytest.raises(ConfigError, match="unknown"):
            ds.check_names("nosuchsplit", ds.group_category(ds.groups[0]))


def _encoded(split, seed: int) -> EncodedSplit:
    """Random query and index features for a split (an evaluation without a model)."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randn(len(split.image_names), 8, generator=g)
    query = torch.nn.functional.normalize(torch.randn(len(split.queries), 8, generator=g), dim=-1)
    return EncodedSplit(split, index, index[split.reference_indices], query, query, None)


@pytest.mark.parametrize("name", dataset_names())
def test_contract_reading_metrics_selection_tables(smoke_root, name):
    ds = get_dataset(name)
    # reading: every group of the training splits reads without a problem, and every image is there
    for split, category in ds.split_groups(("train", "val")):
        ann = read_annotations(smoke_root, name, split, category)
        assert ann.problems == [] and ann.queries, ann.label
        assert all(q.target is not None for q in ann.queries)
        assert all(isinstance(ds.eval_caption(q), str) and ds.training_captions(q) for q in ann.queries)
    # metrics: each group's recalls in [0, 100], the dataset's Ks, aggregated into flat metrics
    encoded, per = {}, {}
    for i, group in enumerate(ds.groups):
        split = load_split(smoke_root, name, "val", ds.group_category(group))
        encoded[group] = _encoded(split, i)
        per[group] = split_metrics(encoded[group])
        expected = [f"recall@{k}" for k in ds.ks] + [f"recall_subset@{k}" for k in ds.subset_ks]
        assert list(per[group]) == expected
        assert all(0 <= v <= 100 for v in per[group].values())
        ranks = split_ranks(encoded[group])["ranks"]
        assert per[group][f"recall@{ds.ks[-1]}"] == pytest.approx(100 * float(np.mean(ranks < ds.ks[-1])))
    flat = ds.aggregate(per)
    # selection: one finite, non-negative number, whichever mean a recipe names
    for selection in ds.selection_means or ("arithmetic",):
        score = selection_score(name, flat, selection)
        assert math.isfinite(score) and score >= 0
    # tables: the evaluation's output shape as a row, its columns, its intervals from the ranks
    result = ({**per, "average": {k: flat[f"average_{k}"] for k in per[ds.groups[0]]}} if ds.categories
              else per[name])
    ranks = ranks_of({"zero-shot sum": encoded}, name)
    table = dataset_table(name, {"zero-shot sum": result}, backbone="RN50", ranks=ranks,
                          context=("cited", "published"), n_boot=50)
    assert list(table.columns) == table_columns(name) and table_dataset(table) == name
    row = table[table["source"] == "this run"].iloc[0]
    for column in ds.table_columns:
        assert row[column] == pytest.approx(ds.table_values(result, "row")[column])
        assert row[column + "_ci_low"] <= row[column] <= row[column + "_ci_high"]
    assert set(table[table["source"] != "this run"]["split"]) == {ds.context_split}
    # the reference is removed from the ranking exactly where the dataset says so
    enc = encoded[ds.groups[0]]
    top = predict(enc.split, enc.index_features, enc.query_features, k=len(enc.split.image_names) - 1)
    ranked_reference = (top == enc.split.reference_indices[:, None]).any(dim=1)
    assert bool(ranked_reference.any()) != ds.removes_reference
    assert (enc.split.queries[0].members is not None) == ds.has_members
