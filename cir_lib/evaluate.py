"""Evaluation on the val splits: a backbone and a query composer (element-wise sum or Combiner) in,
the paper's metrics out; plus the rankings behind them for qualitative inspection.

The paper's protocol: index features are the raw CLIP image features of every image of the
split (cached on disk when `cache_dir` is given); each query's reference feature is the index row of
its reference (not encoded again); its text feature encodes the evaluation caption ("C1 and c2" on
FashionIQ, the caption as it is on CIRR); the composer, in eval mode and without gradients, turns
the two into the query feature; `cir_lib.metrics` ranks the index.

Evaluation options are one `EvalConfig` (split, cache, skip_missing, batch sizes, device), shared with
`cir_lib.submit`, `cir_lib.explore` and the notebooks. Command: `cir-lib evaluate` (cir_lib.cli).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from cir_lib.constants import FASHIONIQ_CATEGORIES
from cir_lib.composers import composer_kind
from cir_lib.data import SkipReport, eval_captions, load_split
from cir_lib.datasets import get_dataset
from cir_lib.devices import pick_device
from cir_lib.errors import ConfigError
from cir_lib.recipes import EvalConfig
from cir_lib.features import image_features, query_features
from cir_lib.metrics import cirr_ranks, ranks_from_scores, recall_from_ranks, target_ranks, top_k
from cir_lib.transform import PreprocessConfig

logger = logging.getLogger(__name__)

COMPOSE_BATCH = 4096  # queries per composer forward pass


@dataclass
class EncodedSplit:
    """Everything a split's evaluation computes, kept for rankings and inspection."""

    split: object  # the cir_lib.data.Split (index order = split-file order)
    index_features: torch.Tensor  # [N, d] raw CLIP image features of the index
    reference_features: torch.Tensor  # [Q, d] raw, the index rows of the references
    text_features: torch.Tensor  # [Q, d] raw text features of the evaluation captions
    query_features: torch.Tensor  # [Q, d] normalized composer output
    lambdas: Optional[torch.Tensor]  # [Q] the Combiner's text weight; None for the sum
    ranks: Optional[dict] = field(default=None, repr=False)  # per-query target ranks, once computed
    scores: Optional[torch.Tensor] = field(default=None, repr=False)  # [Q, N] from a "scores" composer
    # (query_features is then None: such a composer gives no query vector)


# --------------------------------------------------------------------------- composing


def _module_device(module: torch.nn.Module) -> torch.device:
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_pair(reference_features: torch.Tensor, text_features: torch.Tensor) -> None:
    """Reference and caption features of one query set must come from one backbone."""
    if reference_features.shape != text_features.shape:
        raise ConfigError(f"reference features {tuple(reference_features.shape)} and text features "
                          f"{tuple(text_features.shape)} differ in shape; both must come from one backbone")


