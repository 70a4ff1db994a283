"""The verdict: from the numbers only, did degradation appear, and did skips fix it?

Per study (one dataset and recipe), on the final training error of each variant's seeds
(each seed counted once: `runs.group_runs`):

(a) degradation: for plain depths d1 < d2, plain-d2 ends above plain-d1;
(b) skip vs plain: at each depth, the skip net ends below the plain net;
and, for each skip series and each pair (a) where plain-d2 ends above plain-d1, three outcomes,
each decided by its own test:
- *removed*: the deeper skip net is not worse than the shallower by the margin: a non-
  inferiority test, H1: mean(skip-d2) − mean(skip-d1) < margin, the margin fixed before the
  runs (`verdict.margin_pp` in each run's config, or the report's --margin). Where it holds,
  the other leg of the equivalence test (TOST: H1: the rise > −margin) is said in words when
  it fails (the deeper net may then be better by more than the margin);
- *reduced*: a difference-in-differences test, H1: (plain-d2 − plain-d1) − (skip-d2 − skip-d1)
  > 0, over the four variants' seeds (`stats.contrast`);
- *not reduced*: neither test holds.
"Removed" does not imply "reduced": each test's result is stated.

Tests. Welch's unequal-variance t-test (Welch 1947, Biometrika 34:28-35; scipy.stats.ttest_ind
with equal_var=False) ONE-sided in the direction of the claim, at level alpha
(`verdict.alpha`, 0.05); the DiD is Welch's test of a four-mean contrast with Satterthwaite's
degrees of freedom. Each test is shown with the one-sided (1 − alpha) confidence bound that
matches it (≥ for a claim that something is higher, ≤ for lower); the two-sided interval is
in report.json only. The family is every test of the study (the Comparisons table's rows):
each raw p has its Holm-adjusted p beside it (Holm 1979), and the verdict says which
conclusions do not survive the adjustment.

Evidence labels, by the test at every n >= 2 a side:
- "established": p < alpha; "not established (reason)": otherwise, the reason p, or "no
  variation between seeds" (identical seeds: 0/0, the seed never reached the result), or
  "k of n X seeds diverged" where the side claimed lower lost seeds (the test saw only the
  survivors, so it is not counted, whatever p);
- ", underpowered" is added when the seeds are so few that no exact permutation or rank test
  of a difference in them could reach alpha (`stats.smallest_exact_p`: 3 v 3 gives at best
  1/20 = 0.05); Welch's t can still go below alpha there, but only by assuming normal errors,
  which three seeds cannot check;
- "single seed": one run on a side: no test; "qualitative (X failed to train)": every seed
  of X diverged: a net that does not train is worse than one that does, but untested.
Strength, weakest first: single seed < qualitative < not established, underpowered < not
established < established, underpowered < established. Untested results rank below tested
ones, and fewer seeds never raise a label through n (`comparison.STRENGTH`).

Every run counts: each comparison names the runs of its variants that diverged (with their
steps), failed or never finished; variants are never dropped. Duplicate run folders and
seeds near chance are said per study; a deeper plain net whose training error is still
falling at the end trains slower at this budget rather than degrades (`progress`).

Over 300 lines because it states these rules in full and words every case; the numbers and
labels of one comparison are in `degradation.report.comparison`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from degradation.config import FINITE, RULES, VerdictConfig
from degradation.errors import UserError
from degradation.report import progress
from degradation.report.comparison import (
    NOT_ENOUGH,
    STRENGTH,
    Sample,
    bound_phrase,
    compare,
    did,
    is_established,
    kind,
    loss_note,
    p_with_holm,
    pct,
    qualitative_clause,
    sample_of,
    unjudged_clause,
)
from degradation.report.paper import PAPER_DATASET, PAPER_STEPS
from degradation.report.runs import Run, Variant
from degradation.report.stats import describe, holm, p_phrase
from degradation.rundir import CONFIG
from degradation.vocabulary import skip_label

NOTHING = "nothing to remove (no degradation)"
SLOWER = "trains slower at this budget"
LISTED = 3  # a sentence names at most this many runs or claims, then says how many more
OUTCOME_WORDS = {  # a skip series' outcome over its degraded depth pairs
    "removed": "removed",
    "reduced": "reduced, not removed",
    "not reduced": "neither removal nor reduction shown",
}


@dataclass(frozen=True)
class Settings:
    """The margin of "removed" and the level of every test, and where they came from."""

    margin: float  # a fraction (margin_pp / 100)
    alpha: float
    source: str  # how the report got the margin, for the verdict's line

    @property
    def margin_pp(self) -> float:
        return 100 * self.margin


def check_setting(key: str, value: Any, label: str) -> float:
    """The value of verdict.KEY, checked by the schema's rules (config.VerdictConfig); UserError
    starting with `label` (e.g. '--margin 0') otherwise."""
    (found,) = [f for f in dataclasses.fields(VerdictConfig) if f.name == key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{label} is not valid: it must be a number")
    for rule in (FINITE, *found.metadata.get(RULES, ())):
        if not rule.holds(float(value)):
            raise UserError(f"{label} is not valid: {rule.text}")
    return float(value)


def _recorded(runs: list[Run], key: str) -> dict[float, int]:
    """The values of verdict.KEY the runs record, each with how many runs record it; UserError
    where one is not valid."""
    values: dict[float, int] = {}
    for run in runs:
        if f"verdict.{key}" in run.config:
            raw = run.config[f"verdict.{key}"]
            value = check_setting(key, raw, f"{run.path / CONFIG}: verdict.{key}={raw}")
            values[value] = values.get(value, 0) + 1
    return values


def _one(values: dict[float, int], key: str, study: str, remedy: str) -> float | None:
    if len(values) > 1:
        shown = ", ".join(f"{v:g} ({n} runs)" for v, n in sorted(values.items()))
        raise UserError(f"the runs of {study} record different verdict.{key}: {shown}; {remedy}")
    return next(iter(values), None)


def settings(study: str, variants: list[Variant], margin_pp: float | None = None) -> Settings:
    """The study's settings: recorded in its runs' configs (the schema's default for runs that
    predate them); `margin_pp` (the report's --margin) overrides the recorded margins. UserError
    where a recorded value is not valid, or runs disagree and no --margin settles it."""
    runs = [r for v in variants for r in (*v.runs, *(d.run for d in v.duplicates))]
    default = VerdictConfig()
    alpha = _one(_recorded(runs, "alpha"), "alpha", study, "report these runs separately")
    margins = _recorded(runs, "margin_pp")
    if margin_pp is not None:
        recorded = (
            " and ".join(f"{m:g}" for m in sorted(margins)) or f"default {default.margin_pp:g}"
        )
        source = f"--margin, which overrides the runs' {recorded} pp"
        margin = check_setting("margin_pp", margin_pp, f"--margin {margin_pp:g}")
    elif not margins:
        source = "the schema's default; these runs predate verdict.margin_pp"
        margin = default.margin_pp
    else:
        margin = _one(margins, "margin_pp", study, "choose one with --margin PP")
        count = margins[margin]
        source = "verdict.margin_pp, recorded in the runs' config"
        if count < len(runs):
            source = f"verdict.margin_pp of {count} of {len(runs)} runs; the others predate it"
    return Settings(margin / 100, default.alpha if alpha is None else alpha, source)


def _context(variants: list[Variant], alpha: float) -> list[str]:
    """What the numbers can and cannot say, given the budget, the dataset and the curves."""
    lines = []
    steps = describe(r.summary.get("steps") for v in variants for r in v.usable)
    if (steps.n and steps.mean < PAPER_STEPS) or variants[0].dataset != PAPER_DATASET:
        lines.append(
            f"Scope: these runs trained about {steps.mean or 0:,.0f} steps on the "
            f"{variants[0].dataset} dataset; the paper trains {PAPER_STEPS:,} iterations on "
            "CIFAR-10. What follows holds for this setup, not for the paper's."
        )
    for v in variants:
        near = progress.near_chance(v)
        if near:
            chance = progress.chance_error(v)
            lines.append(
                f"Near chance: {len(near)} of {len(v.usable)} {v.label} seeds end at or above "
                f"{pct(progress.NEAR_CHANCE * chance)} (chance {pct(chance)}): "
                f"{_listed([pct(e) for e in sorted(near)], 'see the runs table', ', ')}; they have "
                "barely learned."
            )
    for v in variants:
        end = progress.ending(v, alpha)
        if end is not None and end.falling:
            lines.append(
                f"Still learning: {v.label}'s mean training error fell "
                f"{-100 * end.trend.change:.2f} pp over steps {end.trend.first_step}–"
                f"{end.trend.last_step}, the last quarter of its curve."
            )
    return lines


def _method(s: Settings) -> list[str]:
    level = f"{100 * (1 - s.alpha):.0f} %"
    return [
        f"Margin of 'removed': {s.margin_pp:g} pp ({s.source}); alpha = {s.alpha:g}.",
        "Tests: one-sided Welch t-tests on the seeds' final training errors (Welch 1947; "
        f"scipy.stats.ttest_ind), each with the one-sided {level} bound that matches it.",
        "'Removed' is non-inferiority of the deeper skip net, H1: its rise < margin; 'reduced' "
        "is a difference in differences, H1: plain rise − skip rise > 0 (Satterthwaite df).",
        "Underpowered: seeds so few that no exact permutation test could reach p < alpha "
        "(3 v 3: at best 1/20); Welch's p then rests on normal errors alone.",
    ]


def _family_line(comparisons: list[dict], alpha: float) -> str:
    """Holm over the study's tests (sets each comparison's p_holm) and what it changes."""
    tested = [c for c in comparisons if c["p_one_sided"] is not None]
    for c, adjusted in zip(tested, holm([c["p_one_sided"] for c in tested]), strict=True):
        c["p_holm"] = adjusted
        c["established_holm"] = is_established(c["evidence"]) and adjusted < alpha
    if not tested:
        return "Family: no test could run (single seeds, or variants that did not train)."
    lost = [c for c in tested if is_established(c["evidence"]) and not c["established_holm"]]
    text = (
        f"Family: the {len(tested)} tests of this study in the Comparisons table; each p has "
        "its Holm-adjusted p beside it (Holm 1979)."
    )
    if lost:
        claims = [f"{c['claim']} (Holm {p_phrase(c['p_holm'])})" for c in lost]
        shown = _listed(claims, "see the Comparisons table")
        return f"{text} Not established after the adjustment: {shown}."
    return f"{text} Every established result stays established after it."


def _listed(items: list[str], where: str, sep: str = "; ") -> str:
    """The first LISTED items joined by `sep`, and how many more there are (in `where`)."""
    more = f"{sep}and {len(items) - LISTED} more ({where})" if len(items) > LISTED else ""
    return sep.join(items[:LISTED]) + more


def _duplicates_line(variants: list[Variant]) -> list[str]:
    dups = [d for v in variants for d in v.duplicates]
    if not dups:
        return []
    shown = _listed([f"{d.run.path.name} ({d.why})" for d in dups], "see 'Runs not in the means'")
    return [f"{len(dups)} duplicate run folder(s) counted once, one sample per seed: {shown}."]


# --- (a) degradation ---------------------------------------------------------------------------


def _degradation_pair(
    shallow: Sample, deep: Sample, depths: list[int], deep_variant: Variant, s: Settings
) -> dict:
    c = compare(deep, shallow, "greater", s.alpha)
    c.update(kind="degradation", claim=f"{deep.label} above {shallow.label}")
    end = progress.ending(deep_variant, s.alpha) if c["difference_pp"] is not None else None
    reading = None
    if c["holds"]:
        reading = SLOWER if end is not None and end.falling else "degrades"
    return {
        "depths": depths,
        "shallow": shallow.label,
        "deep": deep.label,
        "shallow_error": describe(shallow.errors).as_dict(),
        "deep_error": describe(deep.errors).as_dict(),
        "degraded": c["holds"],
        "reading": reading,
        "deep_ending": None if end is None else end.as_dict(),
        "evidence": c["evidence"],
        "comparison": c,
        "samples": (shallow, deep),
    }


def _apart(difference_pp: float, above: str = "above", below: str = "below") -> str:
    """'12.76 pp above' or '7.34 pp below'."""
    return f"{abs(difference_pp):.2f} pp {above if difference_pp >= 0 else below}"


def _numbers(c: dict, *extra: str) -> str:
    """'one-sided 95 % bound ≥ +10.35 pp; p = 0.0013, Holm 0.0052; n = 3 and 3'."""
    return "; ".join(p for p in (bound_phrase(c), p_with_holm(c), *extra) if p) or "no test"


def _label(c: dict) -> str:
    """The evidence, less a reason the sentence already gives (its p)."""
    evidence = c["evidence"]
    return kind(evidence) if "(p " in evidence else evidence


def _degradation_text(pair: dict) -> str:
    shallow, deep = pair["samples"]
    c = pair["comparison"]
    if c["holds"] is None:
        return (
            f"{deep.label} vs {shallow.label}: {NOT_ENOUGH}, as {unjudged_clause([shallow, deep])}."
        )
    if c["difference_pp"] is None:  # one side failed to train
        failed, trained = (deep, shallow) if deep.failed_to_train else (shallow, deep)
        verdict = "Degradation, qualitative" if c["holds"] else "No degradation"
        text = f"{verdict}: {qualitative_clause(failed, trained)}; no t-test."
        return text + loss_note(shallow, deep)
    numbers = _numbers(c, f"n = {deep.n} and {shallow.n}")
    means = f"{pct(deep.mean)} vs {pct(shallow.mean)}"
    if not c["holds"]:
        text = f"No degradation: {deep.label} ends {_apart(c['difference_pp'])} {shallow.label}"
        return f"{text} ({means}; {numbers}): {_label(c)}." + loss_note(shallow, deep)
    text = (
        f"{deep.label} ends {_apart(c['difference_pp'])} {shallow.label} ({means}; {numbers}): "
        f"{_label(c)}."
    )
    end = pair["deep_ending"]
    if pair["reading"] == SLOWER:
        text += (
            f" {deep.label} {SLOWER} rather than degrades: its mean training error still fell "
            f"{-end['change_pp']:.2f} pp over the last quarter of training."
        )
    elif end is None:
        text += f" Whether {deep.label} had levelled off is unknown: no training curve to check."
    return text + loss_note(shallow, deep)


# --- (b) and the skip series' outcomes ---------------------------------------------------------


def _versus_plain(skip: Sample, plain: Sample, s: Settings) -> dict[str, Any]:
    """(b): the skip net ends below the plain net of the same depth."""
    c = compare(skip, plain, "less", s.alpha)
    c.update(kind="skip vs plain", claim=f"{skip.label} below {plain.label}")
    c["samples"] = (skip, plain)
    return c


def _versus_text(c: dict) -> str:
    skip, plain = c["samples"]
    if c["holds"] is None:
        return f"{skip.label} vs {plain.label}: {NOT_ENOUGH}, as {unjudged_clause([skip, plain])}."
    if c["difference_pp"] is None:
        failed, trained = (plain, skip) if plain.failed_to_train else (skip, plain)
        return f"Skip vs plain, qualitative: {qualitative_clause(failed, trained)}; no t-test."
    numbers = _numbers(c, f"n = {skip.n} and {plain.n}")
    return (
        f"{skip.label} ends {_apart(c['difference_pp'])} {plain.label} ({pct(skip.mean)} vs "
        f"{pct(plain.mean)}; {numbers}): {_label(c)}."
    )


def _skip_case(pair: dict, plain: dict, skips: dict, family: str, s: Settings) -> dict:
    """Removed, reduced or not reduced, for one degraded plain depth pair and a skip series."""
    d1, d2 = pair["depths"]
    missing = [f"{family}-{d}" for d in (d1, d2) if d not in skips]
    case: dict[str, Any] = {"depths": [d1, d2], "series": family}
    if pair["degraded"] is None:
        return {**case, "outcome": NOT_ENOUGH, "evidence": None, "why": "plain nets not compared"}
    if not pair["degraded"]:
        return {**case, "outcome": NOTHING, "evidence": None, "why": "no degradation to remove"}
    if missing:
        why = f"no {' or '.join(missing)} runs to compare"
        return {**case, "outcome": NOT_ENOUGH, "evidence": None, "why": why}
    s1, s2 = skips[d1], skips[d2]
    ni = compare(s2, s1, "less", s.alpha, s.margin)
    ni.update(kind="removed", claim=f"{s2.label} − {s1.label} below {s.margin_pp:+.2f} pp")
    other_leg = compare(s2, s1, "greater", s.alpha, -s.margin)["p_one_sided"]
    reduced = did((plain[d1], plain[d2]), (s1, s2), s.alpha)
    reduced.update(
        kind="reduced",
        claim=f"({plain[d2].label} − {plain[d1].label}) − ({s2.label} − {s1.label}) above 0",
    )
    if ni["holds"] and is_established(ni["evidence"]):
        outcome, evidence = "removed", ni["evidence"]
    elif reduced["holds"] and (
        is_established(reduced["evidence"]) or kind(reduced["evidence"]) == "qualitative"
    ):
        outcome, evidence = "reduced", reduced["evidence"]
    elif ni["holds"] is None or reduced["holds"] is None:
        outcome, evidence = NOT_ENOUGH, None
    else:
        outcome, evidence = "not reduced", reduced["evidence"]
    equivalence = {"p_other_leg": other_leg, "margin_pp": s.margin_pp}
    if other_leg is not None and ni["p_one_sided"] is not None:
        equivalence["p_tost"] = max(other_leg, ni["p_one_sided"])
    return {
        **case,
        "outcome": outcome,
        "evidence": evidence,
        "removed_test": ni,
        "reduced_test": reduced,
        "equivalence": equivalence,
        "samples": (plain[d1], plain[d2], s1, s2),
    }


def _removed_text(case: dict, s: Settings) -> str:
    """The non-inferiority test's sentence ('removed' or not)."""
    _, _, s1, s2 = case["samples"]
    ni = case["removed_test"]
    if ni["holds"] is None:
        return f"{NOT_ENOUGH} to test {s2.label} against {s1.label}."
    if ni["difference_pp"] is None:
        failed, trained = (s2, s1) if s2.failed_to_train else (s1, s2)
        return f"{qualitative_clause(failed, trained)}; no test of the margin."
    rise = f"{s2.label} ends {_apart(ni['difference_pp'])} {s1.label}"
    if case["outcome"] == "removed":
        return f"{rise}, within the {s.margin_pp:g} pp margin ({_numbers(ni)}): {_label(ni)}."
    return (
        f"{rise}, not shown to be within the {s.margin_pp:g} pp margin ({_numbers(ni)}): "
        f"{_label(ni)}."
    )


