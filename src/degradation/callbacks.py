"""The Lightning callbacks of a run, and the checkpoint writer they save through.

    MetricWindow     training loss and error over windows of `log_every` steps; lr every step
    Divergence       stops a run whose window loss is NaN/inf or above `diverge_loss`
    ProgressLines    one plain line per training window where stdout is not a terminal
    LastCheckpoint   checkpoints/last.ckpt every `checkpoint_every` steps and at the end
    BestCheckpoint   checkpoints/best.ckpt (ModelCheckpoint), its paths from where the folder is
    GradientFlow     grad_norms.csv: RMS gradient and relative update of every 3x3 conv layer
    CompileClock     reports torch.compile's first step; marks CUDA-graph step boundaries
    Interruption     SIGINT / SIGTERM end the run at a step boundary (RunInterrupted)
    AtomicCheckpointIO  Lightning's checkpoint writer, atomic; its reader runs no code
                     (a plugin, not a callback)
    configured_callbacks  the user's own: config group `callbacks` (conf/callbacks/), built
                     with hydra.utils.instantiate
    callbacks_for_tests  test-only: those DEGRADATION_TEST_CALLBACKS names (tests/faults.py)

Lightning's own callbacks are used where one does the job exactly (`ModelCheckpoint` writes
best.ckpt); ours exist where the semantics differ, each saying how in its docstring. Every
piece of state a resumed run needs is saved in the checkpoint under `rundir.STATE_KEY`.

Order matters and is fixed by train.py: MetricWindow before Divergence (which reads the window
it closed); Lightning runs checkpoint callbacks (LastCheckpoint, ModelCheckpoint) after all
others, so a checkpoint taken at the end of a step already holds that step's metrics row.

This module is over 300 lines because it is the one home of the run's callbacks.
"""

from __future__ import annotations

import importlib
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from degradation.console import duration
from degradation.errors import UserError, first_line
from degradation.loggers import MetricsCSVLogger
from degradation.models import GradLayout, gradient_norms
from degradation.rundir import (
    GRAD_NORMS,
    LAST,
    RESUME_KEY,
    STATE_KEY,
    append_csv_row,
    atomic_writer,
    keep_csv_rows,
    load_checkpoint_file,
)

# What a configured callback may monitor: the metrics the module logs with `self.log` at each
# validation (training metrics go to the loggers in windows, outside Lightning's bookkeeping).
MONITORED = ("val/error", "val/loss")


def configured_callbacks(configs: Any, progress_bar: bool) -> list[Callback]:
    """The callbacks of config group `callbacks` ({name: {_target_: ..., ...}}), built; a
    UserError (one line, naming `callbacks.NAME`) for one that cannot be built, is no Lightning
    Callback, lacks its package, monitors a metric the run does not log, or is a progress bar
    while `trainer.enable_progress_bar=false`."""
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import DeviceStatsMonitor, EarlyStopping, ProgressBar

    built = []
    for name, node in (configs or {}).items():
        where = f"callbacks.{name}"
        if not hasattr(node, "get") or not node.get("_target_"):
            raise UserError(
                f"{where}={node}: give a mapping with `_target_` (a Lightning callback class), "
                "or choose callbacks=early_stopping, lr_monitor, model_summary, "
                "rich_progress_bar or device_stats"
            )
        try:
            callback = instantiate(dict(node))
        except Exception as err:  # hydra's InstantiationException: the cause says what
            cause = first_line(err.__cause__ or err)
            raise UserError(f"{where} ({node['_target_']}): {cause}") from None
        if not isinstance(callback, Callback):
            raise UserError(
                f"{where}._target_={node['_target_']} is not a Lightning Callback; "
                "give a subclass of lightning.pytorch.Callback"
            )
        if isinstance(callback, EarlyStopping) and callback.monitor not in MONITORED:
            raise UserError(
                f"{where}.monitor={callback.monitor} is not a metric this run logs; "
                f"choose one of: {', '.join(MONITORED)}"
            )
        needs_psutil = node.get("cpu_stats") or (
            node.get("cpu_stats") is None and not torch.cuda.is_available()
        )
        if isinstance(callback, DeviceStatsMonitor) and needs_psutil:
            import importlib.util

            if importlib.util.find_spec("psutil") is None:
                raise UserError(
                    f"{where}: CPU statistics need the psutil package; `pip install psutil` "
                    '(or "degradation[callbacks]"), or set callbacks.device_stats.cpu_stats=false'
                )
        if isinstance(callback, ProgressBar) and not progress_bar:
            raise UserError(
                f"{where} is a progress bar and trainer.enable_progress_bar=false turns progress "
                "display off; drop one of the two"
            )
        built.append(callback)
    return built


