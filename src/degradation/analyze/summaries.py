"""The numbers the analysis captions state, from what the analyses recorded (numpy only).

    landscape_summary(data)      loss increase at fixed distances and the curvature at the
                                 trained weights, each net against its own central loss
    headroom_lost(err, base, n)  a lesion's error rise as a fraction of the baseline's headroom
    lesion_summary(record)       the lesion study per net: baseline, chance, headroom lost
    gradient_summary(rms, rel)   per-layer medians over training, first and last layer

Why these and not the simpler ones: docs/analyses.md.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

# Distances along a filter-normalised direction at which the loss increase is reported (a step
# of 1 moves every filter by its own norm; Li et al. 2018 plot [-1, 1]).
RADII = (0.25, 0.5, 1.0)
# The curvature is fitted to the grid points within this distance of the trained weights.
FIT_RADIUS = 0.5


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# --- loss landscape ------------------------------------------------------------------------


def _axes(data: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(positions, loss) along each measured direction through the trained weights: d1 (the
    1-D line) and, with a 2-D grid, d2 (the plane's α = 0 column)."""
    alphas = np.asarray(data["alphas"], dtype=float)
    lines = [(alphas, np.asarray(data["loss_1d"], dtype=float))]
    if "loss_2d" in data:
        betas = np.asarray(data["betas"], dtype=float)
        centre = int(np.argmin(np.abs(alphas)))
        lines.append((betas, np.asarray(data["loss_2d"], dtype=float)[centre, :]))
    return lines


def curvature(positions: np.ndarray, loss: np.ndarray, radius: float = FIT_RADIUS) -> float:
    """Second derivative at 0 of the least-squares quadratic a + b·t + (κ/2)·t² fitted to the
    points with |t| <= radius (at least the three nearest 0): κ. The linear term absorbs a tilt
    (the trained weights are a minimum of the whole training set, not of the subset measured);
    NaN if fewer than three finite points."""
    keep = np.isfinite(loss)
    t, y = positions[keep], loss[keep]
    order = np.argsort(np.abs(t))
    near = order[np.abs(t[order]) <= radius + 1e-12]
    if len(near) < 3:
        near = order[:3]
    if len(near) < 3:
        return math.nan
    return 2.0 * float(np.polyfit(t[near], y[near], 2)[0])


def landscape_summary(data: dict[str, Any], radii=RADII) -> dict[str, Any]:
    """{"central_loss": L0, "increase": {r: mean L(±r) − L0 over the directions}, "curvature":
    mean κ over the directions}. Each net against its own central loss: an additive increase,
    not a ratio (a ratio to a small L0 makes a well-trained net look sharp). L(±r) is linearly
    interpolated between grid points; a radius beyond the grid is None."""
    lines = _axes(data)
    alphas = lines[0][0]
    central = float(np.asarray(data["loss_1d"], dtype=float)[int(np.argmin(np.abs(alphas)))])
    increase: dict[float, float | None] = {}
    for r in radii:
        if r > float(np.max(np.abs(alphas))) + 1e-12:
            increase[r] = None
            continue
        values = [np.interp(side * r, t, y) for t, y in lines for side in (-1.0, 1.0)]
        increase[r] = _finite(np.mean(values) - central)
    kappa = float(np.mean([curvature(t, y) for t, y in lines]))
    return {"central_loss": _finite(central), "increase": increase, "curvature": _finite(kappa)}


# --- lesion study --------------------------------------------------------------------------


def chance_error(num_classes: int) -> float:
    """The error of a uniform guess among `num_classes` balanced classes: 1 − 1/classes."""
    return 1.0 - 1.0 / num_classes


def headroom_lost(error: float | None, baseline: float | None, num_classes: int) -> float | None:
    """(error − baseline) / (chance − baseline): 0 = deleting the block changes nothing, 1 =
    the net falls to chance. None without a headroom (baseline at or above chance) or a value."""
    if error is None or baseline is None:
        return None
    headroom = chance_error(num_classes) - baseline
    return (error - baseline) / headroom if headroom > 0 else None


def lesion_summary(record: dict[str, Any]) -> dict[str, Any]:
    """One net's lesion study: baseline and chance error, each deleted block's fraction of the
    headroom lost (`headroom_lost`), their mean and maximum, the mean rise in error points."""
    baseline = record["baseline"]["test_error"]
    classes = record.get("num_classes")
    deleted = [b for b in record["blocks"] if b["deleted"] and b["test_error"] is not None]
    lost = [headroom_lost(b["test_error"], baseline, classes) if classes else None
            for b in deleted]  # fmt: skip
    lost = [x for x in lost if x is not None]
    rises = [b["test_error"] - baseline for b in deleted] if baseline is not None else []
    return {
        "baseline_error": baseline,
        "chance_error": chance_error(classes) if classes else None,
        "mean_rise": float(np.mean(rises)) if rises else None,
        "mean_lost": float(np.mean(lost)) if lost else None,
        "max_lost": float(np.max(lost)) if lost else None,
        "not_deletable": sum(not b["deleted"] for b in record["blocks"]),
    }


# --- gradient flow -------------------------------------------------------------------------


def gradient_summary(rms: np.ndarray, rel: np.ndarray) -> dict[str, Any]:
    """Medians over the recordings (recordings × layers arrays): per layer, and the first and
    last layer's relative update and RMS gradient."""
    with warnings.catch_warnings():  # a layer without one finite value: NaN, said as n/a
        warnings.simplefilter("ignore", RuntimeWarning)
        rms_profile = np.nanmedian(np.where(np.isfinite(rms), rms, np.nan), axis=0)
        rel_profile = np.nanmedian(np.where(np.isfinite(rel), rel, np.nan), axis=0)
    return {
        "rms": rms_profile,
        "rel": rel_profile,
        "first_rel": _finite(rel_profile[0]),
        "last_rel": _finite(rel_profile[-1]),
        "first_rms": _finite(rms_profile[0]),
        "last_rms": _finite(rms_profile[-1]),
    }
