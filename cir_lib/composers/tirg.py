"""TIRG, Text Image Residual Gating (Vo et al., "Composing Text and Image for Image Retrieval - An
Empirical Odyssey", CVPR 2019), as a composer on CLIP features.

    x = [r; m]                                   (reference image feature r, caption feature m, both d)
    gate     = Linear(2d, d)(ReLU(BatchNorm(x)))
    residual = Linear(2d, d)(ReLU(Linear(2d, 2d)(ReLU(BatchNorm(x)))))
    query    = normalize(w_g * sigmoid(gate) * r + w_r * residual)

Layer shapes and the initial w_g = 1.0, w_r = 10.0 are those of the official code
(google/tirg, img_text_composition_models.py, class TIRG: `self.a = [1.0, 10.0, 1.0, 1.0]`, of which
only a[0] and a[1] are used; `gated_feature_composer` and `res_info_composer`). The paper's features
are not normalized at the composer; the official code normalizes query and target in its loss
(`NormalizationLayer`), so the query is normalized here, as every composer of the kit returns it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cir_lib.composers.config import CombinerConfig
from cir_lib.errors import ConfigError

# google/tirg img_text_composition_models.py, TIRG.__init__: self.a = [1.0, 10.0, ...]
GATE_WEIGHT_INIT = 1.0  # w_g, the gated reference's weight (a[0])
RESIDUAL_WEIGHT_INIT = 10.0  # w_r, the residual's weight (a[1])


def _check(image_features: torch.Tensor, text_features: torch.Tensor, dim: int) -> None:
    if image_features.shape != text_features.shape or image_features.shape[-1] != dim:
        raise ConfigError(
            f"TIRG built for d={dim} got image features {tuple(image_features.shape)} and text features "
            f"{tuple(text_features.shape)}; pass (N, {dim}) features of one backbone for both, or build "
            f"TIRG with that backbone's feature dimension"
        )


class TIRG(nn.Module):
    """Gated residual composition of a reference image feature and a caption feature.

    Args:
        feature_dim: d, the CLIP feature dimension (RN50: 1024, RN50x4: 640).
        gate_weight, residual_weight: initial w_g and w_r (learned scalars; official code's 1.0, 10.0).

    Example:
        >>> tirg = TIRG(640)
        >>> query = tirg(reference_features, caption_features)   # (N, 640), unit norm
        >>> scores = query @ F.normalize(index_features, dim=-1).T
    """

    def __init__(self, feature_dim: int, gate_weight: float = GATE_WEIGHT_INIT,
                 residual_weight: float = RESIDUAL_WEIGHT_INIT):
        super().__init__()
        if feature_dim < 1:
            raise ConfigError(f"TIRG feature_dim must be a positive integer, got {feature_dim}")
        d = feature_dim
        self.feature_dim = d
        self.config = CombinerConfig(kind="tirg", dim=d)  # what a checkpoint rebuilds it from
        # official code: Sequential(ConCat, BatchNorm1d(2d), ReLU, Linear(2d, d))
        self.gate = nn.Sequential(nn.BatchNorm1d(2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        # official code: Sequential(ConCat, BatchNorm1d(2d), ReLU, Linear(2d, 2d), ReLU, Linear(2d, d))
        self.residual = nn.Sequential(
            nn.BatchNorm1d(2 * d), nn.ReLU(), nn.Linear(2 * d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d)
        )
        self.gate_weight = nn.Parameter(torch.tensor(float(gate_weight)))
        self.residual_weight = nn.Parameter(torch.tensor(float(residual_weight)))

    def unnormalized(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """w_g * sigmoid(gate) * r + w_r * residual, before the normalization ([N, d])."""
        _check(image_features, text_features, self.feature_dim)
        x = torch.cat((image_features, text_features), dim=-1)
        gated = torch.sigmoid(self.gate(x)) * image_features
        return self.gate_weight * gated + self.residual_weight * self.residual(x)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                return_lambda: bool = False):
        """Normalized query features [N, d] from raw reference and caption features [N, d].

        `return_lambda` (the Combiner's call) gives `(query, None)`: TIRG has no dynamic scalar.
        """
        query = F.normalize(self.unnormalized(image_features, text_features), dim=-1)
        return (query, None) if return_lambda else query