def _state(checkpoint: dict) -> dict:
    """This program's part of a checkpoint (shared by the module and the callbacks)."""
    return checkpoint.setdefault(STATE_KEY, {})


# --- writing checkpoints --------------------------------------------------------------------


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, except that a kill mid-write leaves the old file intact;
    and its reader (`trainer.fit(ckpt_path=...)`, `trainer.test(ckpt_path=...)`) loads with
    `weights_only=True`, as every reader of a run folder does (rundir.load_checkpoint_file)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_writer(Path(path), "wb") as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        # weights_only=False (Lightning's default for a trusted file) is not honoured: no file
        # a run folder holds is trusted to run code
        return load_checkpoint_file(Path(path), map_location)


class LastCheckpoint(Checkpoint):
    """checkpoints/last.ckpt every `every` training steps and when training ends, for a rerun to
    resume from. Lightning's ModelCheckpoint(save_last=True) saves at its own monitor's times
    and knows nothing of metrics.csv; this one saves on a step count, at a point Lightning
    resumes from cleanly, and records how many metrics.csv rows the checkpoint has seen.

    A periodic write happens at the end of the step, or after the step's validation when one
    follows (Lightning does not repeat a validation that a checkpoint precedes); the final one
    when training ends (after the last validation). Before writing, the loggers are flushed.
    An `interruption` that asks to stop gets a write at the next such point, then ends the
    run (RunInterrupted); at the final step it waits for the end of training instead.
    `saved_step` is the global step of the newest last.ckpt (None before the first).
    """

    def __init__(
        self,
        dirpath: Path,
        every: int,
        config_hash: str,
        data: dict[str, Any] | None = None,
        interruption: Interruption | None = None,
        saved_step: int | None = None,
        numerics: dict[str, Any] | None = None,
    ):
        self.path = Path(dirpath) / LAST
        self.every, self.config_hash, self.data = every, config_hash, data
        self.numerics = numerics  # speed.numerics: a resume must not switch them
        self.interruption = interruption
        self.saved_step = saved_step
        self._due = False  # a write waits for the validation that follows this step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if self._due:  # the awaited validation did not come (no validation data): write now
            self._save(trainer)
        final = 0 < trainer.max_steps <= trainer.global_step
        stop = self.interruption is not None and self.interruption.stopping
        if (trainer.global_step % self.every and not stop) or final:
            return
        if _validation_follows(trainer):
            self._due = True
        else:
            self._save(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._due and not trainer.sanity_checking:
            self._save(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer, at_end=True)

    def _save(self, trainer: Trainer, at_end: bool = False) -> None:
        self._due = False
        for logger in trainer.loggers:
            logger.save()
        # the whole state (explicitly: Lightning prints a line for every save left to default)
        trainer.save_checkpoint(self.path, weights_only=False)
        self.saved_step = trainer.global_step
        if self.interruption is not None and self.interruption.stopping and not at_end:
            self.interruption.stop()

    def on_save_checkpoint(self, trainer: Trainer, pl_module, checkpoint: dict) -> None:
        rows = [lg.rows_written for lg in trainer.loggers if isinstance(lg, MetricsCSVLogger)]
        checkpoint[RESUME_KEY] = {
            "config_hash": self.config_hash,
            "data": self.data,
            "metrics_rows": rows[0] if rows else None,
            "numerics": self.numerics,
        }


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint (best.ckpt), whose restored state follows the run folder.
    Lightning saves absolute paths, and when a resumed run's folder is no longer where they
    point (the folder was moved or copied) it drops the best score, so that the next
    validation overwrites best.ckpt even with a worse model, and keeps a best path into the old
    place (or nowhere). Every path it restores is made again from `dirpath`, where all of its
    files live, so a moved folder resumes as if it had never moved."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.dirpath is None:  # nothing to make the paths from (train.py always sets it)
            super().load_state_dict(state_dict)
            return

        def here(path: str | None) -> str | None:
            return os.path.join(self.dirpath, os.path.basename(path)) if path else path

        state = {**state_dict, "dirpath": self.dirpath}
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if key in state:
                state[key] = here(state[key])
        if isinstance(state.get("best_k_models"), dict):
            state["best_k_models"] = {here(k): v for k, v in state["best_k_models"].items()}
        super().load_state_dict(state)


def _validation_follows(trainer: Trainer) -> bool:
    """Whether Lightning validates right after the current training step (step-based
    validation, `check_val_every_n_epoch=None`, as train.py configures the Trainer): every
    `val_check_batch` batches, counted over epochs. At the end of a step the optimizer steps
    taken are its batches (config.py refuses accumulate_grad_batches), so the public
    `global_step` is Lightning's batch count (its private `total_batch_idx` + 1)."""
    if not trainer.enable_validation:
        return False
    every = trainer.val_check_batch
    step = trainer.global_step
    return trainer.should_stop or (isinstance(every, int) and step % every == 0)


# --- training metrics -----------------------------------------------------------------------


class MetricWindow(Callback):
    """Training loss and error summed on the device and read back once per `log_every` steps
    (one host sync per window), and the learning rate logged every step, as one metrics row per
    step written straight to the loggers (Lightning's `self.log` would repeat stale values on
    every row). The module's `training_step` returns {"loss", "window"}, `window` being the
    step's (loss · members, errors, images) on the device.

    When a window closes, `closed` holds its metrics for this step, and the module's
    `on_train_window_end(metrics)` hook is called if it has one (Classifier ends its warm-up
    there). Time in validation is not training time; `train_time_s` and `train_images` give
    the throughput. The last window of a run is closed when fitting ends (after the final
    checkpoint, which keeps it open): a tail of fewer than log_every / 2 steps is folded into
    the window before it, and `last_window` holds the run's final training metrics.
    """

    def __init__(self, log_every: int, show_progress: bool = True):
        self.log_every, self.show_progress = log_every, show_progress
        self.window: torch.Tensor | None = None
        self.window_steps = 0
        self.last_window: dict[str, float] | None = None
        self.closed: dict[str, float] | None = None
        self.train_time_s = 0.0  # time in training steps only (validation excluded)
        self.train_images = 0
        self._window_start: float | None = None
        self._val_started = 0.0

    @property
    def throughput_img_s(self) -> float:
        return self.train_images / max(self.train_time_s, 1e-9)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._window_start is None:
            self._window_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step_window = outputs["window"]
        if self.window is None:
            self.window = torch.zeros(3, dtype=torch.float32, device=step_window.device)
        elif self.window.device != step_window.device:  # restored from a checkpoint on the CPU
            self.window = self.window.to(step_window.device)
        self.window += step_window
        self.window_steps += 1
        row = {"lr": trainer.optimizers[0].param_groups[0]["lr"]}
        self.closed = None
        if self.window_steps >= self.log_every:
            row.update(self._flush(trainer, pl_module))
            if self.show_progress:
                shown = {k: row[k] for k in ("train/loss", "train/error")}
                pl_module.log_dict(shown, prog_bar=True, logger=False)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(row, step=trainer.global_step - 1)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after the final checkpoint; also for a run resumed from its final checkpoint, which
        # trains nothing (no on_train_start/end)
        self.closed = None
        if self.window_steps:
            self._flush(trainer, pl_module, final=True)

    def _flush(self, trainer, pl_module, final: bool = False) -> dict[str, float]:
        totals = self.window.to(pl_module.device)
        if trainer.world_size > 1:
            totals = trainer.strategy.reduce(totals.clone(), reduce_op="sum")
        loss_sum, err_sum, count = totals.tolist()  # the one host sync per window
        now = time.perf_counter()
        if self._window_start is not None:  # None: resumed from the final checkpoint
            self.train_time_s += now - self._window_start
        self._window_start = now
        self.train_images += int(count)
        metrics = {"train/loss": loss_sum / count, "train/error": err_sum / count}
        short_tail = final and self.last_window and self.window_steps < self.log_every // 2
        if short_tail:  # too few steps to stand alone: fold into the previous window
            prev = self.last_window
            n = prev["count"] + count
            metrics = {
                "train/loss": (prev["train/loss"] * prev["count"] + loss_sum) / n,
                "train/error": (prev["train/error"] * prev["count"] + err_sum) / n,
            }
            count = n
        self.last_window = {**metrics, "count": count}
        self.window.zero_()
        self.window_steps = 0
        self.closed = metrics
        hook = getattr(pl_module, "on_train_window_end", None)
        if hook is not None:
            hook(metrics)
        return {**metrics, "throughput_img_s": self.throughput_img_s}

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_started = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._window_start is not None:  # validation time is not training time
            self._window_start += time.perf_counter() - self._val_started

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        _state(checkpoint).update(
            window=self.window.tolist() if self.window is not None else [0.0, 0.0, 0.0],
            window_steps=self.window_steps,
            last_window=self.last_window,
            train_time_s=self.train_time_s,
            train_images=self.train_images,
        )

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = checkpoint.get(STATE_KEY, {})
        if "window" in state:
            self.window = torch.tensor(state["window"], dtype=torch.float32)
        self.window_steps = state.get("window_steps", 0)
        self.last_window = state.get("last_window")
        self.train_time_s = state.get("train_time_s", 0.0)
        self.train_images = state.get("train_images", 0)


class Divergence(Callback):
    """Stops the run when a closed window's mean training loss is NaN/inf or above
    `max_loss`; `diverged_at` is the step. (Lightning's EarlyStopping(check_finite=True)
    watches a logged monitor at validation or epoch ends; this watches every training window.)
    """

    def __init__(self, window: MetricWindow, max_loss: float):
        self.window, self.max_loss = window, max_loss
        self.diverged_at: int | None = None

    def _check(self, trainer: Trainer) -> None:
        metrics = self.window.closed
        if metrics is None:
            return
        loss = metrics["train/loss"]
        if not math.isfinite(loss) or loss > self.max_loss:
            self.diverged_at = trainer.global_step
            trainer.should_stop = True

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self._check(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._check(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        _state(checkpoint)["diverged_at"] = self.diverged_at

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self.diverged_at = checkpoint.get(STATE_KEY, {}).get("diverged_at")


class ProgressLines(Callback):
    """One plain line per closed training window, in place of Lightning's progress bar where
    stdout is not a terminal (a SLURM log, CI, `| tee`), whose carriage returns would pile up
    there. Global rank 0 only; train.py chooses between the two (console.interactive):

        [train] step 400/64000  loss 1.2345  error 0.4321  lr 0.1  val error 0.5123  812 img/s
                ~1h 02m left   (on the same line)

    The time left extrapolates this process's pace (validation included) to max_steps.
    """

    def __init__(self, window: MetricWindow):
        self.window = window
        self.val_error: float | None = None
        self._started: tuple[float, int] | None = None  # (time, global step) of the first step

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._started = (time.perf_counter(), trainer.global_step)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        error = trainer.callback_metrics.get("val/error")
        if error is not None and not trainer.sanity_checking:
            self.val_error = float(error)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self._print(trainer)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._print(trainer)  # the run's last window, closed when fitting ends

    def _print(self, trainer: Trainer) -> None:
        metrics = self.window.closed
        if metrics is None or not trainer.is_global_zero:
            return
        step, total = trainer.global_step, trainer.max_steps
        parts = [
            f"[train] step {step}/{total}",
            f"loss {metrics['train/loss']:.4f}",
            f"error {metrics['train/error']:.4f}",
            f"lr {trainer.optimizers[0].param_groups[0]['lr']:.4g}",
        ]
        if self.val_error is not None:
            parts.append(f"val error {self.val_error:.4f}")
        parts.append(f"{self.window.throughput_img_s:.0f} img/s")
        if self._started is not None and step > self._started[1] and total > step:
            seconds_per_step = (time.perf_counter() - self._started[0]) / (step - self._started[1])
            parts.append(f"~{duration(seconds_per_step * (total - step))} left")
        print("  ".join(parts), flush=True)


# --- gradient flow --------------------------------------------------------------------------


class GradientFlow(Callback):
    """Gradient flow every `every` optimizer steps (0 = never), at the point where the
    gradients are ready (after AMP unscaling, before clipping and the update), on global rank
    0 only (DDP has already averaged them): `models.gradient_norms` — the RMS gradient per
    weight and the relative update ‖g‖/‖w‖ of every 3×3 conv of the main path, and of every
    stage's such convs pooled (what each measures: `models.gradient_norms`).

    Each recording is one row of RUN_DIR/grad_norms.csv (header `step,<columns>`); a resumed
    run first drops the rows of the steps it trains again. The same numbers go to the loggers
    with a `grad/` prefix: all to W&B (any non-CSV logger), only the stages' to metrics.csv,
    to keep it narrow.
    """

    PREFIX = "grad/"

    def __init__(self, run_dir: Path, every: int):
        self.path = Path(run_dir) / GRAD_NORMS
        self.every = every
        self._layout: GradLayout | None = None

    @staticmethod
    def _model(pl_module: LightningModule) -> nn.Module:
        return getattr(pl_module, "model", pl_module)

    def _header(self) -> list[str]:
        return ["step", *self._layout.columns]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._layout = GradLayout(self._model(pl_module))
        step = trainer.global_step  # a resumed run trains steps >= step again
        if self.path.is_file():  # also with every=0: no stale rows
            keep_csv_rows(self.path, self._header(), lambda row: int(row[0]) < step)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer):
        step = trainer.global_step
        if self.every <= 0 or step % self.every or not trainer.is_global_zero:
            return
        if self._layout is None:
            self._layout = GradLayout(self._model(pl_module))
        norms = gradient_norms(self._model(pl_module), self._layout)
        append_csv_row(self.path, self._header(), [str(step), *(repr(v) for v in norms.values())])
        narrow = {k: norms[k] for k in self._layout.stage_columns}
        for logger in trainer.loggers:
            chosen = narrow if isinstance(logger, MetricsCSVLogger) else norms
            logger.log_metrics({self.PREFIX + k: v for k, v in chosen.items()}, step=step)


# --- speed ------------------------------------------------------------------------------------


class CompileClock(Callback):
    """With torch.compile: prints the first training step's time (compilation included), and
    with CUDA graphs marks where each step begins, so that no step reads a replayed graph's
    outputs after the next replay has overwritten them."""

    def __init__(self, speed):
        self.speed = speed
        self._started: float | None = None
        self._reported = False
        self._cudagraphs = speed.compile in ("reduce-overhead", "max-autotune") and speed.cuda

    def _mark_step(self) -> None:
        if self._cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._started is None:
            self._started = time.perf_counter()
        self._mark_step()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._reported or self.speed.compile == "none":
            return
        self._reported = True
        if self.speed.cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - self._started
        print(f"torch.compile(mode={self.speed.compile}): first step {seconds:.1f} s (compiling)")

    def on_validation_batch_start(self, *args) -> None:
        self._mark_step()

    def on_test_batch_start(self, *args) -> None:
        self._mark_step()


# --- test-only hook ---------------------------------------------------------------------------

TEST_CALLBACKS = "DEGRADATION_TEST_CALLBACKS"


def callbacks_for_tests(spec: Any) -> list[Callback]:
    """Test-only (docs/development.md; never set it otherwise): the callbacks that
    `DEGRADATION_TEST_CALLBACKS=module:Class[,module:Class]` names, each built with the run's
    spec (spec.RunSpec). The tests inject faults into the runs they start this way
    (tests/faults.py)."""
    built = []
    for named in os.environ.get(TEST_CALLBACKS, "").split(","):
        if named.strip():
            module, _, name = named.strip().partition(":")
            built.append(getattr(importlib.import_module(module), name)(spec))
    return built


# --- interruptions ------------------------------------------------------------------------------


class RunInterrupted(Exception):
    """SIGINT or SIGTERM ended the run; train() records it (status `interrupted`) and the CLI
    exits with 128 + the signal's number (130, 143), as a shell reports a process it ended."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Interruption(Callback):
    """Ctrl-C (SIGINT) and SIGTERM end the run cleanly: during the training steps the handler
    only notes the signal; at the end of the step the run agrees to stop (under DDP every
    rank, by one all-reduce every `every` steps and at the last one, not every step: it waits
    for the device, which would stall a compiled step's queue), LastCheckpoint writes
    last.ckpt at its next clean point (after the step, or after the validation that follows
    it) and raises RunInterrupted. Nothing is saved from inside the handler. Outside the
    training steps (setup, the final evaluation) and at a second signal, the handler raises
    RunInterrupted at once.

    Lightning's own SIGTERM handler (SignalConnector, installed for each fit/validate/test)
    calls ours after its own, and sets `trainer.received_sigterm`, which makes its loops raise
    SIGTERMException, cutting a validation short. For the training steps ours alone handles
    SIGTERM (set in `on_train_start`; Lightning's teardown restores the handlers it found), so
    a validation in progress completes and the checkpoint after it is written.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, every: int = 1):
        self.every = every  # under DDP: steps between the ranks' agreements
        self.signum: int | None = None  # the signal received, not yet acted on
        self.stopping = False  # every rank agreed to stop at the end of this step
        self._in_steps = False
        self._previous: dict[int, Any] = {}

    @contextmanager
    def catching(self) -> Iterator[Interruption]:
        """Our handlers for the block (main thread only: Python's rule for signal handlers)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame) -> None:
        if self._in_steps and self.signum is None:
            self.signum = signum
            return
        raise RunInterrupted(self.signum or signum)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._in_steps = True
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        # before LastCheckpoint, which acts on it (Lightning runs checkpoint callbacks last)
        signum = self.signum or 0
        if trainer.world_size > 1:  # one decision for every rank: the checkpoint is collective
            final = 0 < trainer.max_steps <= trainer.global_step
            if trainer.global_step % self.every and not final:
                return
            noted = torch.tensor(signum, device=pl_module.device)
            signum = int(trainer.strategy.reduce(noted, reduce_op="max").item())
        self.signum = signum or None
        self.stopping = self.signum is not None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._in_steps = False

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception) -> None:
        self._in_steps = False

    def stop(self) -> None:
        """End the run now (at a step boundary, after its checkpoint)."""
        raise RunInterrupted(self.signum)

    def raise_if_noted(self) -> None:
        """After training: a signal noted during the final step ends the run here."""
        if self.signum is not None:
            raise RunInterrupted(self.signum)
