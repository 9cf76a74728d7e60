"""What a GPU run costs, beside the reference figures measured on one H200 (docs/costs.md).

    python benchmarks/bench_gpu.py                      # CUDA when available, else the CPU version
    python benchmarks/bench_gpu.py --device cuda --amp bf16 [--quick] [--csv out.csv]
    python benchmarks/bench_gpu.py --device cpu [--threads 1]

CUDA (random-init open_clip models, synthetic inputs, model compute only):
  1. image encoding, RN50 and RN50x4, img/s: under --amp autocast (as the reference figures) and in
     strict fp32 (what evaluation features use);
  2. stage 1, text encoder only, RN50x4: triplets/s with cached image features vs re-encoding the
     reference and target images every step;
  3. stage 1, both encoders, RN50x4 batch 128: triplets/s and peak GiB, without and with gradient
     checkpointing;
  4. a Combiner step (p 2560, h 5120) on cached RN50x4 features, triplets/s;
  5. retrieval, 100k queries x 1M index at d 640 (fp32): target ranks (evaluation) and top-50
     (submission), queries/s. docs/costs.md has no figure for it.
Each row is printed beside the reference figure as a ratio (measured / reference). The training rows time
the kit's own step functions, those `finetune` and `train_combiner` call for every batch
(`finetune.stage1_step`, `train_combiner.combiner_step`), not copies of them.

CPU (--device cpu, the default without CUDA): the stage-1 step of RN50 at 224 px, batch 8, for the
three ways it can run (text encoder with cached image features; text encoder re-encoding images;
both encoders), seconds per step and the step's peak resident memory (each variant in a fresh
process, peak RSS minus the RSS after loading the model), so that CPU-only users know the cost.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import sync, timeit  # noqa: E402  (benchmarks/timing.py)
from cir_lib import features, training  # noqa: E402
from cir_lib import finetune as stage1  # noqa: E402
from cir_lib.train_combiner import combiner_step  # noqa: E402
from cir_lib.backbone import load_backbone  # noqa: E402
from cir_lib.composers import Combiner  # noqa: E402

# docs/costs.md, "Reference figures, one H200": random-init open_clip, bf16.
RECIPE = {
    "encode RN50": 11_000,  # img/s
    "encode RN50x4": 4_000,  # img/s
    "stage 1 text RN50x4, cached image features": 4_300,  # triplets/s
    "stage 1 text RN50x4, re-encoding images": 1_100,  # triplets/s
    "stage 1 both RN50x4 b128, checkpointing off": 500,  # triplets/s (~38 GiB)
    "combiner RN50x4 cached features": 850_000,  # triplets/s
}
RECIPE_PEAK_GIB = {"stage 1 both RN50x4 b128, checkpointing off": 38.0}

_WORDS = ("is", "has", "more", "less", "red", "blue", "darker", "longer", "sleeves", "and", "a", "logo",
          "lettering", "striped", "the", "dog", "two", "cats", "instead", "of", "remove", "background")


# --------------------------------------------------------------------------------------- helpers


def _tokens(bb, batch, device, seed=0):
    """Caption-like token ids (3-20 words, as relative captions are)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 21, (batch,), generator=g).tolist()
    words = torch.randint(len(_WORDS), (batch, 20), generator=g).tolist()
    captions = [" ".join(_WORDS[w] for w in row[:n]) for row, n in zip(words, lengths)]
    return bb.tokenize(captions).to(device)


def _images(bb, n, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, bb.image_size, bb.image_size, generator=g).to(device)
    return images.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else images


def _autocast(device, amp):
    return training.autocast_factory(device, amp)


def _row(name, value, unit, **extra) -> dict:
    figure = RECIPE.get(name)
    row = {"measure": name, "value": value, "unit": unit, "recipe": figure,
           "ratio": (value / figure) if figure and value else None}
    row.update(extra)
    if name in RECIPE_PEAK_GIB:
        row["recipe_peak_gib"] = RECIPE_PEAK_GIB[name]
    return row


