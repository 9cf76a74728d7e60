"""Query composers on CLIP features, by name: `get_composer("sum")`, `get_composer("combiner")`.

A composer turns a reference image's and a relative caption's features into either

- a query vector (`kind = "vector"`): `forward(image_features, text_features, return_lambda=False)
  -> (N, d)` (and the text weight lambda, or None, with `return_lambda=True`); retrieval ranks the
  index by cosine similarity to it (`cir_lib.evaluate.compose_queries`);
- or a score matrix over an index (`kind = "scores"`): `scores(image_features, text_features,
  index_features) -> (N, M)`, higher is better; retrieval ranks each row as it is
  (`cir_lib.evaluate.compose_scores`, `cir_lib.metrics.ranks_from_scores`). ARTEMIS is such a composer.

The modules: `simple.py` (the sum, image only, text only), `combiner.py` (the Combiner),
`tirg.py` (TIRG, Vo et al., CVPR 2019: query vectors), `artemis.py` (ARTEMIS, Delmas et al., ICLR
2022: scores), `config.py` (`CombinerConfig`, the feature check), `checkpoints.py` (saving and
loading composer files); their public names are re-exported here. docs/composers.md gives TIRG's
and ARTEMIS's equations and sources.

The registry holds what the rest of the kit needs to know about each one: its display label, its
kind, whether it has weights of its own to train (stage 2, `cir_lib.train_combiner`, which builds
the untrained module with `for_training(dim, stage-2 config)`), and how to build an untrained one
from the feature dimension. A method (a row of a table) is data over it: `cir_lib.methods.Method`.
Adding a composer: its module here, one `register_composer` line below, and its test.

Example:
    >>> from cir_lib.composers import get_composer
    >>> spec = get_composer("sum")
    >>> spec.kind, spec.trained, spec.build(512)
    ('vector', False, ElementwiseSum())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from cir_lib.composers.artemis import Artemis
from cir_lib.composers.checkpoints import (
    CHECKPOINT_FORMAT,
    combiner_from_config,
    load_combiner_checkpoint,
    save_combiner_checkpoint,
)
from cir_lib.composers.combiner import Combiner
from cir_lib.composers.config import CombinerConfig, check_features
from cir_lib.composers.simple import ABLATION_COMPOSERS, ElementwiseSum, ImageOnly, TextOnly
from cir_lib.composers.tirg import TIRG
from cir_lib.errors import ConfigError
from cir_lib.recipes import combiner_dims

COMPOSER_KINDS = ("vector", "scores")


@dataclass(frozen=True)
class ComposerSpec:
    """A registered composer."""

    name: str  # registry key ("sum", "combiner", ...)
    label: str  # how a method's label names it ("sum", "+ Combiner", "image only")
    kind: str  # "vector" (a query vector) | "scores" (a score matrix over an index)
    trained: bool  # has weights of its own, trained in stage 2 and loaded from its run folder
    build: Optional[Callable] = None  # build(dim) -> module, for a composer without trained weights
    ablation: bool = False  # one modality alone: a table's ablation row, never marked best
    module: Optional[type] = None  # the module class (for `composer_of`)
    for_training: Optional[Callable] = None  # for_training(dim, CombinerTrainConfig) -> untrained module (stage 2)


__all__ = ["ABLATION_COMPOSERS", "Artemis", "CHECKPOINT_FORMAT", "COMPOSER_KINDS", "Combiner", "CombinerConfig", "ComposerSpec",
           "ElementwiseSum", "ImageOnly", "TextOnly", "check_features", "combiner_from_config", "composer_kind",
           "composer_names", "get_composer", "load_combiner_checkpoint", "register_composer",
           "save_combiner_checkpoint", "TIRG", "trained_composer_names"]

_REGISTRY: dict = {}


def register_composer(spec: ComposerSpec) -> ComposerSpec:
    """Register a composer under its name (refused when the name is taken or the spec is incomplete)."""
    if spec.name in _REGISTRY:
        raise ConfigError(f"composer {spec.name!r} is already registered")
    if spec.kind not in COMPOSER_KINDS:
        raise ConfigError(f"composer {spec.name!r}: kind must be one of {COMPOSER_KINDS}, got {spec.kind!r}")
    if not spec.trained and spec.build is None:
        raise ConfigError(f"composer {spec.name!r} has no trained weights: give build(dim)")
    if spec.trained and spec.for_training is None:
        raise ConfigError(f"composer {spec.name!r} is trained in stage 2: give for_training(dim, config)")
    _REGISTRY[spec.name] = spec
    return spec


def get_composer(name: str) -> ComposerSpec:
    """The registered composer `name`; ConfigError listing the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown composer {name!r}; valid: {', '.join(_REGISTRY)}") from None


def composer_names() -> tuple:
    """The registered names, in registration order."""
    return tuple(_REGISTRY)


def trained_composer_names() -> tuple:
    """The names of the composers trained in stage 2 ("combiner", "tirg", "artemis"), in registration order."""
    return tuple(name for name, spec in _REGISTRY.items() if spec.trained)


def composer_kind(module) -> str:
    """"vector" or "scores" for a composer module (a module without `kind` gives query vectors)."""
    kind = getattr(module, "kind", "vector")
    if kind not in COMPOSER_KINDS:
        raise ConfigError(f"{type(module).__name__}.kind must be one of {COMPOSER_KINDS}, got {kind!r}")
    return kind


register_composer(ComposerSpec("sum", "sum", "vector", trained=False, build=ElementwiseSum, module=ElementwiseSum))
register_composer(ComposerSpec("combiner", "+ Combiner", "vector", trained=True, module=Combiner,
                               for_training=lambda dim, c: Combiner(dim, *combiner_dims(c, dim), c.dropout)))
register_composer(ComposerSpec("image_only", "image only", "vector", trained=False, build=ImageOnly, ablation=True,
                               module=ImageOnly))
register_composer(ComposerSpec("text_only", "text only", "vector", trained=False, build=TextOnly, ablation=True,
                               module=TextOnly))
# The fusion of two cited methods on the same CLIP features (docs/composers.md); trained in stage 2
# with the Combiner's recipe (the cited papers train their encoders too: no value of theirs transfers).
register_composer(ComposerSpec("tirg", "+ TIRG", "vector", trained=True, module=TIRG,
                               for_training=lambda dim, c: TIRG(dim)))
register_composer(ComposerSpec("artemis", "+ ARTEMIS", "scores", trained=True, module=Artemis,
                               for_training=lambda dim, c: Artemis(dim)))
