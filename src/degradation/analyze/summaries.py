"""The numbers the analysis captions state, from what the analyses recorded.

Per run:
    landscape_summary(data)      loss increase at fixed distances and the curvature at the
                                 trained weights, each net against its own central loss
    headroom_lost(err, base, n)  a lesion's error rise as a fraction of the baseline's headroom
    lesion_summary(record, blocks)  the lesion study per net (over the given blocks only):
                                 baseline, chance, headroom lost
    gradient_summary(rms, rel)   per-layer medians over training, first and last layer
    early_explosion(steps, layers, rms, rel)  the layers whose weights at least double early
Over the seeds of a variant, and between variants:
    spread(values)               n, mean, sample std and the values themselves
    common_blocks(records)       the blocks deleted in every lesion record (like for like)
    compare_curvature(plain, residual)  Welch's t-test of the curvature over seeds: sharper,
                                 flatter or no clear difference

Why these and not the simpler ones: docs/analyses.md.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Sequence
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


def deleted_blocks(record: dict[str, Any]) -> list[str]:
    """The names of the blocks the lesion record deleted (with a measured error), in order."""
    return [b["block"] for b in record["blocks"] if b["deleted"] and b["test_error"] is not None]


def common_blocks(records: Sequence[dict[str, Any]]) -> list[str]:
    """The blocks deleted in every record, in the first record's order: the set over which
    nets are compared like for like (a plain net's shape-changing blocks cannot be deleted,
    a residual net's can; a mean over different blocks compares different things)."""
    if not records:
        return []
    shared = set.intersection(*(set(deleted_blocks(r)) for r in records))
    return [name for name in deleted_blocks(records[0]) if name in shared]


def lesion_summary(record: dict[str, Any], blocks: Collection[str] | None = None) -> dict[str, Any]:
    """One net's lesion study: baseline and chance error, each deleted block's fraction of the
    headroom lost (`headroom_lost`), their mean and maximum, the mean rise in error points;
    over `blocks` only when given (e.g. `common_blocks` of the nets compared)."""
    baseline = record["baseline"]["test_error"]
    classes = record.get("num_classes")
    deleted = [b for b in record["blocks"] if b["deleted"] and b["test_error"] is not None
               and (blocks is None or b["block"] in blocks)]  # fmt: skip
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
        "blocks_used": len(deleted),
    }


# --- gradient flow -------------------------------------------------------------------------


def gradient_summary(rms: np.ndarray, rel: np.ndarray) -> dict[str, Any]:
    """Medians over the recordings (recordings × layers arrays): per layer, and the first and
    last layer's relative gradient ‖g‖/‖w‖ and RMS gradient."""
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


# Early explosion: a layer's RMS weight ‖w‖/√n at least doubles within the first EARLY_SHARE
# of the recorded steps. For a conv followed by BN the gradient is orthogonal to w, so every
# step lengthens w (‖w + Δ‖² = ‖w‖² + ‖Δ‖²) and only steps of the order of the weights
# themselves can double it within a few steps; weight decay only shrinks w (by lr·λ/(1 − μ) =
# 1e-4 per step at lr 0.1, μ 0.9, λ 1e-4). The doubled weights then shrink the relative
# gradient of the same layer (its gradient scales as 1/‖w‖): "the early layers move little"
# is then the aftermath of an explosion, not a vanishing gradient (docs/analyses.md).
EXPLOSION_GROWTH = 2.0
EARLY_SHARE = 0.25


def weight_rms(rms: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """The RMS weight ‖w‖/√n of each layer at each recording: (‖g‖/√n) / (‖g‖/‖w‖)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.asarray(rms, dtype=float) / np.asarray(rel, dtype=float)
    weight[~np.isfinite(weight) | (weight <= 0)] = np.nan
    return weight


def early_explosion(
    steps: Sequence[int], layers: Sequence[str], rms: np.ndarray, rel: np.ndarray
) -> dict[str, Any]:
    """Whether the run's weights exploded early, from grad_norms.csv's first rows: the layers
    whose RMS weight grows by EXPLOSION_GROWTH or more from the first recording to the largest
    within the first EARLY_SHARE of the recorded steps (at least the first two recordings),
    and the first layer's (the stem's) relative gradient at the first recording, its RMS
    weight then and at its early peak."""
    steps = np.asarray(steps)
    weight = weight_rms(rms, rel)
    window = steps <= steps[0] + EARLY_SHARE * (steps[-1] - steps[0])
    window[: min(2, len(steps))] = True
    with warnings.catch_warnings():  # a layer without a finite weight: never flagged
        warnings.simplefilter("ignore", RuntimeWarning)
        peak = np.nanmax(weight[window], axis=0)
        growth = peak / weight[0]
    exploded = [name for name, g in zip(layers, growth, strict=True) if g >= EXPLOSION_GROWTH]
    early = weight[window, 0]
    at = int(np.nanargmax(early)) if np.isfinite(early).any() else 0
    return {
        "exploded": bool(exploded),
        "layers": exploded,
        "num_layers": len(layers),
        "window_end_step": int(steps[window][-1]),
        "first_layer": layers[0],
        "first_rel_at_start": _finite(np.asarray(rel, dtype=float)[0, 0]),
        "first_weight_start": _finite(weight[0, 0]),
        "first_weight_peak": _finite(early[at]),
        "first_peak_step": int(steps[window][at]),
    }


# --- over the seeds of a variant, and between variants ------------------------------------


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """{"n", "mean", "std", "values"} over the finite values (the sample standard deviation,
    n − 1 in the denominator; None below two values); "values" keeps every value given, in
    order, None for a missing one."""
    kept = [float(v) for v in values if v is not None and math.isfinite(v)]
    return {
        "n": len(kept),
        "mean": float(np.mean(kept)) if kept else None,
        "std": float(np.std(kept, ddof=1)) if len(kept) >= 2 else None,
        "values": [None if v is None or not math.isfinite(v) else float(v) for v in values],
    }


ALPHA = 0.05  # two-sided level of the curvature comparison
WELCH = "Welch's t-test, two-sided (scipy.stats.ttest_ind, equal_var=False)"


def compare_curvature(plain: Sequence[float], residual: Sequence[float]) -> dict[str, Any]:
    """The residual net's curvature κ against its plain twin's, over their seeds:
    {"outcome": "sharper" | "flatter" (the residual net, Welch p < ALPHA) | "no clear
    difference" (p >= ALPHA) | "not tested" (fewer than two seeds a side, or no spread at
    all), "p", "t", "df", "n_plain", "n_residual", "test", "alpha"}."""
    plain = [float(k) for k in plain if k is not None and math.isfinite(k)]
    residual = [float(k) for k in residual if k is not None and math.isfinite(k)]
    result: dict[str, Any] = {"outcome": "not tested", "p": None, "t": None, "df": None,
                              "n_plain": len(plain), "n_residual": len(residual),
                              "test": WELCH, "alpha": ALPHA}  # fmt: skip
    if min(len(plain), len(residual)) < 2:
        return result
    from scipy import stats  # the report's own test; imported only where it is needed

    with warnings.catch_warnings():  # no spread on either side: p is NaN, said as not tested
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_ind(residual, plain, equal_var=False)
    p = _finite(test.pvalue)
    if p is None:
        return result
    sign = "sharper" if float(np.mean(residual)) > float(np.mean(plain)) else "flatter"
    df = getattr(test, "df", None)
    return {**result, "outcome": sign if p < ALPHA else "no clear difference", "p": p,
            "t": _finite(test.statistic), "df": None if df is None else _finite(df)}  # fmt: skip
