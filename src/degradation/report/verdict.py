"""The verdict: from the numbers only, did degradation appear, and did skips remove it?

Per study (one dataset and recipe), on the final training error of completed runs:

- Degradation, for each pair of plain depths d1 < d2: the deeper plain net ends with the
  higher training error. It is *beyond seed spread* when the difference exceeds the larger
  of the two sample stds (both variants need n >= 2); with a single seed on either side the
  evidence is one run and is called that.
- Skips removed it, for each such pair and each skip type: the skip net at d2 ends below the
  plain net at d2, and no higher than the skip net at d1 plus the seed spread.

A pair that lacks a variant gives "not enough runs". Nothing is concluded from missing data,
and every statement names the numbers it rests on.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from degradation.report.paper import PAPER_DATASET, PAPER_STEPS
from degradation.report.runs import Variant
from degradation.report.stats import Stat, describe, spread

SHORTCUT_WORDS = {"projection", "all_projection"}  # in residual names only; plain nets have none
NOT_ENOUGH = "not enough runs"
NOTHING = "nothing to remove (no degradation)"
EVIDENCE = ("single seed", "within seed spread", "beyond seed spread")  # weakest first


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _train_error(v: Variant) -> Stat:
    return describe(r.final("train_error") for r in v.usable)


def _architecture(v: Variant) -> str:
    """The series without its skip family and shortcut: plain and skip twins share it."""
    words = v.series.split()[1:]
    return " ".join(w for w in words if w not in SHORTCUT_WORDS)


def _evidence(a: Stat, b: Stat, difference: float) -> str:
    limit = spread(a, b)
    if limit is None:
        return "single seed"
    return "beyond seed spread" if abs(difference) > limit else "within seed spread"


def _evidence_text(evidence: str, a: Stat, b: Stat) -> str:
    if evidence == "single seed":
        return "one run on at least one side, so seed noise cannot be ruled out"
    return f"{evidence}: largest std {100 * spread(a, b):.2f} pp, n = {a.n} and {b.n}"


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
            f"Warning: every training error is near chance level ({_pct(chance)}): the nets "
            "have barely started to learn, so differences between them may be noise."
        )
    return lines


def _degradation_pairs(plain: dict[int, Variant]) -> list[dict[str, Any]]:
    pairs = []
    for d1, d2 in combinations(sorted(plain), 2):
        a, b = _train_error(plain[d1]), _train_error(plain[d2])
        difference = b.mean - a.mean
        degraded = difference > 0
        evidence = _evidence(a, b, difference)
        shallow, deep = plain[d1].label, plain[d2].label
        if degraded:
            text = (
                f"{deep} ends with a higher training error than {shallow}: {_pct(b.mean)} vs "
                f"{_pct(a.mean)} (+{100 * difference:.2f} pp; {_evidence_text(evidence, a, b)})."
            )
        else:
            text = (
                f"No degradation between {shallow} and {deep}: the deeper net ends at "
                f"{_pct(b.mean)}, not above {_pct(a.mean)} ({_evidence_text(evidence, a, b)})."
            )
        pairs.append(
            {
                "depths": [d1, d2],
                "shallow": shallow,
                "deep": deep,
                "shallow_error": a.as_dict(),
                "deep_error": b.as_dict(),
                "degraded": degraded,
                "evidence": evidence,
                "text": text,
            }
        )
    return pairs


def _degradation_status(pairs: list[dict]) -> str:
    if not pairs:
        return NOT_ENOUGH
    degraded = [p for p in pairs if p["degraded"]]
    if not degraded:
        return "no"
    if len(degraded) < len(pairs):
        return f"mixed: {len(degraded)} of {len(pairs)} depth pairs"
    evidence = {p["evidence"] for p in degraded}
    if evidence == {"beyond seed spread"}:
        return "yes, beyond seed spread"
    if "within seed spread" in evidence:
        return "appeared, but within seed spread in some pairs: not established"
    return "appeared in single-seed runs: not established beyond seed noise"


def _skip_pairs(
    plain_pairs: list[dict], plain: dict[int, Variant], skips: dict[int, Variant], family: str
) -> list[dict[str, Any]]:
    out = []
    for pair in plain_pairs:
        d1, d2 = pair["depths"]
        missing = [f"{family}-{d}" for d in (d1, d2) if d not in skips]
        if missing:
            text = f"{NOT_ENOUGH}: no completed {' or '.join(missing)} to compare with."
            out.append({"depths": [d1, d2], "outcome": NOT_ENOUGH, "text": text})
            continue
        r1, r2, p2 = _train_error(skips[d1]), _train_error(skips[d2]), _train_error(plain[d2])
        below_plain = r2.mean < p2.mean
        allowance = spread(r1, r2) or 0.0
        not_worse = r2.mean <= r1.mean + allowance
        removed = below_plain and not_worse
        versus_plain = _evidence(r2, p2, r2.mean - p2.mean)
        # established only if the degradation and the skip's gain both exceed the seed spread
        # and every variant compared has seeds
        evidence = {pair["evidence"], versus_plain}
        if spread(r1, r2) is None:
            evidence.add("single seed")
        weakest = min(evidence, key=EVIDENCE.index)
        parts = [
            f"{skips[d2].label} ends at {_pct(r2.mean)}, "
            + ("below" if below_plain else "not below")
            + f" {plain[d2].label} ({_pct(p2.mean)}; "
            + _evidence_text(versus_plain, r2, p2)
            + ")",
            ("and not above" if not_worse else "but above")
            + f" {skips[d1].label} ({_pct(r1.mean)}"
            + (f" + spread {100 * allowance:.2f} pp" if allowance else "")
            + ")",
        ]
        if not pair["degraded"]:
            outcome, conclusion = NOTHING, "there was no degradation to remove for this pair."
        elif removed:
            outcome = "removed"
            conclusion = f"the skip removed the degradation between depths {d1} and {d2}"
        else:
            outcome = "not removed"
            conclusion = f"the skip did not remove the degradation between depths {d1} and {d2}"
        if outcome != NOTHING and weakest != "beyond seed spread":
            conclusion = f"as far as these runs show, {conclusion} (not established: {weakest})"
        text = ", ".join(parts) + ": " + conclusion.rstrip(".") + "."
        out.append({"depths": [d1, d2], "outcome": outcome, "evidence": weakest, "text": text})
    return out


def _skips_status(pairs: list[dict]) -> str:
    """Judged only on the depth pairs where the plain nets degraded."""
    judged = [p for p in pairs if p["outcome"] in ("removed", "not removed")]
    unjudged = sum(p["outcome"] == NOT_ENOUGH for p in pairs)
    if not judged:
        return NOT_ENOUGH if unjudged else NOTHING
    removed = sum(p["outcome"] == "removed" for p in judged)
    status = "yes" if removed == len(judged) else "no" if removed == 0 else "mixed"
    status += f" ({removed} of {len(judged)} degraded depth pairs"
    if unjudged:
        status += f"; {unjudged} pair(s) without the runs to judge"
    weak = sorted({p["evidence"] for p in judged} - {"beyond seed spread"})
    return status + ")" + (f", not established ({' / '.join(weak)})" if weak else "")


def judge(study: str, variants: list[Variant]) -> dict[str, Any]:
    """The verdict for one study: statuses, the sentences behind them, and their numbers."""
    used = [v for v in variants if _train_error(v).n]  # completed, with a training error
    lines = _context(study, used) if used else []
    result: dict[str, Any] = {"study": study, "lines": lines, "series": []}
    architectures = sorted({_architecture(v) for v in used if v.skip == "none"})
    if not architectures:
        found = ", ".join(v.label for v in used) or "no completed runs"
        lines.append(
            f"Degradation: {NOT_ENOUGH} — it needs completed plain nets (skip=none) of two "
            f"depths on the same dataset and recipe; found: {found}."
        )
        result.update(degradation=NOT_ENOUGH, skips=NOT_ENOUGH)
        return result
    for arch in architectures:
        plain = {v.depth: v for v in used if v.skip == "none" and _architecture(v) == arch}
        title = f"plain nets{' (' + arch + ')' if arch else ''}"
        pairs = _degradation_pairs(plain)
        status = _degradation_status(pairs)
        series = {"architecture": arch, "degradation": status, "pairs": pairs, "skips": []}
        if not pairs:
            lines.append(
                f"Degradation ({title}): {NOT_ENOUGH} — it needs completed plain nets of two "
                f"depths; found only {', '.join(v.label for v in plain.values())}."
            )
        else:
            lines.append(f"Degradation ({title}): {status}.")
            lines += [p["text"] for p in pairs]
        skip_series = sorted({v.series for v in used if v.skip != "none"})
        for name in skip_series:
            skips = {v.depth: v for v in used if v.series == name and _architecture(v) == arch}
            if not skips or not pairs:
                continue
            family = name.split()[0]
            skip_pairs = _skip_pairs(pairs, plain, skips, family)
            skip_status = _skips_status(skip_pairs)
            lines.append(f"Did {name} remove it? {skip_status}.")
            lines += [p["text"] for p in skip_pairs]
            series["skips"].append({"series": name, "removed": skip_status, "pairs": skip_pairs})
        if pairs and not series["skips"]:
            lines.append(f"Did skips remove it? {NOT_ENOUGH}: no completed skip nets to compare.")
        result["series"].append(series)
    first = result["series"][0]
    result["degradation"] = first["degradation"]
    result["skips"] = first["skips"][0]["removed"] if first["skips"] else NOT_ENOUGH
    return result
