"""Live monitoring: TensorBoard event files of both stages, read back; throughput and time left."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest

from cir_lib import monitoring, runs
from cir_lib.finetune import finetune
from cir_lib.recipes import get_recipe
from cir_lib.train_combiner import train_combiner

ROOT = Path(__file__).resolve().parents[1]
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _events(run_dir: Path):
    files = sorted(run_dir.glob("events.out.tfevents.*"))
    assert files, f"no event files in {run_dir}"
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return acc


def _scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def two_stages(smoke_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("monitored")
    s1 = finetune(smoke_root, get_recipe("smoke", dataset="cirr", epochs=2, batch_size=16, encode_batch_size=128),
                  folder / "s1")
    s2 = train_combiner(smoke_root, get_recipe("smoke", stage="combiner", dataset="cirr", epochs=2, batch_size=32,
                                                encode_batch_size=128), folder / "s1", folder / "s2")
    return folder, s1, s2


@pytest.mark.parametrize("stage", ["s1", "s2"])
def test_both_stages_write_event_files_beside_history(two_stages, stage):
    folder, s1, s2 = two_stages
    result = {"s1": s1, "s2": s2}[stage]
    acc = _events(folder / stage)
    steps = sum(row["steps"] for row in result.history)
    loss = _scalars(acc, "train/loss")
    assert [s for s, _ in loss] == list(range(1, steps + 1))  # one point per step, x = the run's step
    assert [s for s, _ in _scalars(acc, "train/lr")] == list(range(1, steps + 1))
    assert [s for s, _ in _scalars(acc, "train/throughput")] == [1, 2]
    assert all(v > 0 for _, v in _scalars(acc, "train/throughput"))
    history = runs.read_history(folder / stage).to_dict("records")
    for key in ("recall@1", "recall@50", "recall_subset@1", "score", "score_harmonic"):
        assert _scalars(acc, f"val/{key}") == [(r["epoch"], pytest.approx(r[key], abs=1e-4)) for r in history]
    assert _scalars(acc, "epoch/loss") == [(r["epoch"], pytest.approx(r["loss"], rel=1e-6)) for r in history]
    histograms = acc.Tags()["histograms"]
    if stage == "s2":  # the Combiner's lambda over the val queries at each validation
        lam = acc.Histograms("combiner/lambda")
        assert [h.step for h in lam] == [1, 2]
        assert all(0 <= h.histogram_value.min <= h.histogram_value.max <= 1 for h in lam)
    else:
        assert "combiner/lambda" not in histograms


def test_event_files_do_not_change_the_numbers(two_stages, smoke_root, tmp_path):
    folder, _, s2 = two_stages
    quiet = train_combiner(smoke_root, get_recipe("smoke", stage="combiner", dataset="cirr", epochs=2, batch_size=32,
                                                   encode_batch_size=128, tensorboard=False),
                           folder / "s1", tmp_path / "quiet")
    assert not list((tmp_path / "quiet").glob("events.out.tfevents.*"))

    def rows(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert rows(quiet.history) == rows(s2.history)


def test_event_files_are_not_tracked_by_git():
    out = subprocess.run(["git", "check-ignore", "-q", "results/mini/runs/cirr-finetune/"
                          "events.out.tfevents.1700000000.host.123.0"], cwd=ROOT)
    if out.returncode == 128:
        pytest.skip("not a git checkout")
    assert out.returncode == 0


def test_log_lines_carry_throughput_and_time_left(smoke_root, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(monitoring, "PROGRESS_LOG_EVERY_S", 0.0)  # an in-epoch line at every step
    with caplog.at_level(logging.INFO, logger="cir_lib"):
        finetune(smoke_root, get_recipe("smoke", dataset="fashioniq", epochs=2, batch_size=16, encode_batch_size=128,
                                        max_steps_per_epoch=3, tensorboard=False), tmp_path / "r")
    lines = [r.getMessage() for r in caplog.records]
    in_epoch = [m for m in lines if m.startswith("epoch 1/2 step ")]
    assert in_epoch and all("triplets/s, epoch left " in m and ", run left " in m for m in in_epoch)
    ends = [m for m in lines if m.startswith("epoch 2/2 loss")]
    assert ends and "triplets/s, run left 0s" in ends[0]


def test_durations_read_as_people_write_them():
    assert [monitoring.format_duration(s) for s in (0, 59.4, 61, 3725, float("nan"))] == \
        ["0s", "59s", "1m01s", "1h02m", "?"]
