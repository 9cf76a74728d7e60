"""Pin the numbers: the smoke profile's tables against the expected values under tests/expected/.

    python tools/pin_numbers.py                      # run the smoke profile, compare (exit 1 on a change)
    python tools/pin_numbers.py --update             # run it and rewrite the expected values, deliberately
    python tools/pin_numbers.py --tables DIR         # compare an existing RESULTS/smoke/tables folder
    python tools/pin_numbers.py --tables DIR --update

The smoke profile (`cir-lib reproduce --profile smoke`, on the smoke preset generated with seed 0)
trains both stages on both datasets and writes `fashioniq.csv` and `cirr.csv`. They are pinned,
as they are, with the environment that produced them (`smoke_environment.json`: the packages the
numbers and the CSV writer depend on, torch's CPU threads, Python, the CPU architecture and model).

- Same environment: the tables must be **byte-identical** (training is seeded and deterministic for
  a given thread count on a given machine).
- Another environment: every recall of this run's rows must lie within `TOLERANCE` percentage points
  of the pinned one (the intervals' bounds within twice that); rows, columns, labels and the cited and
  published rows exactly the same. `tests/test_pinned_numbers.py` says how the tolerance was chosen.

Update the expected values only when a change of the numbers is meant (a recipe, the data generator,
the metrics), say why in the commit, and run the update on the machine whose environment should be
the exact reference. `tests/test_notebooks.py` runs the smoke profile once for both its own checks
and the pinned comparison (`tests/test_pinned_numbers.py`).

This is a development script, not part of the `cir_lib` library.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_DIR = ROOT / "tests" / "expected"
TABLES = ("fashioniq", "cirr")  # RESULTS/smoke/tables/<name>.csv, pinned as tests/expected/smoke_<name>.csv
ENVIRONMENT_FILE = "smoke_environment.json"
# The packages the numbers (training, images, metrics, intervals) and the CSV's formatting depend on.
PACKAGES = ("numpy", "open_clip_torch", "pandas", "pillow", "torch", "torchvision")
# When the environment differs: the largest change of a recall of this run's rows, in percentage points
# (one FashionIQ query of a smoke category), and twice that for the intervals' bounds (bootstrap
# quantiles: a query whose rank moves counts as often as the resample draws it). How it was chosen:
# tests/test_pinned_numbers.py.
TOLERANCE = 2.5
COMMAND = "python tools/pin_numbers.py --update"
SEED = 0  # the smoke preset's generator seed (as tests/conftest.py's smoke_root)


def expected_path(name: str, expected_dir: Path = EXPECTED_DIR) -> Path:
    return Path(expected_dir) / f"smoke_{name}.csv"


def _cpu_model() -> str:
    """The CPU's model name (Linux), else what `platform` says: floating-point kernels can differ by model."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(tables_dir: Path) -> dict:
    """The environment the tables were computed in: from the run's own record (the tables'
    `.meta.json`: packages, torch's CPU threads, Python) and this machine (architecture, CPU model;
    the tables are compared on the machine that wrote them)."""
    meta = json.loads((Path(tables_dir) / f"{TABLES[0]}.meta.json").read_text())["environment"]
    packages = meta.get("packages", {})
    return {
        "packages": {name: packages.get(name) for name in PACKAGES},
        "cpu_threads": meta.get("cpu_threads"),
        "python": meta.get("python"),
        "machine": platform.machine(),
        "system": platform.system(),
        "cpu_model": _cpu_model(),
    }


def _rows(text: str) -> list:
    return list(csv.reader(io.StringIO(text)))


def _number(cell: str) -> Optional[float]:
    try:
        return float(cell)
    except ValueError:
        return None


def compare_table(name: str, expected: str, actual: str, tolerance: Optional[float]) -> list:
    """What differs between a pinned table and this run's, one line each ([] when they agree).

    Args:
        name: the table's name, for the messages.
        expected, actual: the CSV texts.
        tolerance: None for byte-identical; else the largest allowed difference of a recall of the
            "this run" rows, in percentage points (twice that for the intervals' bounds, `_ci_low` /
            `_ci_high`); everything else (labels, rows, columns, the cited and published rows) exactly.
    """
    if tolerance is None:
        if expected == actual:
            return []
        exp, act = expected.splitlines(), actual.splitlines()
        for i, (e, a) in enumerate(zip(exp, act)):
            if e != a:
                return [f"{name}.csv line {i + 1} differs (same environment, so byte-identical expected):\n"
                        f"  expected {e}\n  actual   {a}"]
        return [f"{name}.csv has {len(act)} lines, expected {len(exp)}"]
    exp, act = _rows(expected), _rows(actual)
    if not exp or not act or exp[0] != act[0]:
        return [f"{name}.csv columns differ: expected {exp[0] if exp else []}, got {act[0] if act else []}"]
    header = exp[0]
    if len(exp) != len(act):
        return [f"{name}.csv has {len(act) - 1} rows, expected {len(exp) - 1}"]
    problems = []
    for e_row, a_row in zip(exp[1:], act[1:]):
        label = " / ".join(c for c, h in zip(e_row, header) if h in ("source", "backbone", "method", "split") and c)
        this_run = e_row[0] == "this run" and a_row[0] == "this run"  # column `source`
        for column, e, a in zip(header, e_row, a_row):
            ev, av = _number(e), _number(a)
            if ev is None or av is None or not this_run:
                if e != a:
                    problems.append(f"{name}.csv {label}, {column}: expected {e!r}, got {a!r}")
                continue
            allowed = 2 * tolerance if column.endswith(("_ci_low", "_ci_high")) else tolerance
            if abs(ev - av) > allowed + 1e-3:  # the CSV keeps 6 significant digits
                problems.append(f"{name}.csv {label}, {column}: expected {ev:g}, got {av:g} "
                                f"({av - ev:+.2f} points; tolerance {allowed:g})")
    return problems


