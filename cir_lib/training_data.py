"""What both training stages read: the training triplets, the validation splits, every caption
variant tokenized once, and one epoch's seeded batches.

FashionIQ pools the three categories and draws one of the four caption variants per triplet
(p = 1/4 each); CIRR captions are used as they are.
"""

from __future__ import annotations

import torch

from cir_lib.datasets import get_dataset
from cir_lib.errors import ConfigError
from cir_lib.data import load_split
from cir_lib.features import memoized_tokens


def resolve_dataset(config) -> str:
    """The config's dataset; ConfigError when none is chosen."""
    if config.dataset is None:
        raise ConfigError("no dataset chosen: pass --dataset fashioniq|cirr (or dataset=... in a notebook)")
    return config.dataset


def load_train_split(data_root, dataset: str, skip_missing: bool = False, max_queries: int | None = None):
    """The training triplets: FashionIQ's three categories pooled, or CIRR's train split.

    max_queries (a config's, for dry runs) keeps the first N queries of each category / of CIRR
    train and only the images they name (`cir_lib.data.load_split`); None reads everything.
    """
    # Training reads only each query's reference and target: a CIRR query whose other img_set
    # members are unusable still trains (skip_members=False); evaluation drops it (Recall_subset).
    return load_split(data_root, dataset, "train", None, skip_missing=skip_missing, skip_members=False,
                      max_queries=max_queries)


def load_val_splits(data_root, dataset: str, skip_missing: bool = False, max_queries: int | None = None) -> dict:
    """{label: Split} of the validation protocol: FashionIQ's three categories, or CIRR's val
    (max_queries as in `load_train_split`)."""
    ds = get_dataset(dataset)
    return {g: load_split(data_root, dataset, "val", ds.group_category(g), skip_missing=skip_missing,
                          max_queries=max_queries) for g in ds.groups}


def training_captions(split) -> list:
    """Per query, the caption variants drawn from in training (FashionIQ: 4, CIRR: 1)."""
    ds = get_dataset(split.dataset)
    return [ds.training_captions(q) for q in split.queries]


def tokenize_variants(backbone, variants: list) -> torch.Tensor:
    """Token ids [Q, V, L] of every caption variant, tokenized once (not per batch)."""
    n_var = len(variants[0]) if variants else 1
    flat = [c for row in variants for c in row]
    if not flat:
        return torch.empty(0, n_var, backbone.context_length, dtype=torch.long)
    tokens = memoized_tokens(backbone, flat)  # the runs of a series share them
    return tokens.view(len(variants), n_var, tokens.shape[-1])


def epoch_batches(n_queries: int, n_variants: int, batch_size: int, generator: torch.Generator) -> list:
    """One epoch's batches: a seeded shuffle of the queries and one caption variant per query.

    Each variant is drawn uniformly (FashionIQ: p = 1/4 each). Batches have `batch_size` triplets
    (the last, incomplete batch is dropped, as in the original; a dataset smaller than a batch is
    one batch).

    Returns:
        A list of (query_indices LongTensor [B], variant_indices LongTensor [B]).
    """
    perm = torch.randperm(n_queries, generator=generator)
    variant = torch.randint(n_variants, (n_queries,), generator=generator)
    bs = min(batch_size, n_queries)
    n_batches = n_queries // bs if bs else 0
    return [(perm[i * bs:(i + 1) * bs], variant[i * bs:(i + 1) * bs]) for i in range(n_batches)]
