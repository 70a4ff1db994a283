"""One run, start to finish: spec (preflight.parse) → data → model → Trainer → run folder.

A rerun of the same command finds the same folder: a finished run is skipped, an unfinished
one resumes from checkpoints/last.ckpt, exactly (resume.py; `resume=false` starts afresh).
The record of a job (.hydra/, run.log) is written only once it is known to train, by the one
process that holds the folder (resume.claim_run_dir); the files of a run it replaces, set
aside by resume.plan_resume, are deleted after that record. SIGINT and SIGTERM end a run as
`interrupted` (callbacks.Interruption); a full disk is one line naming the file and the last
good checkpoint (UserError). docs/run-folder.md describes all of this for users.

Over 300 lines: a run's whole course, from the skip decision to the summary, in one place.
"""

from __future__ import annotations

import copy
import logging
import os
import shlex
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from degradation.callbacks import (
    AtomicCheckpointIO,
    BestCheckpoint,
    CompileClock,
    Divergence,
    GradientFlow,
    Interruption,
    LastCheckpoint,
    MetricWindow,
    ProgressLines,
    RunInterrupted,
    callbacks_for_tests,
    configured_callbacks,
)
from degradation.console import copy_console_to, interactive
from degradation.data import ImageDataModule, per_device_batch_size
from degradation.ddp_relaunch import end_job_processes
from degradation.distributed import cluster_plugins, distributed_trainer_args, is_global_zero
from degradation.environment import environment, git_state
from degradation.errors import UserError
from degradation.loggers import build_loggers, finish_loggers
from degradation.models import build_model, count_flops, count_parameters, layer_responses
from degradation.module import BEST_TEST_PREFIX, TEST_PREFIX, Classifier
from degradation.resume import ResumePlan, claim_run_dir, data_identity, finished_run, plan_resume
from degradation.rundir import (
    BEST,
    CHECKPOINTS,
    LAST,
    LOG,
    discard_replaced,
    disk_full_error,
    read_checkpoint,
    write_job_config,
    write_layer_responses,
    write_summary,
)
from degradation.spec import RunSpec
from degradation.speed import numerics, prepare_model
from degradation.summary import Summary


class _Callbacks:
    """The run's callbacks (callbacks.py), kept by name for what train() reads back."""

    def __init__(self, spec: RunSpec, run_dir: Path, plan, data, interruption):
        records, speed = spec.records, spec.speed
        self.best = BestCheckpoint(
            dirpath=run_dir / CHECKPOINTS,
            filename=BEST,
            monitor="val/error",
            mode="min",
            save_top_k=1,
            enable_version_counter=False,
        )
        self.last = LastCheckpoint(
            run_dir / CHECKPOINTS,
            records.checkpoint_every,
            spec.config_hash,
            data,
            interruption,
            saved_step=plan.resume_step,
            numerics=numerics(speed),
        )
        self.interruption = interruption
        self.window = MetricWindow(records.log_every)
        self.divergence = Divergence(self.window, records.diverge_loss)
        self.test_hooks = callbacks_for_tests(spec)  # test-only (docs/development.md)
        self.gradients = GradientFlow(run_dir, records.grad_every)
        self.clock = CompileClock(speed)
        progress = spec.trainer.arguments["enable_progress_bar"]
        self.configured = configured_callbacks(records.callbacks, progress)
        chosen_bar = any(isinstance(c, ProgressBar) for c in self.configured)
        self.progress_bar, lines = _progress_display(progress, chosen_bar)
        self.lines = ProgressLines(self.window) if lines else None
        # Lightning would pick its rich bar when the rich package is installed: tqdm's stays the
        # default (docs/logging.md), callbacks=rich_progress_bar chooses the other
        if self.progress_bar and not chosen_bar:
            self.configured.append(TQDMProgressBar())

    def all(self) -> list:
        # the window before Divergence and ProgressLines, which read it; Lightning runs
        # checkpoints last, and last.ckpt after best.ckpt, so that it holds best's latest state
        callbacks = [self.window, self.divergence, *([self.lines] if self.lines else [])]
        callbacks += [self.gradients, self.clock, *self.configured]
        callbacks += [self.best, self.interruption, self.last]
        return callbacks + self.test_hooks


def _progress_display(wanted: bool, chosen_bar: bool) -> tuple[bool, bool]:
    """(Lightning's progress bar, ProgressLines): the bar on a terminal, plain lines elsewhere
    (a SLURM log, CI, `| tee`); neither with trainer.enable_progress_bar=false; a progress bar
    of config group `callbacks` (callbacks=rich_progress_bar) wherever it is chosen."""
    if chosen_bar:
        return wanted, False
    return wanted and interactive(), wanted and not interactive()


