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
                        start=args.start, fresh=args.fresh, dry_run=args.dry_run, log_output=not args.quiet)
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
    p.add_argument("--from", dest="start", metavar="NOTEBOOK",
                   help="run the series from this notebook on (e.g. --from 03): earlier products are reused")
    p.add_argument("--fresh", action="store_true",
                   help="delete the training notebooks' earlier runs and train again (default: finished runs of "
                        "the same settings are reused, interrupted ones resumed)")
    p.add_argument("--dry-run", action="store_true",
                   help="paper profile: every notebook on the real data root and backbones with a few steps per "
                        "stage and capped splits, in minutes, into RESULTS/paper-dry-run/ (tables marked DRY RUN)")
    p.add_argument("--quiet", action="store_true",
                   help="do not stream the notebooks' log lines (epochs, scores, final progress lines) to the terminal")
    p.set_defaults(func=_reproduce)
