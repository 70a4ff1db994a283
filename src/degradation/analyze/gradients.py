"""Gradient flow during training: per-layer and per-stage gradient norms, every k steps.

`GradientFlow(run_dir, every)` is a Lightning callback. At every `every`-th optimizer step (grads
ready, after AMP unscaling, before clipping and the update) it takes the L2 norm of

  - each conv layer's weight gradient (column = the layer's module name, e.g.
    `stages.0.0.branch.conv1`; every conv of the model, shortcut convs included),
  - each stage (column `stages.i`: all parameters of `model.stages[i]` together),
  - and `first_last_ratio` = first conv / last conv of the main path (stem conv / the last
    block's last conv; >> 1 would mean the early layers get the larger share, << 1 that the
    gradient vanishes on its way down).

The norms are stacked on the device and read back with one `.tolist()` per recording, on global
rank 0 only (DDP has already averaged the gradients). Each recording is one row appended to
`RUN_DIR/grad_norms.csv` (header `step,<layers...>,<stages...>,first_last_ratio`); a resumed
run first drops the rows of steps it is about to train again. The same numbers go to the
loggers with a `grad/` prefix: all of them to W&B (any non-CSV logger), only the stage norms
and the ratio to metrics.csv, to keep it narrow.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from degradation.models.shortcuts import SHORTCUT_TYPES
from degradation.rundir import atomic_write_text

GRAD_NORMS = "grad_norms.csv"
RATIO = "first_last_ratio"
PREFIX = "grad/"


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every conv of the model, in module order (shortcut convs included)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def main_path_convs(model: nn.Module) -> list[str]:
    """Names of the convs on the main path (not inside a shortcut), in module order."""
    side = [name for name, m in model.named_modules() if isinstance(m, SHORTCUT_TYPES)]
    return [
        name
        for name, _ in conv_layers(model)
        if not any(name.startswith(prefix + ".") for prefix in side)
    ]


def stage_names(model: nn.Module) -> list[str]:
    stages = getattr(model, "stages", None)
    return [f"stages.{i}" for i in range(len(stages))] if stages is not None else []


def grad_norm_columns(model: nn.Module) -> list[str]:
    """The columns of grad_norms.csv after `step`: conv layers, stages, the ratio."""
    return [name for name, _ in conv_layers(model)] + stage_names(model) + [RATIO]


class _Layout:
    """Which parameters feed which number, fixed once per model."""

    def __init__(self, model: nn.Module):
        convs = conv_layers(model)
        self.conv_params = [m.weight for _, m in convs]
        main = main_path_convs(model)
        index = {name: i for i, (name, _) in enumerate(convs)}
        self.first, self.last = index[main[0]], index[main[-1]]
        self.stage_params = [list(stage.parameters()) for stage in getattr(model, "stages", [])]
        self.columns = grad_norm_columns(model)
        self.narrow = {*stage_names(model), RATIO}  # what metrics.csv gets


def _norm(param: torch.Tensor) -> torch.Tensor:
    if param.grad is None:  # unused this step: no gradient is a zero gradient
        return torch.zeros((), device=param.device)
    return torch.linalg.vector_norm(param.grad.detach().float())


@torch.no_grad()
def gradient_norms(model: nn.Module, layout: _Layout | None = None) -> dict[str, float]:
    """{column: norm} for the model's current gradients (one host sync)."""
    layout = layout or _Layout(model)
    conv = torch.stack([_norm(p) for p in layout.conv_params])
    stages = [torch.stack([_norm(p) for p in params]).square().sum().sqrt() for params in
              layout.stage_params]  # fmt: skip
    ratio = conv[layout.first] / conv[layout.last]
    values = torch.cat([conv, torch.stack(stages) if stages else conv[:0], ratio[None]])
    return dict(zip(layout.columns, values.tolist(), strict=True))


class GradientFlow(Callback):
    """Record gradient norms every `every` optimizer steps (0 = never); see the module doc."""

    def __init__(self, run_dir: Path, every: int):
        super().__init__()
        self.path = Path(run_dir) / GRAD_NORMS
        self.every = every
        self._layout: _Layout | None = None

    @staticmethod
    def _model(pl_module: LightningModule) -> nn.Module:
        return getattr(pl_module, "model", pl_module)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self._layout = _Layout(self._model(pl_module))
        self._keep_rows_before(trainer.global_step)  # also with every=0: no stale rows

    def _keep_rows_before(self, step: int) -> None:
        """A resumed run trains steps >= `step` again: drop their rows (and any other header)."""
        if not self.path.is_file():
            return
        header = ["step", *self._layout.columns]
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        kept = [r for r in rows[1:] if len(r) == len(header) and int(r[0]) < step]
        if not rows or rows[0] != header or not kept:
            self.path.unlink()
            return
        text = "".join(",".join(r) + "\n" for r in [header, *kept])
        atomic_write_text(self.path, text)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer):
        step = trainer.global_step
        if self.every <= 0 or step % self.every or not trainer.is_global_zero:
            return
        if self._layout is None:
            self._layout = _Layout(self._model(pl_module))
        norms = gradient_norms(self._model(pl_module), self._layout)
        self._append(step, norms)
        narrow = {k: v for k, v in norms.items() if k in self._layout.narrow}
        for logger in trainer.loggers:
            chosen = narrow if isinstance(logger, CSVLogger) else norms
            logger.log_metrics({PREFIX + k: v for k, v in chosen.items()}, step=step)

    def _append(self, step: int, norms: dict[str, float]) -> None:
        # One whole line per write, flushed at once: a kill leaves at most a torn last line,
        # which readers (read_grad_norms) drop.
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            if new:
                f.write(",".join(["step", *self._layout.columns]) + "\n")
            f.write(",".join([str(step), *(repr(v) for v in norms.values())]) + "\n")


def read_grad_norms(run_dir: Path) -> tuple[list[int], list[str], list[list[float]]] | None:
    """(steps, columns, rows of floats) from RUN_DIR/grad_norms.csv, or None without one."""
    path = Path(run_dir) / GRAD_NORMS
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        text = f.read()
    lines = [line for line in text.splitlines(keepends=True) if line.endswith("\n")]
    rows = list(csv.reader(lines))
    if not rows:
        return None
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    steps = [int(r[0]) for r in body]
    values = [[float(x) if x else math.nan for x in r[1:]] for r in body]
    return steps, header[1:], values
