"""`finetune` (stage 1) and `train-combiner` (stage 2)."""

from __future__ import annotations

import os

from cir_lib.cli.models import add_torchscript_argument, apply_torchscript_choice
from cir_lib.constants import COMPOSERS, DATASETS

ZERO_SHOT = "zero-shot"  # --clip-run value (cir_lib.rebuild.ZERO_SHOT)


def _config(args, stage: str):
    from cir_lib.errors import ConfigError
    from cir_lib.recipes import RECIPES, get_recipe, parse_overrides, stage_overrides
    from cir_lib.training_data import resolve_dataset

    overrides = stage_overrides(parse_overrides(args.set), stage)  # lr=... and finetune.lr=... alike
    if args.dataset:
        if "dataset" in overrides and overrides["dataset"] != args.dataset:
            raise ConfigError(f"--dataset {args.dataset} contradicts --set dataset={overrides['dataset']}")
        recipe = RECIPES.get(args.recipe)  # an unknown name is refused by get_recipe below
        named = getattr(recipe, stage).dataset if recipe is not None else None
        if named is not None and named != args.dataset:
            raise ConfigError(
                f"recipe {args.recipe!r} is for {named}, not {args.dataset}: pick the {args.dataset} "
                f"recipe (see `cir-lib finetune --list-recipes`) or drop --dataset")
        overrides["dataset"] = args.dataset
    config = get_recipe(args.recipe, stage, **overrides)  # resolved and checked once
    resolve_dataset(config)
    return config


def _print_recipes() -> int:
    from cir_lib.recipes import list_recipes

    for name, description in list_recipes().items():
        print(f"{name:28s} {description}")
    return 0


def _require(args, *names) -> None:
    from cir_lib.errors import ConfigError

    missing = ["--" + n.replace("_", "-") for n in names if not getattr(args, n, None)]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (see `cir-lib {args.command} --help`)")


def _train(args, stage: str) -> int:
    """Train a stage into --out through the library's run policy (`cir_lib.run_policy`): a finished
    run of the same settings is reported, not trained again; an interrupted one is resumed."""
    from cir_lib.data import check_data_root
    from cir_lib.errors import ConfigError
    from cir_lib.run_policy import train_or_reuse
    from cir_lib.training_validation import format_metrics

    apply_torchscript_choice(args)
    config = _config(args, stage)
    check_data_root(args.data_root)
    clip_run = getattr(args, "clip_run", None)
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        # torchrun: every process must take the same path, and one judging the folder could see what
        # another has begun to write; --resume says it, as before the policy was shared
        if args.fresh:
            raise ConfigError("--fresh is not available under torchrun: delete the run folder first, or choose "
                              "another --out folder")
        if stage == "finetune":
            from cir_lib.finetune import finetune

            result = finetune(args.data_root, config, args.out, resume=args.resume)
        else:
            from cir_lib.train_combiner import train_combiner

            result = train_combiner(args.data_root, config, clip_run, args.out, resume=args.resume,
                                    composer=args.composer)
    else:
        result = train_or_reuse(stage, args.data_root, config, args.out, clip_run=clip_run, fresh=args.fresh,
                                composer=getattr(args, "composer", "combiner"))
    composer = getattr(args, "composer", "combiner")
    what = "stage 1" if stage == "finetune" else "Combiner" if composer == "combiner" else composer.upper()
    if result.reused:
        print(f"{what} already finished in {result.run_dir} with the same settings: best epoch {result.best_epoch}, "
              f"score {result.best_score:.2f} ({format_metrics(result.best_metrics)}); nothing trained "
              "(--fresh trains it again)")
    else:
        print(f"{what} done: best epoch {result.best_epoch}, score {result.best_score:.2f} "
              f"({format_metrics(result.best_metrics)}); run folder {result.run_dir}")
    return 0


def _finetune(args) -> int:
    if args.list_recipes:
        return _print_recipes()
    _require(args, "data_root", "recipe", "out")
    return _train(args, "finetune")


def _train_combiner(args) -> int:
    if args.list_recipes:
        return _print_recipes()
    _require(args, "data_root", "recipe", "out", "clip_run")
    return _train(args, "combiner")


def configure(name: str, p) -> None:
    if name == "finetune":
        p.description = ("Stage 1 of CLIP4Cir: fine-tune CLIP with the element-wise-sum contrastive loss. Under "
                         "torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel, gathering in-batch "
                         "negatives across processes.")
    else:
        p.description = "Stage 2 of CLIP4Cir: the Combiner on cached features of the stage-1 encoders."
    # the usage line shows what is required (argparse cannot: --list-recipes needs none of it)
    clip_run = " --clip-run RUN" if name == "train-combiner" else ""
    p.usage = (f"%(prog)s --data-root DIR --recipe RECIPE --out DIR{clip_run}\n"
               f"           [--dataset {{{','.join(DATASETS)}}}] [--set KEY=VALUE ...] [--resume | --fresh]\n"
               "           [--allow-torchscript]\n"
               "       %(prog)s --list-recipes")
    req = p.add_argument_group("required (except with --list-recipes)")
    req.add_argument("--data-root", metavar="DIR", help="folder holding fashionIQ_dataset/ and cirr_dataset/")
    req.add_argument("--recipe", help="named recipe (see --list-recipes), e.g. mini, paper-rn50x4-fashioniq")
    req.add_argument("--out", metavar="DIR", help="run folder to write (config.json, history.csv, best.pt, last.pt)")
    if name == "train-combiner":
        req.add_argument("--clip-run", metavar="RUN",
                         help=f"stage-1 run folder, or {ZERO_SHOT!r} for the recipe's pretrained backbone")
        p.add_argument("--composer", choices=COMPOSERS, default="combiner",
                       help="the composer to train on the frozen features, with the recipe's stage-2 settings "
                            "(default: combiner; tirg, artemis: docs/composers.md)")
    p.add_argument("--dataset", choices=DATASETS, help="benchmark to train on (when the recipe does not say)")
    stage = "finetune" if name == "finetune" else "combiner"
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a recipe field, e.g. --set epochs=5 --set lr=1e-5 (or {stage}.lr=1e-5; repeatable)")
    run = p.add_mutually_exclusive_group()
    run.add_argument("--resume", action="store_true",
                     help="continue the unfinished run in --out from its last.pt (the default: a run of the same "
                          "settings is resumed, a finished one reported and not trained again; under torchrun "
                          "only with --resume)")
    run.add_argument("--fresh", action="store_true",
                     help="delete the run in --out and train again (default: a run of other settings is refused)")
    p.add_argument("--list-recipes", action="store_true", help="list the recipes and exit")
    add_torchscript_argument(p)
    p.set_defaults(func=_finetune if name == "finetune" else _train_combiner)
