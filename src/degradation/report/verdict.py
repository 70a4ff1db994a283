"""The verdict: from the numbers only, did degradation appear, and did skips remove it?

Per study (one dataset and recipe), on the final training error of each variant's seeds,
three kinds of comparison, each a claim about two variants:

(a) degradation: for plain depths d1 < d2, plain-d2 ends above plain-d1;
(b) skip vs plain: at each depth, the skip net ends below the plain net;
(c) deeper skip: skip-d2 − skip-d1 is below a margin taken from (a) (see "Removed" below).

Test. Welch's unequal-variance t-test (Welch 1947, Biometrika 34:28-35; computed by
scipy.stats.ttest_ind with equal_var=False), ONE-sided in the direction of the claim, at
level alpha = 0.05. Each comparison also reports the difference of means in percentage
points with its two-sided 95 % confidence interval (Welch–Satterthwaite degrees of freedom),
and n on each side. Evidence labels:

- "established": n >= 3 seeds on both sides and p < 0.05.
- "not established (p = …)": n >= 3 a side and p >= 0.05; also, at any n >= 2, when the
  means go against the claim.
- "suggestive (n = a and b)": the means go the claimed way, n >= 2 a side, < 3 on one (the
  CI and p are still given; three seeds are the least this project calls a result).
- "single seed": one run on either side; no CI or p (null in report.json).
- "not established (no variation between seeds)": every seed of both variants ended at the
  same value. The t statistic is 0/0 there (scipy returns NaN); identical seeds mean the
  seed did not reach the result (e.g. copied folders), so seed noise was never sampled.
- "not established (k of n X seeds diverged)": the claim says X is the lower one, and some
  of X's seeds diverged. The test sees only the survivors, so it is not counted, whatever p.
- "qualitative (X failed to train)": no seed of X trained and at least one diverged, so
  there is no error to test. A net that does not train is worse than one that
  does; the claim is judged by that, never called established. (A variant whose runs only
  failed, e.g. out of memory, or never finished, has no result: "not enough runs".)

Removed. Skips removed the degradation between d1 < d2 only as strongly as the weakest of
three legs: (a) for d1, d2; (b) at d2; and (c) the skip net's change with depth,
skip-d2 − skip-d1, was smaller than the plain net's. (c) claims an absence of increase, so it
is tested as non-inferiority: H1: skip-d2 − skip-d1 < margin, with the margin the LOWER end
of (a)'s 95 % CI (the smallest degradation the plain seeds support; the difference itself
where (a) has no CI); whether the leg holds at all is read from the point estimates
(skip change < plain change). "Removed" is thus relative to the plain nets: where skip-d2
still ends above skip-d1, the pair's line says so. Where plain-d2 failed to train, (c) holds
if skip-d2 trained, qualitatively. Strength order, weakest first: not established < single
seed < qualitative < suggestive < established (a failed-to-train contrast outranks a single
seed; it is untested, so it stays below a tested, if small, sample).

Every run counts: each comparison's line names the runs of its variants that diverged
(with their steps), failed or never finished, and a variant with no trained seed is named
as such; variants are never dropped. Statuses summarise every depth pair of every plain
architecture and skip series of a study:

- "yes, established (k of k …)": every judged pair went the claimed way, all established;
- "yes, but not established (k of k …: 1 established, 1 suggestive)": all went that way;
- "mixed (j of k … degraded|removed: …)": some did; "no (0 of k … degraded|removed)": none
  did (in these runs; "no" is not a tested absence);
- "; m without the runs to judge" is added for pairs that lack the runs;
- "not enough runs": nothing could be judged; "nothing to remove (no degradation)".

This module is over 300 lines because it states these rules in full and words every case;
the numbers and labels of one comparison are in `degradation.report.comparison`.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Any

from degradation.report.comparison import (
    ALPHA,
    MIN_SEEDS,
    NOT_ENOUGH,
    STRENGTH,
    Sample,
    compare,
    kind,
    loss_note,
    numbers,
    pct,
    qualitative_clause,
    sample_of,
    strength,
    unjudged_clause,
)
from degradation.report.paper import PAPER_DATASET, PAPER_STEPS
from degradation.report.runs import Variant
from degradation.report.stats import describe, p_phrase

SHORTCUT_WORDS = {"projection", "all_projection"}  # in residual names only; plain nets have none
NOTHING = "nothing to remove (no degradation)"
METHOD = (
    "Method: one-sided Welch t-test in the direction of each claim (Welch 1947; "
    f"scipy.stats.ttest_ind, equal_var=False) on the final training error of the seeds, "
    f"alpha = {ALPHA}; differences in pp with their two-sided 95 % CI (Welch–Satterthwaite). "
    f"'Established' needs n >= {MIN_SEEDS} seeds a side and p < {ALPHA}."
)
FINDINGS = {  # what a failed-to-train contrast shows, when the claim holds / does not
    "degradation": ("degradation of a qualitative kind, not a t-test result", "no degradation"),
    "skip vs plain": ("the skip net trains where the plain net does not", "no skip advantage"),
}


def _architecture(v: Variant) -> str:
    """The series without its skip family and shortcut: plain and skip twins share it."""
    words = v.series.split()[1:]
    return " ".join(w for w in words if w not in SHORTCUT_WORDS)


def _chance_level(variants: list[Variant]) -> float:
    run = variants[0].runs[0]
    classes = run.config.get("data.synthetic.num_classes") if run.dataset == "synthetic" else None
    classes = classes or {"cifar100": 100}.get(run.dataset, 10)
    return 1 - 1 / classes


def _context(study: str, variants: list[Variant]) -> list[str]:
    """What the numbers can and cannot say, given the budget and dataset."""
    lines = []
    steps = describe(r.summary.get("steps") for v in variants for r in v.usable)
    if (steps.n and steps.mean < PAPER_STEPS) or variants[0].dataset != PAPER_DATASET:
        lines.append(
            f"Scope: these runs trained about {steps.mean or 0:,.0f} steps on the "
            f"{variants[0].dataset} dataset; the paper trains {PAPER_STEPS:,} iterations on "
            "CIFAR-10. What follows holds for this setup, not for the paper's."
        )
    errors = [r.final("train_error") for v in variants for r in v.usable]
    errors = [e for e in errors if e is not None]
    chance = _chance_level(variants)
    if errors and min(errors) >= 0.9 * chance:
        lines.append(
            f"Warning: every training error is near chance level ({pct(chance)}): the nets "
            "have barely started to learn, so differences between them may be noise."
        )
    return lines


def _with_clause(c: dict, clause: str) -> dict:
    return {**c, "text": clause}


def _untested_clause(
    c: dict, unjudged: tuple[Sample, Sample], qualitative: tuple[Sample, Sample], findings
) -> str | None:
    """The clause of a comparison the test could not judge: too few usable runs (holds None),
    or a side that failed to train (judged without numbers); None when the test ran."""
    if c["holds"] is None:
        return unjudged_clause(*unjudged)
    if c["difference_pp"] is None:
        return qualitative_clause(*qualitative, c["holds"], findings)
    return None


def _degradation_pair(shallow: Sample, deep: Sample, depths: list[int]) -> dict[str, Any]:
    c = compare(deep, shallow, "greater")
    c.update(kind="degradation", claim=f"{deep.label} above {shallow.label}")
    clause = _untested_clause(c, (shallow, deep), (deep, shallow), FINDINGS["degradation"])
    if not clause and c["holds"]:
        clause = (
            f"{deep.label} ends above {shallow.label}: {pct(deep.mean)} vs {pct(shallow.mean)} "
            f"({numbers(c)}): {c['evidence']}"
        )
    elif not clause:
        clause = (
            f"No degradation between {shallow.label} and {deep.label}: the deeper net ends at "
            f"{pct(deep.mean)}, not above {pct(shallow.mean)} ({numbers(c)})"
        )
    pair = {
        "depths": depths,
        "shallow": shallow.label,
        "deep": deep.label,
        "shallow_error": describe(shallow.errors).as_dict(),
        "deep_error": describe(deep.errors).as_dict(),
        "degraded": c["holds"],
        "evidence": c["evidence"],
        "text": clause + "." + loss_note(shallow, deep),
    }
    return {**pair, "comparison": _with_clause(c, clause)}


def _versus_plain(skip: Sample, plain: Sample) -> dict[str, Any]:
    """(b): the skip net ends below the plain net of the same depth."""
    c = compare(skip, plain, "less")
    c.update(kind="skip vs plain", claim=f"{skip.label} below {plain.label}")
    clause = _untested_clause(c, (skip, plain), (skip, plain), FINDINGS["skip vs plain"])
    if not clause:
        verb = "ends below" if c["holds"] else "does not end below"
        clause = (
            f"{skip.label} {verb} {plain.label}: {pct(skip.mean)} vs {pct(plain.mean)} "
            f"({numbers(c)})" + (f": {c['evidence']}" if c["holds"] else "")
        )
    return _with_clause(c, clause)


def _margin_clause(c: dict, point: float | None, test: float | None, source: str) -> str:
    """(c)'s numbers against the plain nets' change: the direction is read from point, the
    one-sided p is against test (see the module docstring)."""
    if point is None:
        return f"({numbers(c)}): trained, with no margin to test against"
    smaller = "a smaller" if c["holds"] else "not a smaller"
    text = f"{smaller} change than the plain nets' {100 * point:+.2f} pp"
    if c["p_one_sided"] is None:
        return f"({numbers(c)}): {text}"
    return (
        f"({numbers(c, with_p=False)}): {text}; one-sided {p_phrase(c['p_one_sided'])} for a "
        f"change below {100 * test:+.2f} pp, {source}"
    )


def _not_worse(shallow: Sample, deep: Sample, degradation: dict, plain_deep: Sample) -> dict:
    """(c): the skip net's change with depth is below the plain net's (module docstring)."""
    point = test = None
    source = ""
    claim = f"{deep.label} − {shallow.label}: trained where {plain_deep.label} did not"
    if degradation["difference_pp"] is not None:  # None: the deeper plain net failed to train
        point = degradation["difference_pp"] / 100
        low = degradation["ci_low_pp"]
        test = point if low is None else low / 100
        source = "their difference (it has no CI)" if low is None else "the lower end of their CI"
        claim = f"{deep.label} − {shallow.label} below {100 * test:+.2f} pp"
    c = compare(deep, shallow, "less", test, point, f"{plain_deep.label} failed to train")
    c.update(kind="deeper skip", claim=claim)
    findings = ("no increase with depth", "the deeper skip net did not train")
    clause = _untested_clause(c, (shallow, deep), (deep, shallow), findings)
    if not clause:
        clause = (
            f"{deep.label} vs {shallow.label}: {pct(deep.mean)} vs {pct(shallow.mean)} "
            + _margin_clause(c, point, test, source)
            + (f": {c['evidence']}" if c["holds"] else "")
        )
    return _with_clause(c, clause)


def _unjudged_case(pair: dict, missing: list[str]) -> tuple[str, str] | None:
    """(outcome, reason) for a depth pair that cannot say whether skips removed anything."""
    if pair["degraded"] is None:
        return NOT_ENOUGH, f"{NOT_ENOUGH}: the plain nets could not be compared"
    if not pair["degraded"]:
        return NOTHING, "there was no degradation to remove"
    if missing:
        return NOT_ENOUGH, f"{NOT_ENOUGH}: no {' or '.join(missing)} runs to compare"
    return None


def _skip_case(pair: dict, plain: dict, skips: dict, versus: dict, family: str) -> dict:
    """Did the skip series remove the degradation of this plain depth pair? `versus`: the
    skip-vs-plain comparison at each depth."""
    d1, d2 = pair["depths"]
    head = f"Depths {d1} → {d2}: "
    unjudged = _unjudged_case(pair, [f"{family}-{d}" for d in (d1, d2) if d not in skips])
    if unjudged:
        outcome, text = unjudged
        return {"depths": [d1, d2], "outcome": outcome, "evidence": None, "text": f"{head}{text}."}
    legs = {
        "degradation": pair["comparison"],
        "versus_plain": versus[d2],
        "not_worse": _not_worse(skips[d1], skips[d2], pair["comparison"], plain[d2]),
    }
    weakest = min(legs.values(), key=lambda c: strength(c["evidence"]))
    failing = [c["claim"] for c in legs.values() if c["holds"] is False]
    if any(c["holds"] is None for c in legs.values()):
        outcome, conclusion = NOT_ENOUGH, f"{NOT_ENOUGH} to judge this pair"
    elif failing:
        outcome = "not removed"
        conclusion = (
            f"these runs do not show that the skip net removed it (fails: {'; '.join(failing)})"
        )
    elif kind(weakest["evidence"]) == "established":
        outcome, conclusion = "removed", "the skip net removed it: established"
    else:
        outcome = "removed"
        conclusion = (
            f"the skip net removed it as far as these runs show; not established: weakest leg "
            f"{weakest['claim']}, {weakest['evidence']}"
        )
    rise = legs["not_worse"]["difference_pp"]
    if outcome == "removed" and rise is not None and rise > 0:  # "removed" is relative: say so
        conclusion += (
            f" (relative to the plain nets: {skips[d2].label} still ends {rise:+.2f} pp above "
            f"{skips[d1].label})"
        )
    clauses = [legs["versus_plain"]["text"], legs["not_worse"]["text"]]
    note = loss_note(skips[d2], plain[d2], skips[d1])
    return {
        "depths": [d1, d2],
        "outcome": outcome,
        "evidence": weakest["evidence"],
        "legs": legs,
        "text": head + "; ".join(clauses) + "; so " + conclusion + "." + note,
    }


def _status(outcomes: list[tuple[bool | None, str | None]], unit: str, verb: str) -> str:
    """Summary of (claim held?, evidence) over pairs; vocabulary in the module docstring."""
    judged = [(held, evidence) for held, evidence in outcomes if held is not None]
    if not judged:
        return NOT_ENOUGH
    kinds = Counter(kind(evidence) for held, evidence in judged if held)
    held, total = sum(kinds.values()), len(judged)
    breakdown = ", ".join(f"{kinds[k]} {k}" for k in reversed(STRENGTH) if kinds[k])
    if held == total and set(kinds) == {"established"}:
        status = f"yes, established ({held} of {total} {unit}"
    elif held == total:
        status = f"yes, but not established ({held} of {total} {unit}: {breakdown}"
    elif held == 0:
        status = f"no (0 of {total} {unit} {verb}"
    else:
        status = f"mixed ({held} of {total} {unit} {verb}: {breakdown}"
    unjudged = len(outcomes) - total
    return status + (f"; {unjudged} without the runs to judge)" if unjudged else ")")


def _removal_outcomes(cases: list[dict]) -> list[tuple[bool | None, str | None]]:
    judged = {"removed": True, "not removed": False, NOT_ENOUGH: None}
    return [(judged[c["outcome"]], c["evidence"]) for c in cases if c["outcome"] in judged]


def _series(arch: str, variants: list[Variant], samples: dict[str, Sample]) -> dict[str, Any]:
    """The verdict for one plain architecture and the skip series that share it."""
    mine = [v for v in variants if _architecture(v) == arch]
    plain = {v.depth: samples[v.label] for v in mine if v.skip == "none"}
    pairs = [
        _degradation_pair(plain[d1], plain[d2], [d1, d2])
        for d1, d2 in combinations(sorted(plain), 2)
    ]
    status = _status([(p["degraded"], p["evidence"]) for p in pairs], "depth pairs", "degraded")
    title = f"plain nets{' (' + arch + ')' if arch else ''}"
    series = {"architecture": arch, "degradation": status, "pairs": pairs, "skips": []}
    comparisons = [p["comparison"] for p in pairs]
    if not pairs:
        found = ", ".join(s.label for s in plain.values())
        lines = [
            f"Degradation ({title}): {NOT_ENOUGH} — it needs plain nets of two depths; "
            f"found only {found}."
        ]
        return {**series, "lines": lines, "comparisons": comparisons}
    lines = [f"Degradation ({title}): {status}.", *(p["text"] for p in pairs)]
    for name in dict.fromkeys(v.series for v in mine if v.skip != "none"):  # variants' order
        skips = {v.depth: samples[v.label] for v in mine if v.series == name}
        versus = {d: _versus_plain(skips[d], plain[d]) for d in sorted(skips) if d in plain}
        cases = [_skip_case(p, plain, skips, versus, name.split()[0]) for p in pairs]
        removed = _status(_removal_outcomes(cases), "degraded depth pairs", "removed")
        if not any(p["degraded"] for p in pairs):
            removed = NOTHING if any(p["degraded"] is False for p in pairs) else NOT_ENOUGH
        lines.append(f"Did {name} remove it? {removed}.")
        lines += [c["text"] for c in cases]
        series["skips"].append(
            {"series": name, "removed": removed, "versus_plain": [*versus.values()], "pairs": cases}
        )
        comparisons += [*versus.values()] + [c["legs"]["not_worse"] for c in cases if "legs" in c]
    if not series["skips"]:
        lines.append(f"Did skips remove it? {NOT_ENOUGH}: no skip nets to compare.")
    return {**series, "lines": lines, "comparisons": comparisons}


def _study_status(all_series: list[dict]) -> tuple[str, str]:
    """(degradation, skips) over every series of the study."""
    pairs = [p for s in all_series for p in s["pairs"]]
    degradation = _status(
        [(p["degraded"], p["evidence"]) for p in pairs], "depth pairs", "degraded"
    )
    if not any(p["degraded"] for p in pairs):
        return degradation, NOTHING if degradation != NOT_ENOUGH else NOT_ENOUGH
    outcomes, skip_series = [], 0
    for s in all_series:
        if not s["skips"]:  # degraded pairs with no skip net to judge them by
            outcomes += [(None, None)] * sum(bool(p["degraded"]) for p in s["pairs"])
        for skip in s["skips"]:
            skip_series += 1
            outcomes += _removal_outcomes(skip["pairs"])
    unit = "degraded depth pairs" if skip_series <= 1 else "skip series × degraded depth pairs"
    return degradation, _status(outcomes, unit, "removed")


def judge(study: str, variants: list[Variant]) -> dict[str, Any]:
    """The verdict for one study: statuses, the sentences behind them, and their numbers."""
    samples = {v.label: sample_of(v) for v in variants}
    trained = [v for v in variants if samples[v.label].n]
    lines = _context(study, trained) if trained else []
    result: dict[str, Any] = {"study": study, "alpha": ALPHA, "min_seeds": MIN_SEEDS}
    result.update(lines=lines, series=[], comparisons=[])
    architectures = sorted({_architecture(v) for v in variants if v.skip == "none"})
    if not architectures:
        found = ", ".join(v.label for v in variants) or "no runs"
        lines.append(
            f"Degradation: {NOT_ENOUGH} — it needs plain nets (skip=none) of two depths on "
            f"the same dataset and recipe; found: {found}."
        )
        result.update(degradation=NOT_ENOUGH, skips=NOT_ENOUGH)
        return result
    series_lines = []
    for arch in architectures:
        series = _series(arch, variants, samples)
        series_lines += series.pop("lines")
        result["comparisons"] += series.pop("comparisons")
        result["series"].append(series)
    result["degradation"], result["skips"] = _study_status(result["series"])
    if result["comparisons"]:
        lines.append(METHOD)
    if len(architectures) > 1 or sum(len(s["skips"]) for s in result["series"]) > 1:
        lines.append(
            f"Overall: degradation {result['degradation']}; skips removed it: {result['skips']}."
        )
    lines += series_lines
    return result
