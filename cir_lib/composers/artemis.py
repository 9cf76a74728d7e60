"""ARTEMIS, Attention-based Retrieval with Text-Explicit Matching and Implicit Similarity (Delmas et
al., ICLR 2022), as a composer on CLIP features.

For a reference image feature r, a caption feature m and a candidate target feature t (all d):

    A(m)      = Softmax over the d channels(Linear(d, d)(ReLU(Linear(d, d)(m))))   (A_EM and A_IS)
    T(m)      = normalize(Linear(d, d)(m))
    att(a, x) = normalize(a * x)
    EM(r, m, t) = <T(m), att(A_EM(m), t)>                      explicit matching
    IS(r, m, t) = <att(A_IS(m), r), att(A_IS(m), t)>           implicit similarity
    score       = EM + IS

Module shapes are those of the official code (naver/artemis, artemis_model.py: `Transform_m`,
`AttentionMechanism`, `compute_score_artemis`). The score depends on t through the normalization, so
ARTEMIS has no single query vector; `scores` still ranks a whole index exactly with matrix products:
with a = A(m) and u = a * t,

    <w, normalize(a * t)> = <w * a, t> / ||a * t||,   ||a * t||^2 = sum_k a_k^2 t_k^2 = <a^2, t^2>

so for queries i and index images j, EM[i, j] = ((T(m) * a_EM) @ t.T)[i, j] / sqrt((a_EM^2 @ (t^2).T)[i, j])
and IS likewise with w = att(A_IS(m), r). Both are invariant to the scale of r and t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cir_lib.composers.config import CombinerConfig
from cir_lib.errors import ConfigError

# naver/artemis option.py: --temperature 2.65926; train.py multiplies the (B, B) scores by
# exp(temperature) (= 14.29, CLIP's initial 1 / 0.07) when --learn_temperature is set, as
# scripts/release_script.sh does for every training run; its loss.py is cross-entropy over them.
LOG_TEMPERATURE_INIT = 2.65926
_EPS = 1e-12  # as F.normalize: divide by max(norm, eps)


def _check(dim: int, **features: torch.Tensor) -> None:
    for name, value in features.items():
        if value.dim() != 2 or value.shape[-1] != dim:
            raise ConfigError(
                f"ARTEMIS built for d={dim} got {name} of shape {tuple(value.shape)}; pass (N, {dim}) "
                f"features of the backbone it was built for"
            )


def _wide(x: torch.Tensor) -> torch.Tensor:
    """fp16 / bf16 as fp32; fp32 and fp64 as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class AttentionMechanism(nn.Module):
    """Linear(d, d) -> ReLU -> Linear(d, d) -> Softmax over the channels (official AttentionMechanism)."""

    def __init__(self, dim: int):
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.Softmax(dim=-1))

    def forward(self, text_features: torch.Tensor) -> torch.Tensor:
        return self.attention(text_features)


class Artemis(nn.Module):
    """ARTEMIS scores: explicit matching plus implicit similarity, over raw CLIP features.

    Args:
        feature_dim: d, the CLIP feature dimension (RN50: 1024, RN50x4: 640).
        log_temperature: initial log of the scale applied to scores in the training loss (learned);
            the official 2.65926.

    Example:
        >>> artemis = Artemis(640)
        >>> s = artemis.scores(reference_features, caption_features, index_features)   # (N, M)
        >>> ranking = s.argsort(dim=1, descending=True)
        >>> loss = F.cross_entropy(artemis.logit_scale() * artemis.scores(r, m, targets), torch.arange(B))
    """

    kind = "scores"  # a score matrix over an index, no query vector (cir_lib.composers)

    def __init__(self, feature_dim: int, log_temperature: float = LOG_TEMPERATURE_INIT):
        super().__init__()
        if feature_dim < 1:
            raise ConfigError(f"ARTEMIS feature_dim must be a positive integer, got {feature_dim}")
        d = feature_dim
        self.feature_dim = d
        self.config = CombinerConfig(kind="artemis", dim=d)  # what a checkpoint rebuilds it from
        self.transform_m = nn.Linear(d, d)  # official Transform_m: Linear(d, d) then L2 normalization
        self.attention_em = AttentionMechanism(d)
        self.attention_is = AttentionMechanism(d)
        self.log_temperature = nn.Parameter(torch.tensor(float(log_temperature)))

    def logit_scale(self) -> torch.Tensor:
        """exp(log_temperature): what the training loss multiplies the scores by."""
        return self.log_temperature.exp()

    def _query_parts(self, image_features: torch.Tensor, text_features: torch.Tensor):
        """Per query: (w_EM = T(m) * a_EM, a_EM, w_IS = att(a_IS, r) * a_IS, a_IS)."""
        a_em = self.attention_em(text_features)
        a_is = self.attention_is(text_features)
        t_m = F.normalize(self.transform_m(text_features), dim=-1)
        r_is = F.normalize(a_is * image_features, dim=-1)
        return t_m * a_em, a_em, r_is * a_is, a_is

    def scores(self, image_features: torch.Tensor, text_features: torch.Tensor,
               index_features: torch.Tensor) -> torch.Tensor:
        """Scores [N, M] of N queries (reference, caption) against M index features, exactly.

        Four matrix products: numerators <w, t> and squared denominators <a^2, t^2> for EM and IS.
        """
        _check(self.feature_dim, image_features=image_features, text_features=text_features,
               index_features=index_features)
        if image_features.shape[0] != text_features.shape[0]:
            raise ConfigError(
                f"ARTEMIS got {image_features.shape[0]} reference features but {text_features.shape[0]} "
                f"caption features; pass one of each per query"
            )
        parts = self._query_parts(image_features, text_features)
        # the products in at least fp32, outside autocast: the softmax weights are ~1/d, their squares
        # ~1/d^2 (2e-6 at d = 640), below fp16's normal range (the official-precision path's autocast)
        with torch.autocast(device_type=index_features.device.type, enabled=False):
            w_em, a_em, w_is, a_is = (_wide(x) for x in parts)
            t = _wide(index_features)
            t_sq = t * t
            em = (w_em @ t.T) / (a_em * a_em @ t_sq.T).sqrt().clamp_min(_EPS)
            is_ = (w_is @ t.T) / (a_is * a_is @ t_sq.T).sqrt().clamp_min(_EPS)
        return em + is_

    def pairwise(self, image_features: torch.Tensor, text_features: torch.Tensor,
                 target_features: torch.Tensor) -> torch.Tensor:
        """Scores [N] of each query against its own target (row i with row i), by the definition."""
        _check(self.feature_dim, image_features=image_features, text_features=text_features,
               target_features=target_features)
        if not image_features.shape[0] == text_features.shape[0] == target_features.shape[0]:
            raise ConfigError(
                f"ARTEMIS.pairwise needs one reference, caption and target per row; got "
                f"{image_features.shape[0]}, {text_features.shape[0]} and {target_features.shape[0]} rows"
            )
        a_em = self.attention_em(text_features)
        a_is = self.attention_is(text_features)
        t_m = F.normalize(self.transform_m(text_features), dim=-1)
        em = (t_m * F.normalize(a_em * target_features, dim=-1)).sum(-1)
        is_ = (F.normalize(a_is * image_features, dim=-1) * F.normalize(a_is * target_features, dim=-1)).sum(-1)
        return em + is_

