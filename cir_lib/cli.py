"""The `cir-lib` command line (also `python -m cir_lib`).

Each subject module that offers commands defines `add_commands(subparsers)`, which adds its
subcommands and sets `func` (called with the parsed arguments; returns the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from cir_lib.errors import CirError

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES = (
    "cir_lib.mini",       # make-mini
    "cir_lib.check",      # check-data
    "cir_lib.pretrain",   # pretrain-mini
    "cir_lib.evaluate",   # evaluate
    "cir_lib.submit",     # submit-cirr, validate-cirr
    "cir_lib.train",      # finetune, train-combiner
    "cir_lib.pipeline",   # reproduce
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cir-lib",
        description="CLIP4Cir reproducibility kit: data, training, evaluation and CIRR submissions.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
