"""Where the time of `cir-lib reproduce` goes: each notebook cell of a profile's series, timed.

    python benchmarks/bench_reproduce.py                       # mini, in a fresh project under /tmp
    python benchmarks/bench_reproduce.py --profile smoke --keep /tmp/bench-smoke
    python benchmarks/bench_reproduce.py --cprofile /tmp/prof  # + a cProfile .prof file per cell
    python benchmarks/bench_reproduce.py --kernel-only         # the papermill / kernel overhead alone
    python benchmarks/bench_reproduce.py --threads 1 --set pretrain_epochs=1   # see below

The notebooks' code cells run in this process, in order, with the parameters `reproduce` injects
(`profile`, `interactive=False`), in a project skeleton (notebooks/ and pyproject.toml, as a fresh
clone has them: the data is generated and cir-mini pretrained, as `make reproduce` does). Each cell
is reported with its CPU time (user + system of this process, all its threads, and of its finished
child processes, e.g. DataLoader workers) and its wall time. On a shared machine the CPU time is
the figure to compare: wall time grows with the other users' load.

On a machine shared with other jobs, torch's default threads spin while they wait for a core and
inflate the CPU time too; `--threads 1` measures the work itself (on 2 idle cores the default 2
threads run the torch-heavy cells about 1.4x faster than 1 thread). `--set KEY=VALUE` sets a
notebook parameter, e.g. `pretrain_epochs=1` (pretraining costs the same per epoch) to time the
rest of the series in less time; the numbers of such a run are not the profile's.

What `reproduce` adds on top is measured apart (`--kernel-only`, also printed after a full run):
papermill starting one kernel per notebook, and each kernel importing the library again.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("00_data_prep", "01_stage1_finetune", "02_combiner_training", "03_evaluation", "04_qualitative")


def cpu_seconds() -> float:
    """User + system seconds of this process and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def skeleton(folder: Path) -> Path:
    """A project as a fresh clone has it: notebooks/ and pyproject.toml, no data, no results."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "notebooks").is_dir():
        shutil.copytree(ROOT / "notebooks", folder / "notebooks")
        shutil.copy2(ROOT / "pyproject.toml", folder / "pyproject.toml")
    return folder


def code_cells(name: str) -> list:
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def first_line(source: str) -> str:
    lines = [ln for ln in source.splitlines() if ln.strip() and not ln.startswith(("from ", "import "))]
    return (lines[0] if lines else source.splitlines()[0])[:70]


def run_series(project: Path, profile: str, prof_dir: Path | None, values: dict) -> list:
    """Execute every code cell of the series; [(notebook, cell, first line, cpu s, wall s)]."""
    os.environ["CIR_LIB_PROJECT"] = str(project)
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.chdir(project / "notebooks")  # where papermill runs the kernel
    rows = []
    for name in NOTEBOOKS:
        namespace: dict = {"__name__": "__main__"}
        for index, cell in enumerate(code_cells(name)):
            source = "".join(cell["source"])
            code = compile(source, f"{name}[{index}]", "exec")
            profiler = cProfile.Profile() if prof_dir is not None else None
            cpu, wall = cpu_seconds(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            exec(code, namespace)
            if profiler is not None:
                profiler.disable()
            cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
            if "parameters" in cell["metadata"].get("tags", []):
                namespace.update(profile=profile, interactive=False, **values)  # what reproduce injects
            if profiler is not None:
                prof_dir.mkdir(parents=True, exist_ok=True)
                profiler.dump_stats(str(prof_dir / f"{name}-{index}.prof"))
            rows.append((name, index, first_line(source), cpu, wall))
            print(f"{name} [{index}] {cpu:7.1f} s CPU {wall:7.1f} s wall  {first_line(source)}", flush=True)
    return rows


def kernel_overhead(project: Path) -> tuple:
    """(CPU s, wall s) of papermill running one notebook whose only cell imports what the series'
    notebooks import: a kernel start-up and the library's imports, paid once per notebook."""
    probe = {"cells": [{"cell_type": "code", "execution_count": None, "id": "probe", "metadata": {}, "outputs": [],
                        "source": "from cir_lib import explore, figures, notebook, tables\n"
                                  "from cir_lib.settings import setup"}],
             "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
             "nbformat": 4, "nbformat_minor": 5}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.ipynb"
        source.write_text(json.dumps(probe))
        script = ("import sys, time\n"
                  "from cir_lib.reproduce import pipeline_kernel, run_notebook\n"
                  "from pathlib import Path\n"
                  "with pipeline_kernel() as k:\n"
                  f"    run_notebook('probe', Path({str(Path(tmp) / 'out.ipynb')!r}), {{}}, kernel_name=k,"
                  f" progress=False, source=Path({str(source)!r}), cwd=Path({tmp!r}))\n")
        env = dict(os.environ, CIR_LIB_PROJECT=str(project))
        before, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run([sys.executable, "-c", script], check=True, env=env)
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - wall
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mini", help="smoke | mini (default: mini)")
    parser.add_argument("--keep", type=Path, help="the project folder to use and keep (default: a temporary one)")
    parser.add_argument("--cprofile", type=Path, help="write a cProfile file per cell into this folder")
    parser.add_argument("--kernel-only", action="store_true", help="only the papermill and kernel overhead")
    parser.add_argument("--json", type=Path, help="write the per-cell figures here as JSON")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a notebook parameter (JSON value), e.g. pretrain_epochs=1")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    values = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-reproduce-")
        project = skeleton(Path(tmp.name) / "project")
    else:
        project = skeleton(args.keep.resolve())
    try:
        k_cpu, k_wall = kernel_overhead(project)
        print(f"papermill + kernel start-up + imports, per notebook: {k_cpu:.1f} s CPU {k_wall:.1f} s wall", flush=True)
        if args.kernel_only:
            return
        rows = run_series(project, args.profile, args.cprofile, values)
        print(f"\n{'notebook':<22} {'CPU s':>7} {'wall s':>7}")
        for name in NOTEBOOKS:
            mine = [r for r in rows if r[0] == name]
            print(f"{name:<22} {sum(r[3] for r in mine):7.1f} {sum(r[4] for r in mine):7.1f}")
        cpu, wall = sum(r[3] for r in rows), sum(r[4] for r in rows)
        print(f"{'cells, in one process':<22} {cpu:7.1f} {wall:7.1f}")
        print(f"{'+ 5 kernels (measured)':<22} {cpu + 5 * k_cpu:7.1f} {wall + 5 * k_wall:7.1f}")
        if args.json is not None:
            args.json.write_text(json.dumps({"profile": args.profile, "threads": args.threads, "set": values,
                                             "kernel": [k_cpu, k_wall],
                                             "cells": [list(r) for r in rows]}, indent=1) + "\n")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
