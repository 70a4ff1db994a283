"""What a run records about its own evaluation and recipe choices (metrics.csv, summary.json)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import run_cli, summaries

from degradation.report.runs import Run, group_runs
from degradation.rundir import read_flat_config, read_metrics


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[Path, dict]:
    """(run folder, summary) of one smoke run of plain-8 (20 steps, validation at 10 and 20),
    with the non-default recipe choices (the golden smoke sweep records the defaults)."""
    root = tmp_path_factory.mktemp("recorded")
    out = root / "outputs"
    result = run_cli(
        "experiment=smoke", "depth=8", "skip=none", "data.pad_value=mean", "head_init=he_normal",
        f"output_root={out}", cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ((run_dir, summary),) = summaries(out).items()
    return run_dir, summary


def test_final_and_best_checkpoint_test_errors_have_their_own_metrics_columns(smoke_run):
    run_dir, summary = smoke_run
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    final = [r for r in rows if r.get("test/error")]
    best = [r for r in rows if r.get("best/test_error")]
    assert len(final) == 1 and len(best) == 1  # one row each, at the last step
    assert not final[0].get("best/test_error") and not best[0].get("test/error")
    assert float(final[0]["test/error"]) == pytest.approx(summary["final"]["test_error"])
    assert float(final[0]["test/loss"]) == pytest.approx(summary["final"]["test_loss"])
    assert float(best[0]["best/test_error"]) == pytest.approx(summary["best_val"]["test_error"])
    # a reader of metrics.csv (the report's) gets the final model's error under test/error
    metrics = read_metrics(run_dir)
    assert metrics["test/error"] == [(20, pytest.approx(summary["final"]["test_error"]))]
    assert metrics["best/test_error"] == [(20, pytest.approx(summary["best_val"]["test_error"]))]


def test_recipe_choices_are_recorded_and_keep_variants_apart(smoke_run):
    run_dir, summary = smoke_run
    assert (summary["pad_value"], summary["head_init"]) == ("mean", "he_normal")
    config = read_flat_config(run_dir)
    assert (config["data.pad_value"], config["head_init"]) == ("mean", "he_normal")
    # the report never averages runs that differ in these choices: each is its own variant
    twin = {**config, "head_init": "pytorch", "data.pad_value": "zero"}
    runs = [Run(run_dir, summary, config, {}, None), Run(Path("twin"), summary, twin, {}, None)]
    labels = sorted(v.label for v in group_runs(runs))
    assert labels == [
        "plain-8 [data.pad_value=mean, head_init=he_normal]",
        "plain-8 [data.pad_value=zero, head_init=pytorch]",
    ]
