"""The losses: stage 1 and stage 2 share CLIP4Cir's contrastive loss; pretraining uses CLIP's.

    contrastive_loss  cross-entropy over 100 * normalize(query) @ normalize(target).T, label i for row i
                      (in-batch negatives), for the element-wise sum (stage 1) and the query-vector
                      composers of stage 2 (the Combiner, TIRG)
    scores_loss       cross-entropy over scale * (B, B) score matrix, label i for row i: the same
                      in-batch classification for a "scores" composer (ARTEMIS, with its learned scale)
    clip_loss         CLIP's symmetric image-text cross-entropy (pretraining cir-mini)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cir_lib.constants import LOGIT_SCALE


def contrastive_loss(query_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over 100 * normalize(query) @ normalize(target).T, label i for row i.

    `query_features` may already be the normalized sum / Combiner output (normalizing twice is a no-op).
    """
    q = F.normalize(query_features.float(), dim=-1)
    t = F.normalize(target_features.float(), dim=-1)
    logits = LOGIT_SCALE * q @ t.T
    labels = torch.arange(len(q), device=logits.device)
    return F.cross_entropy(logits, labels)


def scores_loss(scores: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over `logit_scale * scores`, label i for row i: `scores` [B, B] of query i
    against target j of the batch (naver/artemis `loss.py`: the batch-based classification of TIRG's
    code on ARTEMIS's score matrix, scaled by the learned exp(temperature) in `train.py`)."""
    logits = logit_scale * scores.float()
    labels = torch.arange(len(logits), device=logits.device)
    return F.cross_entropy(logits, labels)


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
              logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy of CLIP over normalized features (open_clip's ClipLoss, one process)."""
    logits = logit_scale * image_features @ text_features.T
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
