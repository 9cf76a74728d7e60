"""Write the five notebooks of the series from the cell texts below (outputs-free, diffable).

Run `python notebooks/build_notebooks.py` after editing a cell here; never edit the .ipynb files by
hand. Every notebook gets the same `parameters` cell (tagged for papermill), so `cir-lib reproduce`
injects one set of values into all five; `tests/test_notebooks.py` checks the files are in step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

PARAMETERS = '''\
profile = "mini"                                  # smoke | mini | paper (cir_lib.notebook.PROFILES)
data_root = "../data/mini"                        # folder holding fashionIQ_dataset/ and cirr_dataset/
results_dir = "../results/mini"                   # everything the series writes goes here
datasets = ["fashioniq", "cirr"]                  # the benchmarks to run
recipes = {"fashioniq": "mini", "cirr": "mini"}   # training recipe per dataset (cir_lib.recipes.RECIPES)
mini_preset = "mini"                              # make-mini preset to generate; None for real data
pretrain_epochs = None                            # pretrain-mini epochs if cir-mini.pt is absent (None: default)
pretrained = None                                 # starting weights instead of the recipe's (None: the recipe's)
stage1_epochs = None                              # stage-1 epochs instead of the recipe's (None: the recipe's)
combiner_epochs = None                            # Combiner epochs instead of the recipe's (None: the recipe's)
skip_missing = False                              # real data with missing images: skip and report them
n_examples = 4                                    # queries per retrieval grid
top_k = 5                                         # images per ranking
interactive = True                                # 04: ipywidgets explorer (False: static figures)
'''

NOTEBOOKS = {
    "00_data_prep": [
        ("md", """\
# 00 · Data preparation

**What this step does.** It makes sure the data root holds the two benchmarks in their real layouts
(`fashionIQ_dataset/`, `cirr_dataset/`) and that every query and image is accounted for. With the
`smoke` and `mini` profiles it first *generates* the embedded mini benchmark (synthetic garments and
scenes, in exactly the real file formats) and pretrains the tiny `cir-mini` CLIP on it; with the
`paper` profile it only checks your copy of the real datasets.

**Why.** The method's numbers are only meaningful on a known protocol: the reference code silently
dropped queries whose images were missing. Here nothing is dropped without a report. The mini
benchmark lets the whole series run on a laptop in minutes, standing in for the real data (it is
*not* the paper's data, so its numbers are not comparable to the paper's).

