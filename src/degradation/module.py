"""The LightningModule: SGD, the step-based schedule (with optional warm-up), and metrics.

Training metrics are summed on the device and read back once per `log_every` steps, so the
hot path has no host synchronisation; the learning rate (a Python float) is logged every step
so that a schedule bug shows in the curves.

A run diverges when a window's mean training loss is NaN/inf or above `diverge_loss`: it is
marked (`diverged_at`, the step) and stopped. Everything a resumed run needs from the module is
in the checkpoint (`on_save_checkpoint`), including a step whose end the checkpoint preceded.

Test hooks (environment variables, for the failure-isolation tests; never set them otherwise):
`DEGRADATION_FAIL_AT_STEP=S` raises a RuntimeError in training step S, and
`DEGRADATION_NAN_AT_STEP=S` makes the loss of step S NaN; `S:seed=N` limits either to the
run with seed N (e.g. one job of a sweep).
"""

from __future__ import annotations

import math
import os
import time
from bisect import bisect_right

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from degradation.config import OptimConfig
from degradation.models import member_loss

FAIL_AT_STEP = "DEGRADATION_FAIL_AT_STEP"
NAN_AT_STEP = "DEGRADATION_NAN_AT_STEP"


def scheduled_lr(optim: OptimConfig, step: int, warming_up: bool) -> float:
    """Learning rate at a training step: lr · gamma^(milestones passed), or the warm-up lr."""
    if warming_up:
        return optim.warmup_lr
    return optim.lr * optim.gamma ** bisect_right(list(optim.milestones), step)


