"""One comparison of the verdict: variants' seeds, a claim about them, and the evidence.

A two-variant claim says the first variant's mean final training error is above ("greater")
or below ("less") the second's, shifted by a margin (0, or the non-inferiority margin); the
difference in differences is a claim about four variants (`did`). Runs that trained give the
numbers (`stats.welch`, `stats.contrast`); runs that diverged or failed are counted and named,
never dropped. The evidence rules are stated in `degradation.report.verdict`'s docstring.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from degradation.report.runs import Variant
from degradation.report.stats import (
    contrast,
    describe,
    mean,
    p_phrase,
    p_text,
    smallest_exact_p,
    welch,
)

NOT_ENOUGH = "not enough runs"
# evidence kinds, weakest first. An untested result (one seed, or a side that failed to train)
# ranks below every tested one; "underpowered" (too few seeds for an exact test to reach
# alpha) ranks below the same result with enough seeds, so deleting seeds never raises a label
# through n (p itself may still fall when an outlying seed goes).
STRENGTH = (
    "single seed",
    "qualitative",
    "not established, underpowered",
    "not established",
    "established, underpowered",
    "established",
)


@dataclass(frozen=True)
class Sample:
    """One variant's outcome: the final training errors of the seeds that trained, and why
    each other seed gave none."""

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
    """The variant's seeds (each once: `runs.group_runs`) as a Sample."""
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


def is_established(evidence: str | None) -> bool:
    return kind(evidence).startswith("established")


def underpowered(ns: list[int], alpha: float) -> bool:
    """Too few seeds for any exact test of a difference in them to reach alpha (stats.
    smallest_exact_p); a four-variant contrast is as underpowered as either difference in it."""
    pairs = [ns] if len(ns) == 2 else [ns[:2], ns[2:]]
    return any(smallest_exact_p(*pair) >= alpha for pair in pairs)


def pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _base(labels: list[str], samples: list[Sample], alpha: float) -> dict[str, Any]:
    return {
        "variants": labels,
        "difference_pp": None,
        "bound_pp": None,  # one-sided (1 − alpha) confidence bound of the difference
        "ci_low_pp": None,  # two-sided (1 − alpha), report.json only
        "ci_high_pp": None,
        "confidence": 1 - alpha,
        "p_one_sided": None,
        "p_holm": None,  # set over the study's family (verdict.judge)
        "established_holm": None,
        "alpha": alpha,
        "df": None,
        "n": [s.n for s in samples],
        "runs": [s.as_dict() for s in samples],
    }


def _untested(samples: list[Sample], higher: list[Sample]) -> tuple[bool | None, str] | None:
    """(holds, evidence) where a sample has no errors to test, else None. `higher`: the
    samples the claim says end higher (a net that does not train is worse than any that does)."""
    if any(s.no_result for s in samples):
        return None, NOT_ENOUGH
    failed = [s for s in samples if s.failed_to_train]
    if len(failed) > 1:
        return None, f"{NOT_ENOUGH} ({' and '.join(s.label for s in failed)} failed to train)"
    if failed:
        return failed[0] in higher, f"qualitative ({failed[0].label} failed to train)"
    return None


def compare(
    first: Sample, second: Sample, alternative: str, alpha: float, margin: float = 0.0
) -> dict[str, Any]:
    """The numbers and evidence label of the claim H1: mean(first) − mean(second) is
    `alternative` ("greater"/"less") than margin (fractions; numbers out in pp)."""
    out = _base([first.label, second.label], [first, second], alpha)
    out.update(first=first.label, second=second.label, alternative=alternative)
    out.update(margin_pp=100 * margin, n_first=first.n, n_second=second.n)
    claimed_lower = second if alternative == "greater" else first
    claimed_higher = first if alternative == "greater" else second
    untested = _untested([first, second], [claimed_higher])
    if untested:
        holds, evidence = untested
        return {**out, "holds": holds, "evidence": evidence}
    test = welch(first.errors, second.errors, alternative, margin, alpha)
    out.update(
        difference_pp=100 * test.difference,
        bound_pp=None if test.bound is None else 100 * test.bound,
        ci_low_pp=None if test.ci_low is None else 100 * test.ci_low,
        ci_high_pp=None if test.ci_high is None else 100 * test.ci_high,
        p_one_sided=test.p,
        df=test.df,
    )
    holds = test.difference > margin if alternative == "greater" else test.difference < margin
    lost = claimed_lower.diverged_steps if holds else ()
    reason = f"{len(lost)} of {claimed_lower.runs} {claimed_lower.label} seeds diverged"
    evidence = _evidence(test.p, [first.n, second.n], alpha, reason if lost else "")
    return {**out, "holds": holds, "evidence": evidence}


