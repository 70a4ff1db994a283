"""Measure a built net: parameters, forward FLOPs, and the layers the paper's Fig. 7 plots."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .shortcuts import SHORTCUT_TYPES


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not; BN running stats are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32)) -> int:
    """Forward FLOPs for one image (a multiply-add counts 2), via torch's FlopCounterMode.

    Runs one eval-mode, no-grad forward on the model's own device and dtype, then restores
    each submodule's train/eval flag.
    """
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        for module, training in modes.items():
            module.training = training
    return int(counter.get_total_flops())


def conv3x3_bn_layers(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """Every BN that normalises a 3x3 conv's output, in forward order (for Fig. 7).

    Rule: walk the main path in data order (shortcut modules are skipped: they are side
    paths) and take each BN whose nearest preceding conv is a 3x3 one; each conv pairs with at
    most one BN. For post-activation nets that is exactly the BN right after each 3x3 conv,
    stem included (2 per basic block, 1 per bottleneck, + the cifar stem). For pre-activation
    nets the BN after a block's last 3x3 conv is the *next* block's first BN (or the final BN),
    which normalises conv output + shortcut; a cifar basic net still gives 6n+1 entries.
    A concat merge's 1x1 fuse conv sits between, so its BN and the next one are not taken.
    """
    found: list[tuple[str, nn.BatchNorm2d]] = []
    side_paths: list[str] = []
    last_conv: nn.Conv2d | None = None
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in side_paths):
            continue
        if isinstance(module, SHORTCUT_TYPES):
            side_paths.append(name)
        elif isinstance(module, nn.Conv2d):
            last_conv = module
        elif isinstance(module, nn.BatchNorm2d):
            if last_conv is not None and last_conv.kernel_size == (3, 3):
                found.append((name, module))
            last_conv = None
    return found
