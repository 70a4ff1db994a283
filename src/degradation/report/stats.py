"""Mean ± sample standard deviation over seeds, the one summary statistic of the report."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None  # sample std (n - 1); None where n < 2
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def describe(values: Iterable[float | None]) -> Stat:
    """Mean, sample std and count of the finite values (None and NaN are left out)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return Stat(None, None, 0)
    return Stat(statistics.fmean(xs), statistics.stdev(xs) if len(xs) >= 2 else None, len(xs))


def spread(*stats: Stat) -> float | None:
    """The larger std of stats that all have n >= 2; None when any is a single seed."""
    if any(s.std is None for s in stats):
        return None
    return max(s.std for s in stats)


def percent(stat: Stat, digits: int = 2) -> str:
    """'8.75 ± 0.16' in % for a fraction-valued stat; '8.75' for one value; '—' for none."""
    if stat.mean is None:
        return "—"
    text = f"{100 * stat.mean:.{digits}f}"
    return f"{text} ± {100 * stat.std:.{digits}f}" if stat.std is not None else text
