"""The `cir-lib` command line (also `python -m cir_lib`): an application over the library.

Commands are looked up in `COMMANDS` and their module (`cir_lib.cli.<module>`) is imported only when
the command runs or shows its help, so `cir-lib --help` loads nothing heavy (no torch). Each command
module has `configure(name, parser)`, which adds the command's arguments and sets `func` (called with
the parsed arguments; returns the exit status).

User mistakes end with one `error: ...` line and a non-zero exit status; `--debug` shows the
traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name: (module under cir_lib.cli, one line for `cir-lib --help`), in the order --help lists them.
COMMANDS = {
    "make-mini": ("data", "generate the embedded mini benchmarks (FashionIQ-like, CIRR-like, pretraining pool)"),
    "check-data": ("data", "count queries and images per split, report missing/unreadable images and annotation problems"),
    "pretrain-mini": ("data", "pretrain the tiny cir-mini CLIP on the mini pool (CPU, minutes)"),
    "evaluate": ("evaluate", "recall on a val split (FashionIQ per category, or CIRR)"),
    "submit-cirr": ("submit", "write the CIRR test1 files for the evaluation server"),
    "validate-cirr": ("submit", "check a pair of CIRR submission files"),
    "finetune": ("train", "stage 1: fine-tune CLIP with the element-wise-sum contrastive loss"),
    "train-combiner": ("train", "stage 2: train the Combiner on frozen features of a stage-1 run"),
    "reproduce": ("reproduce", "run the five notebooks through papermill: data, stage 1, Combiner, tables, figures"),
}


def _chosen_command(argv: list[str]) -> str | None:
    """The command named on the command line (the first word that is one), if any."""
    return next((a for a in argv if a in COMMANDS), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported (all of them when argv is None)."""
    parser = argparse.ArgumentParser(
        prog="cir-lib",
        description="CLIP4Cir reproducibility kit: data, training, evaluation and CIRR submissions.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen_command(argv) if argv is not None else None
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if argv is None or name == chosen:
            importlib.import_module(f"cir_lib.cli.{module}").configure(name, p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cir_lib.errors import CirError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except CirError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
