"""Validation during training and model selection: the val splits with what stays fixed across
epochs, their metrics for any composer, and the paper's selection score.

best.pt is chosen by the paper's validation score (`cir_lib.selection`): FashionIQ (mean R@10 +
mean R@50) / 2 over the three categories; CIRR a mean of the seven recalls (arithmetic by default;
the recipe's `selection` may name the harmonic or geometric mean, which history.csv also records).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from cir_lib.datasets import get_dataset
from cir_lib.composers import composer_kind
from cir_lib.data import eval_captions
from cir_lib.features import image_features, memoized_tokens, text_features
from cir_lib.metrics import cirr_recall, fashioniq_recall, ranks_from_scores, recall_from_ranks


@dataclass
class ValSet:
    """One validation split, with what stays fixed across epochs."""

    split: object  # data.Split
    tokens: torch.Tensor  # [Q, L] evaluation captions
    reference: torch.Tensor  # [Q]
    target: torch.Tensor  # [Q]
    members: Optional[torch.Tensor]  # [Q, 6] (CIRR)
    index_features: Optional[torch.Tensor] = None  # [N, d] raw, when the image encoder is frozen
    text_features: Optional[torch.Tensor] = None  # [Q, d] raw, when the text encoder is frozen


def make_val_sets(splits: dict, backbone) -> dict:
    out = {}
    for label, split in splits.items():
        out[label] = ValSet(
            split=split,
            tokens=memoized_tokens(backbone, eval_captions(split)),
            reference=split.reference_indices,
            target=split.target_indices,
            members=split.member_indices if get_dataset(split.dataset).has_members else None,
        )
    return out


def text_features_for(backbone, tokens: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """Frozen text features on `device`, through the same encoder (and precision) as evaluation."""
    return text_features(backbone, tokens, batch_size=batch_size, device=device)


def image_features_for(backbone, split, preprocess, cache_dir, batch_size, device, num_workers=0):
    """Image features of a split on `device` (through the on-disk cache when `cache_dir` is set)."""
    return image_features(backbone, split, preprocess, cache_dir=cache_dir, batch_size=batch_size,
                          device=device, split_label=split.label, num_workers=num_workers).to(device)


def metrics_for(dataset: str, val_sets: dict, compose, index_features: dict, text_features: dict) -> dict:
    """Flat validation metrics: compose(reference_features, text_features) -> query features, or, for
    a composer of kind "scores" (ARTEMIS), compose.scores(reference, text, index) ranked as it is."""
    ds = get_dataset(dataset)
    per = {}
    for label, vs in val_sets.items():
        index = index_features[label]
        if composer_kind(compose) == "scores":
            scores = compose.scores(index[vs.reference], text_features[label], index)
            exclude = vs.reference if ds.removes_reference else None  # CIRR: the reference is not ranked
            ranks = ranks_from_scores(scores, vs.target, exclude, vs.members)
            per[label] = recall_from_ranks(ranks["ranks"], ds.ks, "recall")
            if "subset_ranks" in ranks:
                per[label].update(recall_from_ranks(ranks["subset_ranks"], ds.subset_ks, "recall_subset"))
            continue
        query = compose(index[vs.reference], text_features[label])
        if vs.members is None:
            per[label] = fashioniq_recall(query, index, vs.target)
        else:
            per[label] = cirr_recall(query, index, vs.reference, vs.target, vs.members)
    return ds.aggregate(per)


def format_metrics(metrics: dict) -> str:
    keys = [k for k in metrics if k.startswith("average_") or k in ("recall@1", "recall@10", "recall_subset@1")]
    return ", ".join(f"{k} {metrics[k]:.2f}" for k in keys)