def _reduced_text(case: dict) -> str:
    """The difference-in-differences test's sentence."""
    p1, p2, s1, s2 = case["samples"]
    c = case["reduced_test"]
    if c["holds"] is None:
        return f"Reduction: {NOT_ENOUGH} to test, as {unjudged_clause([p1, p2, s1, s2])}."
    if c["difference_pp"] is None:
        failed = next(x for x in (p2, p1, s2, s1) if x.failed_to_train)
        trained = {id(p2): s2, id(s2): p2, id(p1): s1, id(s1): p1}[id(failed)]  # its twin
        verdict = "Reduced, qualitatively" if c["holds"] else "Not reduced, qualitatively"
        return f"{verdict}: {qualitative_clause(failed, trained)}; no test."
    established = is_established(c["evidence"])
    word = "Reduction established" if established else "Reduction not shown"
    more = _apart(c["difference_pp"], "more", "less")
    return (
        f"{word}: the plain nets rise {more} with depth than the {case['series']} nets "
        f"(difference in differences; {_numbers(c)}): {_label(c)}."
    )


def _equivalence_text(case: dict, s: Settings) -> str:
    """TOST's other leg, said only where 'removed' holds (module docstring)."""
    _, _, s1, s2 = case["samples"]
    p = case["equivalence"]["p_other_leg"]
    if p is not None and p < s.alpha:
        return (
            f"{s2.label} and {s1.label} are also equivalent within ±{s.margin_pp:g} pp "
            f"(TOST, {p_phrase(case['equivalence']['p_tost'])})."
        )
    return (
        f"Equivalence within ±{s.margin_pp:g} pp is not shown: {s2.label} may end lower than "
        f"{s1.label} by more than the margin."
    )


