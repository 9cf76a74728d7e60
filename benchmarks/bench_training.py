"""Training-speed benchmark: what caching features buys in both stages, and what gradient
checkpointing saves in memory.

    python benchmarks/bench_training.py                          # CPU, cir-mini (random weights)
    python benchmarks/bench_training.py --backbone RN50x4 --device cuda --amp bf16
    python benchmarks/bench_training.py --device cuda --memory   # + RN50x4 both encoders, batch 128

Measured on synthetic inputs (random weights, random preprocessed image tensors, random token ids),
model compute only: the re-encoding paths leave out image decoding and preprocessing, which the
original code also paid at every step, so the speedups shown are lower bounds.

1. Stage 1, text encoder only: a step with cached image features (encode captions, loss, backward,
   AdamW step) vs a step that re-encodes the reference and target images with the frozen image
   encoder first.
2. Stage 2: a Combiner epoch on cached features vs an epoch that encodes the reference and target
   images and the captions with the frozen CLIP at every step (as the original code did).
3. (CUDA, --memory) peak memory of a both-encoder step at batch 128, with and without gradient
   checkpointing.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import timeit  # noqa: E402  (benchmarks/timing.py)
from cir_lib import features, losses, training  # noqa: E402
from cir_lib.finetune import enable_grad_checkpointing, freeze_for_stage1  # noqa: E402
from cir_lib.backbone import load_backbone  # noqa: E402
from cir_lib.composers import Combiner  # noqa: E402
from cir_lib.train_combiner import combiner_step  # noqa: E402


def _autocast(device, amp):
    return training.autocast_factory(device, amp)


_WORDS = ("is", "has", "more", "less", "red", "blue", "darker", "longer", "sleeves", "and", "a", "logo",
          "lettering", "striped", "the", "dog", "two", "cats", "instead", "of", "remove", "background")


def _inputs(bb, batch, device, seed=0):
    """Random image tensors and caption-like token ids (3-20 words, as relative captions are)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2 * batch, 3, bb.image_size, bb.image_size, generator=g).to(device)
    lengths = torch.randint(3, 21, (batch,), generator=g).tolist()
    words = torch.randint(len(_WORDS), (batch, 20), generator=g).tolist()
    captions = [" ".join(_WORDS[w] for w in row[:n]) for row, n in zip(words, lengths)]
    return images, bb.tokenize(captions).to(device)


