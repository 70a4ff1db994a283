"""TensorBoard logging, alone and with other loggers; event files read back with TensorBoard's
own EventAccumulator."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, summaries
from killed_runs import kill_after_checkpoint

from degradation.loggers import (
    MetricsCSVLogger,
    RunTensorBoardLogger,
    WandbRunLogger,
    build_loggers,
    finish_loggers,
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


def event_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / TENSORBOARD).glob("events.out.tfevents.*"))


def hparams_session(run_dir: Path) -> dict:
    """What TensorBoard's HParams tab reads from the run's events: the experiment's metric
    names, the session's hyperparameters and end status, and each metric's last value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    events = EventAccumulator(str(run_dir / TENSORBOARD), size_guidance={"scalars": 0}).Reload()
    content = {
        tag: plugin_data_pb2.HParamsPluginData.FromString(data)
        for tag, data in events.PluginTagToContent(metadata.PLUGIN_NAME).items()
    }
    experiment = content[metadata.EXPERIMENT_TAG].experiment
    start = content[metadata.SESSION_START_INFO_TAG].session_start_info
    end = content[metadata.SESSION_END_INFO_TAG].session_end_info
    names = [info.name.tag for info in experiment.metric_infos]
    return {
        "metric_names": names,
        "hparams": {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()},
        "hparam_names": [info.name for info in experiment.hparam_infos],
        # the five columns the tab shows at first: those marked as differing, then by name
        "shown": [
            info.name
            for info in sorted(experiment.hparam_infos, key=lambda i: (not i.differs, i.name))
        ][:5],
        "status": api_pb2.Status.Name(end.status),
        "metrics": {
            name: events.Scalars(name)[-1].value
            for name in names
            if name in events.Tags()["scalars"]
        },
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
    # fit, validate, test and the best-checkpoint test write into one file, not one each
    assert len(event_files(run_dir)) == 1, event_files(run_dir)


@needs_tensorboard
@pytest.mark.slow
def test_the_hparams_tab_compares_the_runs_of_a_sweep(tmp_path, out):
    """Each run folder is one HParams session: its defining config, flattened, with the final
    numbers of summary.json as the metrics; hparams.yaml holds the same hyperparameters."""
    proc = run_cli("-m", *RUN, "skip=none,add", "trainer.max_steps=12", "logger=tensorboard",
                   f"output_root={out}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = summaries(out)
    assert sorted(summary["skip"] for summary in found.values()) == ["add", "none"]
    for run_dir, summary in found.items():
        assert summary["status"] == "completed"
        assert len(event_files(run_dir)) == 1, event_files(run_dir)
        session = hparams_session(run_dir)
        hparams = session["hparams"]
        assert hparams["depth"] == 8 and hparams["skip"] == summary["skip"]
        assert hparams["shortcut"] == summary["shortcut"]  # "not_applicable" for skip=none
        assert hparams["family"] == "cifar" and hparams["data.name"] == "synthetic"
        assert hparams["seed"] == 0 and hparams["optim.lr"] == pytest.approx(0.1)
        assert hparams["trainer.max_steps"] == 12 and hparams["data.batch_size"] == 32
        assert hparams["preact"] == "false" and hparams["optim.milestones"] == "[15]"
        assert not [key for key in hparams if key.startswith(("logger", "output_root"))]
        assert sorted(session["hparam_names"]) == sorted(hparams)
        assert session["shown"] == ["data.name", "depth", "seed", "shortcut", "skip"]
        assert session["status"] == "STATUS_SUCCESS"
        assert session["metric_names"] == [
            "hparams/train_error", "hparams/test_error", "hparams/best_val_test_error"
        ]  # fmt: skip
        assert session["metrics"] == {
            "hparams/train_error": pytest.approx(summary["final"]["train_error"], rel=1e-6),
            "hparams/test_error": pytest.approx(summary["final"]["test_error"], rel=1e-6),
            "hparams/best_val_test_error": pytest.approx(
                summary["best_val"]["test_error"], rel=1e-6
            ),
        }
        saved = yaml.safe_load((run_dir / TENSORBOARD / "hparams.yaml").read_text())
        assert saved["depth"] == 8 and saved["skip"] == summary["skip"]
        assert saved["shortcut"] == summary["shortcut"] and saved["preact"] is False


@needs_tensorboard
@pytest.mark.slow
def test_under_ddp_rank_zero_alone_writes_the_events(tmp_path, out):
    """Two processes, one event file; 4 steps and no validation: no best-val number."""
    proc = run_cli(*RUN, "trainer.max_steps=4", "trainer.accelerator=cpu", "trainer.devices=2",
                   "data.batch_size=128", "logger=tensorboard", f"output_root={out}",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ((run_dir, summary),) = summaries(out).items()
    assert summary["world_size"] == 2 and summary["best_val"] is None
    assert len(event_files(run_dir)) == 1, event_files(run_dir)
    session = hparams_session(run_dir)
    assert session["hparams"]["trainer.devices"] == 2
    assert session["metrics"] == {
        "hparams/train_error": pytest.approx(summary["final"]["train_error"], rel=1e-6),
        "hparams/test_error": pytest.approx(summary["final"]["test_error"], rel=1e-6),
    }


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
    assert len(event_files(run_dir)) == 2  # one per start: the killed one and the resumed one
    (summary,) = summaries(run_dir).values()
    test_error = hparams_session(run_dir)["metrics"]["hparams/test_error"]
    assert test_error == pytest.approx(summary["final"]["test_error"], rel=1e-6)


@needs_tensorboard
def test_a_resumed_start_hides_the_steps_it_logs_again(tmp_path):
    """The first start logged steps 0-14, its checkpoint is at 10: the resumed start logs
    10-20 again, and TensorBoard shows 0-9 of the first and 10-20 of the second, once."""
    for steps, resume_step, loss in ((range(15), None, 2.0), (range(10, 21), 10, 1.0)):
        logger = RunTensorBoardLogger(tmp_path, resume_step)
        for step in steps:
            logger.log_metrics({"train/loss": loss + step / 100}, step=step)
        logger.finalize("success")
        logger.finish({"status": "interrupted"})
    found = scalars(tmp_path)["train/loss"]
    expected = [2.0 + s / 100 for s in range(10)] + [1.0 + s / 100 for s in range(10, 21)]
    assert found == [(s, pytest.approx(v)) for s, v in enumerate(expected)]
    assert len(event_files(tmp_path)) == 2  # one per start; the second opens with its purge mark


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
    pytest.importorskip("wandb")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    built = build_loggers(compose_spec("logger=[wandb,tensorboard]"), tmp_path / "run")
    try:
        assert [type(x) for x in built] == [MetricsCSVLogger, RunTensorBoardLogger, WandbRunLogger]
        assert Path(built[1].log_dir) == tmp_path / "run" / TENSORBOARD
    finally:
        finish_loggers({"status": "failed"})


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
