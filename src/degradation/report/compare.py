"""Do two sets of runs of one experiment agree?

    python -m degradation.report.compare A B [--json PATH]

Made for the demo trained twice on a GPU (experiments/gpu/): A on the default fast path
(bf16-mixed, channels_last, CUDA graphs, fused SGD), B in eager fp32. Both should reach the
same verdict, and their final errors should differ by no more than seed noise explains. Any
two folders of runs can be compared the same way (two machines, two versions of the code).

Same verdict: each folder is judged on its own by the report's rules (report/verdict.py),
and the answers must match: for every pair of plain depths, did the deeper net end with the
higher training error; for every skip series and pair, was the degradation removed, not
removed, absent or not judgeable. How strong the evidence is (single seed, within or beyond
seed spread) is shown but need not match: it depends on the seed noise being compared.

Errors agree: for every variant found in both folders, the final training error and the
final test error of A's seeds against B's, by Welch's two-sided t-test
(scipy.stats.ttest_ind, equal_var=False: the two paths need not share a seed variance, bf16
rounding may add its own). The p-values of all these tests are adjusted together by
Benjamini-Hochberg (scipy.stats.false_discovery_control), and a difference counts as beyond
seed noise when its adjusted p is below ALPHA = 0.05; so, when the two paths train alike,
the chance that any test flags a difference is 5 % however many variants there are. With
3 seeds a side, a test flags only differences of a few seed stds: "agree" means no evidence
of a difference beyond seed noise, not equality, so each line prints the difference and the
stds as well. A variant with a single seed on either side has no seed noise to compare
with: it is printed and marked "single seed", and nothing is concluded from it. Where both
sides have zero spread, equal means agree and different means differ.

Exit code: 0 when the verdicts match and no final error differs beyond seed noise, 1 when
either does not, 2 for a mistake (one line `error: ...`): a folder without runs, a file of a
run folder that cannot be read (named), a bad option, a --json that cannot be written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from scipy import stats as scipy_stats

from degradation.errors import CommandLineParser, UserError
from degradation.preflight import check_writable_file
from degradation.report.runs import Variant, find_runs, group_runs
from degradation.report.stats import describe
from degradation.report.verdict import NOT_ENOUGH, judge
from degradation.rundir import atomic_write_text, strict_json
from degradation.vocabulary import Skip, skip_label

ALPHA = 0.05  # false-alarm rate over all the error tests together (module docstring)
METRICS = ("train_error", "test_error")  # summary.json `final` keys compared
SINGLE_SEED = "single seed"
PLAIN = skip_label(Skip.none)  # the answers' word for plain nets


def load_studies(root: Path) -> dict[str, list[Variant]]:
    """The variants below root by study (dataset, plus the recipe where a dataset has several)."""
    studies: dict[str, list[Variant]] = {}
    for v in group_runs(find_runs(root)):
        studies.setdefault(v.dataset + (f" [{v.recipe}]" if v.recipe else ""), []).append(v)
    return studies


def verdict_answers(verdict: dict[str, Any]) -> dict[str, str]:
    """The verdict's answers, question by question, without their strength of evidence."""
    if verdict["degradation"] == NOT_ENOUGH and not verdict["series"]:
        return {"degradation": NOT_ENOUGH}
    answers = {}
    for series in verdict["series"]:
        arch = f" ({series['architecture']})" if series["architecture"] else ""
        if not series["pairs"]:  # one plain depth: nothing judged
            answers[f"{PLAIN}{arch} degradation"] = series["degradation"]
        for pair in series["pairs"]:
            d1, d2 = pair["depths"]
            answers[f"{PLAIN}{arch} {d1} -> {d2} degraded"] = "yes" if pair["degraded"] else "no"
        for skip in series["skips"]:
            for pair in skip["pairs"]:
                d1, d2 = pair["depths"]
                answers[f"{skip['series']}{arch} {d1} -> {d2}"] = pair["outcome"]
    return answers


def _pair_studies(a: dict, b: dict) -> list[tuple[str, str | None, str | None]]:
    """(title, A's study, B's study): by title, or the two single studies whatever their titles
    (a recipe label may differ between folders that each hold one recipe)."""
    if len(a) == 1 and len(b) == 1:
        (ta,), (tb,) = a, b
        return [(ta if ta == tb else f"{ta} / {tb}", ta, tb)]
    titles = list(a) + [t for t in b if t not in a]
    return [(t, t if t in a else None, t if t in b else None) for t in titles]