**What to look at.** The data check below: queries, index images and missing images per split; the
sample triplets (reference, caption, target) to see what the task asks; for the mini profiles, the
pretraining log of `cir-mini` (it stands in for OpenAI's CLIP pretraining)."""),
        ("params", PARAMETERS),
        ("code", """\
from pathlib import Path

from IPython.display import display

from cir_lib import notebook, report
from cir_lib.check import check_data, format_report
from cir_lib.data import load_split

notebook.notebook_logging()  # the kit's log lines (epochs, scores, cache hits) appear below the cells
paths = notebook.result_paths(results_dir)"""),
        ("md", """\
## The data root

For the mini profiles, the benchmark is generated once (seeded, byte-identical every time) and reused
on later runs. For real data, see the README for where to get FashionIQ and CIRR and how to lay them
out."""),
        ("code", """\
if mini_preset is not None:
    manifest = notebook.ensure_mini(data_root, mini_preset, seed=0)
    print(f"mini benchmark '{manifest['preset']}' (seed {manifest['seed']}): "
          f"{manifest['counts']['images_total']} images under {Path(data_root).resolve()}")
else:
    print(f"real data root: {Path(data_root).resolve()}")"""),
        ("md", """\
## Checking every query and image

`check_data` reads the annotation files of every split, decodes every image and lists every problem.
On a clean data root the last line says so; otherwise each missing image or broken entry is named.
Real copies of FashionIQ often lack images (many links died): either fetch them, or set
`skip_missing = True` so that training and evaluation leave out the queries they affect and report
how many (the protocol changes, so the tables' notes and `.meta.json` say so)."""),
        ("code", """\
data_report = check_data(data_root, datasets, verify_images=True, progress=False)
print(format_report(data_report))
notebook.save_json(data_report, paths.data / "check_data.json")"""),
        ("md", """\
## What a query looks like

A query is a reference image plus a relative caption; the answer is the target image. FashionIQ
captions describe a change of a garment; CIRR captions a change of a scene."""),
        ("code", """\
for dataset in datasets:
    train = load_split(data_root, dataset, "train", skip_missing=skip_missing)
    fig = report.plot_triplets(train, n=6, seed=0, title=f"{report.DATASET_NAMES[dataset]} train: reference, caption, target",
                               out_stem=paths.figures / f"triplets_{dataset}")
    display(fig)"""),
        ("md", """\
## The starting backbone

The paper starts from OpenAI's CLIP (RN50 / RN50x4). On the mini benchmark, OpenAI's weights would
know nothing of these synthetic images, so the tiny `cir-mini` CLIP is pretrained here with CLIP's
own contrastive loss on the mini pool's *absolute* captions (one model for garments and scenes, as CLIP
is one model for everything). It is cached beside the data as `cir-mini.pt`. The paper profile skips
this cell: open_clip downloads (or finds in its cache) OpenAI's weights."""),
        ("code", """\
if mini_preset is not None:
    checkpoint = notebook.ensure_mini_backbone(data_root, epochs=pretrain_epochs)
    print(f"pretrained cir-mini: {checkpoint}")
else:
    print("paper profile: (backbone, weights) per dataset:", notebook.recipe_backbones(recipes, pretrained))"""),
    ],
    "01_stage1_finetune": [
        ("md", """\
# 01 · Stage 1: fine-tuning CLIP with the element-wise sum

**What this step does.** For each dataset it fine-tunes CLIP's **text encoder** (the workshop
version; the journal version also tunes the image encoder: recipe field `encoders`) so that
`normalize(image(reference) + text(caption))` lands near `normalize(image(target))`. The loss is a
cross-entropy over `100 * query @ target.T` with the other targets of the batch as negatives.

**Why.** Out of the box, CLIP's image and text spaces are aligned for *absolute* descriptions, not for
*changes* to an image: summing the two features is a weak query (the "zero-shot sum" row of the
tables). A little task-oriented fine-tuning makes the sum itself a good query, and gives the Combiner
of stage 2 better features to work with.

**What to look at.** The training loss going down, the validation score (FashionIQ: mean of the average
R@10 and R@50; CIRR: mean of the seven recalls) going up, and which epoch was kept as `best.pt`.
Since only the text encoder trains, the image features are computed once and read from the feature
cache at every step."""),
        ("params", PARAMETERS),
        ("code", """\
from IPython.display import display

from cir_lib import notebook, report
from cir_lib.finetune import finetune

notebook.notebook_logging()  # the kit's log lines (epochs, scores, cache hits) appear below the cells
paths = notebook.result_paths(results_dir)"""),
        ("md", """\
## Training

Each run folder (`runs/<dataset>-finetune/`) receives `config.json` (the resolved recipe and the
environment), `history.csv` (one row per epoch), `best.pt` and `last.pt`. Running this notebook
again starts the runs afresh."""),
        ("code", """\
stage1 = {}
for dataset in datasets:
    config = notebook.stage_config(recipes[dataset], "finetune", dataset, epochs=stage1_epochs,
                                   pretrained=pretrained, cache_dir=paths.cache, skip_missing=skip_missing)
    print(f"{dataset}: {config}")
    stage1[dataset] = finetune(data_root, config, notebook.fresh_run_dir(paths.run(dataset, "finetune")))
notebook.run_summary(stage1)"""),
        ("md", """\
## Curves

One line per dataset; validation points appear every `validate_every` epochs."""),
        ("code", """\
fig = report.plot_training_curves({"stage 1": {d: r.run_dir for d, r in stage1.items()}},
                                  title="Stage 1: element-wise sum fine-tuning")
display(fig)"""),
    ],
    "02_combiner_training": [
        ("md", """\
# 02 · Stage 2: training the Combiner

**What this step does.** It freezes the stage-1 CLIP and trains the **Combiner** from scratch on its
features. The Combiner projects the image and text features, mixes them through an MLP and predicts
a scalar **lambda**; the query is `normalize(mixture + lambda * text + (1 - lambda) * image)`.

**Why.** The element-wise sum weighs the image and the caption equally for every query. The Combiner
learns, per query, how much to lean on the caption versus the reference image, and a learned residual
on top. With frozen encoders, every image and caption is encoded once per run: an epoch only runs the
small Combiner, so hundreds of epochs are cheap.

**What to look at.** The loss and validation score per epoch, and the best epoch; notebook 03 compares
the Combiner with the plain sum on the same stage-1 features."""),
        ("params", PARAMETERS),
        ("code", """\
from IPython.display import display

from cir_lib import notebook, report
from cir_lib.train_combiner import train_combiner

notebook.notebook_logging()  # the kit's log lines (epochs, scores, cache hits) appear below the cells
paths = notebook.result_paths(results_dir)"""),
        ("md", """\
## Training

The Combiner run (`runs/<dataset>-combiner/`) records which stage-1 run and weights it was trained
on, so it can always be re-attached to the right encoders."""),
        ("code", """\
combiners = {}
for dataset in datasets:
    config = notebook.stage_config(recipes[dataset], "combiner", dataset, epochs=combiner_epochs,
                                   pretrained=pretrained, cache_dir=paths.cache, skip_missing=skip_missing)
    print(f"{dataset}: {config}")
    combiners[dataset] = train_combiner(data_root, config, paths.run(dataset, "finetune"),
                                        notebook.fresh_run_dir(paths.run(dataset, "combiner")))
notebook.run_summary(combiners)"""),
        ("code", """\
fig = report.plot_training_curves({"Combiner": {d: r.run_dir for d, r in combiners.items()}},
                                  title="Stage 2: Combiner on frozen stage-1 features")
display(fig)"""),
    ],
    "03_evaluation": [
        ("md", """\
# 03 · Evaluation: the tables and figures

**What this step does.** It evaluates three models on the validation split of each dataset with the
benchmark's protocol, and writes the tables in the poster's layout:

| row | model |
| --- | --- |
| zero-shot sum | the starting CLIP (before stage 1), element-wise sum |
| stage 1 sum | the fine-tuned CLIP of notebook 01, element-wise sum |
| stage 1 + Combiner | the same CLIP with the Combiner of notebook 02 |

FashionIQ: Recall@10 and @50 per category (each category ranks its own index; the reference stays in
the ranking) and their averages. CIRR: Recall@1/5/10/50 over the whole index (reference removed) and
Recall_subset@1/2/3 within the query's image set.

**Why.** Each row adds one ingredient, so the table shows what each stage contributes. The paper's
rows (its full method on the real data) sit beside them with the differences, labelled for what they
are: on the mini benchmark they are context, not a comparison.

**What to look at.** The ordering zero-shot < stage 1 < stage 1 + Combiner on both datasets; the
bars; the training curves of both stages; and the distribution of lambda: values near 1 mean the
Combiner leans on the caption, near 0 on the reference image."""),
        ("params", PARAMETERS),
        ("code", """\
from IPython.display import Markdown, display

from cir_lib import explore, notebook, report

notebook.notebook_logging()  # the kit's log lines (epochs, scores, cache hits) appear below the cells
paths = notebook.result_paths(results_dir)"""),
        ("md", "## Evaluating the three rows"),
        ("code", """\
eval_config = notebook.eval_config(paths, skip_missing=skip_missing)  # split val, the shared feature cache
encoded = {dataset: {} for dataset in datasets}  # features and lambdas, reused below
rows = {dataset: notebook.evaluate_methods(data_root, dataset, paths, eval_config, encoded=encoded[dataset])
        for dataset in datasets}
notebook.save_json(rows, paths.metrics / "val_metrics.json")
for dataset in datasets:
    check = notebook.ordering(rows[dataset], dataset)
    scores = ", ".join(f"{m} {s:.2f}" for m, s in check["scores"].items())
    print(f"{dataset}: {scores} -> {'ascending' if check['ascending'] else 'NOT ascending'}")"""),
        ("md", """\
## The tables

Written as `tables/<dataset>.csv` (the numbers), `.md` and `.tex` (with the paper's rows, the
differences and notes), and `.meta.json` (the run configs and the environment that produced them).

Each of this run's numbers carries a 95% bootstrap interval over the queries (`21.2 ±1.9`: the
half-width); the differences table gives each row's gain over the row above with a *paired*
interval (same queries, same resamples): a gain whose interval contains 0 is not distinguishable
from chance on this many queries. The ablation rows (*image only*: the reference image's feature
alone; *text only*: the caption's feature alone) show what each modality contributes."""),
        ("code", """\
tables = {}
for dataset in datasets:
    build = report.fashioniq_table if dataset == "fashioniq" else report.cirr_table
    tables[dataset] = build(rows[dataset], ranks=notebook.ranks_of(encoded[dataset], dataset),
                            context=("cited", "published"))
    title = "FashionIQ val: Recall@K" if dataset == "fashioniq" else "CIRR val: Recall@K and Recall_subset@K"
    files = report.write_table(tables[dataset], paths.tables, dataset, title=f"{title} (profile {profile})",
                               notes=notebook.table_notes(profile, dataset, rows=rows[dataset]),
                               meta=notebook.table_meta(paths, dataset, profile=profile, data_root=data_root),
                               separate_marks=profile != "paper")
    display(Markdown(files["md"].read_text()))"""),
        ("md", "## Recall bars of the three rows"),
        ("code", """\
for dataset in datasets:
    fig = report.plot_recall_bars(tables[dataset], title=f"{report.DATASET_NAMES[dataset]} val (profile {profile})",
                                  out_stem=paths.figures / f"recall_bars_{dataset}")
    display(fig)"""),
        ("md", "## Training curves of both stages"),
        ("code", """\
fig = report.plot_training_curves(notebook.run_dirs(paths, datasets), title=f"Training (profile {profile})",
                                  out_stem=paths.figures / "training_curves")
display(fig)"""),
        ("md", """\
## How much does the Combiner lean on the caption?

lambda is the weight of the caption's feature in the Combiner's convex combination, per query."""),
        ("code", """\
lambdas = {dataset: explore.combiner_lambdas(encoded[dataset]["stage 1 + Combiner"]) for dataset in datasets}
notebook.save_json({d: {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)} for d, v in lambdas.items()},
                   paths.metrics / "lambda_summary.json")
fig = report.plot_lambda_distribution(lambdas, title="Combiner lambda on the validation queries",
                                      out_stem=paths.figures / "lambda_distribution")
display(fig)"""),
    ],
    "04_qualitative": [
        ("md", """\
# 04 · Looking at retrievals

**What this step does.** It shows, for validation queries, the reference image, the caption and the
top-k images retrieved by the **stage-1 sum** and by the **stage-1 + Combiner** (same fine-tuned
CLIP). The target is drawn under the reference and framed in green wherever it was retrieved;
under each method's name, the target's rank in the whole index. The grids are written to
`figures/retrieval_grid_<dataset>`.
The queries are drawn at random (seeded), not picked for looking good.

**Why.** Recall numbers say how often; the grids say how: which attribute of the caption a model
ignores, when the reference image dominates, and what "near misses" look like.

**What to look at.** Where the Combiner moves the target up (or down) compared with the sum, and the lambda
shown beside each caption. In JupyterLab, the explorer at the end lets you pick any query, or type
your own caption over any reference image, and compare the two rankings side by side."""),
        ("params", PARAMETERS),
        ("code", """\
from IPython.display import display

from cir_lib import explore, notebook, report

notebook.notebook_logging()  # the kit's log lines (epochs, scores, cache hits) appear below the cells
paths = notebook.result_paths(results_dir)
eval_config = notebook.eval_config(paths, skip_missing=skip_missing)  # split val, the shared feature cache
explorers = {dataset: explore.Explorer(data_root, dataset, paths.run(dataset, "combiner"), eval_config)
             for dataset in datasets}"""),
        ("md", "## Retrieval grids"),
        ("code", """\
for dataset, explorer in explorers.items():
    fig = report.plot_retrieval_grid(explorer.examples(n_examples, top_k, seed=0),
                                     title=f"{report.DATASET_NAMES[dataset]} val: stage 1 sum vs stage 1 + Combiner (profile {profile})",
                                     out_stem=paths.figures / f"retrieval_grid_{dataset}")
    display(fig)"""),
        ("md", """\
## Explorer

Pick a dataset tab, a group and a query; edit the caption or choose another reference image and
press *retrieve*. Under papermill (`interactive = False`) or without ipywidgets, a static view is
shown instead: one more (seeded) query per dataset with its own caption."""),
        ("code", """\
if interactive and explore.can_show_widgets():
    display(explore.explorer_tabs(explorers, k=top_k))
else:
    for dataset, explorer in explorers.items():
        display(explorer.static_view(n=1, k=top_k, seed=1, title=f"{report.DATASET_NAMES[dataset]}: static view (no widget frontend)"))"""),
    ],
}


def build(name: str, cells: list) -> nbformat.NotebookNode:
    """One notebook from (kind, source) pairs; kind is "md", "code" or "params"."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, source) in enumerate(cells):
        if kind == "md":
            cell = new_markdown_cell(source)
        else:
            cell = new_code_cell(source.rstrip("\n"))
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
        cell["id"] = f"{name[:2]}-{i:02d}"  # stable ids keep the files diffable
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main(out_dir: Path = HERE) -> list[Path]:
    """Write every notebook into out_dir; return the paths."""
    written = []
    for name, cells in NOTEBOOKS.items():
        path = out_dir / f"{name}.ipynb"
        nbformat.write(build(name, cells), path)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
