"""Speed options: what a run's precision, torch.compile mode and memory format resolve to.

`auto` follows the device. On CUDA: bf16-mixed precision, channels_last weights and
`torch.compile(mode="reduce-overhead")`, whose CUDA graphs replay a whole step with one launch
(a small CIFAR net's eager step is bound by kernel launches: docs/benchmarks.md), and SGD's
fused kernel (weight decay, momentum and update of all of ResNet-56's 167 parameter tensors in one
pass instead of several multi-tensor passes). Elsewhere fp32 eager with torch's default SGD,
which is what a CPU runs fastest, and exactly. Every option can be set by hand:
`trainer.precision`, `compile` (none / default / reduce-overhead / max-autotune),
`channels_last` and `fused_sgd`; `trainer.benchmark` (cudnn.benchmark) null means on under
CUDA. The model is compiled in place (`nn.Module.compile`): its state_dict keys, checkpoints
and pickles are those of the eager model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from degradation.choices import value

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
        # bf16, not fp16: bf16 keeps fp32's exponent range, so the large activations and
        # losses of deep plain nets cannot overflow to inf/NaN as they can in fp16
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
