"""Composer checkpoint files: the kit's own (`{"format", "config", "state_dict", "extra"}`, for every
trained composer: the Combiner, TIRG, ARTEMIS) and the original code's `{"Combiner": state_dict}`,
loaded without executing code."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from cir_lib.composers.artemis import Artemis
from cir_lib.composers.combiner import Combiner
from cir_lib.composers.config import CombinerConfig
from cir_lib.composers.simple import ElementwiseSum
from cir_lib.composers.tirg import TIRG
from cir_lib.errors import ConfigError
from cir_lib.serialization import kit_file_kind, load_file
from cir_lib.runs import atomic_torch_save

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "cir_lib.combiner/1"  # marks files written by save_combiner_checkpoint


# CombinerConfig.kind -> how to build that module from the config (untrained)
_BUILDERS = {
    "sum": lambda c: ElementwiseSum(c.dim or None),
    "combiner": lambda c: Combiner(c.dim, c.proj_dim, c.hidden_dim, c.dropout),
    "tirg": lambda c: TIRG(c.dim),
    "artemis": lambda c: Artemis(c.dim),
}


def combiner_from_config(config: CombinerConfig) -> nn.Module:
    """Build the module a `CombinerConfig` describes (its `kind`: sum, combiner, tirg, artemis)."""
    if config.kind not in _BUILDERS:
        raise ConfigError(f"unknown composer kind {config.kind!r} in a composer config; known: "
                          f"{', '.join(_BUILDERS)} (a file written by a newer version?)")
    return _BUILDERS[config.kind](config)


def save_combiner_checkpoint(combiner: nn.Module, path: Union[str, Path], extra: Optional[dict] = None) -> Path:
    """Write `{"format", "config": CombinerConfig as dict, "state_dict", "extra"}` atomically.

    Example:
        >>> save_combiner_checkpoint(Combiner(128), "runs/comb/best.pt", extra={"epoch": 3})
    """
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
        The module (Combiner, TIRG, Artemis or ElementwiseSum, as the file's config says) in eval mode.

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
    if dim is not None and config.kind != "sum" and config.dim != dim:
        raise ConfigError(
            f"{config.kind} checkpoint {path} was trained on d={config.dim} features but the backbone gives "
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