def _loggers(spec: RunSpec, run_dir: Path, plan: ResumePlan) -> list:
    """metrics.csv, plus W&B and TensorBoard when chosen; a resumed run's loggers continue
    from its checkpoint (metrics.csv cut back to the rows it had seen)."""
    resume_step = plan.step if plan.checkpoint is not None else None
    return build_loggers(spec, run_dir, plan.metrics_rows, resume_step)


def _trainer(spec: RunSpec, run_dir: Path, callbacks: _Callbacks, plan: ResumePlan):
    trainer_args = copy.deepcopy(dict(spec.trainer.arguments))
    trainer_args.update(precision=spec.speed.precision, benchmark=spec.speed.benchmark)
    trainer_args.update(enable_progress_bar=callbacks.progress_bar)
    # DDP that relaunches this job (not the sweep), a GPU per parallel job
    trainer_args = distributed_trainer_args(trainer_args, spec.jobs_per_gpu)
    return L.Trainer(
        **trainer_args,
        check_val_every_n_epoch=None,  # validate every val_check_interval *steps*
        logger=_loggers(spec, run_dir, plan),
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


def train(spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    """Trains one variant (a parsed spec: preflight.parse) into run_dir and returns its summary
    (also written to summary.json). A finished run is skipped without writing anything;
    RunDirBusy if another process holds the folder, RunInterrupted after SIGINT/SIGTERM,
    UserError for a full disk."""
    run_dir = Path(run_dir)
    records = spec.records
    dm = ImageDataModule(spec.data, seed=spec.seed)  # before the plan: resume checks its data
    data = data_identity(
        spec.data.name, dm.images.checksum, dm.num_train, len(dm.images.test_labels)
    )
    finished = finished_run(run_dir, spec.config_hash, data, records.resume)
    if finished is None:
        # the lock and .hydra/ are written too: a disk full from the first byte is one line
        with _full_disk_is_one_line(run_dir), claim_run_dir(run_dir, command_line()):
            plan = plan_resume(
                run_dir, spec.config_hash, data, resume=records.resume, speed=spec.speed
            )
            if plan.finished is None:
                with (
                    _job_record(run_dir, spec),
                    Interruption(every=records.log_every).catching() as interruption,
                ):
                    summary = _run(spec, run_dir, dm, data, plan, interruption)
                    print(outcome_line(summary, run_dir))  # run.log's last line too
                    return summary
            finished = plan.finished
    print(f"[resume] {run_dir}: already {finished['status']}, skipping")
    print(outcome_line(finished, run_dir))
    return finished


def outcome_line(summary: dict[str, Any], run_dir: Path) -> str:
    """'resnet-20 s0: completed, train error 0.1234, test error 0.2345 -> RUN_DIR'."""
    final = summary.get("final") or {}
    return (
        f"{summary['name']} s{summary['seed']}: {summary['status']}, "
        f"train error {_fraction(final.get('train_error'))}, "
        f"test error {_fraction(final.get('test_error'))} -> {run_dir}"
    )


def _fraction(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _run(
    spec: RunSpec,
    run_dir: Path,
    dm: ImageDataModule,
    data: dict[str, Any],
    plan: ResumePlan,
    interruption: Interruption,
) -> dict[str, Any]:
    model_spec, speed = spec.model, spec.speed
    if plan.checkpoint is not None:
        print(f"[resume] {run_dir}: resuming from {plan.checkpoint.name} at step {plan.step}")
    elif is_global_zero():  # where to look while it trains (a sweep's lines name the job only)
        print(f"[run] {spec.label}: starting in {run_dir}")
    started = time.time()
    trainer = callbacks = None  # for an interruption before they exist
    summary = Summary(
        name=model_spec.name,
        depth=model_spec.depth,
        skip=model_spec.skip,
        shortcut=model_spec.shortcut_label,
        family=model_spec.family,
        block=None,
        head_init=model_spec.head_init,  # recipe choices (docs/recipe.md)
        pad_value=spec.data.augment.pad_value,
        dataset=spec.data.name,
        seed=spec.seed,
        status="failed",
        command=command_line(),
        config_hash=spec.config_hash,
        resumed_from_step=plan.step if plan.checkpoint is not None else None,
    )
    commit, dirty = git_state()
    summary.update(git_commit=commit, git_dirty=dirty, environment=environment())
    try:
        L.seed_everything(spec.seed, workers=True, verbose=False)
        model = build_model(**model_spec.build_kwargs(dm.num_classes, dm.input_shape[0]))
        summary.update(
            block=model.arch["block"],
            params=count_parameters(model),
            flops=count_flops(model, dm.input_shape),
            dataset_checksum=data["dataset_checksum"],
            num_train=data["num_train"],
            num_test=data["num_test"],
        )
        summary.speed = {k: v for k, v in vars(speed).items() if k != "cuda"}
        if is_global_zero() and plan.checkpoint is None:
            print(f"[speed] precision {speed.precision} ({speed.reason})")
        prepare_model(model, speed)  # channels_last, torch.compile (in place)
        module = Classifier(model, spec.optim, fused_sgd=speed.fused_sgd)
        callbacks = _Callbacks(spec, run_dir, plan, data, interruption)
        trainer = _trainer(spec, run_dir, callbacks, plan)
        summary.world_size = trainer.world_size
        summary.per_device_batch_size = per_device_batch_size(
            spec.data.batch_size, trainer.world_size
        )
        with warnings.catch_warnings():
            # Lightning cannot see that our sampler continues mid-epoch (data/sampler.py): it can
            warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended")
            trainer.fit(module, datamodule=dm, ckpt_path=plan.checkpoint)
        interruption.raise_if_noted()  # a signal during the final step
        # read before best.ckpt is loaded into the module (that restores its counters too)
        window, best = callbacks.window, callbacks.best
        train_metrics = window.last_window or {}
        diverged_at, warmup_end_step = callbacks.divergence.diverged_at, module.warmup_end_step
        final_val = trainer.validate(module, datamodule=dm, verbose=False)[0]
        final_test = _test_error(trainer, module, dm, TEST_PREFIX)
        if is_global_zero():  # Fig. 7, on the final weights (best_test loads best.ckpt)
            _write_layer_responses(run_dir, module.model, dm, trainer.global_step)
        validated = best.best_model_score is not None and bool(best.best_model_path)
        best_test = (
            _test_error(trainer, module, dm, BEST_TEST_PREFIX, ckpt_path=best.best_model_path)
            if validated
            else None
        )
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
            best_val={  # null when no validation ran: there is no best-on-validation model
                "val_error": float(best.best_model_score),
                "test_error": best_test["error"],
                "checkpoint": Path(best.best_model_path).name,
            }
            if validated
            else None,
            diverged_step=diverged_at,
            warmup_end_step=warmup_end_step,
            warmup_end_reason=module.warmup_end_reason,  # "error" (the paper's rule) or "cap"
            throughput_img_s=window.throughput_img_s,
        )
    except RunInterrupted as err:
        summary.update(
            status="interrupted",
            signal=err.signal_name,
            steps=trainer.global_step if trainer is not None else plan.step,
            # the step of last.ckpt, where a rerun continues (None: it starts afresh)
            resume_step=callbacks.last.saved_step if callbacks is not None else plan.resume_step,
        )
        raise
    except Exception as err:
        summary.update(error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
        raise
    finally:
        summary.wall_time_s = round(time.time() - started, 3)
        if is_global_zero():
            write_summary(run_dir, summary)
            finish_loggers(summary.to_dict())  # TensorBoard and W&B: final numbers, closed
        # DDP children, process group: after a failure or a signal, without waiting for them
        end_job_processes(failed=summary.status in ("failed", "interrupted"))
    return summary.to_dict()


@contextmanager
def _job_record(run_dir: Path, spec: RunSpec) -> Iterator[None]:
    """.hydra/ and run.log of a job that trains (Hydra writes neither: `hydra.output_subdir:
    null`, conf/hydra/job_logging/console.yaml), by global rank 0 only. run.log gets what the
    console gets while the job trains, whatever the launcher: the lines it prints (progress,
    warnings, the outcome) and its logging records, in Hydra's format."""
    if not is_global_zero():
        yield
        return
    write_job_config(run_dir, spec.config_yaml)
    discard_replaced(run_dir)  # the new run holds the folder and has its record: the old goes
    with open(run_dir / LOG, "a", encoding="utf-8") as log:  # appends: a resumed run goes on
        records = logging.StreamHandler(log)
        records.setFormatter(
            logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        )
        logging.getLogger().addHandler(records)
        try:
            with copy_console_to(log):
                yield
        finally:
            logging.getLogger().removeHandler(records)


@contextmanager
def _full_disk_is_one_line(run_dir: Path) -> Iterator[None]:
    """A full disk becomes a UserError naming the file and the last good checkpoint (every
    writer is atomic or drops a torn line: nothing is left half-written)."""
    try:
        yield
    except Exception as err:  # torch.save's RuntimeError too (rundir.disk_full_error)
        full = disk_full_error(err)
        if full is None:
            raise
        where = full.filename or f"a file in {run_dir}"
        reason = os.strerror(full.errno).lower()
        raise UserError(f"{reason} while writing {where}; {_last_good(run_dir)}") from None


def _last_good(run_dir: Path) -> str:
    path = run_dir / CHECKPOINTS / LAST
    if not path.is_file():
        return "no checkpoint was written yet: free some space, then rerun the same command"
    try:
        step = f"step {read_checkpoint(path)['global_step']}"
    except UserError:
        step = "unreadable"
    return (
        f"the last good checkpoint is {path} ({step}): free some space, then rerun the same "
        "command to resume from it"
    )


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
