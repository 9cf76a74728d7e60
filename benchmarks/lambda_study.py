"""Why is the Combiner's dynamic scalar saturated on the mini FashionIQ? A diagnostic study.

    python benchmarks/lambda_study.py                                   # both datasets, defaults
    python benchmarks/lambda_study.py --datasets fashioniq --runs stage1:1e-3:50 stage1:2e-5:300
    python benchmarks/lambda_study.py --out /tmp/lambda_study.json --threads 2

For each dataset of the mini benchmark (generated and cir-mini pretrained when absent, as the mini
profile does; stage 1 trained with the "mini" recipe unless its run folder already holds best.pt):

1. the ratio ||text_feature(caption)|| / ||image_feature(reference)|| over the val queries, raw
   (unnormalized) features as they enter the Combiner, for the zero-shot backbone and after stage 1;
   with the single-modality retrieval scores (caption alone, reference alone, their sum) that say how
   much of the target each modality determines;
2. Combiner trainings (the "mini" recipe's stage-2 config with lr / epochs overridden), each
   `features:lr:epochs` with features "stage1" or "zero-shot": at a few epochs, the quantiles of the
   dynamic scalar's pre-sigmoid logit over the val queries (eval mode), the fraction with |logit| > 5,
   lambda's mean / std, the training loss and the validation metrics; and the wall time;
3. a compact table on stdout and a JSON of every number (default results/mini/lambda_study.json).

The Combiner loop is the one of stage 2 (same init seed, batches, Adam, loss), rewritten here only to
look inside the model between epochs; validation uses the metric functions of the kit.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Everything taken from the kit, in one place.
from cir_lib.backbone import load_backbone  # noqa: E402
from cir_lib.composers import Combiner  # noqa: E402
from cir_lib.project import portable  # noqa: E402
from cir_lib.data import eval_captions  # noqa: E402
from cir_lib.datasets import get_dataset  # noqa: E402
from cir_lib.train_combiner import combiner_step  # noqa: E402
from cir_lib.features import image_features, text_features  # noqa: E402
from cir_lib.metrics import cirr_recall, fashioniq_recall  # noqa: E402
from cir_lib.finetune import finetune  # noqa: E402
from cir_lib.rebuild import preprocess_for  # noqa: E402
from cir_lib.notebook import ensure_mini, ensure_mini_backbone, stage_config  # noqa: E402
from cir_lib.recipes import resolve_pretrained  # noqa: E402
from cir_lib.selection import selection_score  # noqa: E402
from cir_lib.training_data import (  # noqa: E402
    epoch_batches,
    load_train_split,
    load_val_splits,
    tokenize_variants,
    training_captions,
)

RECIPE = "mini"
SATURATED = 5.0  # |logit| above this: lambda within 0.0067 of 0 or 1, sigmoid gradient < 0.0067
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
# the mini recipe (1e-3, 50 epochs), the paper's lr, the mini lr on zero-shot features, two lower lrs
DEFAULT_RUNS = ("stage1:1e-3:50", "stage1:2e-5:400", "zero-shot:1e-3:50", "stage1:2e-4:100", "stage1:5e-4:100")


# ------------------------------------------------------------------------------------------ features


def _backbones(data_root: Path, dataset: str, work_dir: Path, threads: int) -> dict:
    """{"zero-shot": Backbone, "stage1": Backbone} and the stage-1 run's record."""
    cfg = stage_config(RECIPE, "finetune", dataset, cache_dir=work_dir / "cache", threads=threads)
    zero = load_backbone(cfg.backbone, resolve_pretrained(cfg.pretrained, data_root))
    run_dir = work_dir / "runs" / f"{dataset}-stage1"
    t0 = time.perf_counter()
    trained_here = not (run_dir / "best.pt").is_file()
    if trained_here:
        finetune(data_root, cfg, run_dir)
    with open(run_dir / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    scored = [r for r in history if r.get("score")]
    best = max(scored, key=lambda r: float(r["score"]))
    record = {"run": str(run_dir), "trained_here": trained_here, "lr": cfg.lr, "epochs": cfg.epochs,
              "train_seconds": round(sum(float(r["seconds"]) for r in history), 1),
              "wall_seconds": round(time.perf_counter() - t0, 1) if trained_here else None,
              "best_epoch": int(best["epoch"]), "best_score": float(best["score"])}
    stage1 = load_backbone(cfg.backbone, str(run_dir / "best.pt"))
    for bb in (zero, stage1):
        bb.model.eval()
        for p in bb.model.parameters():
            p.requires_grad_(False)
    return {"zero-shot": zero, "stage1": stage1}, record, cfg


def _val_features(backbone, splits: dict, preprocess, cache_dir: Path) -> dict:
    """{label: (split, index features [N, d], caption features [Q, d])}, raw, fp32, CPU."""
    out = {}
    for label, split in splits.items():
        index = image_features(backbone, split, preprocess, cache_dir=cache_dir, batch_size=128, device="cpu")
        text = text_features(backbone, backbone.tokenize(eval_captions(split)), batch_size=256, device="cpu")
        out[label] = (split, index.float(), text.float())
    return out


def _train_features(backbone, split, preprocess, cache_dir: Path):
    """Training index features [N, d] and every caption variant's features [Q, V, d]."""
    index = image_features(backbone, split, preprocess, cache_dir=cache_dir, batch_size=128, device="cpu")
    tokens = tokenize_variants(backbone, training_captions(split))
    q, v, ctx = tokens.shape
    text = text_features(backbone, tokens.view(-1, ctx), batch_size=256, device="cpu").view(q, v, -1)
    return index.float(), text.float()


def _stats(values: torch.Tensor, qs=(0.25, 0.5, 0.75)) -> dict:
    values = values.double()
    out = {"mean": float(values.mean()), "std": float(values.std()) if len(values) > 1 else 0.0}
    out.update({f"q{round(q * 100):02d}": float(torch.quantile(values, q)) for q in qs})
    return out


def norm_ratios(vals: dict) -> dict:
    """||text|| / ||reference image|| over all val queries, with the two norms' means."""
    ratio, t_norm, i_norm = [], [], []
    for split, index, text in vals.values():
        ref = index[split.reference_indices]
        ratio.append(text.norm(dim=-1) / ref.norm(dim=-1))
        t_norm.append(text.norm(dim=-1))
        i_norm.append(ref.norm(dim=-1))
    return {"ratio": _stats(torch.cat(ratio)), "text_norm_mean": float(torch.cat(t_norm).mean()),
            "image_norm_mean": float(torch.cat(i_norm).mean()), "n": int(sum(len(r) for r in ratio))}


def val_metrics(dataset: str, vals: dict, compose) -> dict:
    """Flat metrics of compose(reference features, caption features) -> queries, as the kit reports them."""
    ds = get_dataset(dataset)
    per = {}
    for label, (split, index, text) in vals.items():
        query = compose(index[split.reference_indices], text)
        if not ds.has_members:
            per[label] = fashioniq_recall(query, index, split.target_indices)
        else:
            per[label] = cirr_recall(query, index, split.reference_indices, split.target_indices,
                                     split.member_indices)
    return ds.aggregate(per)


def single_modality(dataset: str, vals: dict) -> dict:
    """Caption alone, reference alone, and their element-wise sum, as queries."""
    return {
        "text only": val_metrics(dataset, vals, lambda i, t: F.normalize(t, dim=-1)),
        "image only": val_metrics(dataset, vals, lambda i, t: F.normalize(i, dim=-1)),
        "sum": val_metrics(dataset, vals, lambda i, t: F.normalize(i + t, dim=-1)),
    }


# ------------------------------------------------------------------------------------------ Combiner


def snapshot_epochs(epochs: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, 100, ... up to `epochs`, and `epochs` itself."""
    marks, base = [], 1
    while base <= epochs:
        marks += [m for m in (base, 2 * base, 5 * base) if m <= epochs]
        base *= 10
    return sorted(set(marks + [epochs]))


def _logit_snapshot(combiner: Combiner, vals: dict) -> dict:
    logits, lams = [], []
    with torch.no_grad():
        for split, index, text in vals.values():
            ref = index[split.reference_indices]
            logits.append(combiner.dynamic_scalar_logit(ref, text))
            lams.append(combiner(ref, text, return_lambda=True)[1])
    logit, lam = torch.cat(logits).double(), torch.cat(lams).double()
    return {"logit_quantiles": {f"q{round(q * 100):02d}": float(torch.quantile(logit, q)) for q in QUANTILES},
            "saturated_fraction": float((logit.abs() > SATURATED).double().mean()),
            "lambda_mean": float(lam.mean()), "lambda_std": float(lam.std())}


def train_traced(dataset: str, train_split, train_feats, vals: dict, lr: float, epochs: int, threads: int,
                 seed: int = 0) -> dict:
    """Train a Combiner as stage 2 does (the mini recipe's config, `lr` and `epochs` overridden),
    recording the logit distribution and the validation metrics at `snapshot_epochs(epochs)`."""
    cfg = stage_config(RECIPE, "combiner", dataset, epochs=epochs, lr=lr, threads=threads, seed=seed)
    index, text = train_feats
    reference, target = train_split.reference_indices, train_split.target_indices
    q_count, n_var, dim = text.shape
    torch.manual_seed(cfg.seed)
    combiner = Combiner(dim, proj_dim=cfg.proj_multiplier * dim, hidden_dim=cfg.hidden_multiplier * dim,
                        dropout=cfg.dropout)
    optimizer = torch.optim.Adam(combiner.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    marks = set(snapshot_epochs(epochs))
    combiner.eval()
    trace = [{"epoch": 0, "loss": None, "seconds": 0.0, **_logit_snapshot(combiner, vals)}]
    train_seconds, best = 0.0, None
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        combiner.train()
        total, steps = 0.0, 0
        for q_idx, v_idx in epoch_batches(q_count, n_var, cfg.batch_size, generator):
            value = combiner_step(combiner, index[reference[q_idx]], text[q_idx, v_idx], index[target[q_idx]],
                                  optimizer)  # the kit's own stage-2 step
            total, steps = total + value, steps + 1
        train_seconds += time.perf_counter() - t0
        if epoch in marks:
            combiner.eval()
            with torch.no_grad():
                metrics = val_metrics(dataset, vals, combiner)
            row = {"epoch": epoch, "loss": total / max(steps, 1), "seconds": round(train_seconds, 1),
                   **_logit_snapshot(combiner, vals), "score": selection_score(dataset, metrics),
                   "metrics": metrics}
            trace.append(row)
            if best is None or row["score"] > best["score"]:
                best = {"epoch": epoch, "score": row["score"], "metrics": metrics}
            print(f"  {dataset} lr {lr:g} epoch {epoch}: loss {row['loss']:.3f} score {row['score']:.2f} "
                  f"lambda {row['lambda_mean']:.3f}±{row['lambda_std']:.3f} "
                  f"|logit|>{SATURATED:g} {row['saturated_fraction']:.2f} ({train_seconds:.0f} s)", flush=True)
    return {"lr": lr, "epochs": epochs, "batch_size": cfg.batch_size, "steps_per_epoch": q_count // cfg.batch_size,
            "proj_dim": cfg.proj_multiplier * dim, "hidden_dim": cfg.hidden_multiplier * dim,
            "train_seconds": round(train_seconds, 1), "final": trace[-1], "best_snapshot": best, "trace": trace}


# ------------------------------------------------------------------------------------------ report


def headline(dataset: str, metrics: dict) -> str:
    if dataset == "fashioniq":
        return f"R@10 {metrics['average_recall@10']:.1f} R@50 {metrics['average_recall@50']:.1f}"
    return f"R@1 {metrics['recall@1']:.1f} R@5 {metrics['recall@5']:.1f} Rs@1 {metrics['recall_subset@1']:.1f}"


def print_tables(report: dict) -> None:
    print("\n|text| / |image| over val queries (raw features)")
    print(f"{'dataset':<10} {'backbone':<10} {'mean':>6} {'q25':>6} {'q50':>6} {'q75':>6} {'|t|':>7} {'|i|':>7}")
    for ds, r in report["datasets"].items():
        for bb, n in r["norms"].items():
            s = n["ratio"]
            print(f"{ds:<10} {bb:<10} {s['mean']:6.2f} {s['q25']:6.2f} {s['q50']:6.2f} {s['q75']:6.2f} "
                  f"{n['text_norm_mean']:7.2f} {n['image_norm_mean']:7.2f}")
    print("\nstage 1 (the mini recipe)")
    for ds, r in report["datasets"].items():
        s1 = r["stage1"]
        print(f"{ds:<10} lr {s1['lr']:g}, {s1['epochs']} epochs, {s1['train_seconds']:.0f} s of epochs, "
              f"best epoch {s1['best_epoch']} (score {s1['best_score']:.2f})")
    print("\nsingle-modality queries")
    for ds, r in report["datasets"].items():
        for bb, m in r["single_modality"].items():
            print(f"{ds:<10} {bb:<10} " + " | ".join(f"{k}: {headline(ds, v)}" for k, v in m.items()))
    print("\nCombiner runs: final epoch (logit quantiles over val queries, eval mode)")
    print(f"{'dataset':<10} {'run':<18} {'s':>6} {'q05':>7} {'q50':>7} {'q95':>7} {'sat':>5} {'lambda':>13}  metrics")
    for ds, r in report["datasets"].items():
        for name, run in r["combiner_runs"].items():
            f = run["final"]
            q = f["logit_quantiles"]
            print(f"{ds:<10} {name:<18} {run['train_seconds']:6.0f} {q['q05']:7.2f} {q['q50']:7.2f} {q['q95']:7.2f} "
                  f"{f['saturated_fraction']:5.2f} {f['lambda_mean']:6.3f}±{f['lambda_std']:.3f}  "
                  f"{headline(ds, f['metrics'])} (best ep {run['best_snapshot']['epoch']}: "
                  f"{headline(ds, run['best_snapshot']['metrics'])})")
    print("\nmedian logit / fraction |logit| > 5, by epoch")
    for ds, r in report["datasets"].items():
        for name, run in r["combiner_runs"].items():
            cells = [f"{t['epoch']}: {t['logit_quantiles']['q50']:.1f}/{t['saturated_fraction']:.2f}"
                     for t in run["trace"]]
            print(f"{ds:<10} {name:<18} " + "  ".join(cells))


def parse_run(spec: str) -> tuple[str, float, int]:
    features, lr, epochs = spec.split(":")
    if features not in ("stage1", "zero-shot"):
        raise SystemExit(f"--runs {spec!r}: features must be 'stage1' or 'zero-shot'")
    return features, float(lr), int(epochs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default="data/mini", help="mini benchmark (generated when absent)")
    p.add_argument("--work-dir", default="runs/lambda_study", help="stage-1 runs and feature caches")
    p.add_argument("--out", default="results/mini/lambda_study.json", help="JSON written here")
    p.add_argument("--datasets", nargs="+", default=["fashioniq", "cirr"], choices=["fashioniq", "cirr"])
    p.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS),
                   help="Combiner trainings as features:lr:epochs (features: stage1 | zero-shot)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0,
                   help="the Combiners' seed (init, batches, dropout); stage 1 keeps the recipe's")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = [parse_run(s) for s in args.runs]
    data_root, work_dir = Path(args.data_root).resolve(), Path(args.work_dir).resolve()
    t_start = time.perf_counter()
    ensure_mini(data_root, "mini")
    ensure_mini_backbone(data_root)
    report = {"data_root": str(data_root), "recipe": RECIPE, "threads": args.threads, "combiner_seed": args.seed,
              "saturated_if_abs_logit_above": SATURATED, "datasets": {}}
    for dataset in args.datasets:
        backbones, stage1_record, s1cfg = _backbones(data_root, dataset, work_dir, args.threads)
        cache = work_dir / "cache"
        val_splits = load_val_splits(data_root, dataset)
        train_split = load_train_split(data_root, dataset)
        vals, train_feats = {}, {}
        for name, bb in backbones.items():
            preprocess = preprocess_for(s1cfg, bb)
            vals[name] = _val_features(bb, val_splits, preprocess, cache)
        r = {"stage1": stage1_record,
             "norms": {name: norm_ratios(v) for name, v in vals.items()},
             "single_modality": {name: single_modality(dataset, v) for name, v in vals.items()},
             "combiner_runs": {}}
        for features, lr, epochs in runs:
            if features not in train_feats:
                bb = backbones[features]
                train_feats[features] = _train_features(bb, train_split, preprocess_for(s1cfg, bb), cache)
            name = f"{features} lr {lr:g}"
            r["combiner_runs"][name] = train_traced(dataset, train_split, train_feats[features], vals[features],
                                                    lr, epochs, args.threads, args.seed)
        report["datasets"][dataset] = r
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # paths under the project relative to it: the record does not change with the checkout
    out.write_text(json.dumps(portable(report, Path(__file__).resolve().parents[1]), indent=2, default=str) + "\n")
    print_tables(report)
    print(f"\nwrote {out} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
