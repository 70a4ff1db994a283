"""Speed options: what a run's precision, torch.compile mode and memory format resolve to.

`auto` follows the device. On CUDA: bf16-mixed precision, channels_last weights and
`torch.compile(mode="reduce-overhead")`, whose CUDA graphs replay a whole step with one launch
(a small CIFAR net's eager step is bound by kernel launches: docs/benchmarks.md), and SGD's
fused kernel (weight decay, momentum and update of all of ResNet-56's 167 parameter tensors in one
pass instead of several multi-tensor passes). On a CPU that reports native bf16 (the `amx_bf16`
or `avx512_bf16` flag: Intel Sapphire Rapids and later, AMD Zen 4 and later): bf16-mixed and
channels_last, measured 2.4x fp32 eager for ResNet-56 on AMX (docs/benchmarks.md). On any other
CPU fp32 eager, where bf16 autocast is emulated and slower (8-14x, docs/benchmarks.md).
torch.compile on a CPU only for a long run: its 40-70 s of compilation paid back after about
200-300 steps (measured, docs/benchmarks.md), so `auto` compiles a CPU run of
CPU_COMPILE_MIN_STEPS steps or more, where a C++ compiler is found for inductor, and keeps a
shorter one eager. The choice and its reason are printed once and recorded in summary.json.
Every option can be set by hand:
`trainer.precision`, `compile` (none / default / reduce-overhead / max-autotune),
`channels_last` and `fused_sgd`; `trainer.benchmark` (cudnn.benchmark) null means on under
CUDA. The model is compiled in place (`nn.Module.compile`): its state_dict keys, checkpoints
and pickles are those of the eager model.

These keys are outside the config hash (a run folder is found again whatever its speed
settings), but precision, compile, channels_last and fused SGD change the rounding of every
step: `numerics` is what a checkpoint records of them, and a resume that would switch any of
them is refused (resume.py), so a run's numbers come from one setting from start to end.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

CUDA_ACCELERATORS = ("cuda", "gpu")
# the CPU flags (Linux /proc/cpuinfo names) that mean bf16 matrix math in hardware
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Speed:
    precision: str  # as lightning.Trainer takes it
    compile: str  # "none" or a torch.compile mode
    channels_last: bool
    fused_sgd: bool  # torch.optim.SGD(fused=True): the whole update in one pass
    benchmark: bool | None  # cudnn.benchmark, as lightning.Trainer takes it
    cuda: bool
    reason: str = ""  # why the precision is what it is, in words (summary.json speed.reason)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's reported feature flags (Linux's /proc/cpuinfo); empty where not reported,
    e.g. on macOS or Windows, which then gets fp32 (the safe choice)."""
    if not sys.platform.startswith("linux"):
        return frozenset()
    try:
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16_flags() -> list[str]:
    """Which of NATIVE_BF16_FLAGS this CPU reports: from its reported capabilities only, so the
    same machine always makes the same choice."""
    flags = cpu_flags()
    return [f for f in NATIVE_BF16_FLAGS if f in flags]


def uses_cuda(accelerator: str) -> bool:
    """Whether lightning.Trainer(accelerator=...) will train on a CUDA device."""
    if accelerator in CUDA_ACCELERATORS:
        return True
    return accelerator == "auto" and torch.cuda.is_available()


@dataclass(frozen=True)
class SpeedRequest:
    """What a run's config asks for (spec.speed_request): `auto` and null still open."""

    accelerator: str
    precision: str
    compile: str
    channels_last: bool | None
    fused_sgd: bool | None
    benchmark: bool | None
    deterministic: bool | str
    max_steps: int = 0  # the run's length: torch.compile pays on a CPU only for a long run


# torch.compile's warm-up paid back after 194 and 283 steps for ResNet-20 and -56 at batch 128,
# 32 px, on a 2-core CPU (docs/benchmarks.md); a smaller image or batch saves less a step, so
# `auto` waits for a run many times that long
CPU_COMPILE_MIN_STEPS = 5000


def cpp_compiler() -> str | None:
    """The C++ compiler inductor would build CPU kernels with ($CXX, c++, g++, clang++)."""
    import os
    import shutil

    candidates = [os.environ.get("CXX"), "c++", "g++", "clang++"]
    return next((c for c in candidates if c and shutil.which(c)), None)


def resolve_speed(request: SpeedRequest) -> Speed:
    """The run's speed settings with every `auto`/null decided for its accelerator."""
    cuda = uses_cuda(request.accelerator)
    precision = request.precision
    bf16_flags = [] if cuda else native_bf16_flags()
    if precision != "auto":
        reason = f"set: trainer.precision={precision}"
    elif cuda:
        # bf16, not fp16: bf16 keeps fp32's exponent range, so the large activations and
        # losses of deep plain nets cannot overflow to inf/NaN as they can in fp16
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        precision = "bf16-mixed" if bf16 else "32-true"
        reason = "auto on CUDA: " + ("the GPU supports bf16" if bf16 else "the GPU lacks bf16")
    elif bf16_flags:
        precision = "bf16-mixed"
        reason = f"auto on CPU: the CPU has native bf16 ({', '.join(bf16_flags)})"
    else:
        precision = "32-true"
        reason = f"auto on CPU: the CPU has no native bf16 (no {' or '.join(NATIVE_BF16_FLAGS)})"
    mode = request.compile
    if mode == "auto" and cuda:
        mode = "reduce-overhead"
    elif mode == "auto":
        long_run = request.max_steps >= CPU_COMPILE_MIN_STEPS
        mode = "default" if long_run and cpp_compiler() else "none"
        if mode == "default":
            reason += (
                f"; torch.compile (auto on CPU: {request.max_steps} steps >= "
                f"{CPU_COMPILE_MIN_STEPS}, where compiling pays back)"
            )
    # on a CPU channels_last pays only with bf16 (oneDNN's AMX kernels want it): it follows
    # the resolved precision, so a pinned 32-true stays plain fp32 eager
    fast = cuda or precision == "bf16-mixed"
    channels_last = fast if request.channels_last is None else bool(request.channels_last)
    fused_sgd = cuda if request.fused_sgd is None else bool(request.fused_sgd)
    benchmark = request.benchmark
    if benchmark is None and cuda and not request.deterministic:
        benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    return Speed(precision, mode, channels_last, fused_sgd, benchmark, cuda, reason)


def numerics(speed: Speed) -> dict[str, str | bool]:
    """The resolved settings that change a run's numbers, keyed by the config key that sets each
    (cudnn.benchmark is left out: the kernels it picks vary between runs of one setting too)."""
    return {
        "trainer.precision": speed.precision,
        "compile": speed.compile,
        "channels_last": speed.channels_last,
        "fused_sgd": speed.fused_sgd,
    }


def prepare_model(model: nn.Module, speed: Speed) -> nn.Module:
    """Applies channels_last and torch.compile to the model, in place; returns it."""
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    if speed.compile != "none":
        model.compile(mode=speed.compile)  # compiled lazily, at the first step
    return model
