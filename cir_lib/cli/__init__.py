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


# What to do after Ctrl-C, by command (each names only options the command has).
INTERRUPT_ADVICE = {
    "make-mini": "nothing was left in --out that looks finished; run the same command again",
    "check-data": "run it again (nothing was written)",
    "pretrain-mini": "run the same command again (the checkpoint is written only when pretraining ends)",
    "evaluate": "run the same command again (nothing was written; with --cache-dir, finished image features are reused)",
    "submit-cirr": "run the same command again (the files are written only when complete)",
    "validate-cirr": "run it again (nothing was written)",
    "finetune": "run the same command again (with or without --resume): it continues from the last saved epoch",
    "train-combiner": "run the same command again (with or without --resume): it continues from the last saved "
                      "epoch",
    "reproduce": "run the same command again: finished runs are reused and interrupted ones continue "
                 "from their last saved epoch",
}


class _Parser(argparse.ArgumentParser):
    """argparse with the kit's error format: one `error: ...` line naming the command's --help."""

    help_command = None  # what --help to advise (the top-level parser reports its commands' errors too)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.help_command or self.prog} --help`)\n")


def _chosen_command(argv: list[str]) -> str | None:
    """The command named on the command line (the first word that is one), if any."""
    return next((a for a in argv if a in COMMANDS), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported (all of them when argv is None)."""
    parser = _Parser(
        prog="cir-lib",
        description="CLIP4Cir reproducibility kit: data, training, evaluation and CIRR submissions.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen_command(argv) if argv is not None else None
    parser.help_command = f"cir-lib {chosen}" if chosen else None
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if argv is None or name == chosen:
            importlib.import_module(f"cir_lib.cli.{module}").configure(name, p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from cir_lib.errors import set_interface

    set_interface("cli")  # advice names command-line options (for this call: main is also called in-process)
    try:
        return _main(argv)
    finally:
        set_interface("python")


def _main(argv: list[str] | None) -> int:
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
        if args.debug:
            raise
        print(f"error: interrupted (Ctrl-C) during `cir-lib {args.command}`; "
              f"{INTERRUPT_ADVICE.get(args.command, 'run the same command again')}", file=sys.stderr)
        return 130
    except CirError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # the file system refused: name the path, not a traceback
        if args.debug:
            raise
        print(f"error: {_os_error_message(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # an OSError wrapped by a library (torch wraps a full disk in a RuntimeError)
        from cir_lib.storage import os_error_in

        cause = os_error_in(err)
        if args.debug or cause is None:
            raise
        print(f"error: {_os_error_message(cause)}", file=sys.stderr)
        return 1


def _os_error_message(err: OSError) -> str:
    """One line for an OSError: what failed, on which path, and what to do."""
    from cir_lib.storage import describe_os_error

    return describe_os_error(err)


if __name__ == "__main__":
    raise SystemExit(main())