class _Stage1Step:
    """One stage-1 step: the kit's own `finetune.stage1_step` (the function `finetune` calls for every
    batch: contrastive loss of the element-wise sum, then `training.optimizer_step` with AdamW)."""

    def __init__(self, bb, encoders, batch, device, amp, reencode=False, checkpointing=False):
        self.model = bb.model.eval()
        self.batch, self.device, self.reencode = batch, device, reencode
        self.train_image = encoders in ("image", "both")
        params = stage1.freeze_for_stage1(self.model, encoders)
        if checkpointing:
            stage1.enable_grad_checkpointing(self.model)
        self.opt = training.make_optimizer(torch.optim.AdamW, params, lr=2e-6, betas=(0.9, 0.999), eps=1e-7,
                                    weight_decay=0.01)
        self.autocast = _autocast(device, amp)
        self.scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and amp == "fp16" else None
        self.images = _images(bb, 2 * batch, device)  # reference images, then target images
        self.tokens = _tokens(bb, batch, device)
        self.encoder = stage1.Stage1Encoder(self.model, self.train_image)
        with torch.no_grad(), features.strict_fp32(device):
            cached = self.model.encode_image(self.images).float()
        self.batch_inputs = ({"images": self.images} if self.train_image or reencode else
                             {"reference_features": cached[:batch], "target_features": cached[batch:]})

    def __call__(self):
        stage1.stage1_step(self.encoder, self.tokens, self.opt, self.autocast, self.scaler, **self.batch_inputs)


# ------------------------------------------------------------------------------------------ CUDA


def bench_encode(name, device, amp, batch, warmup, repeats) -> list:
    bb = load_backbone(name, "none", device=device)
    model = bb.model.eval()
    images = _images(bb, batch, device)
    rows = []
    for label, ctx in ((f"{amp} autocast", _autocast(device, amp)), ("fp32 (evaluation)", None)):
        def run():
            with torch.no_grad():
                if ctx is None:
                    with features.strict_fp32(device):
                        model.encode_image(images)
                else:
                    with ctx():
                        model.encode_image(images)
        sec = timeit(run, device, warmup, repeats)
        measure = f"encode {name}" if ctx is not None else f"encode {name} fp32"
        rows.append(_row(measure, batch / sec, "img/s", precision=label, batch=batch))
    return rows


def bench_stage1_text(name, device, amp, batch, warmup, repeats) -> list:
    rows = []
    for label, reencode in (("cached image features", False), ("re-encoding images", True)):
        bb = load_backbone(name, "none", device=device)
        step = _Stage1Step(bb, "text", batch, device, amp, reencode=reencode)
        sec = timeit(step, device, warmup, repeats)
        rows.append(_row(f"stage 1 text {name}, {label}", batch / sec, "triplets/s", precision=amp, batch=batch))
        del step, bb
        torch.cuda.empty_cache()
    return rows


def bench_stage1_both(name, device, amp, batch, warmup, repeats) -> list:
    rows = []
    for ckpt in (False, True):
        measure = f"stage 1 both {name} b{batch}, checkpointing {'on' if ckpt else 'off'}"
        try:
            bb = load_backbone(name, "none", device=device)
            step = _Stage1Step(bb, "both", batch, device, amp, checkpointing=ckpt)
            step()  # allocates the optimizer state
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            sec = timeit(step, device, max(warmup - 1, 0), repeats)
            peak = torch.cuda.max_memory_allocated(device) / 2**30
            rows.append(_row(measure, batch / sec, "triplets/s", precision=amp, batch=batch, peak_gib=peak))
            del step, bb
        except torch.cuda.OutOfMemoryError:
            rows.append(_row(measure, None, "triplets/s", precision=amp, batch=batch, note="out of memory"))
        torch.cuda.empty_cache()
    return rows


def bench_combiner(device, amp, batch, warmup, repeats, dim=640, proj=2560, hidden=5120) -> list:
    torch.manual_seed(0)
    comb = Combiner(dim, proj_dim=proj, hidden_dim=hidden).to(device).train()
    opt = training.make_optimizer(torch.optim.Adam, comb.parameters(), lr=2e-5)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and amp == "fp16" else None
    autocast = _autocast(device, amp)
    ref, text, tgt = (torch.randn(batch, dim, device=device) for _ in range(3))

    def step():  # the kit's own stage-2 step (what train_combiner runs for every batch)
        combiner_step(comb, ref, text, tgt, opt, autocast, scaler)

    sec = timeit(step, device, warmup, repeats)
    return [_row("combiner RN50x4 cached features", batch / sec, "triplets/s", precision=amp, batch=batch)]


