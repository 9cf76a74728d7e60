"""`submit-cirr` and `validate-cirr`: the CIRR test-server files."""

from __future__ import annotations

from cir_lib.cli.models import add_model_arguments, resolve_models
from cir_lib.constants import EVAL_IMAGE_BATCH


def _submit(args) -> int:
    import dataclasses

    from cir_lib.data import check_data_root
    from cir_lib.recipes import EvalConfig, check_config
    from cir_lib.runs import check_output_folder
    from cir_lib.submit import write_cirr_submission

    config = EvalConfig(split="test1", cache_dir=args.cache_dir, batch_size=args.batch_size)
    check_config(config)  # mistakes in the options fail before a model is loaded or an image encoded
    check_data_root(args.data_root)
    check_output_folder(args.out)
    if args.tag is not None:
        from cir_lib.storage import check_name

        check_name(args.tag, "--tag")
    if args.cache_dir:
        check_output_folder(args.cache_dir, "--cache-dir")
    backbone, composer, preprocess, device = resolve_models(args)
    config = dataclasses.replace(config, device=str(device))
    recall_path, subset_path = write_cirr_submission(args.data_root, backbone, composer, args.out, config,
                                                     preprocess=preprocess, tag=args.tag)
    print(f"wrote {recall_path}")
    print(f"wrote {subset_path}")
    print("validated against the test1 annotations: every pairid, version, metric, lengths, membership, size")
    return 0


def _validate(args) -> int:
    from cir_lib.errors import SubmissionError
    from cir_lib.submit import format_problems, validate_cirr_submission

    problems = validate_cirr_submission(args.recall, args.subset, args.data_root, split=args.split)
    if problems:
        raise SubmissionError(format_problems(problems, args.recall, args.subset))
    print(f"valid: {args.recall} and {args.subset}")
    return 0


def configure(name: str, p) -> None:
    if name == "submit-cirr":
        p.description = ("Rank CIRR test1 with a model (element-wise sum or Combiner) and write the two server "
                         "files (recall: top 50; recall_subset: top 3), then validate them.")
        p.add_argument("--data-root", required=True, metavar="DIR", help="folder holding cirr_dataset/")
        add_model_arguments(p)
        p.add_argument("--out", required=True, metavar="DIR", help="folder for the two JSON files")
        p.add_argument("--tag", help="file-name tag (default: <backbone>-<weights>)")
        p.add_argument("--cache-dir", metavar="DIR", help="image-feature cache folder (default: no cache)")
        p.add_argument("--batch-size", type=int, default=EVAL_IMAGE_BATCH, help="images per forward pass")
        p.set_defaults(func=_submit)
    else:
        p.description = "Check two CIRR submission files against the test1 annotations."
        p.add_argument("--data-root", required=True, metavar="DIR", help="folder holding cirr_dataset/")
        p.add_argument("--split", default="test1", help="split the files answer (default test1)")
        p.add_argument("recall", metavar="RECALL_JSON", help="the recall file")
        p.add_argument("subset", metavar="SUBSET_JSON", help="the recall_subset file")
        p.set_defaults(func=_validate)
