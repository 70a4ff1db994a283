"""The LightningModule: the model, its loss, SGD and the step-based schedule (with warm-up).

Metrics, divergence, checkpoints and test hooks are callbacks (callbacks.py). `training_step`
returns the loss and the step's (loss · members, errors, images) on the device, which
`callbacks.MetricWindow` sums and reads back once per window; the window it closes comes back
to `on_train_window_end`, where the warm-up ends.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from degradation.models import build_model, member_loss, pack_models
from degradation.rundir import STATE_KEY
from degradation.spec import OptimSpec


def _rebuild(arch: Mapping) -> nn.Module:
    """The net an `arch` records: build_model's kwargs, or a packed net's members' archs."""
    if "members" in arch:
        return pack_models([build_model(**member) for member in arch["members"]])
    return build_model(**arch)


# Logger keys of the evaluations: `val/loss`, `val/error`; at the end of a run the test set
# twice (train.py), the final model as `test/loss`, `test/error` and best.ckpt as
# `best/test_loss`, `best/test_error`, so that the two never share a metrics.csv column.
VAL_PREFIX, TEST_PREFIX, BEST_TEST_PREFIX = "val/", "test/", "best/test_"


def scheduled_lr(optim: OptimSpec, step: int, warming_up: bool) -> float:
    """Learning rate at a training step: lr · gamma^(milestones passed), or the warm-up lr."""
    if warming_up:
        return optim.warmup_lr
    return optim.lr * optim.gamma ** bisect_right(list(optim.milestones), step)


def _plain_optim(optim: Any) -> dict[str, Any]:
    """The optimiser settings as plain values (an OptimSpec or a mapping): what a checkpoint
    may hold and still load with weights_only=True."""
    if dataclasses.is_dataclass(optim):
        return dataclasses.asdict(optim)
    return dict(optim)


class Classifier(L.LightningModule):
    """`model` is a net, or `build_model`'s keyword arguments (a net's `arch`): the module
    saves the net's `arch`, the optimiser settings and fused_sgd as its hyperparameters, in
    plain values only, so that `Classifier.load_from_checkpoint(path)` rebuilds the net from
    a checkpoint that loads with weights_only=True. A net without `arch` (not built by
    build_model) is passed again: `load_from_checkpoint(path, model=net)`."""

    def __init__(
        self, model: nn.Module | dict | None, optim: OptimSpec | Mapping, fused_sgd: bool = False
    ):
        super().__init__()
        if isinstance(model, Mapping):
            model = _rebuild(model)
        if model is None:
            raise TypeError(
                "Classifier needs a model: this checkpoint records no architecture (its net "
                "was not built by build_model); pass one: load_from_checkpoint(path, model=net)"
            )
        arch = getattr(model, "arch", None)
        # logger=False: the run's loggers record the whole run config themselves (loggers.py)
        self.save_hyperparameters(
            {"model": arch, "optim": _plain_optim(optim), "fused_sgd": bool(fused_sgd)},
            logger=False,
        )
        self.model = model
        self.optim = OptimSpec(**optim) if isinstance(optim, Mapping) else optim
        self.fused_sgd = fused_sgd
        # ResNet-110 warm-up (He et al. 2015, Sec. 4.2): warmup_lr until the training error of
        # a window drops below warmup_until_error; warmup_max_steps is only a safety cap
        self.warming_up = self.optim.warmup_lr is not None
        self.warmup_end_step: int | None = None
        self.warmup_end_reason: str | None = None  # "error" (the paper's rule) or "cap"
        self.test_prefix = TEST_PREFIX  # train.py sets BEST_TEST_PREFIX to test best.ckpt

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, **kwargs) -> Classifier:
        """Lightning's loader, always with weights_only=True (a crafted file cannot run code,
        as everywhere in this program: rundir.load_checkpoint_file)."""
        kwargs["weights_only"] = True
        return super().load_from_checkpoint(checkpoint_path, map_location, **kwargs)

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

    def on_train_start(self):
        # a resumed optimizer comes with its checkpoint's kernel choice: this run's one wins
        # (resume.py refuses a switch where last.ckpt records it; older checkpoints do not)
        for group in self.optimizers().param_groups:
            group["fused"] = self.fused_sgd or None

    def on_train_batch_start(self, batch, batch_idx: int):
        lr = scheduled_lr(self.optim, self.global_step, self.warming_up)
        for group in self.optimizers().param_groups:
            group["lr"] = lr

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        images, labels = batch
        logits = self.model(images)
        loss = member_loss(logits, labels)  # a packed model's members each get their own
        with torch.no_grad():
            errors = (logits.argmax(dim=-1).flatten() != labels).sum()
            # loss is a mean over each member's batch (summed over a packed model's members)
            per_member = logits.shape[-2]
            window = torch.stack(
                [loss.detach() * per_member, errors.to(loss.dtype), loss.new_tensor(len(labels))]
            )
        return {"loss": loss, "window": window}

    def on_train_window_end(self, metrics: dict[str, float]) -> None:
        """A metric window closed (callbacks.MetricWindow): the warm-up ends when the window's
        training error is below `warmup_until_error` (the paper's rule), or, as a safety only,
        once `warmup_max_steps` have passed; which one ended it is recorded."""
        if not self.warming_up:
            return
        error = metrics["train/error"]
        if error < self.optim.warmup_until_error:
            reason = "error"
        elif self.global_step >= self.optim.warmup_max_steps:
            reason = "cap"
        else:
            return
        self.warming_up = False
        self.warmup_end_step, self.warmup_end_reason = self.global_step, reason
        lrs = f"{self.optim.warmup_lr} -> {self.optim.lr}"
        print(f"warm-up ended at step {self.global_step} ({reason}): lr {lrs}")
        if reason == "cap":
            print(
                f"warning: the warm-up ended at its step cap optim.warmup_max_steps="
                f"{self.optim.warmup_max_steps} with the training error still at {error:.3f} "
                f"(not below optim.warmup_until_error={self.optim.warmup_until_error})"
            )

    # --- evaluation ----------------------------------------------------------------------

    def _eval_step(self, batch, prefix: str) -> None:
        images, labels = batch
        logits = self.model(images).flatten(0, -2)  # a packed model's members: one batch
        loss = F.cross_entropy(logits, labels)
        error = (logits.argmax(dim=1) != labels).float().mean()
        n = len(labels)
        self.log(f"{prefix}loss", loss, on_epoch=True, sync_dist=True, batch_size=n)
        self.log(f"{prefix}error", error, on_epoch=True, sync_dist=True, batch_size=n)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, VAL_PREFIX)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_prefix)

    # --- state that a resumed run needs ----------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint.setdefault(STATE_KEY, {}).update(
            warming_up=self.warming_up,
            warmup_end_step=self.warmup_end_step,
            warmup_end_reason=self.warmup_end_reason,
        )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get(STATE_KEY, {})
        self.warming_up = state.get("warming_up", self.warming_up)
        self.warmup_end_step = state.get("warmup_end_step")
        self.warmup_end_reason = state.get("warmup_end_reason")
