"""One run, start to finish: config → data → model → Lightning Trainer → run folder.

A rerun of the same command finds the same folder: a finished run is skipped, an unfinished
one resumes from checkpoints/last.ckpt, exactly (resume.py; `resume=false` starts afresh).
"""

from __future__ import annotations

import shlex
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from degradation.callbacks import (
    AtomicCheckpointIO,
    CompileClock,
    Divergence,
    FaultInjection,
    GradientFlow,
    LastCheckpoint,
    MetricWindow,
)
from degradation.choices import value
from degradation.config import model_kwargs, variant_name
from degradation.data import ImageDataModule, per_device_batch_size
from degradation.ddp_relaunch import end_job_processes
from degradation.distributed import cluster_plugins, distributed_trainer_args, is_global_zero
from degradation.environment import environment, git_state
from degradation.loggers import build_loggers, finish_wandb
from degradation.models import build_model, count_flops, count_parameters, layer_responses
from degradation.module import BEST_TEST_PREFIX, TEST_PREFIX, Classifier
from degradation.preflight import validate
from degradation.resume import plan_resume
from degradation.rundir import (
    BEST,
    CHECKPOINTS,
    config_hash,
    write_layer_responses,
    write_summary,
)
from degradation.speed import Speed, prepare_model, resolve_speed


class _Callbacks:
    """The run's callbacks (callbacks.py), kept by name for what train() reads back."""

    def __init__(self, cfg: DictConfig, run_dir: Path, run_hash: str, speed: Speed):
        self.best = ModelCheckpoint(
            dirpath=run_dir / CHECKPOINTS,
            filename=BEST,
            monitor="val/error",
            mode="min",
            save_top_k=1,
            enable_version_counter=False,
        )
        self.last = LastCheckpoint(run_dir / CHECKPOINTS, cfg.checkpoint_every, run_hash)
        self.window = MetricWindow(cfg.log_every)
        self.divergence = Divergence(self.window, cfg.diverge_loss)
        self.faults = FaultInjection(cfg.seed)
        self.gradients = GradientFlow(run_dir, cfg.grad_every)
        self.clock = CompileClock(speed)

    def all(self) -> list:
        # the window before Divergence, which reads it; Lightning runs checkpoints last, and
        # last.ckpt after best.ckpt, so that it holds best's latest state
        callbacks = [self.window, self.divergence, self.gradients, self.clock, self.best]
        callbacks += [self.last]
        return callbacks + ([self.faults] if self.faults.active else [])


def _trainer(cfg: DictConfig, run_dir: Path, callbacks: _Callbacks, keep_rows, speed: Speed):
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_args.update(precision=speed.precision, benchmark=speed.benchmark)
    # DDP that relaunches this job (not the sweep), a GPU per parallel job
    trainer_args = distributed_trainer_args(trainer_args, cfg.jobs_per_gpu)
    return L.Trainer(
        **trainer_args,
        check_val_every_n_epoch=None,  # validate every val_check_interval *steps*
        logger=build_loggers(cfg, run_dir, keep_rows),  # metrics.csv, plus W&B with logger=wandb
        callbacks=callbacks.all(),
        plugins=[AtomicCheckpointIO(), *cluster_plugins()],
        use_distributed_sampler=False,  # the data module's sampler shards by rank itself
        default_root_dir=run_dir,
        enable_model_summary=False,
    )


