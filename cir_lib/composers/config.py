"""What builds a query composer (`CombinerConfig`, stored in Combiner checkpoints) and the feature
check every composer makes."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch

from cir_lib.errors import ConfigError


@dataclass
class CombinerConfig:
    """What builds a query composer; stored in Combiner checkpoints."""

    kind: str = "combiner"  # "sum" (element-wise sum), "combiner", "tirg" or "artemis" (the module built)
    dim: int = 640  # CLIP feature dimension d (RN50: 1024, RN50x4: 640)
    proj_dim: Optional[int] = None  # p (Combiner); None means 4 * d
    hidden_dim: Optional[int] = None  # h (Combiner); None means 8 * d
    dropout: float = 0.5  # dropout of the three Combiner branches (Combiner)

    def resolved(self) -> "CombinerConfig":
        """A copy with p and h filled in."""
        cfg = copy.copy(self)
        cfg.proj_dim = cfg.proj_dim or 4 * cfg.dim
        cfg.hidden_dim = cfg.hidden_dim or 8 * cfg.dim
        return cfg


def check_features(image_features: torch.Tensor, text_features: torch.Tensor, dim: Optional[int]) -> None:
    """ConfigError unless both are [N, d] with the same shape (and d = `dim` when given)."""
    if image_features.shape != text_features.shape:
        raise ConfigError(
            f"image features {tuple(image_features.shape)} and text features {tuple(text_features.shape)} "
            f"differ in shape; both must come from the same backbone, one row per query"
        )
    if dim is not None and image_features.shape[-1] != dim:
        raise ConfigError(
            f"features have dimension {image_features.shape[-1]} but the Combiner was built for d={dim}; "
            f"use a Combiner trained on this backbone's features (or build one with dim="
            f"{image_features.shape[-1]})"
        )
