"""Look at retrievals: rankings of the element-wise sum and of the Combiner side by side.

`Explorer` loads a Combiner run (and, through it, its frozen stage-1 backbone), computes the
validation index and query features once (through the feature cache), and answers:

    explorer.rank(group, query)            top-k of "stage 1 sum" and "stage 1 + Combiner"
    explorer.rank(group, query, caption=..., reference=...)   a new caption over any reference
    explorer.examples(n, k)                a few queries, ready for `figures.plot_retrieval_grid`
    explorer.lambdas()                     the Combiner's lambda on every validation query
    explorer.widget()                      an ipywidgets explorer for JupyterLab

Both methods share the stage-1 backbone (the Combiner was trained on its frozen features), so the
comparison isolates what the Combiner adds. `others` adds the rankings of other trained composers'
runs over the same encoders ("stage 1 + TIRG", "stage 1 + ARTEMIS"); a composer of kind "scores"
(ARTEMIS) ranks the index by its score matrix. FashionIQ queries are grouped by category (each with
its own index, reference kept in the ranking as the protocol says); CIRR has one group, "cirr",
whose rankings never include the reference image.

Example:
    >>> ex = Explorer("data/mini", "cirr", "results/mini/runs/cirr-combiner", EvalConfig(cache_dir="results/mini/cache"))
    >>> ex.rank("cirr", 0, k=5)["stage 1 + Combiner"][:2]
    [('dev-12-0-img1', PosixPath('...')), ...]
"""

from __future__ import annotations

import dataclasses
import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from cir_lib.composers import ElementwiseSum, composer_kind
from cir_lib.datasets import get_dataset
from cir_lib.methods import FULL_METHOD, STAGE1_METHOD
from cir_lib.devices import pick_device
from cir_lib.errors import ConfigError
from cir_lib.recipes import EvalConfig
from cir_lib.data import eval_captions, load_split
from cir_lib.evaluate import encode_split
from cir_lib.features import text_features
from cir_lib.figures import plot_retrieval_grid
from cir_lib.metrics import rankings_from_scores, ranks_from_scores, target_ranks, top_k
from cir_lib.rebuild import load_run, preprocess_for

logger = logging.getLogger(__name__)

SUM = STAGE1_METHOD.label  # the two rankings shown side by side, by their display labels
COMBINER = FULL_METHOD.label


@dataclass
class RankingSet:
    """One validation group (a FashionIQ category or CIRR val) with its features for one backbone."""

    dataset: str  # "fashioniq" | "cirr"
    group: str  # "dress" / "shirt" / "toptee" / "cirr"
    split: Any  # cir_lib.data.Split
    captions: list  # evaluation caption of each query
    index_features: torch.Tensor  # [N, d] raw image features of the index
    text_features: torch.Tensor  # [Q, d] raw text features of the captions

    @property
    def reference_indices(self) -> torch.Tensor:
        return self.split.reference_indices


