"""Loss landscape around the trained weights (Li et al. 2018, "Visualizing the Loss Landscape").

Two random directions d1, d2 in weight space, *filter-normalised*: each output filter of a conv
or linear weight, d_f, is rescaled to the norm of the matching weight filter, ||d_f|| = ||w_f||,
so a step of 1 moves every filter by its own size whatever its scale (BN would otherwise make
the picture depend on arbitrary weight scales). Directions of BN parameters and biases (every
1-D parameter) are zero, as in the paper's `ignore="biasbn"`.

The training loss L(w + a·d1 + b·d2) is measured for a, b on a grid of `steps` points in
[-span, span] (odd `steps`, so the trained weights are on the grid), with BN in eval mode and
no augmentation, on a fixed subset of training images normalised as in training:

    python -m degradation.analyze landscape RUN_DIR [--steps 21 --span 1.0 --subset 512 ...]

writes RUN_DIR/analysis/landscape.npz (alphas, loss_1d, error_1d, and with --two-d betas,
loss_2d[i, j] = L(alphas[i], betas[j]), error_2d; `options`, the JSON text of the options it
was measured with), landscape_1d.png and landscape_2d.png.

Nets are compared by the loss increase over their own central loss L0 = L(0, 0), not by a
ratio to it (a net that ends at a small L0 would look sharp): the figures draw L − L0, and
`summaries.landscape_summary` gives the mean increase at |α| = 0.25, 0.5, 1 and the curvature
of a quadratic fitted within ±0.5 (docs/analyses.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from degradation.analyze.plots import plot_landscape_1d, plot_landscape_2d
from degradation.analyze.trained import TrainedRun, evaluate
from degradation.errors import UserError
from degradation.rundir import write_landscape

EPS = 1e-10  # as Li et al.'s code: a zero random filter stays zero instead of dividing by 0


def random_direction(model: nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
    """Gaussian noise shaped like each parameter, drawn on the CPU (same numbers on any device)."""
    return [
        torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.device)
        for p in model.parameters()
    ]


@torch.no_grad()
def filter_normalize(direction: list[torch.Tensor], model: nn.Module) -> list[torch.Tensor]:
    """Scale each filter of `direction` to the norm of the model's matching weight filter, in
    place; zero the directions of 1-D parameters (BN weights and biases, biases)."""
    for d, w in zip(direction, model.parameters(), strict=True):
        if d.dim() <= 1:
            d.zero_()
            continue
        w_norm = w.detach().float().flatten(1).norm(dim=1)
        d_norm = d.flatten(1).norm(dim=1)
        d.mul_((w_norm / (d_norm + EPS)).view(-1, *[1] * (d.dim() - 1)))
    return direction


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
    return filter_normalize(random_direction(model, generator), model)


def grid(steps: int, span: float) -> np.ndarray:
    """`steps` points in [-span, span]; the middle one is exactly 0 (the trained weights)."""
    half = np.linspace(0.0, span, steps // 2 + 1)
    return np.concatenate([-half[:0:-1], half])


def check_options(steps: int, span: float, subset: int) -> None:
    if steps < 3 or steps % 2 == 0:
        raise UserError(
            f"--steps {steps} is not valid: it must be odd and >= 3 (e.g. 11, 21, 51), so the "
            "trained weights are a grid point"
        )
    if not (math.isfinite(span) and span > 0):
        raise UserError(f"--span {span} is not valid: it must be a finite number > 0 (e.g. 1.0)")
    if subset < 1:
        raise UserError(f"--subset {subset} is not valid: it must be >= 1 (e.g. 512)")


def training_subset(run: TrainedRun, subset: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`subset` training images picked with `seed` (all of them if there are fewer), normalised
    as in training, without augmentation, on the run's device."""
    dm = run.data
    pick = torch.randperm(len(dm.train_idx), generator=torch.Generator().manual_seed(seed))
    idx = dm.train_idx[pick[:subset]]
    images = dm.normalized(dm.images.train_images[idx]).to(run.device)
    return images, dm.images.train_labels[idx].to(run.device)


@torch.no_grad()
def loss_landscape(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int = 21,
    span: float = 1.0,
    two_d: bool = True,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Loss and error along d1 (1-D) and over the (d1, d2) plane (2-D) around the model's
    weights; the model is left with its own weights and train/eval flags afterwards."""
    check_options(steps, span, 1)
    params = list(model.parameters())
    origin = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(seed)
    d1 = filter_normalized_direction(model, generator)
    d2 = filter_normalized_direction(model, generator) if two_d else None
    alphas = grid(steps, span)
    # the 1-D line is the plane's b = 0 row: measured once, for both
    points = [(a, 0.0) for a in alphas]
    if two_d:
        points += [(a, b) for a in alphas for b in alphas if b != 0.0]
    modes = {m: m.training for m in model.modules()}
    model.eval()
    results: dict[tuple[float, float], tuple[float, float]] = {}
    try:
        for a, b in tqdm(points, desc="loss landscape", unit="point", disable=not progress):
            for i, p in enumerate(params):
                moved = origin[i] + float(a) * d1[i]
                p.copy_(moved + float(b) * d2[i] if b != 0.0 else moved)
            results[a, b] = evaluate(model, images, labels, batch_size)
    finally:
        for p, w in zip(params, origin, strict=True):
            p.copy_(w)
        for module, training in modes.items():
            module.training = training
    line = np.array([results[a, 0.0] for a in alphas], dtype=np.float64)  # (loss, error)
    out = {"alphas": alphas, "loss_1d": line[:, 0], "error_1d": line[:, 1]}
    if two_d:
        plane = np.array([[results[a, b] for b in alphas] for a in alphas], dtype=np.float64)
        out.update(betas=alphas.copy(), loss_2d=plane[..., 0], error_2d=plane[..., 1])
    return out


def landscape_options(
    run: TrainedRun, steps: int, span: float, subset: int, two_d: bool, seed: int
) -> dict[str, Any]:
    """What the landscape was measured with, as `python -m degradation.analyze landscape`
    takes it (recorded in landscape.npz, stated by the report's caption)."""
    return {"steps": steps, "span": span, "subset": subset, "two_d": two_d, "seed": seed,
            "checkpoint": run.checkpoint.stem, "device": run.device.type}  # fmt: skip


def landscape_run(
    run: TrainedRun,
    steps: int = 21,
    span: float = 1.0,
    subset: int = 512,
    two_d: bool = True,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = True,
) -> Path:
    """Measure one run's landscape and write landscape.npz and its PNGs; returns the .npz."""
    check_options(steps, span, subset)
    images, labels = training_subset(run, subset, seed)
    data: dict[str, Any] = loss_landscape(
        run.model, images, labels, steps, span, two_d, seed, batch_size, progress
    )
    data.update(
        name=np.array(run.name),
        depth=np.array(run.model.arch["depth"]),
        skip=np.array(run.model.arch["skip"]),
        checkpoint=np.array(run.checkpoint.name),
        step=np.array(-1 if run.step is None else run.step),
        seed=np.array(seed),
        span=np.array(span),
        num_images=np.array(len(labels)),
        options=np.array(json.dumps(landscape_options(run, steps, span, subset, two_d, seed))),
    )
    path = write_landscape(run.run_dir, data)
    out = run.out_dir
    plot_landscape_1d([data], out / "landscape_1d.png")
    if two_d:
        plot_landscape_2d([data], out / "landscape_2d.png")
    else:
        (out / "landscape_2d.png").unlink(missing_ok=True)  # not of these weights any more
    return path
