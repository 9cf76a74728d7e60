"""The profiles of the notebook series: which data, which weights and which recipes.

    smoke  the smoke mini benchmark (generated when absent), tiny epochs: checks the whole path
           in about a minute after set-up (CI, `make test`)
    mini   the embedded mini benchmark (generated when absent) with `cir-mini` pretrained on it
           (cached beside the data); `make reproduce`; ~4 minutes of notebooks on 2 idle CPU cores
           (~6 minutes from a fresh clone, set-up included)
    mini-x2  the same on a benchmark twice the mini's size (the same pool, so the same cir-mini):
           for comparisons the mini cannot resolve (docs/mini-calibration.md); about 1.5 times the
           mini's time
    paper  a real data root (`--data-root`), OpenAI's weights and the paper's recipes (a GPU)

`cir_lib.reproduce` runs the series for a profile; `cir_lib.settings` resolves a notebook's
parameters against one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional

from cir_lib.constants import CIRR_DIR, COMPOSERS, FASHIONIQ_DIR, MINI_CHECKPOINT
from cir_lib.errors import ConfigError, PipelineError
from cir_lib.project import project_root


@dataclass(frozen=True)
class Profile:
    """What `reproduce` runs: data, weights, recipes and epoch overrides."""

    name: str  # "smoke" | "mini" | "mini-x2" | "paper"
    description: str  # one line for --help and the summary
    mini_preset: Optional[str] = None  # make-mini preset generated into the data root; None = real data
    default_data_root: Optional[str] = None  # relative to the project root; None = --data-root required
    recipes: Mapping[str, str] = field(default_factory=dict)  # {dataset: recipe name}
    pretrain_epochs: Optional[int] = None  # mini profiles: pretrain-mini epochs when cir-mini.pt is absent; None = its default
    stage1_epochs: Optional[int] = None  # override of the recipes' stage-1 epochs; None = the recipe's
    combiner_epochs: Optional[int] = None  # override of the recipes' Combiner epochs; None = the recipe's
    pretrained: Optional[str] = None  # override of the recipes' starting weights; None = the recipe's
    n_examples: int = 4  # queries per retrieval grid
    top_k: int = 5  # images per ranking in the grids and the explorer
    shows_ordering: bool = True  # large enough for zero-shot < stage 1 < stage 1 + Combiner to be expected
    backbones: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # {backbone: {dataset: recipe}}
    # when the profile trains several backbones (paper: RN50 and RN50x4); empty: `recipes` alone
    composers: tuple = COMPOSERS  # the composers stage 2 trains, each over the zero-shot and the
    # stage-1 encoders (`--set composers=combiner,tirg`)


_MINI = Profile(
    name="mini",
    description="embedded mini benchmark with cir-mini pretrained on it, CPU recipes (~4 min of notebooks on 2 idle cores)",
    mini_preset="mini",
    default_data_root="data/mini",
    recipes={"fashioniq": "mini", "cirr": "mini"},
    pretrain_epochs=None,  # pretrain-mini's own default
    n_examples=4,
    top_k=5,
    # every composer over both encoders (the tables' composer rows); stage 2 trains on cached
    # features, so TIRG and ARTEMIS cost less than one more Combiner run per dataset
    # (docs/composers.md, Cost); --set composers=combiner trains the Combiner alone
)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="smoke mini benchmark, a few tiny epochs: checks that every notebook runs (minutes)",
        mini_preset="smoke",
        default_data_root="data/smoke",
        recipes={"fashioniq": "smoke", "cirr": "smoke"},
        pretrain_epochs=1,
        pretrained="{data_root}/" + MINI_CHECKPOINT,  # exercise the pretraining path, in seconds
        stage1_epochs=2,
        combiner_epochs=2,
        n_examples=2,
        top_k=4,
        shows_ordering=False,  # two tiny epochs on a tiny benchmark: the rows' order is noise
    ),
    "mini": _MINI,
    # the mini's settings on a benchmark twice its size (the same pool, so the same cir-mini)
    "mini-x2": replace(
        _MINI, name="mini-x2", mini_preset="mini-x2", default_data_root="data/mini-x2",
        description="the mini profile on a benchmark twice the mini's size (same pool, same cir-mini): "
                    "narrower intervals at about 1.5 times the mini's time"),
    "paper": Profile(
        name="paper",
        description="real FashionIQ and CIRR (--data-root), OpenAI RN50 and RN50x4 weights, the paper's recipes (GPU)",
        mini_preset=None,
        default_data_root=None,
        recipes={"fashioniq": "paper-rn50-fashioniq", "cirr": "paper-rn50-cirr"},
        backbones={"RN50": {"fashioniq": "paper-rn50-fashioniq", "cirr": "paper-rn50-cirr"},
                   "RN50x4": {"fashioniq": "paper-rn50x4-fashioniq", "cirr": "paper-rn50x4-cirr"}},
        n_examples=4,
        top_k=5,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called `name` (a key of `PROFILES`); ConfigError naming the choices otherwise."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]



def resolve_data_root(profile: Profile, data_root: Optional[str | os.PathLike]) -> Path:
    """The data root a profile uses: the given one, else the profile's default under the project
    (`cir_lib.project.project_root`: found from the working directory, not from the library's place)."""
    if data_root is not None:
        return Path(data_root).expanduser().resolve()
    if profile.default_data_root is None:
        raise PipelineError(
            f"profile {profile.name!r} needs the real datasets: pass --data-root DIR, the folder holding "
            f"{FASHIONIQ_DIR}/ and {CIRR_DIR}/ (in a notebook: data_root = \"DIR\" in the parameters cell; "
            "README: 'Running the paper profile')")
    return (project_root() / profile.default_data_root).resolve()