def _welch_p(a: list[float], b: list[float]) -> float:
    sa, sb = describe(a), describe(b)
    if sa.std == 0 and sb.std == 0:  # ttest_ind is undefined (nan) without any spread
        return 1.0 if sa.mean == sb.mean else 0.0
    return float(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


def _finals(v: Variant | None, metric: str) -> list[float]:
    if v is None:
        return []
    values = [r.final(metric) for r in v.usable]
    return [x for x in values if x is not None]


def compare_errors(pairs: list[tuple[str, Variant | None, Variant | None]]) -> list[dict]:
    """One row per (variant, metric) found on both sides; p-values BH-adjusted together."""
    rows = []
    for study, va, vb in pairs:
        for metric in METRICS:
            xa, xb = _finals(va, metric), _finals(vb, metric)
            if not xa or not xb:
                continue
            sa, sb = describe(xa), describe(xb)
            single = sa.n < 2 or sb.n < 2
            rows.append(
                {
                    "study": study,
                    "variant": (va or vb).label,
                    "metric": metric,
                    "a": sa.as_dict(),
                    "b": sb.as_dict(),
                    "difference": sa.mean - sb.mean,
                    "p": None if single else _welch_p(xa, xb),
                }
            )
    tested = [r for r in rows if r["p"] is not None]
    if tested:
        adjusted = scipy_stats.false_discovery_control([r["p"] for r in tested], method="bh")
        for row, p in zip(tested, adjusted, strict=True):
            row["p_adjusted"] = float(p)
    for row in rows:
        if row["p"] is None:
            row["outcome"] = SINGLE_SEED
        else:
            row["outcome"] = "differ" if row["p_adjusted"] < ALPHA else "agree"
    return rows


def compare_paths(a: Path, b: Path) -> dict[str, Any]:
    """Compare the runs below a and b (module docstring); UserError if either has none."""
    studies_a, studies_b = load_studies(a), load_studies(b)
    result: dict[str, Any] = {"a": str(a), "b": str(b), "alpha": ALPHA, "studies": []}
    variant_pairs = []
    for title, ta, tb in _pair_studies(studies_a, studies_b):
        va, vb = studies_a.get(ta, []), studies_b.get(tb, [])
        verdicts = [judge(title, vs) if vs else None for vs in (va, vb)]
        answers = [verdict_answers(v) if v else {} for v in verdicts]
        questions = list(answers[0]) + [q for q in answers[1] if q not in answers[0]]
        rows = [
            {"question": q, "a": answers[0].get(q, "absent"), "b": answers[1].get(q, "absent")}
            for q in questions
        ]
        result["studies"].append(
            {
                "study": title,
                "verdict_a": _status(verdicts[0]),
                "verdict_b": _status(verdicts[1]),
                "answers": rows,
                "same_verdict": all(r["a"] == r["b"] for r in rows),
            }
        )
        by_name_b = {v.name: v for v in vb}
        variant_pairs += [(title, v, by_name_b.get(v.name)) for v in va]
    result["errors"] = compare_errors(variant_pairs)
    outcomes = {r["outcome"] for r in result["errors"]}
    result["same_verdict"] = all(s["same_verdict"] for s in result["studies"])
    result["errors_agree"] = None if outcomes <= {SINGLE_SEED} else "differ" not in outcomes
    result["agree"] = result["same_verdict"] and result["errors_agree"] is not False
    return result


def _status(verdict: dict | None) -> dict[str, str] | None:
    if verdict is None:
        return None
    return {"degradation": verdict["degradation"], "skips": verdict["skips"]}


def _pct(stat: dict) -> str:
    if stat["std"] is None:
        return f"{100 * stat['mean']:.2f} % (n={stat['n']})"
    return f"{100 * stat['mean']:.2f} ± {100 * stat['std']:.2f} % (n={stat['n']})"


def render(result: dict[str, Any]) -> str:
    lines = [f"A: {result['a']}", f"B: {result['b']}"]
    for s in result["studies"]:
        lines.append(f"Verdict, {s['study']}:")
        for side in ("a", "b"):
            v = s[f"verdict_{side}"]
            text = f"degradation {v['degradation']}; skips: {v['skips']}" if v else "no runs"
            lines.append(f"  {side.upper()}: {text}")
        lines += [f"  {r['question']}: A {r['a']}, B {r['b']}" for r in s["answers"]]
        lines.append(f"  same verdict: {'yes' if s['same_verdict'] else 'no'}")
    tested = sum(r["p"] is not None for r in result["errors"])
    lines.append(
        f"Final errors, A vs B (Welch two-sided per variant, Benjamini-Hochberg over {tested} "
        f"test(s), alpha {result['alpha']}):"
    )
    for r in result["errors"]:
        line = (
            f"  {r['variant']} {r['metric'].replace('_', ' ')}: A {_pct(r['a'])}, "
            f"B {_pct(r['b'])}, A-B {100 * r['difference']:+.2f} pp: "
        )
        if r["p"] is None:
            line += "single seed, seed noise unknown: not tested"
        else:
            line += f"p {r['p']:.3g} (adjusted {r['p_adjusted']:.3g}): {r['outcome']}"
        lines.append(line)
    agree = result["errors_agree"]
    errors = {
        True: "final errors agree within seed noise",
        False: "final errors differ beyond seed noise",
        None: "final errors not tested (single seed)",
    }[agree]
    verdict = "same verdict" if result["same_verdict"] else "different verdicts"
    lines.append(f"Result: {verdict}; {errors}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = CommandLineParser(
        prog="python -m degradation.report.compare",
        description="Whether two folders of runs reach the same verdict and final errors.",
    )
    parser.add_argument("a", type=Path, help="a run, sweep or output folder")
    parser.add_argument("b", type=Path, help="the folder to compare it with")
    parser.add_argument("--json", type=Path, help="also write the comparison here")
    try:
        args = parser.parse_args(argv)
        if args.json is not None:
            check_writable_file(args.json, f"--json {args.json}")
        result = compare_paths(args.a, args.b)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(result))
    if args.json is not None:
        atomic_write_text(args.json, strict_json(result))
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