def _case_text(case: dict, s: Settings) -> str:
    d1, d2 = case["depths"]
    head = f"Depths {d1} → {d2}"
    if "samples" not in case:
        return f"{head}: {case['outcome']}: {case['why']}."
    outcome = OUTCOME_WORDS.get(case["outcome"], case["outcome"])
    parts = [f"{head}: {outcome}.", _removed_text(case, s)]
    if case["outcome"] == "removed":
        parts.append(_equivalence_text(case, s))
    parts.append(_reduced_text(case))
    _, _, s1, s2 = case["samples"]
    return " ".join(parts) + loss_note(s1, s2)


# --- summaries ---------------------------------------------------------------------------------


def _breakdown(evidence: list[str | None]) -> str:
    kinds = Counter(kind(e) for e in evidence)
    return ", ".join(f"{kinds[k]} {k}" for k in reversed(STRENGTH) if kinds[k])


def _degradation_status(pairs: list[dict]) -> str:
    judged = [p for p in pairs if p["degraded"] is not None]
    if not judged:
        return NOT_ENOUGH
    held = [p for p in judged if p["degraded"]]
    slower = sum(p["reading"] == SLOWER for p in held)
    total, unit = len(judged), "depth pairs"
    evidence = [p["evidence"] for p in held]
    weak = sum(kind(e) == "established, underpowered" for e in evidence)
    if held and len(held) == total and all(is_established(e) for e in evidence):
        status = f"yes, established ({total} of {total} {unit}"
        status += f"; {weak} underpowered" if weak else ""
    elif held and len(held) == total:
        some = "not all" if any(is_established(e) for e in evidence) else "not"
        status = f"yes, but {some} established ({total} of {total} {unit}: {_breakdown(evidence)}"
    elif not held:
        status = f"no (0 of {total} {unit} degraded"
    else:
        status = f"mixed ({len(held)} of {total} {unit} degraded: {_breakdown(evidence)}"
    if slower:
        status += f"; in {slower} the deeper net {SLOWER}, still falling"
    unjudged = len(pairs) - total
    return status + (f"; {unjudged} without the runs to judge)" if unjudged else ")")