class Explorer:
    """Rankings of the sum and of the Combiner over one dataset's validation split.

    Args:
        data_root: folder holding fashionIQ_dataset/ and cirr_dataset/.
        dataset: "fashioniq" or "cirr".
        combiner_run: a Combiner run folder (`cir_lib.train_combiner.train_combiner`); its stage-1 run
            gives the backbone.
        config: an `EvalConfig` (split, cache shared with training and evaluation, skip_missing,
            device: default CUDA when available).
        encoded: {group: EncodedSplit} of this Combiner run from `evaluate_fashioniq` /
            `evaluate_cirr` (their `encoded` argument): reused instead of encoding again.
        others: {method label: stage-2 run folder} of other trained composers over the same encoders
            (e.g. {"stage 1 + TIRG": "results/mini/runs/cirr-tirg"}), ranked beside the two;
            a run on other encoders is refused.
    """

    def __init__(self, data_root, dataset: str, combiner_run, config: Optional[EvalConfig] = None, *,
                 encoded: Optional[dict] = None, others: Optional[dict] = None):
        self.ds = get_dataset(dataset)  # ConfigError on an unknown name, with the known ones
        config = config or EvalConfig()
        self.dataset = dataset
        self.data_root = Path(data_root)
        device = pick_device(config.device)
        backbone, combiner, run_cfg = load_run(combiner_run, device=device)
        if not hasattr(combiner, "dynamic_scalar"):
            raise ConfigError(f"{combiner_run} is not a Combiner run (it holds a {type(combiner).__name__}); "
                              "pass the folder written by train_combiner")
        self.backbone = backbone
        # Features come back on the CPU; the (small) Combiner ranks there too.
        self.methods = {SUM: ElementwiseSum(backbone.embed_dim), COMBINER: combiner.to("cpu").eval()}
        for label, run in (others or {}).items():
            other_backbone, module, _ = load_run(run, device=device)
            if other_backbone.weights_key != backbone.weights_key:
                raise ConfigError(f"{run} was trained on other encoders than {combiner_run}; the explorer ranks "
                                  "over one backbone's features: pass runs over the same encoders")
            self.methods[label] = module.to("cpu").eval()
        preprocess = preprocess_for(run_cfg, backbone)
        self.sets: dict[str, RankingSet] = {}
        self._lambdas: dict[str, np.ndarray] = {}
        for group in self.ds.groups:
            enc = (encoded or {}).get(group)
            if enc is None:  # not handed over by the evaluation: encode (image features via the cache)
                sp = load_split(self.data_root, dataset, config.split, self.ds.group_category(group),
                                skip_missing=config.skip_missing, max_queries=config.max_queries)
                enc = encode_split(sp, backbone, combiner, dataclasses.replace(config, device=str(device)),
                                   preprocess=preprocess)
            if enc.lambdas is not None:
                self._lambdas[group] = enc.lambdas.cpu().numpy()
            self.sets[group] = RankingSet(dataset, group, enc.split, eval_captions(enc.split),
                                          enc.index_features.cpu(), enc.text_features.cpu())

    # ------------------------------------------------------------------ queries and rankings

    @property
    def groups(self) -> list[str]:
        """The groups: FashionIQ categories, or ["cirr"]."""
        return list(self.sets)

    def _set(self, group: str) -> RankingSet:
        if group not in self.sets:
            raise ConfigError(f"unknown group {group!r}; choose one of {self.groups}")
        return self.sets[group]

    def query(self, group: str, i: int) -> dict:
        """{"reference", "caption", "target"} of query i of a group (names; target None on test)."""
        rs = self._set(group)
        if not 0 <= i < len(rs.split.queries):
            raise ConfigError(f"query {i} out of range: {rs.split.label} has {len(rs.split.queries)} queries")
        q = rs.split.queries[i]
        return {"reference": q.reference, "caption": rs.captions[i], "target": q.target}

    @torch.no_grad()
    def _compose(self, group: str, reference_idx: torch.Tensor, text: torch.Tensor) -> dict:
        """{method: (query features or None, lambda or None, scores over the index or None)}."""
        rs = self._set(group)
        image = rs.index_features[reference_idx]
        out = {}
        for m, composer in self.methods.items():
            if composer_kind(composer) == "scores":
                out[m] = (None, None, composer.scores(image, text, rs.index_features))
            else:
                out[m] = (*composer(image, text, return_lambda=True), None)
        return out

    @torch.no_grad()
    def rank(self, group: str, i: Optional[int] = None, *, k: int = 5, caption: Optional[str] = None,
             reference: Optional[str] = None) -> dict:
        """Top-k of both methods for query i of a group, or for a new caption / reference.

        Args:
            group: a FashionIQ category or "cirr".
            i: the query; None needs both `caption` and `reference`.
            k: ranking length.
            caption: a caption typed by the user (default: the query's own).
            reference: an index image name to use as the reference (default: the query's).

        Returns:
            {method: [(image name, image path), ...]} best first, plus "lambda": the Combiner's lambda.
        """
        rs = self._set(group)
        if i is None and (caption is None or reference is None):
            raise ConfigError("give a query index, or both a caption and a reference image name")
        base = self.query(group, i) if i is not None else {"reference": reference, "caption": caption}
        ref_name = reference or base["reference"]
        ref_idx = rs.split.indices([ref_name])
        if caption is None or (i is not None and caption == base["caption"]):
            text = rs.text_features[i:i + 1]
        else:
            text = text_features(self.backbone, [caption])
        composed = self._compose(group, ref_idx, text)
        exclude = ref_idx if self.ds.removes_reference else None  # CIRR never ranks the reference
        out: dict[str, Any] = {}
        for method, (query, lam, scores) in composed.items():
            if scores is not None:
                top = rankings_from_scores(scores, k, exclude)[0][0].tolist()
            else:
                top = top_k(query, rs.index_features, k, exclude_indices=exclude)[0].tolist()
            out[method] = [(rs.split.image_names[j], Path(rs.split.image_paths[j])) for j in top]
            if lam is not None:
                out["lambda"] = float(lam[0])
        return out

    def example(self, group: str, i: int, k: int = 5, caption: Optional[str] = None,
                reference: Optional[str] = None) -> dict:
        """One entry for `figures.plot_retrieval_grid` (target marked when it is the query's own)."""
        rs = self._set(group)
        base = self.query(group, i)
        ranked = self.rank(group, i, k=k, caption=caption, reference=reference)
        own = (caption in (None, base["caption"])) and (reference in (None, base["reference"]))
        ref_name = reference or base["reference"]
        lam = ranked.pop("lambda", None)
        target = base["target"] if own else None
        return {
            "reference": Path(rs.split.image_paths[rs.split.name_to_index[ref_name]]),
            "caption": caption if caption is not None else base["caption"],
            "group": self.ds.group_category(group),
            "target": target,
            "target_path": Path(rs.split.image_paths[rs.split.name_to_index[target]]) if target else None,
            "target_ranks": self.target_ranks(group, i) if target else None,
            "rankings": ranked,
            "lambda": lam,
        }

    @torch.no_grad()
    def target_ranks(self, group: str, i: int) -> dict:
        """{method: rank of query i's target in the whole index} (1 = first), by the metrics' protocol."""
        rs = self._set(group)
        target = self.query(group, i)["target"]
        if target is None:
            raise ConfigError(f"query {i} of {rs.split.label} has no target (test split)")
        ref_idx = rs.reference_indices[i:i + 1]
        exclude = ref_idx if self.ds.removes_reference else None
        tgt_idx = rs.split.indices([target])
        composed = self._compose(group, ref_idx, rs.text_features[i:i + 1])
        return {m: int((ranks_from_scores(scores, tgt_idx, exclude)["ranks"] if scores is not None
                        else target_ranks(query, rs.index_features, tgt_idx, exclude))[0]) + 1
                for m, (query, _, scores) in composed.items()}

    def examples(self, n: int = 4, k: int = 5, seed: int = 0) -> list[dict]:
        """n queries drawn at random (seeded, spread over the groups), ready for the grid figure."""
        rng = np.random.default_rng(seed)
        picks = []
        groups = self.groups
        for j in range(n):
            group = groups[j % len(groups)]
            picks.append((group, int(rng.integers(len(self.sets[group].split.queries)))))
        return [self.example(g, i, k) for g, i in picks]

    def lambdas(self) -> dict[str, np.ndarray]:
        """{group: the Combiner's lambda on each validation query} (weight of the text feature), as the
        evaluation computed them."""
        return dict(self._lambdas)

    # ------------------------------------------------------------------ display

    def static_view(self, n: int = 3, k: int = 5, seed: int = 0, title: str = ""):
        """A retrieval-grid figure of n seeded queries: the fallback when widgets cannot run."""
        return plot_retrieval_grid(self.examples(n, k, seed), title=title)

    def widget(self, k: int = 5):
        """An ipywidgets explorer: pick a group and a query (or a reference and a new caption).

        Choosing a group, a query or a top-k shows the retrieval at once; an edited caption or
        reference is retrieved when Enter is pressed in its box (or the box is left), or with the
        *retrieve* button. A reference name that is not in the
        group's index is reported in the widget (nothing is retrieved for it). Above the figure, one
        line per method lists the retrieved image names.

        Returns:
            An `ipywidgets.VBox`; display it in JupyterLab.
        """
        # here: only a live kernel shows widgets; papermill runs of the notebooks never load them
        import ipywidgets as w
        from IPython.display import display

        group = w.Dropdown(options=self.groups, description="group")
        index = w.BoundedIntText(value=0, min=0, max=len(self.sets[self.groups[0]].split.queries) - 1,
                                 description="query")
        # ensure_option=False: an unknown name reaches `show`, which says so instead of ignoring it
        # continuous_update=False: the value arrives on Enter (or on leaving the box), then retrieves
        reference = w.Combobox(options=list(self.sets[self.groups[0]].split.image_names), description="reference",
                               ensure_option=False, continuous_update=False)
        caption = w.Text(description="caption", layout=w.Layout(width="80%"), continuous_update=False)
        top = w.IntSlider(value=k, min=1, max=10, description="top-k")
        go = w.Button(description="retrieve", button_style="primary")
        message = w.HTML(value="")
        ranked = w.HTML(value="")
        output = w.Output()
        message.add_class("cir-explorer-message")
        ranked.add_class("cir-explorer-ranking")

        filling = [False]  # fill() sets the boxes: their observers must not retrieve twice

        def fill(_=None):
            rs = self.sets[group.value]
            index.max = len(rs.split.queries) - 1
            filling[0] = True
            try:
                reference.options = list(rs.split.image_names)
                q = self.query(group.value, int(index.value))
                reference.value, caption.value = q["reference"], q["caption"]
            finally:
                filling[0] = False
            show()

        def edited(_=None):
            if not filling[0]:
                show()

        def show(_=None):
            rs = self.sets[group.value]
            name = reference.value.strip() or None
            if name is not None and name not in rs.split.name_to_index:
                message.value = (f"<b>unknown reference image</b> {html.escape(name)!r}: it is not in the index "
                                 f"of {html.escape(rs.split.label)} ({len(rs.split.image_names)} images); "
                                 "pick a name from the list")
                return
            try:
                ex = self.example(group.value, int(index.value), int(top.value), caption=caption.value,
                                  reference=name)
            except Exception as err:  # shown to the user in the widget, not swallowed
                message.value = f"<b>error</b>: {html.escape(str(err))}"
                return
            message.value = ""
            ranked.value = "<br>".join(f"<b>{html.escape(m)}</b>: {html.escape(', '.join(n for n, _ in r))}"
                                       for m, r in ex["rankings"].items())
            with output:
                output.clear_output(wait=True)
                display(plot_retrieval_grid([ex]))

        group.observe(fill, names="value")
        index.observe(fill, names="value")
        top.observe(show, names="value")
        reference.observe(edited, names="value")
        caption.observe(edited, names="value")
        go.on_click(show)
        fill()
        return w.VBox([w.HBox([group, index, top]), reference, caption, go, message, ranked, output])


