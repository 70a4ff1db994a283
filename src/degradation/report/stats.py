"""The report's statistics: mean ± sample standard deviation over seeds (every table); for the
verdict, Welch's unequal-variance test of two variants' seeds and of a contrast of four (the
difference in differences), Holm's adjustment over a family of tests, and the slope of a
training curve's end."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy.stats import linregress, ttest_ind
from scipy.stats import t as t_dist


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
    """first − second: the difference of means, its one-sided bound and one-sided p-value (in
    the claim's direction), and its two-sided CI (report.json only)."""

    difference: float
    bound: float | None  # one-sided: difference >= bound ("greater") or <= bound ("less")
    ci_low: float | None  # None where the test is undefined (see welch)
    ci_high: float | None
    p: float | None
    df: float | None  # Welch–Satterthwaite degrees of freedom


def welch(
    first: Sequence[float],
    second: Sequence[float],
    alternative: str,
    margin: float = 0.0,
    alpha: float = 0.05,
) -> Welch:
    """Welch's t-test (Welch 1947, via scipy.stats.ttest_ind with equal_var=False).

    p is one-sided, for H1: mean(first) − mean(second) is `alternative` ("greater" or "less")
    than `margin` (shifting a sample by a constant leaves its variance alone, so this is Welch's
    test against that margin). The bound is the matching one-sided (1 − alpha) confidence bound
    of the difference; the CI the two-sided (1 − alpha) interval. All are None with fewer than
    two values on a side, or when both sides hold identical values: the statistic is then 0/0
    (scipy answers NaN, or noise from rounding).
    """
    difference = mean(first) - mean(second)
    if min(len(first), len(second)) < 2 or (
        max(first) == min(first) and max(second) == min(second)
    ):
        return Welch(difference, None, None, None, None, None)
    two_sided = ttest_ind(first, second, equal_var=False)
    ci = two_sided.confidence_interval(1 - alpha)
    one_sided = ttest_ind(first, second, equal_var=False, alternative=alternative)
    side = one_sided.confidence_interval(1 - alpha)
    bound = side.low if alternative == "greater" else side.high
    shifted = [x - margin for x in first]
    p = ttest_ind(shifted, second, equal_var=False, alternative=alternative).pvalue
    return Welch(
        difference, float(bound), float(ci.low), float(ci.high), float(p), float(two_sided.df)
    )


@dataclass(frozen=True)
class Contrast:
    """A linear combination of independent group means, tested for H1: contrast > 0."""

    estimate: float
    bound: float | None  # one-sided (1 − alpha) lower confidence bound
    ci_low: float | None  # two-sided (1 − alpha) interval
    ci_high: float | None
    p: float | None  # one-sided
    df: float | None


def contrast(groups: Sequence[Sequence[float]], weights: Sequence[float], alpha: float = 0.05):
    """Welch's t-test of a contrast of k independent means, H1: Σ w_i·mean_i > 0.

    scipy.stats has no ready function for a contrast of more than two groups, so it is written
    here: t = Σ w_i·m_i / sqrt(Σ w_i²·s_i²/n_i) with Satterthwaite's degrees of freedom for a
    linear combination of variances (Satterthwaite 1946, Biometrics Bulletin 2:110-114; Welch
    1947), df = (Σ v_i)² / Σ v_i²/(n_i − 1), v_i = w_i²·s_i²/n_i; its distribution is
    scipy.stats.t. With two groups and weights (1, −1) it is ttest_ind(equal_var=False).
    Undefined (None) with fewer than two values in a group or no spread in any.
    """
    estimate = sum(w * mean(g) for w, g in zip(weights, groups, strict=True))
    if min(len(g) for g in groups) < 2:
        return Contrast(estimate, None, None, None, None, None)
    parts = [w * w * statistics.variance(g) / len(g) for w, g in zip(weights, groups, strict=True)]
    variance = sum(parts)
    if variance == 0:
        return Contrast(estimate, None, None, None, None, None)
    df = variance**2 / sum(v * v / (len(g) - 1) for v, g in zip(parts, groups, strict=True))
    se = math.sqrt(variance)
    two_sided = t_dist.ppf(1 - alpha / 2, df) * se
    return Contrast(
        estimate,
        estimate - float(t_dist.ppf(1 - alpha, df)) * se,
        estimate - float(two_sided),
        estimate + float(two_sided),
        float(t_dist.sf(estimate / se, df)),
        float(df),
    )


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979, Scand. J. Statist. 6:65-70): the family-
    wise error rate stays at alpha for any dependence between the tests. scipy.stats has only
    false-discovery-rate adjustments (false_discovery_control), so it is written here: sort the
    m p-values, multiply the i-th smallest (from 0) by m − i, cap at 1, keep them monotone."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted = [1.0] * len(ps)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def smallest_exact_p(n1: int, n2: int) -> float:
    """The smallest one-sided p an exact permutation or rank test (e.g. Mann–Whitney's) can
    give for n1 v n2 untied values: one of the C(n1 + n2, n1) ways to split them (3 v 3:
    1/20 = 0.05). Welch's t can go lower only by assuming the values are normal."""
    return 1 / math.comb(n1 + n2, n1)


@dataclass(frozen=True)
class Trend:
    """A least-squares line through the last points of a curve (scipy.stats.linregress)."""

    slope: float  # per step
    upper: float  # one-sided (1 − alpha) upper confidence bound of the slope
    change: float  # slope × the steps the points span: the fitted change over them
    first_step: int
    last_step: int
    points: int


def trend(points: Sequence[tuple[int, float]], alpha: float = 0.05) -> Trend | None:
    """The fitted line through `points` (step, value); None with fewer than 3 points (no
    spread to bound the slope by) or a single step."""
    if len(points) < 3 or len({s for s, _ in points}) < 2:
        return None
    steps, values = zip(*points, strict=True)
    fit = linregress(steps, values)
    upper = fit.slope + float(t_dist.ppf(1 - alpha, len(points) - 2)) * fit.stderr
    span = max(steps) - min(steps)
    return Trend(float(fit.slope), float(upper), float(fit.slope * span), min(steps), max(steps),
                 len(points))  # fmt: skip


def p_text(p: float | None) -> str:
    """A p-value for a table cell: two significant digits, '< 0.001' and '> 0.99' beyond
    them, '—' for none."""
    if p is None:
        return "—"
    if p > 0.99:  # two digits would round it to 1, which a p-value of a t-test never is
        return "> 0.99"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def p_phrase(p: float) -> str:
    """'p = 0.084', 'p < 0.001' or 'p > 0.99', for a sentence."""
    text = p_text(p)
    return f"p {text}" if text[0] in "<>" else f"p = {text}"
