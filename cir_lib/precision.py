"""The official code's precision path, on request (`precision="official"`; the default "fp32" is the kit's).

What "official" changes, each as ABaldrati/CLIP4Cir's `src/` does it on CUDA:

- **Weights**: fine-tuned CLIP weights are loaded into `clip.load`'s fp16 model before `.float()`, so
  the convolution, linear and attention weights (and the text / image projections) end up rounded to
  fp16; embeddings, normalization layers and the logit scale keep fp32. `round_weights_fp16` does
  exactly that (`clip.model.convert_weights`, then back to fp32). It applies to every device: the
  rounding is the same on a CPU. Used when stage 2 loads its stage-1 encoders and when a run trained
  with `precision="official"` (or `evaluate --precision official`) is evaluated.
- **Stage 2**: the Combiner trains on fp16 features (the official code extracts them with the fp16 CLIP;
  here the fp32 features of the rounded weights, rounded to fp16: `round_features_fp16`), under fp16
  autocast with a GradScaler on CUDA (fp32 arithmetic on the CPU, which has no fp16 autocast here).
- **Stage 1**: the logits and the cross-entropy are computed under the training-step autocast (CUDA;
  fp16 by default) instead of in fp32.

Validation during training and evaluation stay fp32 computations (as the official code's), on the
rounded weights where they apply.
"""

from __future__ import annotations

import torch
from torch import nn

_MHA_TENSORS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
                "bias_k", "bias_v")
_PROJECTIONS = ("text_projection", "proj")


def _round_(tensor) -> None:
    if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
        with torch.no_grad():  # in place and counted as a change (Backbone.weights_key is recomputed)
            tensor.copy_(tensor.to(torch.float16).to(tensor.dtype))


def round_weights_fp16(model: nn.Module) -> nn.Module:
    """Round a CLIP's weights to fp16 values in place, as loading them into the official code's fp16
    model and converting back to fp32 does (`clip.model.convert_weights`, then `.float()`).

    Rounded: the weight and bias of every Conv1d, Conv2d and Linear (attention output projections
    included), nn.MultiheadAttention's input projections and biases, and the `text_projection` /
    `proj` parameters. Left in fp32: embeddings, positional embeddings, BatchNorm / LayerNorm, the
    logit scale. Values already representable in fp16 (OpenAI's released weights) do not change.

    Args:
        model: an open_clip CLIP (or any module); the dtype of its tensors is kept.

    Returns:
        The same model.

    Example:
        >>> round_weights_fp16(backbone.model)  # evaluation with precision="official"
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            _round_(module.weight)
            _round_(module.bias)
        if isinstance(module, nn.MultiheadAttention):
            for name in _MHA_TENSORS:
                _round_(getattr(module, name, None))
        for name in _PROJECTIONS:
            value = getattr(module, name, None)
            if isinstance(value, torch.Tensor):
                _round_(value)
    return model


def round_features_fp16(features: torch.Tensor) -> torch.Tensor:
    """Features rounded to fp16 values (kept in their dtype): what the official Combiner trains on."""
    return features.to(torch.float16).to(features.dtype)
