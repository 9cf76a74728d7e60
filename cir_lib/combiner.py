"""Query composition: the element-wise sum (stage 1, zero-shot baseline) and the Combiner (stage 2),
plus two ablation composers, image only and text only (one modality's feature as the query).

Both take the raw (unnormalized) CLIP features of the reference image and of the relative caption and
return the normalized query feature. The Combiner keeps the module names of the original CLIP4Cir code
(`text_projection_layer`, `image_projection_layer`, `combiner_layer`, `output_layer`, `dynamic_scalar`)
so that its released `{"Combiner": state_dict}` checkpoints load as they are.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from cir_lib.errors import ConfigError
from cir_lib.serialization import kit_file_kind, load_file

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cir_lib.combiner/1"  # marks files written by save_combiner_checkpoint


@dataclass
class CombinerConfig:
    """What builds a query composer; stored in Combiner checkpoints."""

    kind: str = "combiner"  # "sum" (element-wise sum) or "combiner"
    dim: int = 640  # CLIP feature dimension d (RN50: 1024, RN50x4: 640)
    proj_dim: Optional[int] = None  # p; None means 4 * d
    hidden_dim: Optional[int] = None  # h; None means 8 * d
    dropout: float = 0.5  # dropout of the three Combiner branches

    def resolved(self) -> "CombinerConfig":
        """A copy with p and h filled in."""
        cfg = copy.copy(self)
        cfg.proj_dim = cfg.proj_dim or 4 * cfg.dim
        cfg.hidden_dim = cfg.hidden_dim or 8 * cfg.dim
        return cfg


def _check_features(image_features: torch.Tensor, text_features: torch.Tensor, dim: Optional[int]) -> None:
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


class ElementwiseSum(nn.Module):
    """query = normalize(image_feature + text_feature), on raw CLIP features (CLIP4Cir stage 1)."""

    def __init__(self, dim: Optional[int] = None):
        super().__init__()
        self.dim = dim
        self.config = CombinerConfig(kind="sum", dim=dim or 0)

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor, return_lambda: bool = False):
        """Normalized query features [N, d] (and None for lambda when `return_lambda`)."""
        _check_features(image_features, text_features, self.dim)
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
        _check_features(image_features, text_features, self.dim)
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
        _check_features(image_features, text_features, self.dim)
        query = F.normalize(text_features, dim=-1)
        return (query, None) if return_lambda else query


# The ablation rows of the tables: "<stage> image only" / "<stage> text only" use these composers
# on that stage's encoders (e.g. "stage 1 text only": the fine-tuned text encoder, caption alone).
ABLATION_COMPOSERS = {"image only": ImageOnly, "text only": TextOnly}


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
        _check_features(image_features, text_features, self.dim)
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
        _check_features(image_features, text_features, self.dim)
        text_proj = self.dropout1(F.relu(self.text_projection_layer(text_features)))
        image_proj = self.dropout2(F.relu(self.image_projection_layer(image_features)))
        raw_combined = torch.cat((text_proj, image_proj), dim=-1)
        return self.dynamic_scalar[:-1](raw_combined).squeeze(-1)  # every layer but the Sigmoid


def combiner_from_config(config: CombinerConfig) -> nn.Module:
    """Build the module a `CombinerConfig` describes."""
    if config.kind == "sum":
        return ElementwiseSum(config.dim or None)
    return Combiner(config.dim, config.proj_dim, config.hidden_dim, config.dropout)


def save_combiner_checkpoint(combiner: nn.Module, path: Union[str, Path], extra: Optional[dict] = None) -> Path:
    """Write `{"format", "config": CombinerConfig as dict, "state_dict", "extra"}` atomically.

    Example:
        >>> save_combiner_checkpoint(Combiner(128), "runs/comb/best.pt", extra={"epoch": 3})
    """
    from cir_lib.runs import atomic_torch_save

    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": asdict(combiner.config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in combiner.state_dict().items()},
        "extra": extra or {},
    }
    return atomic_torch_save(payload, path)


_ORIGINAL_KEYS = (
    "text_projection_layer.weight", "image_projection_layer.weight", "combiner_layer.weight",
    "output_layer.weight", "dynamic_scalar.0.weight", "dynamic_scalar.3.weight",
)


def load_combiner_checkpoint(
    path: Union[str, Path], dim: Optional[int] = None, map_location: Union[str, torch.device] = "cpu"
) -> nn.Module:
    """Load a Combiner from the kit's format or from the original `{"Combiner": state_dict}` format.

    For the original format p and h are read from the weight shapes.

    Args:
        path: checkpoint file.
        dim: feature dimension of the backbone it will run on; a mismatch raises ConfigError.
        map_location: where tensors are loaded.

    Returns:
        The module (Combiner or ElementwiseSum) in eval mode.

    Example:
        >>> comb = load_combiner_checkpoint("combiner.pt", dim=640)  # CLIP4Cir's released RN50x4 Combiner
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Combiner checkpoint {path} not found; pass the path of an existing file")
    ckpt = load_file(path, "Combiner checkpoint", map_location=map_location)  # weights-only
    kit_file = kit_file_kind(ckpt)
    if kit_file and not str(ckpt["format"]).startswith(CHECKPOINT_FORMAT.split("/")[0] + "/"):
        raise ConfigError(f"{path} is {kit_file[0]}, not a Combiner checkpoint; {kit_file[1]}")
    if isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT:
        config = CombinerConfig(**ckpt["config"])
        state_dict = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("Combiner"), dict):
        state_dict = {k.removeprefix("module."): v for k, v in ckpt["Combiner"].items()}
        missing = [k for k in _ORIGINAL_KEYS if k not in state_dict]
        if missing:
            raise ConfigError(
                f"{path}: the 'Combiner' state dict lacks {missing}; it is not a CLIP4Cir Combiner checkpoint"
            )
        proj, hidden = state_dict["text_projection_layer.weight"], state_dict["combiner_layer.weight"]
        config = CombinerConfig("combiner", dim=int(proj.shape[1]), proj_dim=int(proj.shape[0]),
                                hidden_dim=int(hidden.shape[0]))
    else:
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ConfigError(
            f"{path} is not a Combiner checkpoint (top-level: {keys}); expected a file written by "
            f"save_combiner_checkpoint or CLIP4Cir's {{'Combiner': state_dict}}"
        )
    if dim is not None and config.kind == "combiner" and config.dim != dim:
        raise ConfigError(
            f"Combiner checkpoint {path} was trained on d={config.dim} features but the backbone gives "
            f"d={dim}; use the backbone it was trained with (or a Combiner trained on this backbone)"
        )
    module = combiner_from_config(config)
    if config.kind == "sum" and dim is not None:
        module.dim = dim
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"Combiner checkpoint {path} does not match its config: {err}") from err
    return module.eval()
