"""Layer responses (He et al. 2015, Fig. 7): the standard deviation of each 3×3 layer's output.

A layer's response is the output of the BN that follows a 3×3 conv (after BN, before the ReLU
or the addition; the models' ReLUs are not in-place, so a forward hook sees it). Its standard
deviation is taken per channel over batch × height × width, then averaged over channels, with
the model in eval mode, on a fixed set of validation images (the first `MAX_IMAGES` of the
fixed validation split), so every run of a sweep is measured on the same images.

    layer_response_std(model, images) -> [std per 3×3 layer, in forward order]

Training writes `layer_responses.json` into the run folder at the end of a run. For a run that
predates the measurement, `python -m degradation.responses RUN_DIR...` measures the weights
of `checkpoints/last.ckpt` and writes the same file (it records which checkpoint and step).
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from degradation.models import conv3x3_bn_layers
from degradation.rundir import CHECKPOINTS, atomic_write_text, strict_json

LAYER_RESPONSES = "layer_responses.json"
MAX_IMAGES = 512


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
    """Std of each 3×3 layer's BN output, in forward order (`conv3x3_bn_layers`).

    images: N×C×H×W float, already normalised as the model sees them in training. Runs on the
    model's device in eval mode and restores every submodule's train/eval flag afterwards.
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


def validation_images(dm, max_images: int = MAX_IMAGES) -> torch.Tensor:
    """The first `max_images` validation images of an ImageDataModule, normalised, on the CPU."""
    idx = dm.val_idx[:max_images]
    return dm.normalize(dm.images.train_images[idx].float())


def measure_layer_responses(model: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """{"layers": [BN module names], "std": [floats or None where not finite], "num_images"}."""
    names = [name for name, _ in conv3x3_bn_layers(model)]
    stds = layer_response_std(model, images)
    return {
        "layers": names,
        "std": [s if math.isfinite(s) else None for s in stds],  # a diverged net gives NaN
        "num_images": len(images),
    }


def write_layer_responses(
    run_dir: Path, model: nn.Module, dm, step: int | None = None, source: str = "end of training"
) -> Path | None:
    """Measure and write RUN_DIR/layer_responses.json; returns its path.

    A failure here must not turn a finished training run into a failed one, so it is reported
    as a warning and the file is left out (the report then lists the run without responses).
    """
    try:
        record = measure_layer_responses(model, validation_images(dm))
    except Exception as err:  # see the docstring
        warnings.warn(f"layer responses not measured: {type(err).__name__}: {err}", stacklevel=2)
        return None
    record.update(step=step, source=source)
    path = Path(run_dir) / LAYER_RESPONSES
    atomic_write_text(path, strict_json(record))
    return path


def measure_run(run_dir: Path, checkpoint: str = "last.ckpt") -> Path | None:
    """Backfill layer_responses.json of a finished run from one of its checkpoints."""
    from omegaconf import OmegaConf

    from degradation.config import RunConfig, model_kwargs
    from degradation.data import ImageDataModule
    from degradation.errors import UserError
    from degradation.models import build_model

    run_dir = Path(run_dir)
    config_path, ckpt_path = run_dir / ".hydra" / "config.yaml", run_dir / CHECKPOINTS / checkpoint
    for needed in (config_path, ckpt_path):
        if not needed.is_file():
            raise UserError(f"{run_dir}: no {needed.relative_to(run_dir)}; is it a run folder?")
    cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.load(config_path))
    dm = ImageDataModule(cfg.data)
    model = build_model(**model_kwargs(cfg, dm.num_classes, dm.input_shape[0]))
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    model.load_state_dict(weights)
    return write_layer_responses(
        run_dir, model, dm, step=state.get("global_step"), source=f"{CHECKPOINTS}/{checkpoint}"
    )


def main(argv: list[str] | None = None) -> None:
    from degradation.errors import UserError

    run_dirs = sys.argv[1:] if argv is None else argv
    if not run_dirs:
        print("usage: python -m degradation.responses RUN_DIR...", file=sys.stderr)
        sys.exit(2)
    try:
        for run_dir in run_dirs:
            path = measure_run(Path(run_dir))
            print(f"{path or 'not measured'} <- {run_dir}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
