"""How far each variant got in its budget: seeds near chance, and curves still falling.

A deeper plain net that ends above a shallower one only *degrades* if its training error has
stopped falling; if it is still falling at the end, it trains slower at this budget, and more
steps could close the gap. The check fits a line (scipy.stats.linregress) to the variant's
mean training-error curve (metrics.csv's train/error windows, averaged over the seeds counted)
over the last quarter of its windows (at least 3): the curve is *still falling* when the
slope's one-sided (1 − alpha) upper bound is below 0 and the fitted fall over that stretch is
at least FALL_TOLERANCE; otherwise it has levelled off (a plateau, or noise around one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from degradation.report.runs import Variant
from degradation.report.stats import Trend, mean, trend

NEAR_CHANCE = 0.9  # a final training error at or above this fraction of chance error
LAST_PART = 0.25  # the stretch of windows the plateau check fits
MIN_WINDOWS = 4  # fewer windows in a curve: no check
# A fall under 1 pp over the last quarter of training is a plateau: half the default margin
# of "removed" (docs/reports.md), so another quarter of training at that pace could not move
# a comparison by the margin.
FALL_TOLERANCE = 0.01


def chance_error(v: Variant) -> float:
    """1 − 1/classes: the error of guessing."""
    run = v.runs[0]
    classes = run.config.get("data.synthetic.num_classes") if run.dataset == "synthetic" else None
    classes = classes if isinstance(classes, int) and classes >= 2 else None
    return 1 - 1 / (classes or {"cifar100": 100}.get(run.dataset, 10))


def near_chance(v: Variant) -> list[float]:
    """The final training errors of the variant's seeds at or above NEAR_CHANCE × chance."""
    errors = [r.final("train_error") for r in v.usable]
    return [e for e in errors if e is not None and e >= NEAR_CHANCE * chance_error(v)]


@dataclass(frozen=True)
class Ending:
    """The last stretch of a variant's mean training-error curve."""

    trend: Trend
    falling: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "still_falling": self.falling,
            "change_pp": 100 * self.trend.change,
            "slope_upper_per_step": self.trend.upper,
            "first_step": self.trend.first_step,
            "last_step": self.trend.last_step,
            "windows": self.trend.points,
            "tolerance_pp": 100 * FALL_TOLERANCE,
        }


def ending(v: Variant, alpha: float) -> Ending | None:
    """The plateau check of the module docstring; None without a curve of MIN_WINDOWS windows
    that every counted seed logged."""
    curves = [
        {step: e for step, e in r.metrics.get("train/error", []) if math.isfinite(e)}
        for r in v.usable
    ]
    if not curves or not all(curves):
        return None
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    if len(steps) < MIN_WINDOWS:
        return None
    last = steps[-max(3, math.ceil(LAST_PART * len(steps))) :]
    found = trend([(s, mean([c[s] for c in curves])) for s in last], alpha)
    if found is None:
        return None
    return Ending(found, found.upper < 0 and found.change <= -FALL_TOLERANCE)