def did(plain: tuple[Sample, Sample], skip: tuple[Sample, Sample], alpha: float) -> dict[str, Any]:
    """'Reduced': H1: (plain-d2 − plain-d1) − (skip-d2 − skip-d1) > 0, a Welch test of the
    contrast of four independent means (stats.contrast); samples as (shallow, deep)."""
    (p1, p2), (s1, s2) = plain, skip
    samples = [p2, p1, s2, s1]
    out = _base([s.label for s in samples], samples, alpha)
    out.update(alternative="greater", margin_pp=0.0)
    untested = _untested(samples, [p2, s1])  # the deeper plain net, the shallower skip net
    if untested:
        holds, evidence = untested
        return {**out, "holds": holds, "evidence": evidence}
    test = contrast([s.errors for s in samples], [1, -1, -1, 1], alpha)
    out.update(
        difference_pp=100 * test.estimate,
        bound_pp=None if test.bound is None else 100 * test.bound,
        ci_low_pp=None if test.ci_low is None else 100 * test.ci_low,
        ci_high_pp=None if test.ci_high is None else 100 * test.ci_high,
        p_one_sided=test.p,
        df=test.df,
    )
    holds = test.estimate > 0
    lost = [s for s in (p1, s2) if s.diverged_steps] if holds else []  # claimed lower
    reason = "; ".join(
        f"{len(s.diverged_steps)} of {s.runs} {s.label} seeds diverged" for s in lost
    )
    evidence = _evidence(test.p, [s.n for s in samples], alpha, reason)
    return {**out, "holds": holds, "evidence": evidence}


def _evidence(p: float | None, ns: list[int], alpha: float, lost: str) -> str:
    """The label of a claim every side trained for (rules: verdict's docstring)."""
    if min(ns) < 2:
        return "single seed"
    weak = ", underpowered" if underpowered(ns, alpha) else ""
    if lost:  # the test saw only the seeds that survived on the side claimed lower
        return f"not established{weak} ({lost})"
    if p is None:
        return f"not established{weak} (no variation between seeds)"
    if p < alpha:
        return f"established{weak}"
    return f"not established{weak} ({p_phrase(p)})"


def p_with_holm(c: dict[str, Any]) -> str:
    """'p = 0.0013, Holm 0.0052' (or 'p < 0.001, Holm 0.004'), '' without a test."""
    if c["p_one_sided"] is None:
        return ""
    text = p_phrase(c["p_one_sided"])
    if c["p_holm"] is not None:
        text += f", Holm {p_text(c['p_holm'])}"
    return text


def bound_phrase(c: dict[str, Any]) -> str:
    """'one-sided 95 % bound ≥ +10.35 pp' ('≤' for a claim that something is lower), ''
    without a test."""
    if c["bound_pp"] is None:
        return ""
    sign = "≥" if c["alternative"] == "greater" else "≤"
    return f"one-sided {100 * c['confidence']:.0f} % bound {sign} {c['bound_pp']:+.2f} pp"


def loss_note(*samples: Sample) -> str:
    """' plain-110: 2 of 3 seeds diverged at step 120, 340.' for the samples that trained
    but lost runs (a sample that did not train says so in its clause), or ''."""
    notes = [f"{s.label}: {s.losses()}" for s in dict.fromkeys(samples) if s.n and s.losses()]
    return (" Not in the test: " + "; ".join(notes) + ".") if notes else ""


def qualitative_clause(failed: Sample, trained: Sample) -> str:
    """'plain-110 failed to train (3 of 3 seeds diverged at ...), while plain-56 trained
    (12.00 %, n = 3)' for a comparison where one side failed to train."""
    return (
        f"{failed.label} failed to train ({failed.losses()}), while {trained.label} trained "
        f"({pct(trained.mean)}, n = {trained.n})"
    )


def unjudged_clause(samples: list[Sample]) -> str:
    failed = [s for s in samples if s.failed_to_train]
    if len(failed) > 1:
        parts = "; ".join(f"{s.label}: {s.losses()}" for s in failed)
        return f"{' and '.join(s.label for s in failed)} all failed to train ({parts})"
    empty = next(s for s in samples if s.no_result)
    return f"{empty.label} has no result ({empty.losses() or 'no runs'})"
