"""The composers without trained weights: the element-wise sum (stage 1, zero-shot baseline) and the
two ablation composers, image only and text only (one modality's feature as the query). Each takes the
raw CLIP features of the reference image and of the relative caption and returns the normalized query."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from cir_lib.composers.config import CombinerConfig, check_features


class ElementwiseSum(nn.Module):
    """query = normalize(image_feature + text_feature), on raw CLIP features (CLIP4Cir stage 1)."""

    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = dim
        self.config = CombinerConfig(kind="sum", dim=dim or 0)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, return_lambda: bool = False):
        """Normalized query features [N, d] (and None for lambda when `return_lambda`)."""
        check_features(image_features, text_features, self.dim)
        query = F.normalize(image_features + text_features, dim=-1)
        return (query, None) if return_lambda else query


class ImageOnly(nn.Module):
    """Ablation composer: query = normalize(image_feature), the caption ignored.

    Same call as `ElementwiseSum` (reference features, text features[, return_lambda]); the text
    features are only checked for shape. Ranks the index by similarity to the reference alone.
    """

    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = dim

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, return_lambda: bool = False):
        """Normalized reference features [N, d] (and None for lambda when `return_lambda`)."""
        check_features(image_features, text_features, self.dim)
        query = F.normalize(image_features, dim=-1)
        return (query, None) if return_lambda else query


class TextOnly(nn.Module):
    """Ablation composer: query = normalize(text_feature), the reference image ignored.

    Same call as `ElementwiseSum`; the reference features are only checked for shape.
    """

    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = dim

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, return_lambda: bool = False):
        """Normalized caption features [N, d] (and None for lambda when `return_lambda`)."""
        check_features(image_features, text_features, self.dim)
        query = F.normalize(text_features, dim=-1)
        return (query, None) if return_lambda else query


# The ablation rows of the tables: "<stage> image only" / "<stage> text only" use these composers
# on that stage's encoders (e.g. "stage 1 text only": the fine-tuned text encoder, caption alone).
ABLATION_COMPOSERS = {"image only": ImageOnly, "text only": TextOnly}