def bench_stage1(bb, batch, device, amp, warmup, repeats) -> list:
    model = bb.model.eval()
    params = freeze_for_stage1(model, "text")
    opt = training.make_optimizer(torch.optim.AdamW, params, lr=2e-6, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.01)
    autocast = _autocast(device, amp)
    images, tokens = _inputs(bb, batch, device)
    with torch.no_grad(), autocast():
        cached = model.encode_image(images).float()
    ref_c, tgt_c = cached[:batch], cached[batch:]

    def step(reencode: bool):
        with autocast():
            if reencode:
                with torch.no_grad():
                    feats = model.encode_image(images).float()
                ref, tgt = feats[:batch], feats[batch:]
            else:
                ref, tgt = ref_c, tgt_c
            text = features.encode_text(model, tokens)
        loss = losses.contrastive_loss(torch.nn.functional.normalize(ref + text.float(), dim=-1), tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rows = []
    for name, reencode in (("cached image features", False), ("re-encoding images", True)):
        sec = timeit(lambda: step(reencode), device, warmup, repeats)
        rows.append({"stage": "1 (text encoder)", "variant": name, "batch": batch,
                     "seconds_per_step": sec, "triplets_per_s": batch / sec})
    return rows


def bench_stage2(bb, batch, n_triplets, device, amp, warmup, repeats) -> list:
    model = bb.model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    d = bb.embed_dim
    torch.manual_seed(0)
    comb = Combiner(d).to(device).train()
    opt = training.make_optimizer(torch.optim.Adam, comb.parameters(), lr=2e-5)
    autocast = _autocast(device, amp)
    images, tokens = _inputs(bb, batch, device)
    with torch.no_grad(), autocast():
        feats = model.encode_image(images).float()
        text_c = features.encode_text(model, tokens).float()
    ref_c, tgt_c = feats[:batch], feats[batch:]
    steps = max(1, n_triplets // batch)

    def step(ref, text, tgt):  # the kit's own stage-2 step (what train_combiner runs per batch)
        combiner_step(comb, ref, text, tgt, opt)

    def epoch(reencode: bool):
        for _ in range(steps):
            if reencode:
                with torch.no_grad(), autocast():
                    f = model.encode_image(images).float()
                    t = features.encode_text(model, tokens).float()
                step(f[:batch], t, f[batch:])
            else:
                step(ref_c, text_c, tgt_c)

    rows = []
    for name, reencode in (("cached features", False), ("re-encoding every step", True)):
        sec = timeit(lambda: epoch(reencode), device, min(warmup, 1), max(1, repeats // 4))
        rows.append({"stage": "2 (Combiner)", "variant": name, "batch": batch,
                     "seconds_per_epoch": sec, "triplets_per_epoch": steps * batch,
                     "triplets_per_s": steps * batch / sec})
    return rows


def _memory_row(device, amp, batch, name, checkpointing: bool) -> dict:
    bb = load_backbone(name, "none", device=device)
    model = bb.model.eval()
    params = freeze_for_stage1(model, "both")
    if checkpointing:
        enable_grad_checkpointing(model)
    opt = training.make_optimizer(torch.optim.AdamW, params, lr=2e-6, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.01)
    images, tokens = _inputs(bb, batch, device)
    autocast = _autocast(device, amp)

    def step():
        with autocast():
            feats = model.encode_image(images)
            text = features.encode_text(model, tokens)
        ref, tgt = feats[:batch].float(), feats[batch:].float()
        loss = losses.contrastive_loss(torch.nn.functional.normalize(ref + text.float(), dim=-1), tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # allocates the optimizer state
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    sec = timeit(step, device, 1, 3)
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    return {"stage": f"1 (both encoders, {name})",
            "variant": f"grad checkpointing {'on' if checkpointing else 'off'}",
            "batch": batch, "seconds_per_step": sec, "triplets_per_s": batch / sec, "peak_gib": peak}


def bench_memory(device, amp, batch=128, name="RN50x4") -> list:
    rows = []
    for checkpointing in (False, True):
        rows.append(_memory_row(device, amp, batch, name, checkpointing))
        torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="cir-mini", help="open_clip model name (random weights)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="bf16", choices=("bf16", "fp16", "none"), help="autocast on CUDA")
    ap.add_argument("--batch", type=int, default=None, help="stage-1 batch (default 128; 32 for cir-mini on CPU)")
    ap.add_argument("--combiner-batch", type=int, default=None, help="stage-2 batch (default 4096; 256 on CPU)")
    ap.add_argument("--triplets", type=int, default=None, help="triplets in a stage-2 epoch (default: 4 batches)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--memory", action="store_true", help="(CUDA) peak memory of RN50x4 both encoders, batch 128")
    ap.add_argument("--csv", help="also write the rows to this CSV file")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    batch = args.batch or (32 if cpu else 128)
    cbatch = args.combiner_batch or (256 if cpu else 4096)
    n_triplets = args.triplets or 4 * cbatch
    bb = load_backbone(args.backbone, "none", device=device)
    print(f"# {args.backbone} (random weights) on {device}"
          f"{'' if cpu else ' (' + torch.cuda.get_device_name(device) + f', amp {args.amp})'}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows = bench_stage1(bb, batch, device, args.amp, args.warmup, args.repeats)
    bb = load_backbone(args.backbone, "none", device=device)
    rows += bench_stage2(bb, cbatch, n_triplets, device, args.amp, args.warmup, args.repeats)
    if args.memory:
        if device.type != "cuda":
            print("# --memory needs --device cuda; skipped")
        else:
            rows += bench_memory(device, args.amp)
    for r in rows:
        extra = "".join(f", {k} {v:.3f}" if isinstance(v, float) else f", {k} {v}"
                        for k, v in r.items() if k not in ("stage", "variant"))
        print(f"stage {r['stage']:24s} {r['variant']:24s}{extra}")
    s1 = [r for r in rows if r["stage"].startswith("1 (text")]
    s2 = [r for r in rows if r["stage"].startswith("2")]
    print(f"# stage 1 speedup from cached image features: {s1[0]['triplets_per_s'] / s1[1]['triplets_per_s']:.1f}x")
    print(f"# stage 2 speedup from cached features: {s2[0]['triplets_per_s'] / s2[1]['triplets_per_s']:.1f}x")
    if args.csv:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("stage", "variant"), k))
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
