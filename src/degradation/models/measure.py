"""Measure a built net: parameters, forward FLOPs, the layers the paper's Fig. 7 plots and
their responses, and the gradient flow per layer (recorded during training)."""

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


# --- gradient flow per layer -------------------------------------------------------------------

RMS, REL = "rms", "rel"  # column prefixes: "rms/<layer>", "rel/<stages.i>"


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


def conv3x3_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The 3×3 convs of the main path, in forward order: the layers gradient flow is
    recorded for (the same rule for every skip type; see `gradient_norms`)."""
    convs = dict(conv_layers(model))
    return [(name, convs[name]) for name in main_path_convs(model)
            if convs[name].kernel_size == (3, 3)]  # fmt: skip


def stage_names(model: nn.Module) -> list[str]:
    stages = getattr(model, "stages", None)
    return [f"stages.{i}" for i in range(len(stages))] if stages is not None else []


class GradLayout:
    """Which weights feed which number of `gradient_norms`, fixed once per model.

    columns: "rms/<layer>" for every layer, then "rel/<layer>", then "rms/stages.i" and
    "rel/stages.i" for every stage (its layers pooled: sqrt(Σ‖g‖² / Σ numel) and
    sqrt(Σ‖g‖² / Σ‖w‖²)). `stage_columns` are the narrow ones metrics.csv keeps.
    """

    def __init__(self, model: nn.Module):
        layers = conv3x3_layers(model)
        self.layers = [name for name, _ in layers]
        self.weights = [conv.weight for _, conv in layers]
        stages = stage_names(model)
        # layer index -> stage index (the stem belongs to none)
        self.stage_of = [
            next((i for i, s in enumerate(stages) if name.startswith(s + ".")), -1)
            for name in self.layers
        ]
        self.stages = stages
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.stage_columns = [f"{kind}/{s}" for kind in (RMS, REL) for s in stages]
        self.columns = [f"{kind}/{name}" for kind in (RMS, REL) for name in self.layers]
        self.columns += self.stage_columns

    def constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights per layer, stage index per layer) on `device`, copied there once."""
        if device not in self._constants:
            sizes = torch.tensor([w.numel() for w in self.weights], dtype=torch.float32)
            # the stem, in no stage, sums into an extra last slot that is dropped
            slots = [i if i >= 0 else len(self.stages) for i in self.stage_of]
            self._constants[device] = (sizes.to(device), torch.tensor(slots).to(device))
        return self._constants[device]


def _squared_norms(weights: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(‖g‖², ‖w‖²) per weight, on the device, float32; a weight unused this step has no
    gradient, which is a zero gradient."""
    grads = [
        torch.linalg.vector_norm(w.grad.detach().float()).square()
        if w.grad is not None
        else torch.zeros((), device=w.device)
        for w in weights
    ]
    norms = [torch.linalg.vector_norm(w.detach().float()).square() for w in weights]
    return torch.stack(grads), torch.stack(norms)


@torch.no_grad()
def gradient_norms(model: nn.Module, layout: GradLayout | None = None) -> dict[str, float]:
    """{column: value} of the model's current gradients, one host sync; columns in GradLayout.

    Two quantities per 3×3 conv of the main path, chosen so that layers of different sizes and
    nets of different skip types can be compared (docs/analyses.md):

    - RMS gradient per weight, ‖g‖ / sqrt(numel). The raw L2 norm ‖g‖ grows with the square
      root of the number of weights: the CIFAR stem (3·16·9 = 432 weights) and the last 3×3
      conv (64·64·9 = 36,864) differ ~9× in ‖g‖ at equal per-weight gradients. The RMS removes
      the size. It does NOT remove the weight scale: a conv followed by BN computes the same
      function for w and c·w, so its gradient scales as 1/c (van Laarhoven 2017, "L2
      Regularization versus Batch and Weight Normalization", arXiv:1706.05350). He init gives
      a layer of fan-in n weights of std sqrt(2/n), so a small layer (the stem) starts with
      large weights and, by this argument alone, a small RMS gradient; weight decay and the
      updates change ‖w‖ during training.
    - Relative gradient ‖g‖ / ‖w‖, dimensionless: the drive on the weights relative to their
      size; for a BN-normalised layer, whose gradient is orthogonal to w, what turns its
      weight direction (van Laarhoven's effective learning rate lr/‖w‖², times ‖g‖·‖w‖). It
      is NOT the step: SGD with momentum μ and weight decay λ moves w by lr·v, v ← μ·v + g +
      λ·w, up to 1/(1 − μ) times lr·‖g‖. Nor the gradient signal alone: at an equal gradient
      a layer with larger weights moves less.

    Both are kept because neither alone separates gradient signal from weight scale; their
    ratio rms / rel = ‖w‖ / sqrt(numel) is the layer's RMS weight, so the two together say
    which of the two moved.

    The layer set is the same rule for every skip type: the 3×3 convs of the main path, in
    forward order (`conv3x3_layers`): shortcut projections, a concat net's 1×1 fuse convs and a
    bottleneck's 1×1 convs are left out, so "first" and "last" are the same layers in a plain,
    residual and concat net (the CIFAR stem and the last block's second conv). An ImageNet
    stem (7×7) is left out too, as in `conv3x3_bn_layers`.
    """
    layout = layout or GradLayout(model)
    grad_sq, weight_sq = _squared_norms(layout.weights)
    sizes, slots = layout.constants(grad_sq.device)
    values = [(grad_sq / sizes).sqrt(), (grad_sq / weight_sq).sqrt()]
    if layout.stages:
        # each stage's sums over its layers, on the device
        pooled = torch.zeros(3, len(layout.stages) + 1, device=grad_sq.device)
        for row, quantity in enumerate((grad_sq, sizes, weight_sq)):
            pooled[row].index_add_(0, slots, quantity)
        pooled = pooled[:, : len(layout.stages)]
        values += [(pooled[0] / pooled[1]).sqrt(), (pooled[0] / pooled[2]).sqrt()]
    return dict(zip(layout.columns, torch.cat(values).tolist(), strict=True))
