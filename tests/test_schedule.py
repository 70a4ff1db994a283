"""The learning-rate schedule and the ResNet-110 warm-up, through metrics.csv."""

from __future__ import annotations

import csv
from dataclasses import replace
from types import SimpleNamespace

from conftest import run_cli, summaries

from degradation.models import build_model
from degradation.module import Classifier, scheduled_lr
from degradation.preflight import spec_of_settings
from degradation.spec import OptimSpec


def optim_spec(**changes) -> OptimSpec:
    """The schema's default optimiser settings, parsed, with changes."""
    return replace(spec_of_settings({}).optim, **changes)


def test_multistep_schedule_counts_iterations():
    optim = optim_spec()
    assert scheduled_lr(optim, 0, False) == 0.1
    assert scheduled_lr(optim, 31_999, False) == 0.1
    assert abs(scheduled_lr(optim, 32_000, False) - 0.01) < 1e-12
    assert abs(scheduled_lr(optim, 48_000, False) - 0.001) < 1e-12
    assert scheduled_lr(optim_spec(warmup_lr=0.01), 5, True) == 0.01


def warming_module(global_step: int, **optim) -> Classifier:
    """A Classifier warming up, at a given training step (a stand-in for the trainer)."""
    module = Classifier(build_model(8), optim_spec(warmup_lr=0.01, **optim))
    module._trainer = SimpleNamespace(global_step=global_step)
    return module


def test_warmup_lasts_until_the_training_error_is_below_the_threshold(capsys):
    # He et al. 2015, Sec. 4.2: 0.01 "until the training error is below 80%"
    module = warming_module(500)  # past the paper's "about 400 iterations"
    module.on_train_window_end({"train/error": 0.85})
    assert module.warming_up and module.warmup_end_reason is None
    module._trainer.global_step = 600
    module.on_train_window_end({"train/error": 0.79})
    assert not module.warming_up
    assert (module.warmup_end_step, module.warmup_end_reason) == (600, "error")
    assert "warning" not in capsys.readouterr().out
    assert scheduled_lr(module.optim, 600, module.warming_up) == 0.1


def test_warmup_cap_is_a_safety_that_is_recorded_and_warned_about(capsys):
    module = warming_module(4000)  # the default cap, error still above 80 %
    assert module.optim.warmup_max_steps == 4000
    module.on_train_window_end({"train/error": 0.85})
    assert (module.warming_up, module.warmup_end_reason) == (False, "cap")
    out = capsys.readouterr().out
    assert "warning: the warm-up ended at its step cap optim.warmup_max_steps=4000" in out
    assert "training error still at 0.850" in out


def test_warmup_switches_lr_and_logs_it(tmp_path, out):
    result = run_cli(
        "experiment=smoke", "depth=8", "optim.warmup_lr=0.01", "optim.warmup_max_steps=10",
        "optim.warmup_until_error=0.0", "optim.milestones=[100]", f"output_root={out}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warm-up ended at step 10 (cap): lr 0.01 -> 0.1" in result.stdout
    assert "warning: the warm-up ended at its step cap optim.warmup_max_steps=10" in result.stdout
    ((run_dir, summary),) = summaries(out).items()
    assert (summary["warmup_end_step"], summary["warmup_end_reason"]) == (10, "cap")
    lrs = {int(r["step"]): float(r["lr"]) for r in csv.DictReader((run_dir / "metrics.csv").open())
           if r["lr"]}  # fmt: skip
    assert [lrs[s] for s in range(10)] == [0.01] * 10
    assert [lrs[s] for s in range(10, 20)] == [0.1] * 10


def test_warmup_ended_by_the_error_is_recorded(tmp_path, out):
    result = run_cli(
        "experiment=smoke", "depth=8", "optim.warmup_lr=0.01", "optim.warmup_until_error=1.0",
        "optim.milestones=[100]", f"output_root={out}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # the first window (log_every=5) has an error below 100 %
    assert "warm-up ended at step 5 (error): lr 0.01 -> 0.1" in result.stdout
    assert "warning" not in result.stdout
    ((_, summary),) = summaries(out).items()
    assert (summary["warmup_end_step"], summary["warmup_end_reason"]) == (5, "error")
