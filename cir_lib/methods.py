"""A method (a row of the result tables) as data: which composer, over which encoders.

`Method("sum", "zero-shot")` is CLIP as published with the element-wise sum; `Method("sum",
"finetune")` the stage-1 encoders with the sum; `Method("combiner", "finetune")` the trained
Combiner over the stage-1 encoders; `Method("combiner", "zero-shot")` the Combiner trained on the
zero-shot encoders' frozen features (the predecessor, Baldrati et al. ACM MM Asia 2021);
`Method("tirg", ...)` / `Method("artemis", ...)` the cited methods' fusion on the same features.
Whether a method is trained follows from its parts (fine-tuned encoders, a composer with weights).
Its `label` ("stage 1 + Combiner") is for display and for the tables' `method` column only: code
asks the fields, never the label. A method with a trained composer has its own stage-2 run folder,
`runs/<dataset>-<run_stage>` (`Method.run_stage`: "combiner", "combiner-zeroshot", "tirg", ...).

Example:
    >>> FULL_METHOD.label, FULL_METHOD.trained, method_of("zero-shot text only").composer
    ('stage 1 + Combiner', True, 'text_only')
"""

from __future__ import annotations

from dataclasses import dataclass

from cir_lib.composers import get_composer
from cir_lib.errors import ConfigError

ENCODERS = ("zero-shot", "finetune")  # CLIP as published / the stage-1 fine-tuned encoders
ENCODER_LABELS = {"zero-shot": "zero-shot", "finetune": "stage 1"}  # display


@dataclass(frozen=True)
class Method:
    """One row of a table: a registered composer over the zero-shot or the stage-1 encoders."""

    composer: str  # a registered composer name (`cir_lib.composers`)
    encoders: str = "finetune"  # "zero-shot" | "finetune"

    def __post_init__(self):
        get_composer(self.composer)  # ConfigError on an unknown composer
        if self.encoders not in ENCODERS:
            raise ConfigError(f"unknown encoders {self.encoders!r}; valid: {', '.join(ENCODERS)}")

    @property
    def spec(self):
        return get_composer(self.composer)

    @property
    def trained(self) -> bool:
        """Whether anything in the method was trained by the kit (encoders or composer)."""
        return self.encoders == "finetune" or self.spec.trained

    @property
    def ablation(self) -> bool:
        return self.spec.ablation

    @property
    def label(self) -> str:
        """The display label, e.g. "stage 1 sum", "stage 1 + Combiner", "zero-shot image only"."""
        return f"{ENCODER_LABELS[self.encoders]} {self.spec.label}"

    @property
    def run_stage(self) -> str:
        """The stage-2 run folder's name after `<dataset>-` for a trained composer: "combiner" (the
        paper's stage 1 + Combiner, the name runs always had), else "<composer>" over the stage-1
        encoders and "<composer>-zeroshot" over the zero-shot ones ("combiner-zeroshot", "tirg",
        "artemis-zeroshot"). ConfigError for a method without a trained composer (no run of its own)."""
        if not self.spec.trained:
            raise ConfigError(f"{self.label!r} trains no composer: it has no stage-2 run folder")
        return self.composer + ("" if self.encoders == "finetune" else "-zeroshot")


MAIN_METHODS = (Method("sum", "zero-shot"), Method("sum", "finetune"), Method("combiner", "finetune"))  # in order
ABLATION_METHODS = (Method("image_only", "zero-shot"), Method("text_only", "zero-shot"),
                    Method("image_only", "finetune"), Method("text_only", "finetune"))
# The composer rows: every trained composer over both encoders, beside the main rows (which hold
# the stage-1 Combiner). "zero-shot + Combiner" is the predecessor's method; TIRG and ARTEMIS the
# cited fusions on the same CLIP features, trained with the same stage-2 recipe.
COMPOSER_METHODS = (Method("combiner", "zero-shot"), Method("tirg", "zero-shot"), Method("tirg", "finetune"),
                    Method("artemis", "zero-shot"), Method("artemis", "finetune"))
FULL_METHOD = Method("combiner", "finetune")  # the paper's method (its published rows)
STAGE1_METHOD = Method("sum", "finetune")
ALL_METHODS = MAIN_METHODS + COMPOSER_METHODS + ABLATION_METHODS  # the tables' rows, in this order

# Paired differences of the composer rows, (a, b) for "a - b": what the stage-1 encoders add under
# each composer, and the Combiner against each other composer on the same encoders.
COMPOSER_DIFFERENCES = (
    (FULL_METHOD, Method("combiner", "zero-shot")),
    (FULL_METHOD, Method("tirg", "finetune")),
    (FULL_METHOD, Method("artemis", "finetune")),
    (Method("combiner", "zero-shot"), Method("tirg", "zero-shot")),
    (Method("combiner", "zero-shot"), Method("artemis", "zero-shot")),
    (Method("tirg", "finetune"), Method("tirg", "zero-shot")),
    (Method("artemis", "finetune"), Method("artemis", "zero-shot")),
)


def stage2_methods(composers) -> tuple:
    """The methods with a trained composer among `composers` (names), each with its own stage-2
    run: the stage-1 Combiner first, then `COMPOSER_METHODS` in order.

    Example:
        >>> [m.run_stage for m in stage2_methods(("combiner", "tirg"))]
        ['combiner', 'combiner-zeroshot', 'tirg-zeroshot', 'tirg']
    """
    return tuple(m for m in (FULL_METHOD,) + COMPOSER_METHODS if m.composer in composers)


def methods_for(composers) -> tuple:
    """The rows of a series that trains `composers`: the main rows, the composer rows of those
    composers, the ablations."""
    return MAIN_METHODS + tuple(m for m in COMPOSER_METHODS if m.composer in composers) + ABLATION_METHODS


def method_of(method) -> Method:
    """A Method from itself or from its label; ConfigError naming the known labels otherwise."""
    if isinstance(method, Method):
        return method
    for m in ALL_METHODS:
        if m.label == method:
            return m
    known = [m.label for m in ALL_METHODS]
    raise ConfigError(f"unknown method {method!r}; choose from {', '.join(known)}")