def _test_error(trainer: L.Trainer, module, dm, prefix: str, ckpt_path=None) -> dict[str, float]:
    """{"loss", "error"} on the test set, logged as `{prefix}loss`, `{prefix}error`."""
    module.test_prefix = prefix
    results = trainer.test(module, datamodule=dm, ckpt_path=ckpt_path, verbose=False)
    return {k.removeprefix(prefix): float(v) for k, v in results[0].items()}


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Trains one variant into run_dir and returns its summary (also written to summary.json)."""
    run_dir = Path(run_dir)
    validate(cfg)
    run_hash = config_hash(cfg)
    plan = plan_resume(run_dir, run_hash, resume=cfg.resume)
    if plan.finished is not None:
        print(f"[resume] {run_dir}: already {plan.finished['status']}, skipping")
        return plan.finished
    if plan.checkpoint is not None:
        print(f"[resume] {run_dir}: resuming from {plan.checkpoint.name} at step {plan.step}")
    started = time.time()
    summary: dict[str, Any] = {
        "name": variant_name(cfg),
        "depth": cfg.depth,
        "skip": value(cfg.skip),
        "shortcut": value(cfg.shortcut) if value(cfg.skip) != "none" else "not_applicable",
        "family": value(cfg.family),
        "block": None,
        "head_init": value(cfg.head_init),  # recipe choices (docs/recipe.md)
        "pad_value": value(cfg.data.pad_value),
        "dataset": cfg.data.name,
        "seed": cfg.seed,
        "status": "failed",
        "command": command_line(),
        "config_hash": run_hash,
        "resumed_from_step": plan.step if plan.checkpoint is not None else None,
    }
    commit, dirty = git_state()
    summary.update(git_commit=commit, git_dirty=dirty, environment=environment())
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = ImageDataModule(cfg.data, seed=cfg.seed)
        model = build_model(**model_kwargs(cfg, dm.num_classes, dm.input_shape[0]))
        summary.update(
            block=model.arch["block"],
            params=count_parameters(model),
            flops=count_flops(model, dm.input_shape),
            dataset_checksum=dm.images.checksum,
            num_train=dm.num_train,
        )
        speed = resolve_speed(cfg)  # `auto` precision, compile, cudnn benchmark for the device
        summary["speed"] = {k: v for k, v in vars(speed).items() if k != "cuda"}
        prepare_model(model, speed)  # channels_last, torch.compile (in place)
        module = Classifier(model, cfg.optim, fused_sgd=speed.fused_sgd)
        callbacks = _Callbacks(cfg, run_dir, run_hash, speed)
        trainer = _trainer(cfg, run_dir, callbacks, plan.metrics_rows, speed)
        summary["world_size"] = trainer.world_size
        summary["per_device_batch_size"] = per_device_batch_size(
            cfg.data.batch_size, trainer.world_size
        )
        with warnings.catch_warnings():
            # Lightning cannot see that our sampler continues mid-epoch (data/sampler.py): it can
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended")
            trainer.fit(module, datamodule=dm, ckpt_path=plan.checkpoint)
        # read before best.ckpt is loaded into the module (that restores its counters too)
        window, best = callbacks.window, callbacks.best
        train_metrics = window.last_window or {}
        diverged_at, warmup_end_step = callbacks.divergence.diverged_at, module.warmup_end_step
        final_val = trainer.validate(module, datamodule=dm, verbose=False)[0]
        final_test = _test_error(trainer, module, dm, TEST_PREFIX)
        if is_global_zero():  # Fig. 7, on the final weights (best_test loads best.ckpt)
            _write_layer_responses(run_dir, module.model, dm, trainer.global_step)
        best_path = best.best_model_path or None
        best_test = _test_error(trainer, module, dm, BEST_TEST_PREFIX, ckpt_path=best_path)
        summary.update(
            status="diverged" if diverged_at is not None else "completed",
            steps=trainer.global_step,
            final={
                "train_error": train_metrics.get("train/error"),
                "train_loss": train_metrics.get("train/loss"),
                "val_error": float(final_val["val/error"]),
                "val_loss": float(final_val["val/loss"]),
                "test_error": final_test["error"],
                "test_loss": final_test["loss"],
            },
            best_val={
                "val_error": (
                    float(best.best_model_score) if best.best_model_score is not None else None
                ),
                "test_error": best_test["error"],
                "checkpoint": Path(best.best_model_path).name if best.best_model_path else None,
            },
            diverged_step=diverged_at,
            warmup_end_step=warmup_end_step,
            warmup_end_reason=module.warmup_end_reason,  # "error" (the paper's rule) or "cap"
            throughput_img_s=window.throughput_img_s,
        )
    except Exception as err:
        summary.update(error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
        raise
    finally:
        summary["wall_time_s"] = round(time.time() - started, 3)
        if is_global_zero():
            write_summary(run_dir, summary)
            finish_wandb(summary)  # no-op without a W&B run
        end_job_processes(failed=summary["status"] == "failed")  # DDP children, process group
    return summary


def _write_layer_responses(run_dir: Path, model, dm: ImageDataModule, step: int) -> None:
    """layer_responses.json (He et al. 2015, Fig. 7) on the final weights. A failure here must
    not turn a finished training run into a failed one: it is a warning, and the report then
    lists the run without responses."""
    try:
        with torch.compiler.set_stance("force_eager"):  # compiled graphs skip new hooks
            record = layer_responses(model, dm.validation_images())
    except Exception as err:  # see the docstring
        warnings.warn(f"layer responses not measured: {type(err).__name__}: {err}", stacklevel=2)
        return
    write_layer_responses(run_dir, {**record, "step": step, "source": "end of training"})


def command_line() -> str:
    """The command as the user typed it (argv[0] of `python -m` is the module's file)."""
    program = sys.argv[0]
    if program.endswith(("degradation/run.py", "degradation/run")):
        program = "python -m degradation.run"
    return " ".join([program, *(shlex.quote(a) for a in sys.argv[1:])])
