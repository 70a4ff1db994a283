"""Any Lightning Trainer argument under trainer.*, callbacks as a config group (issue: open to
the tools people already use)."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json

import lightning as L
import pytest
from conftest import run_cli

from degradation.config import (
    LIGHTNING_DEFAULT_TRAINER_KEYS,
    MANAGED_TRAINER_ARGS,
    TrainerConfig,
)
from degradation.errors import UserError
from degradation.preflight import check_command_line
from degradation.rundir import config_hash, run_dir_name

SMOKE = ("experiment=smoke", "depth=8", "trainer.precision=32-true", "compile=none")


def test_every_trainer_argument_is_a_setting_or_managed():
    """A Lightning upgrade that adds an argument fails here until it is placed."""
    lightning = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    ours = {f.name for f in dataclasses.fields(TrainerConfig)}
    assert lightning == ours | set(MANAGED_TRAINER_ARGS)
    assert not ours & set(MANAGED_TRAINER_ARGS)
    assert set(LIGHTNING_DEFAULT_TRAINER_KEYS) <= ours
    assert all(getattr(TrainerConfig(), k) is None for k in LIGHTNING_DEFAULT_TRAINER_KEYS)


@pytest.mark.parametrize(
    "override, defines",
    [
        ("trainer.max_epochs=3", True),
        ("trainer.limit_val_batches=2", True),
        ("trainer.gradient_clip_algorithm=value", True),
        ("trainer.profiler=simple", False),
        ("trainer.num_sanity_val_steps=0", False),
        ("trainer.detect_anomaly=true", False),
        ("callbacks=early_stopping", True),
        ("callbacks=lr_monitor", False),
        ("callbacks=[model_summary,device_stats]", False),
        ("callbacks=[early_stopping,lr_monitor]", True),
    ],
)
def test_config_hash_and_folder_follow_what_a_setting_changes(compose_cfg, override, defines):
    base = config_hash(compose_cfg())
    assert (config_hash(compose_cfg(override)) != base) is defines
    assert (run_dir_name([override]) != "default") is defines


def test_new_keys_at_their_defaults_keep_the_hash_of_earlier_runs(compose_cfg):
    """Runs hashed before the keys existed (no trainer.max_epochs, no callbacks) still match."""
    from omegaconf import OmegaConf

    cfg = compose_cfg()
    old = OmegaConf.to_container(cfg)
    for key in LIGHTNING_DEFAULT_TRAINER_KEYS:
        del old["trainer"][key]
    del old["callbacks"]
    assert config_hash(OmegaConf.create(old)) == config_hash(cfg)


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.logger=x", "trainer.logger=x: trainer.logger is set by this program; "
         "choose loggers with logger=csv|wandb|tensorboard"),
        ("+trainer.fast_dev_run=1", "+trainer.fast_dev_run: trainer.fast_dev_run is set by "
         "this program; it writes no checkpoint or record; use experiment=smoke"),
        ("trainer.accumulate_grad_batches=2", "set data.batch_size instead"),
        ("trainer.max_epochz=1", "unknown key 'max_epochz'; valid keys under trainer: "),
        ("trainer.max_time=abc", "trainer.max_time=abc: `Timer(duration='abc')` is not a valid"),
        ("trainer.profiler=bogus", "trainer.profiler=bogus: "),
        ("callbacks=nope", "callbacks=nope: no such option; choose one of: device_stats, "
         "early_stopping, lr_monitor, model_summary, rich_progress_bar"),
        ("callbacks.early_stopping.monitor=val/acc", "callbacks.early_stopping.monitor=val/acc "
         "is not a metric this run logs; choose one of: val/error, val/loss"),
        ("callbacks.early_stopping.patiense=2", "write +callbacks.early_stopping.patiense=2"),
        ("+callbacks.early_stopping.patiense=2", "callbacks.early_stopping (lightning.pytorch."
         "callbacks.EarlyStopping): EarlyStopping.__init__() got an unexpected keyword"),
        ("+callbacks.mine._target_=collections.OrderedDict", "callbacks.mine._target_="
         "collections.OrderedDict is not a Lightning Callback"),
    ],
)  # fmt: skip
def test_a_wrong_lightning_setting_is_one_line(override, message):
    needs_group = override.startswith(("callbacks.", "+callbacks.early"))
    group = ["callbacks=early_stopping"] if needs_group else []
    with pytest.raises(UserError) as err:
        check_command_line([*SMOKE, *group, override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    if "max_epochz" in override:
        assert "max_epochs" in str(err.value)


def test_a_progress_bar_callback_and_no_progress_display_is_refused(out):
    result = run_cli(*SMOKE, "callbacks=rich_progress_bar", f"output_root={out}", cwd=out.parent)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: callbacks.rich_progress_bar is a progress bar and trainer.enable_progress_bar="
        "false turns progress display off; drop one of the two"
    )
    assert not out.exists()


def _run(out, *overrides) -> tuple[dict, list[dict], str]:
    result = run_cli(*SMOKE, f"output_root={out}", *overrides, cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (out / "runs" / "smoke").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return summary, rows, (run_dir / "run.log").read_text()


def test_max_epochs_ends_the_run_after_whole_epochs(out):
    # smoke: 512 training images less 128 for validation, batch 32: 12 steps an epoch
    summary, rows, _ = _run(out, "trainer.max_epochs=1", "trainer.max_steps=100")
    assert summary["status"] == "completed"
    assert summary["steps"] == 12
    assert summary["final"]["test_error"] is not None


def test_configured_callbacks_run_early_stopping_lr_monitor_model_summary(out):
    # min_delta 1.0: no validation can improve that much, so patience 1 stops at the second
    summary, rows, log = _run(
        out,
        "callbacks=[early_stopping,lr_monitor,model_summary]",
        "callbacks.early_stopping.patience=1",
        "callbacks.early_stopping.min_delta=1.0",
        "trainer.max_steps=60",
    )
    assert summary["status"] == "completed"
    assert summary["steps"] == 20  # validations at steps 10 and 20 (val_check_interval 10)
    lrs = [float(r["lr-SGD"]) for r in rows if r.get("lr-SGD")]
    assert lrs and lrs[0] == pytest.approx(0.1)
    assert "Total params" in log  # ModelSummary's table, in run.log too


def test_plus_and_plain_spelling_of_a_trainer_setting_name_one_folder():
    assert run_dir_name(["+trainer.max_epochs=3"]) == "trainer.max_epochs=3"
    assert run_dir_name(["depth=20", "+trainer.max_epochs=3"]) == run_dir_name(
        ["trainer.max_epochs=3", "depth=20"]
    )
    # a key the schema lacks keeps its `+`: it is another run's override
    assert (
        run_dir_name(["+callbacks.mine._target_=pkg.Mine"]) == "+callbacks.mine._target_=pkg.Mine"
    )