def compare(tables_dir: Path, expected_dir: Path = EXPECTED_DIR, tolerance: float = TOLERANCE) -> dict:
    """Compare a smoke run's tables with the pinned ones.

    Returns:
        {"exact": True when the environments match (byte-identical required), "environment": the
         differences of environment {key: (pinned, this run)}, "problems": [lines], "tolerance"}.
    """
    tables_dir, expected_dir = Path(tables_dir), Path(expected_dir)
    pinned_file = expected_dir / ENVIRONMENT_FILE
    if not pinned_file.is_file():
        return {"exact": False, "environment": {}, "tolerance": tolerance,
                "problems": [f"no pinned numbers in {expected_dir}: run `{COMMAND}`"]}
    pinned, here = json.loads(pinned_file.read_text()), environment(tables_dir)
    differs = {k: (pinned.get(k), here.get(k)) for k in sorted(set(pinned) | set(here)) if pinned.get(k) != here.get(k)}
    exact = not differs
    problems = []
    for name in TABLES:
        problems += compare_table(name, expected_path(name, expected_dir).read_text(),
                                  (tables_dir / f"{name}.csv").read_text(), None if exact else tolerance)
    return {"exact": exact, "environment": differs, "problems": problems, "tolerance": None if exact else tolerance}


def report(result: dict) -> str:
    """The comparison in words (what the test and the script print)."""
    how = ("same environment as the pinned numbers: byte-identical tables required" if result["exact"] else
           f"environment differs from the pinned one ({', '.join(result['environment']) or 'unknown'}): "
           f"recalls within {result['tolerance']:g} points, intervals' bounds within {2 * result['tolerance']:g}")
    if not result["problems"]:
        return f"the smoke tables match the pinned numbers ({how})"
    return (f"the smoke tables differ from the pinned numbers ({how}):\n  " + "\n  ".join(result["problems"])
            + f"\nIf the change is meant, refresh them with `{COMMAND}` and say why in the commit.")


def update(tables_dir: Path, expected_dir: Path = EXPECTED_DIR) -> list:
    """Write the tables and their environment as the new expected values; return the files written."""
    expected_dir = Path(expected_dir)
    expected_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TABLES:
        shutil.copyfile(Path(tables_dir) / f"{name}.csv", expected_path(name, expected_dir))
        written.append(expected_path(name, expected_dir))
    env_file = expected_dir / ENVIRONMENT_FILE
    env_file.write_text(json.dumps(environment(tables_dir), indent=1, sort_keys=True) + "\n")
    return written + [env_file]


def run_smoke(work_dir: Path) -> Path:
    """Generate the smoke preset and run the smoke profile's five notebooks; return its tables folder."""
    sys.path.insert(0, str(ROOT))
    from cir_lib import reproduce as runner
    from cir_lib.mini import make_mini

    data_root = Path(work_dir) / "data"
    make_mini(data_root, preset="smoke", seed=SEED)
    runner.reproduce("smoke", data_root=data_root, results_dir=Path(work_dir) / "results", progress=False,
                     log_output=False)
    return Path(work_dir) / "results" / "smoke" / "tables"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--update", action="store_true", help="rewrite tests/expected/ from this run (deliberately)")
    ap.add_argument("--tables", type=Path, help="an existing RESULTS/smoke/tables folder (default: run the smoke profile)")
    ap.add_argument("--expected", type=Path, default=EXPECTED_DIR, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pin_numbers-") as work:
        tables_dir = args.tables if args.tables else run_smoke(Path(work))
        if args.update:
            for path in update(tables_dir, args.expected):
                print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
            return 0
        result = compare(tables_dir, args.expected)
        print(report(result))
        return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
