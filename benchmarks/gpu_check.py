"""The one-command GPU check for a machine with CUDA, written to one report file:

    python benchmarks/gpu_check.py                         # or: make gpu-check
    python benchmarks/gpu_check.py --out gpu-check.md --parts tests,bench,dry-run

1. tests: `pytest -m cuda` (tests/test_cuda.py and every other test marked `cuda`);
2. bench: `benchmarks/bench_gpu.py --quick`, each figure beside the H200 reference figure of docs/costs.md;
3. dry-run: the paper profile's two-epoch dry run (`cir-lib reproduce --profile paper --dry-run`, RN50)
   on placeholder data: the generated smoke benchmark (the real layouts) and a random RN50 in
   OpenAI's weight format, so it needs no download and no real data.

Each part runs in its own process with a time limit (together under ten minutes on one GPU); the
report (Markdown: the machine, then per part its command, exit status, seconds and output) is
rewritten after each part, so a part that fails or runs out of time leaves the others' results.
Exit status 0 when every part passed.

Without CUDA the check refuses; `--allow-cpu` runs it anyway as a rehearsal of the script itself
(CUDA tests then run as a CPU dry run of their code, `CIR_LIB_CUDA_TESTS_ON_CPU=1`): it says nothing
about a GPU.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("tests", "bench", "dry-run")
LIMITS_S = {"tests": 150, "bench": 150, "dry-run": 240}  # under ten minutes in all on one GPU
OUTPUT_LINES = 60  # lines of a part's output kept in the report (the benchmark's table is shorter)


def machine() -> list[str]:
    """Report lines: when, where, which torch and GPU."""
    import torch

    lines = [f"- date: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}",
             f"- python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
             f"{platform.platform()}"]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(f"- GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                     f"{torch.cuda.device_count()} device(s)")
    else:
        lines.append("- GPU: none (CPU rehearsal: nothing below says anything about a GPU)")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    lines.append(f"- git commit: {commit or 'unknown'}")
    return lines


def part_command(part: str, work: Path, cpu: bool) -> tuple[list[str], dict]:
    """The command line and extra environment of one part."""
    python = sys.executable
    env = {}
    if part == "tests":
        if cpu:
            env["CIR_LIB_CUDA_TESTS_ON_CPU"] = "1"
        return [python, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests"], env
    if part == "bench":
        return [python, "benchmarks/bench_gpu.py", "--quick", "--csv", str(work / "bench_gpu.csv")] + \
            (["--device", "cpu", "--cpu-repeats", "1", "--cpu-warmup", "0"] if cpu else []), env
    if part == "dry-run":
        script = (
            "import sys; sys.path.insert(0, 'tests')\n"
            "from pathlib import Path\n"
            "from cir_lib import reproduce\n"
            "from cir_lib.mini import make_mini\n"
            "from real_root import write_random_openai_rn50\n"
            f"work = Path({str(work)!r})\n"
            "make_mini(work / 'data', preset='smoke', seed=0)\n"
            "weights = write_random_openai_rn50(work / 'RN50.pt')\n"
            "summary = reproduce.reproduce('paper', data_root=work / 'data', results_dir=work / 'results',\n"
            "                              dry_run=True, parameters={'backbones': 'RN50', 'pretrained': str(weights)},\n"
            "                              progress=False)\n"
            "print(reproduce.format_summary(summary))\n")
        return [python, "-c", script], env
    raise ValueError(f"unknown part {part!r}; choose from {', '.join(PARTS)}")


def run_part(part: str, work: Path, cpu: bool, limit_s: float) -> dict:
    command, extra_env = part_command(part, work, cpu)
    env = {**os.environ, **extra_env, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))}
    t0 = time.perf_counter()
    try:
        out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit_s)
        status, output = out.returncode, out.stdout + out.stderr
    except subprocess.TimeoutExpired as err:
        status = "timed out"
        output = "".join(x.decode() if isinstance(x, bytes) else (x or "") for x in (err.stdout, err.stderr))
    shown = command if part != "dry-run" else command[:2] + ["<make the smoke data and a random RN50, then "
                                                             "cir-lib reproduce --profile paper --dry-run>"]
    return {"part": part, "command": " ".join(shown), "status": status, "seconds": time.perf_counter() - t0,
            "output": output, "limit_s": limit_s}


def write_report(path: Path, header: list[str], results: list[dict], pending: list[str]) -> None:
    lines = ["# GPU check", "", *header, ""]
    for r in results:
        verdict = "passed" if r["status"] == 0 else f"FAILED ({r['status']})"
        tail = r["output"].rstrip().splitlines()[-OUTPUT_LINES:]
        lines += [f"## {r['part']}: {verdict}, {r['seconds']:.0f} s (limit {r['limit_s']:.0f} s)", "",
                  f"`{r['command']}`", "", "```", *tail, "```", ""]
    lines += [f"## {p}: not run yet" for p in pending]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/gpu-check.md", help="the report file (default %(default)s)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--allow-cpu", action="store_true", help="run without CUDA (a rehearsal of the script)")
    ap.add_argument("--scale-limits", type=float, default=1.0, help="multiply every part's time limit")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        print(f"error: unknown part(s) {unknown or args.parts!r}; choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    import torch

    cpu = not torch.cuda.is_available()
    if cpu and not args.allow_cpu:
        print("error: no CUDA GPU here; run this on a machine with one (--allow-cpu rehearses the script on the "
              "CPU, which checks nothing about a GPU)", file=sys.stderr)
        return 1
    out = Path(args.out)
    header = machine()
    results = []
    with tempfile.TemporaryDirectory(prefix="cir-gpu-check-") as tmp:
        for i, part in enumerate(parts):
            write_report(out, header, results, parts[i:])
            print(f"gpu check: {part} ...", file=sys.stderr, flush=True)
            results.append(run_part(part, Path(tmp), cpu, LIMITS_S[part] * args.scale_limits))
            print(f"gpu check: {part}: {results[-1]['status']} in {results[-1]['seconds']:.0f} s",
                  file=sys.stderr, flush=True)
        write_report(out, header, results, [])
    print(f"report: {out}")
    return 0 if all(r["status"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