@torch.no_grad()
def compose_queries(combiner: torch.nn.Module, reference_features: torch.Tensor, text_features: torch.Tensor,
                    *, batch_size: int = COMPOSE_BATCH) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Query features from raw reference and text features, the composer in eval mode, no gradients.

    Args:
        combiner: `ElementwiseSum` or `Combiner` (any module taking (image, text, return_lambda=True)).
        reference_features: [Q, d] raw reference image features.
        text_features: [Q, d] raw caption features.
        batch_size: queries per forward pass.
    Returns:
        (query_features [Q, d] float32 on the CPU, lambdas [Q] or None for the sum).
    Example:
        >>> q, lam = compose_queries(ElementwiseSum(), ref, txt)
    """
    _check_pair(reference_features, text_features)
    device = _module_device(combiner)
    was_training = combiner.training
    combiner.eval()
    queries, lambdas = [], []
    try:
        for start in range(0, reference_features.shape[0], batch_size):
            ref = reference_features[start:start + batch_size].to(device, torch.float32)
            txt = text_features[start:start + batch_size].to(device, torch.float32)
            query, lam = combiner(ref, txt, return_lambda=True)
            queries.append(query.float().cpu())
            lambdas.append(None if lam is None else lam.float().cpu())
    finally:
        combiner.train(was_training)
    if not queries:
        return torch.empty(0, reference_features.shape[1]), None
    lam = None if any(x is None for x in lambdas) else torch.cat(lambdas)
    return torch.cat(queries), lam


@torch.no_grad()
def compose_scores(composer: torch.nn.Module, reference_features: torch.Tensor, text_features: torch.Tensor,
                   index_features: torch.Tensor, *, batch_size: int = COMPOSE_BATCH) -> torch.Tensor:
    """Scores [Q, N] of each query against the index, from a composer of kind "scores"
    (`cir_lib.composers`: `scores(image_features, text_features, index_features)`), in eval mode.

    Example:
        >>> s = compose_scores(artemis, ref, txt, index)  # then cir_lib.metrics.ranks_from_scores
    """
    _check_pair(reference_features, text_features)
    device = _module_device(composer)
    was_training = composer.training
    composer.eval()
    rows = []
    try:
        index = index_features.to(device, torch.float32)
        for start in range(0, reference_features.shape[0], batch_size):
            ref = reference_features[start:start + batch_size].to(device, torch.float32)
            txt = text_features[start:start + batch_size].to(device, torch.float32)
            rows.append(composer.scores(ref, txt, index).float().cpu())
    finally:
        composer.train(was_training)
    return torch.cat(rows) if rows else torch.empty(0, index_features.shape[0])


def _default_preprocess(preprocess, backbone):
    if preprocess is None:
        return PreprocessConfig("targetpad", image_size=backbone.image_size)
    if isinstance(preprocess, str):
        return PreprocessConfig(preprocess, image_size=backbone.image_size)
    return preprocess


def encode_split(split, backbone, combiner, config: Optional[EvalConfig] = None, *,
                 preprocess=None) -> EncodedSplit:
    """Index and query features of a loaded split (test splits too: nothing needs targets).

    Args:
        split: a `cir_lib.data.Split` (e.g. from `load_split`).
        backbone: a `cir_lib.backbone.Backbone`.
        combiner: `ElementwiseSum` or `Combiner`.
        preprocess: a `PreprocessConfig`, a kind name ("targetpad", ...), or None for targetpad at
            the backbone's input size.
        config: an `EvalConfig` (cache, batch sizes, device, workers; its split is `split`'s).
    Returns:
        EncodedSplit.
    Example:
        >>> enc = encode_split(load_split(root, "cirr", "val"), bb, ElementwiseSum(), EvalConfig(cache_dir="cache"))
    """
    if not split.queries:
        raise ConfigError(f"{split.label} has no queries to evaluate")
    config = config or EvalConfig()
    preprocess = _default_preprocess(preprocess, backbone)
    device = None if config.device is None else pick_device(config.device)
    index = image_features(backbone, split, preprocess, cache_dir=config.cache_dir, batch_size=config.batch_size,
                           device=device, split_label=split.label, num_workers=config.num_workers)
    reference, text = query_features(backbone, split, index, eval_captions(split), batch_size=config.text_batch_size)
    if composer_kind(combiner) == "scores":
        return EncodedSplit(split, index, reference, text, None, None,
                            scores=compose_scores(combiner, reference, text, index))
    query, lambdas = compose_queries(combiner, reference, text)
    return EncodedSplit(split, index, reference, text, query, lambdas)


# --------------------------------------------------------------------------- metrics


def _target_ranks(encoded: EncodedSplit) -> dict:
    """The per-query ranks behind the metrics, computed once per encoded split (kept on it)."""
    if encoded.ranks is None and encoded.scores is not None:  # a "scores" composer
        split = encoded.split
        ds = get_dataset(split.dataset)
        encoded.ranks = ranks_from_scores(
            encoded.scores, split.target_indices, split.reference_indices if ds.removes_reference else None,
            split.member_indices if ds.has_members else None)
    if encoded.ranks is None:
        split = encoded.split
        if not get_dataset(split.dataset).has_members:
            encoded.ranks = {"ranks": target_ranks(encoded.query_features, encoded.index_features,
                                                   split.target_indices)}
        else:  # the reference removed from the ranking, and the ranks within the image set
            ranks, subset = cirr_ranks(encoded.query_features, encoded.index_features, split.reference_indices,
                                       split.target_indices, split.member_indices)
            encoded.ranks = {"ranks": ranks, "subset_ranks": subset}
    return encoded.ranks


def split_ranks(encoded: EncodedSplit) -> dict:
    """Per-query ranks (0 = first) of each target, by the metrics' protocol: {"ranks": [Q]} on
    FashionIQ; {"ranks": [Q], "subset_ranks": [Q]} on CIRR (numpy int64). `cir_lib.intervals`
    bootstraps the tables' intervals from them; they are the ranks `split_metrics` counted."""
    return {k: v.cpu().numpy() for k, v in _target_ranks(encoded).items()}


def split_metrics(encoded: EncodedSplit) -> dict:
    """The paper's metrics of an encoded split with targets (FashionIQ: recall@10/50; CIRR: seven),
    from one ranking pass whose ranks stay on `encoded` (for `split_ranks`).

    Example:
        >>> split_metrics(encode_split(split, bb, combiner))["recall@10"]
    """
    ds = get_dataset(encoded.split.dataset)
    ranks = _target_ranks(encoded)
    out = recall_from_ranks(ranks["ranks"], ds.ks, "recall")
    if ds.subset_ks:
        out.update(recall_from_ranks(ranks["subset_ranks"], ds.subset_ks, "recall_subset"))
    return out


def _check_split_has_targets(ds, split: str) -> None:
    if split == ds.test_split:
        raise ConfigError(f"{ds.name} {split} has no public targets: evaluate on val ({ds.no_targets_hint()})")


def evaluate_dataset(dataset, data_root, backbone, combiner, config: Optional[EvalConfig] = None, *,
                     preprocess=None, groups: Optional[Sequence[str]] = None,
                     encoded: Optional[dict] = None) -> dict:
    """A dataset's recalls on a split with targets, by its protocol (`cir_lib.datasets`).

    Args:
        dataset: a dataset name ("fashioniq", "cirr") or a `cir_lib.datasets.base.Dataset`.
        data_root: the data root.
        backbone: a `cir_lib.backbone.Backbone`.
        combiner: the composer (put in eval mode; its mode is restored after).
        config: an `EvalConfig`: split (the test split has no public targets), cache, skip_missing
            (drop missing images and the queries using them, reported under "skipped"; otherwise a
            missing image raises ImageError), encoding controls.
        preprocess: `PreprocessConfig`, a kind name, or None (targetpad at the backbone's size).
        groups: a subset of the dataset's categories (None: all of them).
        encoded: a dict that receives {group: EncodedSplit} (features, queries and lambdas), for
            reuse by the explorer, the lambda figure and the intervals.
    Returns:
        With categories: {category: {"recall@K": ..}, ..., "average": {mean over the categories}};
        without: the metrics flat ({"recall@1": .., "recall_subset@1": .., ...}). Plus "skipped":
        SkipReport.to_dict() when skip_missing removed anything, and "capped": N when
        config.max_queries capped the splits (a dry run: not the benchmark's numbers).
    Example:
        >>> evaluate_dataset("cirr", "data/mini", backbone, ElementwiseSum(), EvalConfig(cache_dir="cache"))["recall@1"]
    """
    ds = get_dataset(dataset)
    config = config or EvalConfig()
    split = config.split
    groups = list(ds.groups if groups is None else groups)
    unknown = [g for g in groups if g not in ds.groups]
    if not groups or unknown:
        raise ConfigError(f"{ds.title} categories must be among {', '.join(ds.groups)}; got {groups}")
    _check_split_has_targets(ds, split)
    per, reports = {}, []
    for group in groups:
        data = load_split(data_root, ds.name, split, ds.group_category(group), skip_missing=config.skip_missing,
                          max_queries=config.max_queries)
        reports.append(data.skipped)
        enc = encode_split(data, backbone, combiner, config, preprocess=preprocess)
        if encoded is not None:
            encoded[group] = enc
        per[group] = split_metrics(enc)
        logger.debug("%s %s: %s", data.label, split, _format_inline(per[group]))
    if ds.categories:
        out = dict(per)
        keys = out[groups[0]].keys()
        out["average"] = {k: sum(out[c][k] for c in groups) / len(groups) for k in keys}
    else:
        out = dict(per[ds.name])
    skipped = SkipReport.combine(reports)
    if not skipped.is_empty:
        out["skipped"] = skipped.to_dict()
    if config.max_queries is not None:
        out["capped"] = config.max_queries
    return out


def evaluate_fashioniq(data_root, backbone, combiner, config: Optional[EvalConfig] = None, *, preprocess=None,
                       categories: Sequence[str] = FASHIONIQ_CATEGORIES, encoded: Optional[dict] = None) -> dict:
    """FashionIQ Recall@10/50 per category and their average: `evaluate_dataset("fashioniq", ...)`.

    Example:
        >>> evaluate_fashioniq("data/mini", backbone, ElementwiseSum(), EvalConfig(cache_dir="cache"))["average"]
    """
    return evaluate_dataset("fashioniq", data_root, backbone, combiner, config, preprocess=preprocess,
                            groups=categories, encoded=encoded)


def evaluate_cirr(data_root, backbone, combiner, config: Optional[EvalConfig] = None, *, preprocess=None,
                  encoded: Optional[dict] = None) -> dict:
    """CIRR Recall@1/5/10/50 (reference removed) and Recall_subset@1/2/3: `evaluate_dataset("cirr", ...)`.

    Example:
        >>> evaluate_cirr("data/mini", backbone, ElementwiseSum(), EvalConfig(cache_dir="cache"))["recall@1"]
    """
    return evaluate_dataset("cirr", data_root, backbone, combiner, config, preprocess=preprocess, encoded=encoded)


# --------------------------------------------------------------------------- rankings


def predict(split, index_features: torch.Tensor, query_features: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Top-k index positions per query, best first, under the metrics' protocol (CIRR: reference
    never returned; FashionIQ: reference kept; ties to the lower index).

    Args:
        split: the `cir_lib.data.Split` the features belong to.
        index_features: [N, d] (rows follow split.image_names); query_features: [Q, d].
        k: ranking length.
    Returns:
        LongTensor [Q, k]; `split.image_names[j]` names position j.
    Example:
        >>> enc = encode_split(split, bb, ElementwiseSum())
        >>> top = predict(split, enc.index_features, enc.query_features, k=5)
    """
    _check_rows(split, index_features, query_features)
    exclude = split.reference_indices if get_dataset(split.dataset).removes_reference else None
    return top_k(query_features, index_features, k, exclude_indices=exclude)


def _check_rows(split, index_features: torch.Tensor, query_features: torch.Tensor) -> None:
    if index_features.shape[0] != len(split.image_names):
        raise ConfigError(f"index features have {index_features.shape[0]} rows but {split.label} has "
                          f"{len(split.image_names)} index images; encode the split's index")
    if query_features.shape[0] != len(split.queries):
        raise ConfigError(f"query features have {query_features.shape[0]} rows but {split.label} has "
                          f"{len(split.queries)} queries")


# --------------------------------------------------------------------------- formatting


NOT_METRICS = ("skipped", "capped")  # keys of an evaluation dict that are records, not metrics


def _format_inline(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in metrics.items() if isinstance(v, (int, float)))


def format_table(dataset: str, result: dict) -> str:
    """A readable table of `evaluate_fashioniq` / `evaluate_cirr` output."""
    lines = get_dataset(dataset).format_result(result, NOT_METRICS)
    skipped = result.get("skipped")
    if skipped:
        lines.append(f"skipped (missing images): {skipped['queries']} queries, {skipped['images']} index images")
        lines.extend(f"  {d}" for d in skipped.get("details", []))
    if result.get("capped") is not None:
        lines.append(f"capped to the first {result['capped']} queries per split (a dry run: not the benchmark's numbers)")
    return "\n".join(lines)
