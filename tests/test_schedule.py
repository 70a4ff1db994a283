"""The learning-rate schedule and the ResNet-110 warm-up, through metrics.csv."""

from __future__ import annotations

import csv

from conftest import run_cli, summaries

from degradation.config import OptimConfig
from degradation.module import scheduled_lr


def test_multistep_schedule_counts_iterations():
    optim = OptimConfig()
    assert scheduled_lr(optim, 0, False) == 0.1
    assert scheduled_lr(optim, 31_999, False) == 0.1
    assert abs(scheduled_lr(optim, 32_000, False) - 0.01) < 1e-12
    assert abs(scheduled_lr(optim, 48_000, False) - 0.001) < 1e-12
    assert scheduled_lr(OptimConfig(warmup_lr=0.01), 5, True) == 0.01


def test_warmup_switches_lr_and_logs_it(tmp_path, out):
    result = run_cli(
        "experiment=smoke", "depth=8", "optim.warmup_lr=0.01", "optim.warmup_max_steps=10",
        "optim.warmup_until_error=0.0", "optim.milestones=[100]", f"output_root={out}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warm-up ended at step 10: lr 0.01 -> 0.1" in result.stdout
    ((run_dir, summary),) = summaries(out).items()
    assert summary["warmup_end_step"] == 10
    lrs = {int(r["step"]): float(r["lr"]) for r in csv.DictReader((run_dir / "metrics.csv").open())
           if r["lr"]}  # fmt: skip
    assert [lrs[s] for s in range(10)] == [0.01] * 10
    assert [lrs[s] for s in range(10, 20)] == [0.1] * 10
