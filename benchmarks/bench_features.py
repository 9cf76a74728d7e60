"""Feature-cache miss vs hit time: image features of a few hundred images with cir-mini.

A miss decodes, preprocesses and encodes every image, then writes the cache entry; a hit reads it.
Images come from DIR/mini_pool/images when --data-root is given, else synthetic images are written
to a temporary folder.

    python benchmarks/bench_features.py [--data-root DIR] [--images 400] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from cir_lib.backbone import load_backbone
from cir_lib.features import image_features
from cir_lib.transform import PreprocessConfig


def synthetic_images(folder: Path, n: int) -> list:
    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(n):
        w, h = 64 + int(torch.randint(0, 32, (1,), generator=g)), 64 + int(torch.randint(0, 32, (1,), generator=g))
        pixels = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
        path = folder / f"img{i:05d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=None, help="a mini data root (uses mini_pool/images)")
    parser.add_argument("--images", type=int, default=400, help="number of images")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of miss and hit")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.data_root is not None:
            paths = sorted((args.data_root / "mini_pool" / "images").iterdir())[: args.images]
            source = f"{args.data_root}/mini_pool/images"
        else:
            (tmp / "images").mkdir()
            paths = synthetic_images(tmp / "images", args.images)
            source = "synthetic PNGs"
        torch.manual_seed(0)
        backbone = load_backbone("cir-mini")
        pre = PreprocessConfig("targetpad", image_size=backbone.image_size)
        image_features(backbone, paths[:8], pre, batch_size=args.batch_size)  # warm-up

        misses, hits = [], []
        for r in range(args.repeats):
            cache = tmp / f"cache{r}"
            t0 = time.perf_counter()
            miss = image_features(backbone, paths, pre, cache_dir=cache, batch_size=args.batch_size)
            misses.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            hit = image_features(backbone, paths, pre, cache_dir=cache, batch_size=args.batch_size)
            hits.append(time.perf_counter() - t0)
            assert torch.equal(miss, hit)

    miss_s, hit_s = statistics.median(misses), statistics.median(hits)
    print(f"feature cache, cir-mini ({backbone.embed_dim}-d), {len(paths)} images from {source}, "
          f"{torch.get_num_threads()} torch threads, median of {args.repeats}:")
    print(f"  miss (decode + preprocess + encode + write): {miss_s:8.3f} s  ({len(paths) / miss_s:8.0f} img/s)")
    print(f"  hit  (key + read):                           {hit_s:8.3f} s  ({len(paths) / hit_s:8.0f} img/s)")
    print(f"  speed-up: {miss_s / hit_s:.0f}x")


if __name__ == "__main__":
    main()