def _skips_status(cases: list[dict], unit: str) -> str:
    """Summary of the outcomes of the degraded depth pairs (NOTHING pairs left out)."""
    asked = [c for c in cases if c["outcome"] != NOTHING]
    judged = [c for c in asked if c["outcome"] in OUTCOME_WORDS]
    if not asked:
        return NOTHING if cases else NOT_ENOUGH
    if not judged:
        return NOT_ENOUGH
    outcomes = Counter(c["outcome"] for c in judged)
    total = len(judged)
    evidence = _breakdown([c["evidence"] for c in judged])
    if len(outcomes) == 1:
        (outcome,) = outcomes
        status = f"{OUTCOME_WORDS[outcome]} ({total} of {total} {unit}: {evidence}"
    else:
        parts = ", ".join(f"{outcomes[o]} {o}" for o in OUTCOME_WORDS if outcomes[o])
        status = f"mixed (of {total} {unit}: {parts}"
    unjudged = len(asked) - total
    return status + (f"; {unjudged} without the runs to judge)" if unjudged else ")")


def _series(arch: str, variants: list[Variant], samples: dict[str, Sample], s: Settings) -> dict:
    """The comparisons for one plain architecture and the skip series that share it."""
    mine = [v for v in variants if v.shared == arch]
    plain_variants = {v.depth: v for v in mine if v.skip == "none"}
    plain = {d: samples[v.label] for d, v in plain_variants.items()}
    pairs = [
        _degradation_pair(plain[d1], plain[d2], [d1, d2], plain_variants[d2], s)
        for d1, d2 in combinations(sorted(plain), 2)
    ]
    series = {"architecture": arch, "plain": [x.label for x in plain.values()], "pairs": pairs}
    series["skips"] = []
    series["degradation"] = _degradation_status(pairs)
    comparisons = [p["comparison"] for p in pairs]
    for name in dict.fromkeys(v.series for v in mine if v.skip != "none"):  # variants' order
        members = [v for v in mine if v.series == name]
        skips = {v.depth: samples[v.label] for v in members}
        versus = {d: _versus_plain(skips[d], plain[d], s) for d in sorted(skips) if d in plain}
        kind = skip_label(members[0].skip)  # 'resnet', 'concatnet'
        cases = [_skip_case(p, plain, skips, kind, s) for p in pairs]
        comparisons += [*versus.values()]
        comparisons += [c[k] for c in cases for k in ("removed_test", "reduced_test") if k in c]
        status = _skips_status(cases, "degraded depth pairs") if pairs else NOT_ENOUGH
        entry = {"series": name, "removed": status, "versus_plain": [*versus.values()]}
        series["skips"].append({**entry, "pairs": cases})
    return {**series, "comparisons": comparisons}