def injected_step(variable: str, seed: int) -> int | None:
    """The step a test hook (`S` or `S:seed=N`) names for a run with this seed, else None."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return None
    step, _, only = text.partition(":")
    if only and only.strip() != f"seed={seed}":
        return None
    return int(step)


class Classifier(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        optim: OptimConfig,
        log_every: int,
        seed: int = 0,
        diverge_loss: float = math.inf,
        fused_sgd: bool = False,
    ):
        super().__init__()
        self.fused_sgd = fused_sgd
        self.model = model
        self.optim = optim
        self.log_every = log_every
        self.seed = seed
        self.diverge_loss = diverge_loss
        self.warming_up = optim.warmup_lr is not None
        self.warmup_end_step: int | None = None
        # (loss sum, error count, examples) of the current window, kept on the device
        self.register_buffer("window", torch.zeros(3), persistent=False)
        self.window_steps = 0
        self.last_window: dict[str, float] | None = None  # the final train metrics come from here
        self.diverged_at: int | None = None
        self.train_time_s = 0.0  # time in training steps only (validation excluded)
        self.train_images = 0
        self._window_start: float | None = None
        self.current_lr = optim.lr
        # a checkpoint taken between training_step and on_train_batch_end (Lightning's
        # callbacks run first) leaves that step's end to the resumed run: see _catch_up
        self._step_open = False
        self._open_step: int | None = None
        self._fail_at = injected_step(FAIL_AT_STEP, seed)
        self._nan_at = injected_step(NAN_AT_STEP, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def configure_optimizers(self):
        return torch.optim.SGD(
            self.parameters(),
            lr=self.optim.lr,
            momentum=self.optim.momentum,
            weight_decay=self.optim.weight_decay,
            nesterov=self.optim.nesterov,
            fused=self.fused_sgd or None,  # None: torch's default (foreach where it can)
        )

    # --- training -------------------------------------------------------------------------

    def on_train_batch_start(self, batch, batch_idx: int):
        if self._window_start is None:
            self._window_start = time.perf_counter()
        self.current_lr = scheduled_lr(self.optim, self.global_step, self.warming_up)
        for group in self.optimizers().param_groups:
            group["lr"] = self.current_lr

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.model(images)
        loss = member_loss(logits, labels)  # a packed model's members each get their own
        if self.global_step == self._fail_at:
            raise RuntimeError(f"injected failure at step {self.global_step} ({FAIL_AT_STEP})")
        if self.global_step == self._nan_at:
            loss = loss * math.nan
        with torch.no_grad():
            errors = (logits.argmax(dim=-1).flatten() != labels).sum()
            # loss is a mean over each member's batch (summed over a packed model's members)
            per_member = logits.shape[-2]
            self.window += torch.stack(
                [loss.detach() * per_member, errors.to(loss.dtype), loss.new_tensor(len(labels))]
            )
        self.window_steps += 1
        self._step_open = True
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int):
        self._end_step(self.global_step - 1)  # the step that just ran

    def _end_step(self, step: int, show_progress: bool = True) -> None:
        # Written straight to the loggers: one row per step, train metrics only where a
        # window closed (Lightning's self.log would repeat stale values on every row).
        self._step_open = False
        row = {"lr": self.current_lr}
        if self.window_steps >= self.log_every:
            row.update(self._flush_window())
            if show_progress:
                self.log_dict(
                    {k: row[k] for k in ("train/loss", "train/error")}, prog_bar=True, logger=False
                )
        if self.trainer.is_global_zero:
            for logger in self.loggers:
                logger.log_metrics(row, step=step)

    def on_train_start(self):
        # a resumed optimizer comes with its checkpoint's kernel choice: this run's one wins
        for group in self.optimizers().param_groups:
            group["fused"] = self.fused_sgd or None
        self._catch_up()

    def on_train_end(self):
        if self.window_steps:
            self._flush_window(final=True)

    def on_fit_end(self):
        # A run resumed from its final checkpoint trains nothing (no on_train_start/end).
        self._catch_up()
        self.on_train_end()

    def _catch_up(self) -> None:
        """Finish the step a resumed checkpoint was taken in (log its row, close its window)."""
        if self._open_step is not None:
            step, self._open_step = self._open_step, None
            self._end_step(step, show_progress=False)

    def _flush_window(self, final: bool = False) -> dict[str, float]:
        totals = self.window
        if self.trainer.world_size > 1:
            totals = self.trainer.strategy.reduce(totals.clone(), reduce_op="sum")
        loss_sum, err_sum, count = totals.tolist()  # the one host sync per window
        now = time.perf_counter()
        if self._window_start is not None:  # None: a resumed run catching up
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
        loss = metrics["train/loss"]
        if not math.isfinite(loss) or loss > self.diverge_loss:
            self.diverged_at = self.global_step
            self.trainer.should_stop = True
        if self.warming_up and (
            metrics["train/error"] < self.optim.warmup_until_error
            or self.global_step >= self.optim.warmup_max_steps
        ):
            self.end_warmup()
        return {**metrics, "throughput_img_s": self.train_images / max(self.train_time_s, 1e-9)}

    def end_warmup(self) -> None:
        self.warming_up = False
        self.warmup_end_step = self.global_step
        lrs = f"{self.optim.warmup_lr} -> {self.optim.lr}"
        print(f"warm-up ended at step {self.global_step}: lr {lrs}")

    def on_validation_start(self):
        self._val_started = time.perf_counter()

    def on_validation_end(self):
        if self._window_start is not None:  # validation time is not training time
            self._window_start += time.perf_counter() - self._val_started

    # --- evaluation ----------------------------------------------------------------------

    def _eval_step(self, batch, prefix: str) -> None:
        images, labels = batch
        logits = self.model(images).flatten(0, -2)  # a packed model's members: one batch
        loss = F.cross_entropy(logits, labels)
        error = (logits.argmax(dim=1) != labels).float().mean()
        n = len(labels)
        self.log(f"{prefix}/loss", loss, on_epoch=True, sync_dist=True, batch_size=n)
        self.log(f"{prefix}/error", error, on_epoch=True, sync_dist=True, batch_size=n)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    # --- state that a resumed run needs ----------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["degradation"] = {
            "warming_up": self.warming_up,
            "warmup_end_step": self.warmup_end_step,
            "train_time_s": self.train_time_s,
            "train_images": self.train_images,
            # the open metric window, and the step whose end is still to come (if any)
            "window": self.window.tolist(),
            "window_steps": self.window_steps,
            "last_window": self.last_window,
            "current_lr": self.current_lr,
            "open_step": self.global_step - 1 if self._step_open else None,
            "diverged_at": self.diverged_at,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("degradation", {})
        self.warming_up = state.get("warming_up", self.warming_up)
        self.warmup_end_step = state.get("warmup_end_step")
        self.train_time_s = state.get("train_time_s", 0.0)
        self.train_images = state.get("train_images", 0)
        if "window" in state:
            self.window.copy_(torch.tensor(state["window"], dtype=self.window.dtype))
        self.window_steps = state.get("window_steps", 0)
        self.last_window = state.get("last_window")
        self.current_lr = state.get("current_lr", self.current_lr)
        self._open_step = state.get("open_step")
        self.diverged_at = state.get("diverged_at")
