"""Failure isolation: a job that raises or diverges is recorded, and the sweep goes on."""

from __future__ import annotations

import json
import math

import faults
from conftest import run_cli, summaries

SMOKE = ["experiment=smoke", "depth=8", "trainer.max_steps=10"]  # log_every=5


def strict_json(path):
    """summary.json must be valid JSON for any reader (no NaN / Infinity literals)."""

    def reject(token):
        raise ValueError(f"{path}: non-standard JSON constant {token}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_a_failed_and_a_diverged_job_do_not_stop_the_sweep(tmp_path, out):
    # tests/faults.py: seed 1 raises, seed 2's loss turns NaN
    hooks = faults.env({faults.FAIL_AT_STEP: "3:seed=1", faults.NAN_AT_STEP: "2:seed=2"})
    result = run_cli("-m", "seed=0,1,2,3", *SMOKE, f"output_root={out}", cwd=tmp_path, env=hooks)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stdout
    table = result.stdout[result.stdout.index("job ") :]
    assert "seed=1" in table and "failed  (RuntimeError: injected failure at step 3" in table
    assert "diverged  (at step 5)" in table
    assert "sweep: 2 completed, 1 diverged, 1 failed" in table
    runs = {
        s["seed"]: (d, s) for d, s in ((d, strict_json(d / "summary.json")) for d in summaries(out))
    }
    assert sorted(runs) == [0, 1, 2, 3]  # every job left its summary

    _, failed = runs[1]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: injected failure at step 3 (DEGRADATION_FAIL_AT_STEP)"
    assert "training_step" in failed["traceback"]

    diverged_dir, diverged = runs[2]
    assert diverged["status"] == "diverged"
    assert diverged["diverged_step"] == 5  # the metric window holding step 2 closes at step 5
    assert diverged["steps"] == 5  # stopped there
    assert diverged["final"]["train_loss"] is None  # NaN, written as null

    for seed in (0, 3):
        assert runs[seed][1]["status"] == "completed" and runs[seed][1]["steps"] == 10

    # a rerun skips what finished (completed and diverged) and retries the failed job only
    again = run_cli("-m", "seed=0,1,2,3", *SMOKE, f"output_root={out}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already completed, skipping") == 2
    assert again.stdout.count("already diverged, skipping") == 1
    assert "sweep: 3 completed, 1 diverged" in again.stdout
    assert strict_json(diverged_dir / "summary.json") == diverged


def test_a_loss_above_diverge_loss_stops_the_run_as_diverged(tmp_path, out):
    # cross-entropy over 10 classes starts near ln 10 = 2.3, far above 0.5
    result = run_cli(*SMOKE, "diverge_loss=0.5", f"output_root={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[
        -3000:
    ]  # a diverged run is an outcome, not an error
    assert "s0: diverged" in result.stdout
    (summary,) = (strict_json(d / "summary.json") for d in summaries(out))
    assert summary["status"] == "diverged"
    assert summary["diverged_step"] == summary["steps"] == 5
    assert math.isfinite(summary["final"]["train_loss"]) and summary["final"]["train_loss"] > 0.5


def test_the_fault_variables_do_nothing_without_the_test_hook(tmp_path, out):
    """The faults live in the tests (tests/faults.py): the product ignores their variables."""
    env = {faults.FAIL_AT_STEP: "1", faults.NAN_AT_STEP: "2"}
    args = ["experiment=smoke", "depth=8", "trainer.max_steps=4", f"output_root={out}"]
    result = run_cli(*args, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ((_, summary),) = summaries(out).items()
    assert summary["status"] == "completed" and summary["steps"] == 4
