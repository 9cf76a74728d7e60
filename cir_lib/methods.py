"""A method (a row of the result tables) as data: which composer, over which encoders.

`Method("sum", "zero-shot")` is CLIP as published with the element-wise sum; `Method("sum",
"finetune")` the stage-1 encoders with the sum; `Method("combiner", "finetune")` the trained
Combiner over the stage-1 encoders. Whether a method is trained follows from its parts (fine-tuned
encoders, a composer with weights). Its `label` ("stage 1 + Combiner") is for display and for the
tables' `method` column only: code asks the fields, never the label.

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
        spec = get_composer(self.composer)  # ConfigError on an unknown composer
        if self.encoders not in ENCODERS:
            raise ConfigError(f"unknown encoders {self.encoders!r}; valid: {', '.join(ENCODERS)}")
        if spec.trained and self.encoders != "finetune":
            raise ConfigError(f"the {self.composer} composer is trained on the stage-1 encoders; use encoders='finetune'")

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


MAIN_METHODS = (Method("sum", "zero-shot"), Method("sum", "finetune"), Method("combiner", "finetune"))  # in order
ABLATION_METHODS = (Method("image_only", "zero-shot"), Method("text_only", "zero-shot"),
                    Method("image_only", "finetune"), Method("text_only", "finetune"))
FULL_METHOD = Method("combiner", "finetune")  # the paper's method (its published rows)
STAGE1_METHOD = Method("sum", "finetune")


def method_of(method) -> Method:
    """A Method from itself or from its label; ConfigError naming the known labels otherwise."""
    if isinstance(method, Method):
        return method
    for m in MAIN_METHODS + ABLATION_METHODS:
        if m.label == method:
            return m
    known = [m.label for m in MAIN_METHODS + ABLATION_METHODS]
    raise ConfigError(f"unknown method {method!r}; choose from {', '.join(known)}")
