"""The options that name the models to evaluate (shared by `evaluate` and `submit-cirr`), and
their resolution into (backbone, composer, preprocessing)."""

from __future__ import annotations

from cir_lib.constants import PREPROCESS_KINDS


def add_model_arguments(parser) -> None:
    """--backbone / --pretrained / --preprocess / --device, and the trained models (--run,
    --clip-checkpoint, --combiner-checkpoint)."""
    parser.add_argument("--backbone", metavar="NAME", help="open_clip model name (RN50, RN50x4, cir-mini, ...)")
    parser.add_argument("--pretrained", metavar="P",
                        help="weights: 'none' (random), an open_clip tag such as 'openai', or a checkpoint file")
    parser.add_argument("--preprocess", default=None, choices=PREPROCESS_KINDS,
                        help="image preprocessing (default targetpad, ratio 1.25; with --run: the run's)")
    parser.add_argument("--device", default="auto", help="torch device: auto (default: CUDA when available), cpu, cuda")
    add_torchscript_argument(parser)
    parser.add_argument("--precision", choices=("fp32", "official"), default=None,
                        help="official: CLIP weights rounded to fp16 as the original code loads them on CUDA "
                             "(its released checkpoints' numbers); default fp32 (with --run: the run's)")
    g = parser.add_argument_group("trained models (instead of --pretrained)")
    g.add_argument("--run", metavar="RUN",
                   help="a run folder: a `finetune` run is evaluated with the element-wise sum, a "
                        "`train-combiner` run with its Combiner over its stage-1 encoders")
    g.add_argument("--best-by", choices=("arithmetic", "harmonic", "geometric"), default=None,
                   help="with --run on CIRR: the best checkpoint by this mean of the seven metrics "
                        "(best_<mean>.pt; default best.pt, the mean the run's `selection` names)")
    g.add_argument("--clip-checkpoint", metavar="FILE",
                   help="a fine-tuned CLIP: the original code's {'CLIP': state_dict} (with --backbone RN50 / "
                        "RN50x4), a kit backbone checkpoint (e.g. a run's best.pt) or an open_clip state dict")
    g.add_argument("--combiner-checkpoint", metavar="FILE",
                   help="a Combiner: the original code's {'Combiner': state_dict} or a kit Combiner checkpoint "
                        "(without it: the element-wise sum)")


def add_torchscript_argument(parser) -> None:
    parser.add_argument("--allow-torchscript", action="store_true",
                        help="allow loading a weights file as a TorchScript archive (it carries code that is run); "
                             "without it, such files are read for their tensors only, or refused")


def apply_torchscript_choice(args) -> None:
    """--allow-torchscript: the backbone loaders read CIR_LIB_ALLOW_TORCHSCRIPT (cir_lib.serialization)."""
    import logging
    import os

    if getattr(args, "allow_torchscript", False):
        os.environ["CIR_LIB_ALLOW_TORCHSCRIPT"] = "1"
        logging.getLogger("cir_lib").warning("--allow-torchscript: TorchScript archives may be loaded, and their "
                                             "code run; use it only for files you trust")


def resolve_models(args):
    """(backbone, composer, preprocess, device) named by the command line."""
    from cir_lib.backbone import load_backbone
    from cir_lib.composers import ElementwiseSum
    from cir_lib.devices import pick_device
    from cir_lib.errors import ConfigError
    from cir_lib.rebuild import resolve_trained_models, run_preprocess
    from cir_lib.transform import PreprocessConfig

    apply_torchscript_choice(args)
    device = pick_device(args.device)
    trained = resolve_trained_models(run=args.run, clip_checkpoint=args.clip_checkpoint,
                                     combiner_checkpoint=args.combiner_checkpoint, backbone=args.backbone,
                                     pretrained=args.pretrained, device=device,
                                     best_by=getattr(args, "best_by", None),
                                     precision=getattr(args, "precision", None))
    if trained is not None:
        backbone, composer = trained
    else:
        if not args.backbone:
            raise ConfigError("give --backbone NAME (an open_clip model name such as RN50 or cir-mini) "
                              "and --pretrained (none, openai, or a checkpoint file)")
        if args.pretrained is None:
            raise ConfigError(f"give --pretrained for {args.backbone}: 'openai' for OpenAI's weights, a "
                              "checkpoint file, or 'none' for random weights")
        backbone = load_backbone(args.backbone, args.pretrained, device=device)
        if getattr(args, "precision", None) == "official":
            from cir_lib.precision import round_weights_fp16

            round_weights_fp16(backbone.model)
        composer = ElementwiseSum(backbone.embed_dim)
    preprocess = run_preprocess(args.run, backbone, args.preprocess)  # a run is evaluated with its own
    if preprocess is None:
        preprocess = PreprocessConfig(args.preprocess or "targetpad", image_size=backbone.image_size)
    return backbone, composer, preprocess, device