def explorer_tabs(explorers: dict, k: int = 5):
    """One explorer widget per dataset, in tabs.

    Args:
        explorers: {dataset: Explorer}.
        k: initial ranking length.

    Returns:
        An `ipywidgets.Tab`.
    """
    import ipywidgets as w  # here: as in Explorer.widget

    tabs = w.Tab(children=[ex.widget(k) for ex in explorers.values()])
    for i, name in enumerate(explorers):
        tabs.set_title(i, name)
    return tabs


def combiner_lambdas(encoded: dict) -> np.ndarray:
    """The Combiner's lambda on every query (all FashionIQ categories concatenated), from the
    `encoded` dict an evaluation of the Combiner filled ({group: EncodedSplit}).

    Example:
        >>> enc = {}; evaluate_cirr(root, backbone, combiner, encoded=enc); lam = combiner_lambdas(enc)
    """
    missing = [g for g, e in encoded.items() if e.lambdas is None]
    if missing or not encoded:
        raise ConfigError(f"no Combiner lambdas for {missing or 'any group'}: pass the evaluation of a Combiner "
                          "(the element-wise sum has no lambda)")
    return np.concatenate([e.lambdas.cpu().numpy() for e in encoded.values()])


def can_show_widgets() -> bool:
    """True inside a Jupyter kernel with ipywidgets installed (papermill runs pass interactive=False)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
