"""`evaluate`: recall of a model on a split with targets."""

from __future__ import annotations

import json

from cir_lib.cli.models import add_model_arguments, resolve_models
from cir_lib.constants import DATASETS, EVAL_IMAGE_BATCH


def _evaluate(args) -> int:
    import dataclasses

    from cir_lib.data import check_data_root
    from cir_lib.evaluate import evaluate_dataset, format_table
    from cir_lib.recipes import EvalConfig, check_config
    from cir_lib.runs import check_output_folder

    config = EvalConfig(split=args.split, cache_dir=args.cache_dir, skip_missing=args.skip_missing,
                        batch_size=args.batch_size)
    check_config(config)  # mistakes in the options fail before a model is loaded
    check_data_root(args.data_root)
    if args.cache_dir:
        check_output_folder(args.cache_dir, "--cache-dir")
    backbone, composer, preprocess, device = resolve_models(args)
    config = dataclasses.replace(config, device=str(device))
    result = evaluate_dataset(args.dataset, args.data_root, backbone, composer, config, preprocess=preprocess)
    if args.json:
        print(json.dumps({args.dataset: result}, indent=2))
    else:
        print(f"{args.dataset} {args.split} ({backbone.name}, pretrained {backbone.pretrained}, "
              f"{type(composer).__name__}, {preprocess.key()})")
        print(format_table(args.dataset, result))
    return 0


def configure(name: str, p) -> None:
    p.description = "Evaluate a model (element-wise sum or Combiner) on a split with targets."
    p.add_argument("--data-root", required=True, metavar="DIR", help="folder holding fashionIQ_dataset/ and cirr_dataset/")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    add_model_arguments(p)
    p.add_argument("--split", default="val", help="split with targets (default val)")
    p.add_argument("--cache-dir", metavar="DIR", help="image-feature cache folder (default: no cache)")
    p.add_argument("--skip-missing", action="store_true",
                   help="drop missing or unreadable images and the queries using them (counts reported)")
    p.add_argument("--batch-size", type=int, default=EVAL_IMAGE_BATCH, help="images per forward pass")
    p.add_argument("--json", action="store_true", help='print {"<dataset>": {...}} as JSON')
    p.set_defaults(func=_evaluate)