def bench_retrieval(device, n_queries, n_index, dim=640, repeats=1) -> list:
    from cir_lib.metrics import target_ranks, top_k

    g = torch.Generator(device=device).manual_seed(0)
    index = torch.randn(n_index, dim, device=device, generator=g)
    queries = torch.randn(n_queries, dim, device=device, generator=g)
    target = torch.randint(n_index, (n_queries,), device=device, generator=g)
    rows = []
    with features.strict_fp32(device):
        sec = timeit(lambda: target_ranks(queries, index, target), device, 1, repeats)
        rows.append(_row(f"retrieval ranks {n_queries}x{n_index}", n_queries / sec, "queries/s",
                         precision="fp32", seconds=sec))
        sec = timeit(lambda: top_k(queries, index, 50), device, 1, repeats)
        rows.append(_row(f"retrieval top-50 {n_queries}x{n_index}", n_queries / sec, "queries/s",
                         precision="fp32", seconds=sec))
    return rows


def run_cuda(args) -> list:
    device = torch.device(args.device)
    quick = args.quick
    warmup, repeats = (1, 3) if quick else (args.warmup, args.repeats)
    rows = []
    for name in ("RN50", "RN50x4"):
        rows += bench_encode(name, device, args.amp, args.encode_batch, warmup, repeats)
        torch.cuda.empty_cache()
    rows += bench_stage1_text("RN50x4", device, args.amp, args.stage1_batch, warmup, repeats)
    rows += bench_stage1_both("RN50x4", device, args.amp, 128, warmup, repeats)
    rows += bench_combiner(device, args.amp, 4096, warmup, repeats * 4)
    nq, n = (10_000, 1_000_000) if quick else (100_000, 1_000_000)
    rows += bench_retrieval(device, nq, n)
    return rows


# ------------------------------------------------------------------------------------------- CPU


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _current_rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def _cpu_variant(queue, label, encoders, reencode, batch, threads, warmup, repeats):
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    bb = load_backbone("RN50", "none", device="cpu")
    step = _Stage1Step(bb, encoders, batch, torch.device("cpu"), "none", reencode=reencode)
    base = _current_rss_gib()
    sec = timeit(step, torch.device("cpu"), warmup, repeats)
    queue.put(_row(f"cpu stage 1 RN50 224px b{batch}, {label}", sec, "s/step", precision="fp32", batch=batch,
                   triplets_per_s=batch / sec, peak_rss_gib=_rss_gib(), step_peak_gib=_rss_gib() - base))


def run_cpu(args) -> list:
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for label, encoders, reencode in (("text encoder, cached image features", "text", False),
                                      ("text encoder, re-encoding images", "text", True),
                                      ("both encoders", "both", False)):
        queue = ctx.Queue()
        proc = ctx.Process(target=_cpu_variant, args=(queue, label, encoders, reencode, args.cpu_batch,
                                                      args.threads, args.cpu_warmup, args.cpu_repeats))
        proc.start()
        rows.append(queue.get())
        proc.join()
    return rows


# ------------------------------------------------------------------------------------------- main


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", default="bf16", choices=("bf16", "fp16", "none"),
                    help="training-step autocast on CUDA (the reference figures are bf16)")
    ap.add_argument("--encode-batch", type=int, default=256, help="images per encoding batch (CUDA)")
    ap.add_argument("--stage1-batch", type=int, default=128, help="stage-1 text-only batch (CUDA)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="CUDA: fewer repeats, 10k retrieval queries")
    ap.add_argument("--cpu-batch", type=int, default=8, help="CPU stage-1 batch")
    ap.add_argument("--cpu-warmup", type=int, default=1)
    ap.add_argument("--cpu-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--csv", help="also write the rows to this CSV file")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPUs"
    print(f"# {where}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    rows = run_cuda(args) if device.type == "cuda" else run_cpu(args)
    for r in rows:
        ratio = f"{r['ratio']:.2f}x reference ({_fmt(r['recipe'])})" if r.get("ratio") else "no reference figure"
        extra = ", ".join(f"{k} {_fmt(v)}" for k, v in r.items()
                          if k not in ("measure", "value", "unit", "recipe", "ratio"))
        print(f"{r['measure']:58s} {_fmt(r['value']):>12s} {r['unit']:10s} {ratio}; {extra}")
    if args.csv:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("measure", "value", "unit"), k))
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
