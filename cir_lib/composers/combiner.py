"""The CLIP4Cir Combiner (stage 2): a learned, per-query mix of the image and caption features.

It keeps the module names of the original CLIP4Cir code (`text_projection_layer`,
`image_projection_layer`, `combiner_layer`, `output_layer`, `dynamic_scalar`) so that its released
`{"Combiner": state_dict}` checkpoints load as they are (`cir_lib.composers.checkpoints`).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from cir_lib.composers.config import CombinerConfig, check_features


class Combiner(nn.Module):
    """The CLIP4Cir Combiner (stage 2 of the paper).

    text / image branches: Linear(d, p) -> ReLU -> Dropout; concatenated (text, image) -> 2p;
    mixture: Linear(2p, h) -> ReLU -> Dropout -> Linear(h, d);
    lambda: Linear(2p, h) -> ReLU -> Dropout -> Linear(h, 1) -> Sigmoid;
    query = normalize(mixture + lambda * text + (1 - lambda) * image) with the raw features.

    Example:
        >>> comb = Combiner(640)                       # p = 2560, h = 5120
        >>> q, lam = comb(img, txt, return_lambda=True)  # [N, 640], [N]
    """

    def __init__(self, dim: int, proj_dim: Optional[int] = None, hidden_dim: Optional[int] = None,
                 dropout: float = 0.5):
        super().__init__()
        self.config = CombinerConfig("combiner", dim, proj_dim, hidden_dim, dropout).resolved()
        self.dim = dim
        p, h = self.config.proj_dim, self.config.hidden_dim
        self.text_projection_layer = nn.Linear(dim, p)
        self.image_projection_layer = nn.Linear(dim, p)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.combiner_layer = nn.Linear(2 * p, h)
        self.output_layer = nn.Linear(h, dim)
        self.dropout3 = nn.Dropout(dropout)
        self.dynamic_scalar = nn.Sequential(
            nn.Linear(2 * p, h), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h, 1), nn.Sigmoid()
        )

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, return_lambda: bool = False):
        """Normalized query features [N, d], and lambda [N] (weight of the text feature) when asked."""
        check_features(image_features, text_features, self.dim)
        text_proj = self.dropout1(F.relu(self.text_projection_layer(text_features)))
        image_proj = self.dropout2(F.relu(self.image_projection_layer(image_features)))
        raw_combined = torch.cat((text_proj, image_proj), dim=-1)
        combined = self.dropout3(F.relu(self.combiner_layer(raw_combined)))
        lam = self.dynamic_scalar(raw_combined)  # [N, 1]
        output = self.output_layer(combined) + lam * text_features + (1 - lam) * image_features
        query = F.normalize(output, dim=-1)
        return (query, lam.squeeze(-1)) if return_lambda else query

    def dynamic_scalar_logit(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """The dynamic scalar before its Sigmoid: lambda = sigmoid(logit), one value per query.

        For diagnosing saturation (|logit| > 5 puts lambda within 0.007 of 0 or 1, where its gradient
        vanishes). Follows the module's mode: call `.eval()` first for deterministic values.

        Args:
            image_features, text_features: raw CLIP features [N, d], as `forward` takes them.

        Returns:
            The logits [N].
        """
        check_features(image_features, text_features, self.dim)
        text_proj = self.dropout1(F.relu(self.text_projection_layer(text_features)))
        image_proj = self.dropout2(F.relu(self.image_projection_layer(image_features)))
        raw_combined = torch.cat((text_proj, image_proj), dim=-1)
        return self.dynamic_scalar[:-1](raw_combined).squeeze(-1)  # every layer but the Sigmoid
