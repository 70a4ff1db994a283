"""One comparison of the verdict: two variants' seeds, a claim about them, and the evidence.

A claim says the first variant's mean final training error is above ("greater") or below
("less") the second's, shifted by a bound (0, or a margin). Runs that trained give the
numbers (`stats.welch`); runs that diverged or failed are counted and named, never dropped.
The evidence rules are stated in `degradation.report.verdict`'s docstring.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from degradation.report.runs import Variant
from degradation.report.stats import describe, mean, p_phrase, welch

ALPHA = 0.05
MIN_SEEDS = 3  # on each side, for "established"
CONFIDENCE = 0.95
NOT_ENOUGH = "not enough runs"
# evidence kinds, weakest first: a claim resting on several comparisons is as strong as its
# weakest (see verdict's docstring for why this order)
STRENGTH = ("not established", "single seed", "qualitative", "suggestive", "established")


@dataclass(frozen=True)
class Sample:
    """One variant's outcome: the final training errors of the seeds that trained, and why
    each other run gave none."""

    label: str
    runs: int
    errors: tuple[float, ...]
    diverged_steps: tuple[int | None, ...]
    failed_reasons: tuple[str, ...]
    other: tuple[str, ...]  # e.g. "with status 'running'"

    @property
    def n(self) -> int:
        return len(self.errors)

    @property
    def mean(self) -> float:
        return mean(self.errors)

    @property
    def failed_to_train(self) -> bool:
        """No seed trained and at least one diverged: a result about the net itself."""
        return not self.errors and bool(self.diverged_steps)

    @property
    def no_result(self) -> bool:
        """No seed trained and none diverged (crashed or unfinished): says nothing of the net."""
        return not self.errors and not self.diverged_steps

    def losses(self) -> str:
        """'2 of 3 seeds diverged at steps 120, 340; 1 of 3 runs failed (...)', or ''."""
        parts = []
        if self.diverged_steps:
            steps = sorted(self.diverged_steps, key=lambda s: (s is None, s or 0))
            shown = ", ".join("?" if s is None else str(s) for s in steps)
            plural = "s" if len(steps) > 1 else ""
            parts.append(f"{len(steps)} of {self.runs} seeds diverged at step{plural} {shown}")
        if self.failed_reasons:
            reasons = "; ".join(dict.fromkeys(self.failed_reasons))
            parts.append(f"{len(self.failed_reasons)} of {self.runs} runs failed ({reasons})")
        for why, count in Counter(self.other).items():
            parts.append(f"{count} of {self.runs} runs {why}")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.label,
            "runs": self.runs,
            "n": self.n,
            "train_error": describe(self.errors).as_dict(),
            "diverged": len(self.diverged_steps),
            "diverged_steps": list(self.diverged_steps),
            "failed": len(self.failed_reasons),
            "failed_reasons": list(self.failed_reasons),
            "other": list(self.other),
            "losses": self.losses(),
        }


def sample_of(v: Variant) -> Sample:
    errors, diverged, failed, other = [], [], [], []
    for run in v.runs:
        error = run.final("train_error")
        if run.usable and error is not None:
            errors.append(error)
        elif run.status == "diverged":
            diverged.append(run.summary.get("diverged_step"))
        elif run.status == "failed":
            failed.append(run.reason)
        elif run.usable:
            other.append("completed without a final training error")
        else:
            other.append(f"with status {run.status!r}")
    return Sample(v.label, len(v.runs), *map(tuple, (errors, diverged, failed, other)))


def kind(evidence: str | None) -> str:
    """The evidence label without its reason: 'not established (p = 0.2)' -> 'not established'."""
    return (evidence or NOT_ENOUGH).split(" (")[0]


def strength(evidence: str | None) -> int:
    return STRENGTH.index(kind(evidence)) if kind(evidence) in STRENGTH else -1


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def compare(
    first: Sample,
    second: Sample,
    alternative: str,
    test_bound: float | None = 0.0,
    point_bound: float | None = 0.0,
    untested: str = "",
) -> dict[str, Any]:
    """The numbers and evidence label of the claim: mean(first) − mean(second) is
    `alternative` ("greater"/"less") than point_bound (the direction) and than test_bound
    (the one-sided test). point_bound None: the direction holds whenever both sides trained,
    and `untested` says why there is no test (its label is then qualitative)."""
    claimed_lower = second if alternative == "greater" else first
    claimed_higher = first if alternative == "greater" else second
    out: dict[str, Any] = {
        "first": first.label,
        "second": second.label,
        "alternative": alternative,
        "bound_pp": None if test_bound is None else 100 * test_bound,
        "difference_pp": None,
        "ci_low_pp": None,
        "ci_high_pp": None,
        "confidence": CONFIDENCE,
        "p_one_sided": None,
        "alpha": ALPHA,
        "df": None,
        "n_first": first.n,
        "n_second": second.n,
        "runs": [first.as_dict(), second.as_dict()],
    }
    if first.no_result or second.no_result:
        return {**out, "holds": None, "evidence": NOT_ENOUGH}
    if first.failed_to_train and second.failed_to_train:
        return {**out, "holds": None, "evidence": f"{NOT_ENOUGH} (both failed to train)"}
    if first.failed_to_train or second.failed_to_train:
        failed = first if first.failed_to_train else second
        holds = failed is claimed_higher  # a net that does not train is worse than any that does
        return {**out, "holds": holds, "evidence": f"qualitative ({failed.label} failed to train)"}
    test = welch(first.errors, second.errors, alternative, test_bound, CONFIDENCE)
    out.update(
        difference_pp=100 * test.difference,
        ci_low_pp=None if test.ci_low is None else 100 * test.ci_low,
        ci_high_pp=None if test.ci_high is None else 100 * test.ci_high,
        p_one_sided=test.p,
        df=test.df,
    )
    if point_bound is None:
        return {**out, "holds": True, "evidence": f"qualitative ({untested})"}
    holds = (
        test.difference > point_bound
        if alternative == "greater"
        else (test.difference < point_bound)
    )
    return {
        **out,
        "holds": holds,
        "evidence": _evidence(test.p, first, second, holds, claimed_lower),
    }


def _evidence(p: float | None, first: Sample, second: Sample, holds: bool, lower: Sample) -> str:
    """The label of a claim both sides trained for (rules: verdict's docstring)."""
    if holds and lower.diverged_steps:  # the test saw only the seeds that survived
        lost = len(lower.diverged_steps)
        return f"not established ({lost} of {lower.runs} {lower.label} seeds diverged)"
    fewest = min(first.n, second.n)
    if fewest < 2:
        return "single seed"
    if p is None:
        return "not established (no variation between seeds)"
    if not holds or (fewest >= MIN_SEEDS and p >= ALPHA):
        return f"not established ({p_phrase(p)})"
    if fewest < MIN_SEEDS:
        return f"suggestive (n = {first.n} and {second.n})"
    return "established"


def numbers(c: dict[str, Any], with_p: bool = True) -> str:
    """'+1.50 pp, 95 % CI -1.54 to +4.54 pp, one-sided p = 0.084, n = 3 and 3'."""
    text = f"{c['difference_pp']:+.2f} pp"
    if c["ci_low_pp"] is not None:
        text += f", 95 % CI {c['ci_low_pp']:+.2f} to {c['ci_high_pp']:+.2f} pp"
    if c["p_one_sided"] is not None and with_p:
        text += f", one-sided {p_phrase(c['p_one_sided'])}"
    elif c["ci_low_pp"] is None:
        text += ", no CI or test"
    if "n = " not in c["evidence"]:
        text += f", n = {c['n_first']} and {c['n_second']}"
    return text


def loss_note(*samples: Sample) -> str:
    """' plain-110: 2 of 3 seeds diverged at step 120, 340.' for the samples that trained
    but lost runs (a sample that did not train says so in its clause), or ''."""
    notes = [f"{s.label}: {s.losses()}" for s in dict.fromkeys(samples) if s.n and s.losses()]
    return (" " + "; ".join(notes) + ".") if notes else ""


def qualitative_clause(first: Sample, second: Sample, holds: bool, findings: tuple[str, str]):
    """'plain-110 failed to train: 3 of 3 seeds diverged at ..., while plain-56 trained
    (12.00 %, n = 3): <finding>' for a comparison where one side failed to train."""
    failed, trained = (first, second) if first.failed_to_train else (second, first)
    return (
        f"{failed.label} failed to train: {failed.losses()}, while {trained.label} trained "
        f"({pct(trained.mean)}, n = {trained.n}): {findings[0] if holds else findings[1]}"
    )


def unjudged_clause(first: Sample, second: Sample) -> str:
    if first.failed_to_train and second.failed_to_train:
        return (
            f"{first.label} and {second.label} both failed to train ({first.label}: "
            f"{first.losses()}; {second.label}: {second.losses()}): {NOT_ENOUGH} to compare"
        )
    empty = first if first.no_result else second
    reason = empty.losses() or "no runs"
    return (
        f"{first.label} vs {second.label}: {NOT_ENOUGH}, as {empty.label} has no result: {reason}"
    )
