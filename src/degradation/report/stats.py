"""The report's statistics: mean ± sample standard deviation over seeds (every table), and
Welch's unequal-variance comparison of two variants' seeds (the verdict)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy.stats import ttest_ind


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
    return Stat(mean(xs), _stdev(xs) if len(xs) >= 2 else None, len(xs))


def mean(xs: Sequence[float]) -> float:
    """statistics.mean: exact, so finite values near the float limit never overflow (fmean's
    float sum can, for values a hand-edited run folder may hold)."""
    return float(statistics.mean(xs))


def _stdev(xs: Sequence[float]) -> float:
    try:
        return statistics.stdev(xs)
    except OverflowError:  # a spread beyond the largest float
        return math.inf


def percent(stat: Stat, digits: int = 2) -> str:
    """'8.75 ± 0.16' in % for a fraction-valued stat; '8.75' for one value; '—' for none."""
    if stat.mean is None:
        return "—"
    text = f"{100 * stat.mean:.{digits}f}"
    return f"{text} ± {100 * stat.std:.{digits}f}" if stat.std is not None else text


@dataclass(frozen=True)
class Welch:
    """first − second: the difference of means, its two-sided CI and a one-sided p-value."""

    difference: float
    ci_low: float | None  # None where the test is undefined (see welch)
    ci_high: float | None
    p: float | None
    df: float | None  # Welch–Satterthwaite degrees of freedom


def welch(
    first: Sequence[float],
    second: Sequence[float],
    alternative: str,
    bound: float | None = 0.0,
    confidence: float = 0.95,
) -> Welch:
    """Welch's t-test (Welch 1947, via scipy.stats.ttest_ind with equal_var=False).

    The CI is two-sided at `confidence`; p is one-sided, for H1: mean(first) − mean(second)
    is `alternative` ("greater" or "less") than `bound` (shifting a sample by a constant
    leaves its variance alone, so this is Welch's test against that bound); no p where bound
    is None. Both are None with fewer than two values on a side, or when both sides hold
    identical values: the statistic is then 0/0 (scipy answers NaN, or noise from rounding).
    """
    difference = mean(first) - mean(second)
    if min(len(first), len(second)) < 2 or (
        max(first) == min(first) and max(second) == min(second)
    ):
        return Welch(difference, None, None, None, None)
    two_sided = ttest_ind(first, second, equal_var=False)
    ci = two_sided.confidence_interval(confidence)
    p = None
    if bound is not None:
        shifted = [x - bound for x in first]
        p = float(ttest_ind(shifted, second, equal_var=False, alternative=alternative).pvalue)
    return Welch(difference, float(ci.low), float(ci.high), p, float(two_sided.df))


def p_text(p: float | None) -> str:
    """A p-value for a table cell: two significant digits, '< 0.001' below that, '—' for none."""
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def p_phrase(p: float) -> str:
    """'p = 0.084' or 'p < 0.001', for a sentence."""
    text = p_text(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"
