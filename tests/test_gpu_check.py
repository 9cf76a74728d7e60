"""The GPU check script and the GPU benchmark, as far as a CPU can check them: argument handling,
the report, and that the benchmark times the kit's own step functions (not copies)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_modules():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield importlib.import_module("gpu_check"), importlib.import_module("bench_gpu")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_unknown_parts_and_a_missing_gpu_are_refused(bench_modules, capsys, tmp_path):
    gpu_check, _ = bench_modules
    assert gpu_check.main(["--parts", "tests,nope", "--out", str(tmp_path / "r.md")]) == 2
    assert "unknown part" in capsys.readouterr().err
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the check would run")
    assert gpu_check.main(["--out", str(tmp_path / "r.md")]) == 1
    assert "no CUDA GPU here" in capsys.readouterr().err and not (tmp_path / "r.md").exists()


def test_the_parts_are_the_cuda_tests_the_benchmark_and_the_paper_dry_run(bench_modules, tmp_path):
    gpu_check, _ = bench_modules
    tests, env = gpu_check.part_command("tests", tmp_path, cpu=False)
    assert tests[1:5] == ["-m", "pytest", "-m", "cuda"] and env == {}
    assert gpu_check.part_command("tests", tmp_path, cpu=True)[1] == {"CIR_LIB_CUDA_TESTS_ON_CPU": "1"}
    bench, _ = gpu_check.part_command("bench", tmp_path, cpu=False)
    assert bench[1:3] == ["benchmarks/bench_gpu.py", "--quick"]
    dry, _ = gpu_check.part_command("dry-run", tmp_path, cpu=False)
    assert "dry_run=True" in dry[-1] and "'backbones': 'RN50'" in dry[-1]
    assert sum(gpu_check.LIMITS_S.values()) < 600  # under ten minutes on one GPU


def test_the_report_holds_every_part_even_a_failed_or_timed_out_one(bench_modules, tmp_path, monkeypatch):
    gpu_check, _ = bench_modules
    commands = {"tests": [sys.executable, "-c", "print('3 passed')"],
                "bench": [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
                "dry-run": [sys.executable, "-c", "import time; time.sleep(30)"]}
    monkeypatch.setattr(gpu_check, "part_command", lambda part, work, cpu: (commands[part], {}))
    monkeypatch.setattr(gpu_check, "LIMITS_S", {"tests": 60, "bench": 60, "dry-run": 1})
    out = tmp_path / "report.md"
    assert gpu_check.main(["--allow-cpu", "--out", str(out)]) == 1
    report = out.read_text()
    assert "## tests: passed" in report and "3 passed" in report
    assert "## bench: FAILED (3)" in report and "boom" in report
    assert "## dry-run: FAILED (timed out)" in report
    assert "- GPU:" in report and "torch" in report


def test_the_benchmark_times_the_kits_own_step_functions(bench_modules, monkeypatch):
    from cir_lib import finetune, train_combiner
    from cir_lib.backbone import load_backbone

    _, bench = bench_modules
    assert bench.combiner_step is train_combiner.combiner_step
    calls = []
    real = finetune.stage1_step
    monkeypatch.setattr(finetune, "stage1_step", lambda *a, **k: calls.append(sorted(k)) or real(*a, **k))
    torch.manual_seed(0)
    for reencode in (False, True):
        step = bench._Stage1Step(load_backbone("cir-mini", "none"), "text", 4, torch.device("cpu"), "none",
                                 reencode=reencode)
        before = step.model.token_embedding.weight.detach().clone()
        step()
        assert not torch.equal(before, step.model.token_embedding.weight)  # a real step was taken
    assert calls == [["reference_features", "target_features"], ["images"]]
