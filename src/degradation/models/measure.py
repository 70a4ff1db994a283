"""Measure a built net: parameters, forward FLOPs, the layers the paper's Fig. 7 plots and
their responses, and the gradient norm of each layer (recorded during training)."""

from __future__ import annotations

import math
from typing import Any

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


# --- layer responses (He et al. 2015, Fig. 7) ------------------------------------------------


class _ChannelMoments:
    """Running per-channel sums of a layer's outputs (float64), so images can go in chunks."""

    def __init__(self) -> None:
        self.total = self.total_sq = None
        self.count = 0

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        x = output.detach().to(torch.float64).transpose(0, 1).flatten(1)  # C × (B·H·W)
        total, total_sq = x.sum(dim=1), (x * x).sum(dim=1)
        if self.total is None:
            self.total, self.total_sq = total, total_sq
        else:
            self.total, self.total_sq = self.total + total, self.total_sq + total_sq
        self.count += x.shape[1]

    def mean_channel_std(self) -> float:
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean * mean).clamp_min(0.0)
        var = var * self.count / max(self.count - 1, 1)  # sample variance
        return float(var.sqrt().mean())


@torch.no_grad()
def layer_response_std(
    model: nn.Module, images: torch.Tensor, batch_size: int = 128
) -> list[float]:
    """Std of each 3×3 layer's response, in forward order (`conv3x3_bn_layers`).

    A layer's response is the output of the BN that follows a 3×3 conv (after BN, before the
    ReLU or the addition; the models' ReLUs are not in-place, so a forward hook sees it). Its
    std is taken per channel over batch × height × width, then averaged over channels.
    images: N×C×H×W float, normalised as the model sees them in training. Runs on the model's
    device in eval mode and restores every submodule's train/eval flag afterwards.
    """
    layers = conv3x3_bn_layers(model)
    moments = [_ChannelMoments() for _ in layers]
    hooks = [bn.register_forward_hook(m) for (_, bn), m in zip(layers, moments, strict=True)]
    reference = next(model.parameters())
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        for chunk in images.split(batch_size):
            model(chunk.to(device=reference.device, dtype=reference.dtype))
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
    return [m.mean_channel_std() for m in moments]


def layer_responses(model: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """{"layers": [BN module names], "std": [floats, None where not finite], "num_images"}."""
    names = [name for name, _ in conv3x3_bn_layers(model)]
    stds = layer_response_std(model, images)
    return {
        "layers": names,
        "std": [s if math.isfinite(s) else None for s in stds],  # a diverged net gives NaN
        "num_images": len(images),
    }


# --- gradient norms per layer ------------------------------------------------------------------

GRAD_RATIO = "first_last_ratio"


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
    """What `gradient_norms` returns, in order: conv layers, stages, the first/last ratio."""
    return [name for name, _ in conv_layers(model)] + stage_names(model) + [GRAD_RATIO]


class GradLayout:
    """Which parameters feed which number of `gradient_norms`, fixed once per model."""

    def __init__(self, model: nn.Module):
        convs = conv_layers(model)
        self.conv_params = [m.weight for _, m in convs]
        main = main_path_convs(model)
        index = {name: i for i, (name, _) in enumerate(convs)}
        self.first, self.last = index[main[0]], index[main[-1]]
        self.stage_params = [list(stage.parameters()) for stage in getattr(model, "stages", [])]
        self.columns = grad_norm_columns(model)
        self.stages_and_ratio = {*stage_names(model), GRAD_RATIO}


def _grad_norm(param: torch.Tensor) -> torch.Tensor:
    if param.grad is None:  # unused this step: no gradient is a zero gradient
        return torch.zeros((), device=param.device)
    return torch.linalg.vector_norm(param.grad.detach().float())


@torch.no_grad()
def gradient_norms(model: nn.Module, layout: GradLayout | None = None) -> dict[str, float]:
    """{column: L2 norm} of the model's current gradients: each conv layer's weight gradient,
    each stage's parameters together, and the first / last main-path conv ratio (one host
    sync)."""
    layout = layout or GradLayout(model)
    conv = torch.stack([_grad_norm(p) for p in layout.conv_params])
    stages = [torch.stack([_grad_norm(p) for p in params]).square().sum().sqrt() for params in
              layout.stage_params]  # fmt: skip
    ratio = conv[layout.first] / conv[layout.last]
    values = torch.cat([conv, torch.stack(stages) if stages else conv[:0], ratio[None]])
    return dict(zip(layout.columns, values.tolist(), strict=True))
