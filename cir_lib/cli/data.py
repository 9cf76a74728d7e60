"""`make-mini`, `check-data` and `pretrain-mini`: data and the tiny backbone."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path

from cir_lib.constants import DATASETS, MINI_PRESETS


def _format_mini_summary(manifest: dict) -> str:
    c = manifest["counts"]
    lines = [f"mini benchmark: preset {manifest['preset']}, seed {manifest['seed']}"]
    for category, splits in c["fashioniq"].items():
        parts = ", ".join(f"{s} {v['queries']} queries / {v['images']} images" for s, v in splits.items())
        lines.append(f"  FashionIQ {category:<6}: {parts}")
    parts = ", ".join(f"{s} {v['queries']} queries / {v['images']} images" for s, v in c["cirr"].items())
    lines.append(f"  CIRR            : {parts}")
    lines.append(f"  pool            : {c['pool']['fashion']} fashion + {c['pool']['scene']} scene images")
    lines.append(f"  images in all   : {c['images_total']}")
    return "\n".join(lines)


def _make_mini(args) -> int:
    from cir_lib.mini import make_mini

    start = time.perf_counter()
    manifest = make_mini(args.out, preset=args.preset, seed=args.seed, overwrite=args.overwrite)
    print(_format_mini_summary(manifest))
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _check_data(args) -> int:
    from cir_lib.check import check_data, format_report
    from cir_lib.data import check_data_root

    if not args.json:  # one error line, not a table of nothing (--json keeps its report, problems listed)
        check_data_root(args.data_root)
    if args.workers is not None and args.workers < 1:
        from cir_lib.errors import ConfigError

        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    datasets = [args.dataset] if args.dataset else None
    report = check_data(args.data_root, datasets, verify_images=not args.no_verify_images,
                        workers=args.workers)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0 if not report["problems"] else 1


def _pretrain_mini(args) -> int:
    from cir_lib.pretrain import pretrain_mini
    from cir_lib.recipes import PretrainConfig

    overrides = {f.name: getattr(args, f.name) for f in fields(PretrainConfig) if getattr(args, f.name, None)
                 is not None}
    path = pretrain_mini(args.data_root, args.out, PretrainConfig(**overrides))
    print(path)
    return 0


def configure(name: str, p) -> None:
    if name == "make-mini":
        p.description = (
            "Write DIR/fashionIQ_dataset and DIR/cirr_dataset in the real layouts and formats, "
            "DIR/mini_pool (images with absolute captions for pretraining the tiny backbone) and "
            "DIR/MINI_BENCHMARK.json. The output is byte-identical for a given preset and seed.")
        p.add_argument("--out", required=True, metavar="DIR", help="data root to write (created if needed)")
        p.add_argument("--preset", choices=MINI_PRESETS, default="mini",
                       help="smoke: tiny, for CI (seconds); mini: about 1,000+ index images per FashionIQ "
                            "category and per CIRR split (default: mini)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        p.add_argument("--overwrite", action="store_true",
                       help="replace a mini benchmark generated before in DIR; one of another generator version "
                            "is moved aside, with its cir-mini.pt, to DIR.generator-v<N> (never deleted)")
        p.set_defaults(func=_make_mini)
    elif name == "check-data":
        p.description = (
            "Validate a data root (the folder holding fashionIQ_dataset/ and cirr_dataset/): queries, index "
            "images, missing or unreadable images per split and category, and every annotation problem. "
            "Works on annotation files alone. Exit status 0 only when clean.")
        p.add_argument("--data-root", required=True, type=Path, help="folder holding fashionIQ_dataset/ and cirr_dataset/")
        p.add_argument("--dataset", choices=DATASETS, help="check only this dataset (then its absence is a problem)")
        p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
        p.add_argument("--no-verify-images", action="store_true",
                       help="only check that image files exist, do not decode them")
        p.add_argument("--workers", type=int, default=None, help="threads decoding images (default min(8, 2 x cores))")
        p.set_defaults(func=_check_data)
    elif name == "pretrain-mini":
        from cir_lib.recipes import PretrainConfig  # a dataclass module: no torch

        p.description = ("Pretrain cir-mini from scratch with the CLIP contrastive loss on DATA_ROOT/mini_pool "
                         "and save a checkpoint carrying its config (default DATA_ROOT/cir-mini.pt).")
        p.add_argument("--data-root", required=True, type=Path, help="folder holding mini_pool/ (cir-lib make-mini)")
        p.add_argument("--out", type=Path, default=None, help="checkpoint file (default DATA_ROOT/cir-mini.pt)")
        defaults = PretrainConfig()
        p.add_argument("--epochs", type=int, default=None, help=f"passes over the pool (default {defaults.epochs})")
        p.add_argument("--seed", type=int, default=None, help=f"random seed (default {defaults.seed})")
        p.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                       help=f"pairs per step (default {defaults.batch_size})")
        p.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {defaults.lr})")
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
        p.set_defaults(func=_pretrain_mini)