def _series_lines(series: dict, s: Settings) -> list[str]:
    arch = series["architecture"]
    title = f"plain nets{' (' + arch + ')' if arch else ''}"
    if not series["pairs"]:
        found = ", ".join(series["plain"])
        need = f"it needs plain nets of two depths; found only {found}"
        return [f"Degradation ({title}): {NOT_ENOUGH}: {need}."]
    lines = [f"Degradation ({title}): {series['degradation']}."]
    lines += [_degradation_text(p) for p in series["pairs"]]
    for skip in series["skips"]:
        lines.append(f"Did {skip['series']} fix it? {skip['removed']}.")
        lines += [_case_text(c, s) for c in skip["pairs"]]
        lines += [_versus_text(c) for c in skip["versus_plain"]]
    if not series["skips"]:
        lines.append(f"Did skips fix it? {NOT_ENOUGH}: no skip nets to compare.")
    return lines


def _public(value: Any) -> Any:
    """The verdict without its working objects (the Samples), for report.json."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if k != "samples"}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def judge(study: str, variants: list[Variant], margin_pp: float | None = None) -> dict[str, Any]:
    """The verdict for one study: statuses, the sentences behind them, and their numbers.
    UserError where the runs' verdict settings disagree or are not valid (`settings`)."""
    s = settings(study, variants, margin_pp)
    samples = {v.label: sample_of(v) for v in variants}
    trained = [v for v in variants if samples[v.label].n]
    result: dict[str, Any] = {"study": study, "alpha": s.alpha, "margin_pp": s.margin_pp}
    result.update(margin_source=s.source, series=[], comparisons=[])
    lines = _context(trained, s.alpha) if trained else []
    lines += _duplicates_line(variants)
    architectures = sorted({v.shared for v in variants if v.skip == "none"})
    if not architectures:
        found = ", ".join(v.label for v in variants) or "no runs"
        lines.append(
            f"Degradation: {NOT_ENOUGH}: it needs plain nets (skip=none) of two depths on the "
            f"same dataset and recipe; found: {found}."
        )
        return {**result, "lines": lines, "degradation": NOT_ENOUGH, "skips": NOT_ENOUGH}
    for arch in architectures:
        series = _series(arch, variants, samples, s)
        result["comparisons"] += series.pop("comparisons")
        result["series"].append(series)
    pairs = [p for series in result["series"] for p in series["pairs"]]
    cases = [c for series in result["series"] for k in series["skips"] for c in k["pairs"]]
    result["degradation"] = _degradation_status(pairs)
    several = len(result["series"]) > 1 or sum(len(x["skips"]) for x in result["series"]) > 1
    unit = "skip series × degraded depth pairs" if several else "degraded depth pairs"
    result["skips"] = _skips_status(cases, unit) if pairs else NOT_ENOUGH
    if pairs and not any(p["degraded"] for p in pairs):
        result["skips"] = NOTHING if any(p["degraded"] is False for p in pairs) else NOT_ENOUGH
    if result["comparisons"]:
        lines += _method(s)
        lines.append(_family_line(result["comparisons"], s.alpha))
    if several:
        lines.append(f"Overall: degradation {result['degradation']}; skips: {result['skips']}.")
    for series in result["series"]:
        lines += _series_lines(series, s)
    return _public({**result, "lines": lines})
