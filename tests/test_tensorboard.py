"""TensorBoard logging, alone and with other loggers; event files read back with TensorBoard's
own EventAccumulator."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from conftest import run_cli, summaries
from killed_runs import kill_after_checkpoint

from degradation.loggers import (
    MetricsCSVLogger,
    WandbRunLogger,
    build_loggers,
    finish_wandb,
    tensorboard_logger,
)
from degradation.rundir import TENSORBOARD, read_config, read_csv_rows, read_metrics

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="needs the optional extra degradation[tensorboard]",
)
RUN = ["experiment=smoke", "depth=8", "log_every=4"]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run's TensorBoard events: tag -> [(step, value)], in file order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / TENSORBOARD), size_guidance={"scalars": 0}).Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def assert_same_as_metrics_csv(run_dir: Path, found: dict[str, list[tuple[int, float]]]) -> None:
    """TensorBoard holds metrics.csv's numbers under metrics.csv's names, each step once;
    test/error twice at the last step, as in metrics.csv: the final weights, then best.ckpt."""
    csv = read_metrics(run_dir)
    for column in ("lr", "train/loss", "train/error", "val/error"):
        steps = [step for step, _ in found[column]]
        assert len(steps) == len(set(steps)), f"{column}: a step shows twice"
        tensorboard = dict(found[column])
        for step, number in csv[column]:
            assert tensorboard[step] == pytest.approx(number, rel=1e-5), (column, step)
    rows = read_csv_rows(run_dir / "metrics.csv")
    column = rows[0].index("test/error")
    tests = [float(row[column]) for row in rows[1:] if row[column]]
    assert [number for _, number in found["test/error"]] == pytest.approx(tests, rel=1e-5)


@needs_tensorboard
@pytest.mark.slow
def test_event_files_hold_the_logged_scalars(tmp_path, out):
    proc = run_cli(*RUN, "trainer.max_steps=12", "logger=[csv,tensorboard]", f"output_root={out}",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = summaries(out)
    assert "logger" not in run_dir.name  # the loggers do not rename the run folder
    assert (run_dir / "metrics.csv").is_file()  # written with any logger
    found = scalars(run_dir)
    assert [step for step, _ in found["lr"]] == list(range(12))
    assert [step for step, _ in found["train/loss"]] == [3, 7, 11]  # one per window of 4
    assert "grad/rel/stages.0" in found and "hp_metric" not in found
    # every conv layer's gradient norm, as W&B gets them (metrics.csv keeps the stages only)
    assert len([tag for tag in found if tag.startswith("grad/")]) > len(
        [c for c in read_metrics(run_dir) if c.startswith("grad/")]
    )
    assert_same_as_metrics_csv(run_dir, found)
    assert read_config(run_dir).logger.kind == {"csv": True, "tensorboard": True}


@needs_tensorboard
@pytest.mark.slow
def test_a_resumed_run_shows_each_step_once(tmp_path):
    """Killed after its checkpoint, the run logs the steps after it again; TensorBoard shows
    each step once, with the numbers of metrics.csv."""
    args = [*RUN, "trainer.max_steps=30", "logger=tensorboard", f"output_root={tmp_path / 'out'}"]
    run_dir = tmp_path / "out" / "runs" / "smoke" / "depth=8,log_every=4,trainer.max_steps=30"
    last = run_dir / "checkpoints" / "last.ckpt"
    killed_at = kill_after_checkpoint(args, last, 10, tmp_path, dict(os.environ), group=False)
    assert 10 <= killed_at < 30 and not (run_dir / "summary.json").exists(), "not cut short"
    before = scalars(run_dir)  # the checkpoint flushed the events before it to disk
    assert max(step for step, _ in before["lr"]) >= killed_at - 1

    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    found = scalars(run_dir)
    assert [step for step, _ in found["lr"]] == list(range(30))
    assert_same_as_metrics_csv(run_dir, found)


@needs_tensorboard
def test_a_resumed_start_hides_the_steps_it_logs_again(tmp_path):
    """The first start logged steps 0-14, its checkpoint is at 10: the resumed start logs
    10-20 again, and TensorBoard shows 0-9 of the first and 10-20 of the second, once."""
    for steps, resume_step, loss in ((range(15), None, 2.0), (range(10, 21), 10, 1.0)):
        logger = tensorboard_logger(tmp_path, resume_step)
        for step in steps:
            logger.log_metrics({"train/loss": loss + step / 100}, step=step)
        logger.finalize("success")
    found = scalars(tmp_path)["train/loss"]
    expected = [2.0 + s / 100 for s in range(10)] + [1.0 + s / 100 for s in range(10, 21)]
    assert found == [(s, pytest.approx(v)) for s, v in enumerate(expected)]


@pytest.mark.parametrize(
    "overrides, chosen",
    [
        ([], ["csv"]),
        (["logger=csv"], ["csv"]),
        (["logger=wandb"], ["wandb"]),
        (["logger=tensorboard"], ["tensorboard"]),
        (["logger=[csv,tensorboard]"], ["csv", "tensorboard"]),
        (["logger=[wandb,tensorboard]"], ["wandb", "tensorboard"]),
        (["logger.kind=wandb"], ["wandb"]),  # the key itself, as configs of earlier versions
    ],
)
def test_logger_choices_compose(compose_spec, overrides, chosen):
    assert list(compose_spec(*overrides).records.loggers) == chosen


@needs_tensorboard
def test_wandb_and_tensorboard_together(compose_spec, tmp_path, monkeypatch):
    from lightning.pytorch.loggers import TensorBoardLogger

    pytest.importorskip("wandb")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    built = build_loggers(compose_spec("logger=[wandb,tensorboard]"), tmp_path / "run")
    try:
        assert [type(x) for x in built] == [MetricsCSVLogger, TensorBoardLogger, WandbRunLogger]
        assert Path(built[1].log_dir) == tmp_path / "run" / TENSORBOARD
    finally:
        finish_wandb({"status": "completed"})


def test_logger_tensorboard_without_tensorboard_installed_is_a_one_line_error(out, tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['tensorboard'] = None\n")
    env = {"PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli(*RUN, "logger=[csv,tensorboard]", f"output_root={out}", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: logger=tensorboard: the tensorboard")
    assert "pip install tensorboard" in lines[0] and "logger=csv" in lines[0]
    assert not out.exists()


def test_an_unknown_logger_is_a_one_line_error(out, tmp_path):
    for override, expected in (
        ("logger=[csv,mlflow]", "error: logger=[csv,mlflow]: no such option; choose one of:"),
        ("logger.kind=mlflow", "error: logger.kind=mlflow is not valid: choose csv, wandb or"),
    ):
        proc = run_cli(*RUN, override, f"output_root={out}", cwd=tmp_path)
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(expected), line
