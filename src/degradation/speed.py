"""Speed options: what a run's precision, torch.compile mode and memory format resolve to.

`auto` follows the device. On CUDA: bf16-mixed precision, channels_last weights and
`torch.compile(mode="reduce-overhead")`, whose CUDA graphs replay a whole step with one launch
(a small CIFAR net's eager step is bound by kernel launches, docs/brief.md §5), and SGD's fused
kernel (weight decay, momentum and update of all of ResNet-56's 167 parameter tensors in one
pass instead of several multi-tensor passes). Elsewhere fp32 eager with torch's default SGD,
which is what a CPU runs fastest, and exactly. Every option can be set by hand:
`trainer.precision`, `compile` (none / default / reduce-overhead / max-autotune),
`channels_last` and `fused_sgd`; `trainer.benchmark` (cudnn.benchmark) null means on under
CUDA. The model is compiled in place (`nn.Module.compile`): its state_dict keys, checkpoints
and pickles are those of the eager model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torch import nn

from degradation.config import value

CUDA_ACCELERATORS = ("cuda", "gpu")


@dataclass(frozen=True)
class Speed:
    precision: str  # as lightning.Trainer takes it
    compile: str  # "none" or a torch.compile mode
    channels_last: bool
    fused_sgd: bool  # torch.optim.SGD(fused=True): the whole update in one pass
    benchmark: bool | None  # cudnn.benchmark, as lightning.Trainer takes it
    cuda: bool


def uses_cuda(accelerator: str) -> bool:
    """Whether lightning.Trainer(accelerator=...) will train on a CUDA device."""
    if accelerator in CUDA_ACCELERATORS:
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def resolve_speed(cfg: DictConfig) -> Speed:
    """The run's speed settings with every `auto`/null decided for its accelerator."""
    cuda = uses_cuda(str(cfg.trainer.accelerator))
    precision = str(cfg.trainer.precision)
    if precision == "auto":
        # bf16, not fp16: fp16 runs of plain-56 are known to diverge to NaN (brief §2)
        bf16 = cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        precision = "bf16-mixed" if bf16 else "32-true"
    mode = value(cfg.compile)
    if mode == "auto":
        mode = "reduce-overhead" if cuda else "none"
    channels_last = cuda if cfg.channels_last is None else bool(cfg.channels_last)
    fused_sgd = cuda if cfg.fused_sgd is None else bool(cfg.fused_sgd)
    benchmark = cfg.trainer.benchmark
    if benchmark is None and cuda and not cfg.trainer.deterministic:
        benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    return Speed(precision, mode, channels_last, fused_sgd, benchmark, cuda)


def prepare_model(model: nn.Module, speed: Speed) -> nn.Module:
    """Applies channels_last and torch.compile to the model, in place; returns it."""
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    if speed.compile != "none":
        model.compile(mode=speed.compile)  # compiled lazily, at the first step
    return model


class CompileClock(Callback):
    """With torch.compile: prints the first training step's time (compilation included), and
    with CUDA graphs marks where each step begins, so that no step reads a replayed graph's
    outputs after the next replay has overwritten them."""

    def __init__(self, speed: Speed):
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
