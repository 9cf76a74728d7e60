"""`reproduce`: the five notebooks through papermill, for one profile."""

from __future__ import annotations


def _reproduce(args) -> int:
    from pathlib import Path

    from cir_lib.errors import ConfigError
    from cir_lib.recipes import parse_overrides
    from cir_lib.reproduce import format_summary, reproduce

    # before a notebook starts: paths that are files where folders are needed
    for option, value in (("--data-root", args.data_root), ("--results", args.results)):
        if value and Path(value).exists() and not Path(value).is_dir():
            raise ConfigError(f"{option} {value} is a file, not a folder: give a folder")
    summary = reproduce(args.profile, args.data_root, args.results, parameters=parse_overrides(args.set, json_values=True),
                        log_output=args.log_output)
    print(format_summary(summary))
    return 0


def configure(name: str, p) -> None:
    from cir_lib.profiles import PROFILES  # dataclasses only: no torch

    p.description = (
        "Run notebooks/00..04 in order through papermill for one profile; executed notebooks go to "
        "RESULTS/<profile>/executed/, tables to RESULTS/<profile>/tables/, figures to "
        "RESULTS/<profile>/figures/. Profiles: " + "; ".join(f"{q.name}: {q.description}" for q in PROFILES.values()))
    p.add_argument("--profile", choices=list(PROFILES), default="mini", help="what to run (default: mini)")
    p.add_argument("--data-root", default=None,
                   help="data folder (smoke/mini: default data/<profile>, generated when absent; paper: required)")
    p.add_argument("--results", default=None, help="results folder (default: results/ under the project)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a notebook parameter (JSON value), e.g. --set stage1_epochs=3; repeatable")
    p.add_argument("--log-output", action="store_true", help="stream the notebooks' cell output to the log")
    p.set_defaults(func=_reproduce)
