"""The report's verdict: its tests, its labels, its three outcomes, and no run dropped silently.

Run folders are written by hand (a summary.json each: what a finished, diverged or failed run
leaves behind; a metrics.csv and .hydra/config.yaml where a test needs them), so the training
errors are exactly known; CIs, bounds and p-values are checked against scipy.stats called here.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from itertools import combinations
from pathlib import Path

import pytest
import yaml
from scipy.stats import mannwhitneyu, ttest_ind

from degradation.errors import UserError
from degradation.preflight import check_fields
from degradation.report.__main__ import main as report_main
from degradation.report.comparison import strength
from degradation.report.runs import find_runs, group_runs
from degradation.report.stats import contrast, holm, p_text, smallest_exact_p
from degradation.report.verdict import judge

PLAIN_20 = [0.100, 0.110, 0.105]
PLAIN_56 = [0.150, 0.160, 0.155]
RESNET_20 = [0.080, 0.085, 0.090]
RESNET_56 = [0.060, 0.065, 0.070]
SKIP = {"plain": "none", "resnet": "add", "concatnet": "concat"}

# Final training errors (%) of the published runs, from the run tables of
# experiments/fashion_mnist_fig6/report/report.md and experiments/demo/report/report.md
FASHION_MNIST = {
    "plain-20": [14.96, 14.49, 15.39],
    "plain-56": [29.45, 26.91, 26.76],
    "resnet-20": [16.88, 13.95, 13.48],
    "resnet-56": [19.02, 21.25, 20.82],
}
DEMO = {
    "plain-20": [37.03, 64.84, 37.34],
    "plain-56": [69.84, 88.59, 91.25],
    "resnet-20": [6.09, 2.34, 10.47],
    "resnet-56": [25.00, 24.69, 19.06],
}


def write_run(folder: Path, name: str, seed: int, outcome, config=None, curve=None, **extra):
    """One run folder: a float outcome is a completed run's final training error,
    ("diverged", step) a diverged run, ("failed", error) a failed one; `config` a nested
    .hydra/config.yaml, `curve` [(step, train error)] its metrics.csv, `extra` summary keys."""
    family, depth = name.split()[0].rsplit("-", 1)
    summary = {
        "name": name,
        "dataset": "synthetic",
        "seed": seed,
        "depth": int(depth),
        "skip": SKIP[family],
        "status": "completed",
        "steps": 500,
        "final": {},
        **extra,
    }
    if isinstance(outcome, float):
        summary["final"]["train_error"] = outcome
    elif outcome[0] == "diverged":
        summary.update(status="diverged", diverged_step=outcome[1], steps=outcome[1])
    else:
        summary.update(status="failed", error=outcome[1])
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    if config is not None:
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if curve is None and summary["status"] == "completed":  # the files a completed run has
        curve = [(summary["steps"], outcome)]  # one window: too short for the plateau check
        (folder / "layer_responses.json").write_text(json.dumps({"std": [1.0]}))
    if curve is not None:
        rows = "".join(f"{step},{error}\n" for step, error in curve)
        (folder / "metrics.csv").write_text("step,train/error\n" + rows)


def write_runs(root: Path, runs: dict[str, list], curves=None, config=None) -> Path:
    """One run folder per seed of each variant (write_run); curves[name](seed, error) gives a
    run's training curve."""
    for name, outcomes in runs.items():
        for seed, outcome in enumerate(outcomes):
            curve = curves[name](seed, outcome) if curves and name in curves else None
            write_run(root / f"{name},seed={seed}", name, seed, outcome, config, curve)
    return root


def report(tmp_path: Path, runs: dict[str, list], capsys, *args: str) -> tuple[dict, str, str]:
    """(the study's verdict from report.json, report.md, what the CLI printed)."""
    root = write_runs(tmp_path / "runs", runs)
    report_main([str(root), "--out", str(tmp_path / "report"), *args])
    printed = capsys.readouterr().out
    (verdict,) = json.loads((tmp_path / "report" / "report.json").read_text())["verdict"]
    return verdict, (tmp_path / "report" / "report.md").read_text(), printed


def verdict_of(root: Path, runs: dict[str, list] | None = None, **kwargs) -> dict:
    if runs is not None:
        write_runs(root, runs, **kwargs)
    variants = group_runs(find_runs(root))
    (study,) = {v.dataset for v in variants}
    return judge(study, variants)


def comparison(verdict: dict, claim: str) -> dict:
    (found,) = [c for c in verdict["comparisons"] if c["claim"] == claim]
    return found


def the_case(verdict: dict) -> dict:
    (series,) = verdict["series"]
    (skip,) = series["skips"]
    (case,) = skip["pairs"]
    return case


def percent(errors: dict[str, list[float]]) -> dict[str, list[float]]:
    return {name: [e / 100 for e in values] for name, values in errors.items()}


def assert_welch(c: dict, first: list[float], second: list[float], alternative: str, margin=0.0):
    """The comparison's numbers are scipy's Welch test of first vs second (errors in pp): the
    one-sided bound on the test's side, the two-sided CI (report.json), the one-sided p."""
    two_sided = ttest_ind(first, second, equal_var=False).confidence_interval(0.95)
    one_sided = ttest_ind(first, second, equal_var=False, alternative=alternative)
    side = one_sided.confidence_interval(0.95)
    shifted = [x - margin for x in first]
    p = ttest_ind(shifted, second, equal_var=False, alternative=alternative).pvalue
    assert c["bound_pp"] == pytest.approx(
        100 * (side.low if alternative == "greater" else side.high)
    )
    assert c["ci_low_pp"] == pytest.approx(100 * two_sided.low)
    assert c["ci_high_pp"] == pytest.approx(100 * two_sided.high)
    assert c["p_one_sided"] == pytest.approx(p)
    assert c["difference_pp"] == pytest.approx(
        100 * (sum(first) / len(first) - sum(second) / len(second))
    )
    assert (c["n"], c["alpha"]) == ([len(first), len(second)], 0.05)


def sentences(verdict: dict) -> list[str]:
    return [s for line in verdict["lines"] for s in re.split(r"(?<=\.)\s+", line) if s]


# --- the three outcomes (issue 21 §2: "removed" from point estimates) --------------------------


def test_published_fashion_mnist_is_reduced_not_removed_and_the_demo_neither(tmp_path):
    """Issue 21's numbers from the published per-seed errors: Fashion-MNIST reduced (DiD
    7.2 pp, CI 3.3–11.0, p = 0.002), not removed; demo neither shown (DiD p = 0.08)."""
    fmnist = verdict_of(tmp_path / "fmnist", percent(FASHION_MNIST))
    case = the_case(fmnist)
    assert case["outcome"] == "reduced"
    reduced = case["reduced_test"]
    assert round(reduced["difference_pp"], 1) == 7.2
    assert (round(reduced["ci_low_pp"], 1), round(reduced["ci_high_pp"], 1)) == (3.3, 11.0)
    assert f"{reduced['p_one_sided']:.1g}" == "0.002"
    assert reduced["bound_pp"] == pytest.approx(4.106, abs=1e-3)  # one-sided 95 % bound
    assert reduced["evidence"] == "established, underpowered"
    removed = case[
        "removed_test"
    ]  # resnet-56 is 5.6 pp above resnet-20: not within the 2 pp margin
    assert removed["evidence"].startswith("not established") and removed["margin_pp"] == 2.0
    assert_welch(
        removed, *(percent(FASHION_MNIST)[v] for v in ("resnet-56", "resnet-20")), "less", 0.02
    )
    assert fmnist["skips"].startswith("reduced, not removed (1 of 1 degraded depth pairs")
    assert any(s.startswith("Depths 20 → 56: reduced, not removed.") for s in sentences(fmnist))

    demo = verdict_of(tmp_path / "demo", percent(DEMO))
    case = the_case(demo)
    assert case["outcome"] == "not reduced"
    assert f"{case['reduced_test']['p_one_sided']:.2f}" == "0.08"
    assert case["reduced_test"]["difference_pp"] == pytest.approx(20.21, abs=0.01)
    assert demo["skips"].startswith("neither removal nor reduction shown")


def test_the_difference_in_differences_is_welchs_test_of_a_four_mean_contrast():
    """Two groups with weights (1, −1): exactly scipy's Welch test; four: Satterthwaite's df."""
    a, b = [0.10, 0.13, 0.11, 0.16], [0.05, 0.06, 0.09]
    two = contrast([a, b], [1, -1])
    welch = ttest_ind(a, b, equal_var=False, alternative="greater")
    assert two.p == pytest.approx(welch.pvalue) and two.df == pytest.approx(welch.df)
    assert two.bound == pytest.approx(welch.confidence_interval(0.95).low)
    groups = [[0.3, 0.32, 0.29], [0.1, 0.11, 0.12], [0.07, 0.08, 0.06], [0.08, 0.09, 0.1]]
    four = contrast(groups, [1, -1, -1, 1])
    v = [statistics.variance(g) / 3 for g in groups]  # each group's s² / n
    assert four.estimate == pytest.approx(0.303333 - 0.11 - 0.07 + 0.09, abs=1e-6)
    assert four.df == pytest.approx(sum(v) ** 2 / sum(x * x / 2 for x in v))
    assert contrast([[0.1], [0.2]], [1, -1]).p is None  # one value: no spread to test by


def test_a_skip_net_that_still_rises_by_the_margin_is_reduced_not_removed(tmp_path, capsys):
    """resnet-56 ends 2 pp above resnet-20 against plain nets' 10 pp: the old verdict said
    'removed' from the point estimates; the margin's test cannot show it within 2 pp."""
    runs = {"plain-20": PLAIN_20, "plain-56": [e + 0.05 for e in PLAIN_56]}
    runs.update({"resnet-20": RESNET_20, "resnet-56": [e + 0.02 for e in RESNET_20]})
    verdict, md, printed = report(tmp_path, runs, capsys)
    case = the_case(verdict)
    assert case["outcome"] == "reduced" and case["removed_test"]["p_one_sided"] == pytest.approx(
        0.5
    )
    assert case["reduced_test"]["evidence"] == "established, underpowered"
    assert "skips: reduced, not removed (1 of 1 degraded depth pairs" in printed
    assert "resnet-56 ends 2.00 pp above resnet-20, not shown to be within the 2 pp margin" in md


def test_removed_needs_the_margin_test_and_says_whether_equivalence_holds(tmp_path):
    """resnet-56 2 pp below resnet-20: within the margin (removed), and reduced; the other
    leg of TOST fails (it may be lower by more than 2 pp), which the line says."""
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56, "resnet-20": RESNET_20}
    verdict = verdict_of(tmp_path / "lower", {**runs, "resnet-56": RESNET_56})
    case = the_case(verdict)
    assert case["outcome"] == "removed" and case["evidence"] == "established, underpowered"
    assert_welch(case["removed_test"], RESNET_56, RESNET_20, "less", 0.02)
    assert case["reduced_test"]["evidence"] == "established, underpowered"  # stated separately
    assert case["equivalence"]["p_other_leg"] == pytest.approx(0.5)
    assert "Equivalence within ±2 pp is not shown" in " ".join(verdict["lines"])
    same = verdict_of(tmp_path / "same", {**runs, "resnet-56": [0.081, 0.086, 0.089]})
    assert the_case(same)["outcome"] == "removed"
    assert "resnet-56 and resnet-20 are also equivalent within ±2 pp (TOST" in " ".join(
        same["lines"]
    )


def test_removed_is_judged_on_the_skip_nets_when_the_deeper_plain_net_failed(tmp_path):
    """Every plain-56 seed diverged: resnet-56 at 86 % vs resnet-20 at 5.5 % is not removed
    (the old verdict's third leg held whatever the skip nets did); reduced, qualitatively."""
    diverged = [("diverged", 340), ("diverged", 120), ("diverged", 560)]
    runs = {"plain-20": PLAIN_20, "plain-56": diverged}
    runs |= {"resnet-20": [0.05, 0.055, 0.06], "resnet-56": [0.85, 0.86, 0.87]}
    verdict = verdict_of(tmp_path, runs)
    case = the_case(verdict)
    assert case["outcome"] != "removed"
    assert case["removed_test"]["holds"] is False
    assert case["removed_test"]["difference_pp"] == pytest.approx(80.5)
    assert (case["outcome"], case["evidence"]) == (
        "reduced",
        "qualitative (plain-56 failed to train)",
    )
    text = " ".join(verdict["lines"])
    assert "resnet-56 ends 80.50 pp above resnet-20, not shown to be within the 2 pp margin" in text
    assert "Reduced, qualitatively: plain-56 failed to train (3 of 3 seeds diverged" in text
    assert "Near chance: 3 of 3 resnet-56 seeds" in text


# --- labels (issue 21 §2: labels that strengthen when seeds are deleted) -----------------------


def test_three_seeds_a_side_are_underpowered_for_any_exact_test():
    """The claim behind 'underpowered', checked with scipy: 3 v 3 gives an exact test at best
    p = 1/20 = 0.05 (not below), 3 v 4 1/35; Welch's t can go lower only by assuming normality."""
    assert mannwhitneyu([4, 5, 6], [1, 2, 3], alternative="greater").pvalue == 0.05
    assert smallest_exact_p(3, 3) == 0.05 and smallest_exact_p(3, 4) == pytest.approx(1 / 35)
    assert ttest_ind([4, 5, 6], [1, 2, 3], alternative="greater").pvalue < 0.05


def test_labels_come_from_the_test_and_never_rise_when_seeds_are_deleted(tmp_path):
    """From 6 seeds a side down to 1, in every order of deletion the label never gets
    stronger: fewer seeds mark it underpowered, a single seed (untested) ranks lowest."""
    strong_low, strong_high = (
        [0.10, 0.11, 0.105, 0.102, 0.108, 0.104],
        [0.15, 0.16, 0.155, 0.152, 0.158, 0.151],
    )
    weak_low, weak_high = [0.10, 0.13, 0.105, 0.12], [0.115, 0.125, 0.11, 0.13]
    labels: dict[str, dict[tuple, str]] = {"strong": {}, "weak": {}}
    for tag, low, high in (("strong", strong_low, strong_high), ("weak", weak_low, weak_high)):
        for n in range(len(low), 0, -1):
            for kept in combinations(range(len(low)), n):
                runs = {"plain-20": [low[i] for i in kept], "plain-56": [high[i] for i in kept]}
                (pair,) = verdict_of(tmp_path / f"{tag}{kept}", runs)["series"][0]["pairs"]
                labels[tag][kept] = pair["evidence"]
        for kept, evidence in labels[tag].items():
            for fewer in combinations(kept, len(kept) - 1) if len(kept) > 1 else ():
                assert strength(labels[tag][fewer]) <= strength(evidence), (kept, fewer)
    strong, weak = labels["strong"], labels["weak"]
    assert strong[(0, 1, 2, 3, 4, 5)] == strong[(0, 1, 2, 3)] == "established"
    assert strong[(0, 1, 2)] == strong[(0, 1)] == "established, underpowered"
    assert strong[(0,)] == weak[(0,)] == "single seed"  # untested: the weakest of all
    assert weak[(0, 1, 2, 3)].startswith("not established (p = ")  # 4 v 4 could reach 0.05
    assert weak[(0, 1)].startswith("not established, underpowered (p = ")  # was: suggestive
    assert strength("single seed") < strength("qualitative") < strength("not established (p = 1)")


def test_two_seeds_a_side_are_labelled_by_their_test(tmp_path, capsys):
    """plain-20 = 10/11 %, plain-56 = 11.5/12.5 %: one-sided p = 0.084 at n = 2: not
    established (the old code called it 'suggestive', above a 3-seed 'not established')."""
    verdict, md, printed = report(
        tmp_path, {"plain-20": [0.10, 0.11], "plain-56": [0.115, 0.125]}, capsys
    )
    status = "yes, but not established (1 of 1 depth pairs: 1 not established, underpowered)"
    assert verdict["degradation"] == status and verdict["alpha"] == 0.05
    (pair,) = verdict["series"][0]["pairs"]
    assert pair["evidence"] == "not established, underpowered (p = 0.084)"
    assert_welch(pair["comparison"], [0.115, 0.125], [0.10, 0.11], "greater")
    assert pair["comparison"]["p_holm"] == pytest.approx(pair["comparison"]["p_one_sided"])
    row = "| synthetic | plain-56 above plain-20 | +1.50 | ≥ -0.56 | 0.084 | 0.084 | 2, 2 |"
    assert row + " not established, underpowered (p = 0.084) | — |" in md
    assert printed.splitlines()[0] == f"synthetic: degradation {status}; skips: not enough runs"


def test_five_clearly_separated_seeds_a_side_are_established(tmp_path, capsys):
    spread = [0.0, 0.004, -0.004, 0.002, -0.002]
    runs = {
        name: [m + d for d in spread]
        for name, m in (("plain-20", 0.105), ("plain-56", 0.155), ("resnet-20", 0.085))
    }
    runs["resnet-56"] = [0.085 + d for d in reversed(spread)]
    verdict, md, _ = report(tmp_path, runs, capsys)
    assert verdict["degradation"] == "yes, established (1 of 1 depth pairs)"
    assert verdict["skips"] == "removed (1 of 1 degraded depth pairs: 1 established)"
    assert {c["evidence"] for c in verdict["comparisons"]} == {"established"}
    degradation = comparison(verdict, "plain-56 above plain-20")
    assert_welch(degradation, runs["plain-56"], runs["plain-20"], "greater")
    assert (
        "- plain-56 ends 5.00 pp above plain-20 (15.50 % vs 10.50 %; one-sided 95 % bound ≥ "
        f"+{degradation['bound_pp']:.2f} pp; p < 0.001, Holm < 0.001; n = 5 and 5): established."
    ) in md


# --- bounds, Holm, readable sentences -----------------------------------------------------------


def test_holm_adjusts_over_the_studys_family_and_says_what_it_changes(tmp_path):
    """The demo's per-seed errors: plain-56 above plain-20 is p = 0.018 alone, 0.073 with
    Holm over the study's 5 tests, and the verdict says so."""
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # Holm 1979, by hand
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    verdict = verdict_of(tmp_path, percent(DEMO))
    tested = [c for c in verdict["comparisons"] if c["p_one_sided"] is not None]
    assert len(tested) == 5
    assert [c["p_holm"] for c in tested] == pytest.approx(holm([c["p_one_sided"] for c in tested]))
    degradation = comparison(verdict, "plain-56 above plain-20")
    assert degradation["p_holm"] == pytest.approx(0.0729, abs=1e-4)
    assert degradation["established_holm"] is False
    text = " ".join(verdict["lines"])
    assert "Family: the 5 tests of this study" in text
    assert "Not established after the adjustment: plain-56 above plain-20 (Holm p = 0.073)" in text


def test_the_report_shows_one_sided_bounds_not_two_sided_cis(tmp_path, capsys):
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56, "resnet-20": RESNET_20}
    verdict, md, _ = report(tmp_path, {**runs, "resnet-56": RESNET_56}, capsys)
    assert "95 % CI" not in md
    assert "| One-sided 95 % bound (pp) | One-sided p | Holm p |" in md
    for c in verdict["comparisons"]:
        for key in ("difference_pp", "bound_pp", "p_one_sided", "p_holm", "ci_low_pp"):
            assert isinstance(c[key], float), key  # numbers stay numbers in report.json
        sign = "≥" if c["alternative"] == "greater" else "≤"
        assert f"| {sign} {c['bound_pp']:+.2f} |" in md


def test_every_sentence_of_the_verdict_is_short(tmp_path):
    """One sentence per claim, none over 40 words, in every kind of case (the old verdict's
    'removed' sentence ran to 120 words)."""
    diverged = [("diverged", 340), ("diverged", 120), ("diverged", 560)]
    oom = ("failed", "RuntimeError: CUDA out of memory")
    cases = {
        "fmnist": percent(FASHION_MNIST),
        "demo": percent(DEMO),
        "removed": {
            "plain-20": PLAIN_20,
            "plain-56": PLAIN_56,
            "resnet-20": RESNET_20,
            "resnet-56": RESNET_56,
        },  # fmt: skip
        "failed": {
            "plain-20": PLAIN_20,
            "plain-56": diverged,
            "plain-110": [oom],
            "resnet-20": RESNET_20,
            "resnet-56": [*RESNET_56, ("diverged", 9)],
        },  # fmt: skip
        "single": {"plain-20": [0.1], "plain-56": PLAIN_56, "concatnet-20": [0.2, 0.2]},
    }
    for name, runs in cases.items():
        for sentence in sentences(verdict_of(tmp_path / name, runs)):
            assert len(sentence.split()) <= 40, (name, sentence)


# --- duplicates (issue 21 §2, issue 24 row 4) ----------------------------------------------------


def test_duplicate_run_folders_count_once_and_are_named(tmp_path):
    """Seed 0 of plain-56 three times: twice with one config hash (e.g. an explicit
    optim.momentum=0.9), once with another (e.g. a plain net's shortcut=projection): n = 2
    seeds, not 4; a bf16 run of the same config and seed is another run, never averaged in."""
    root = tmp_path / "runs"
    fp32 = {"speed": {"precision": "32-true"}}
    for seed, error in enumerate(PLAIN_20):
        write_run(root / f"p20-{seed}", "plain-20", seed, error, config_hash=f"a{seed}", **fp32)
    for folder, seed, error, hash_ in (
        ("depth=56,seed=0", 0, 0.150, "b0"),
        ("depth=56,optim.momentum=0.9,seed=0", 0, 0.150, "b0"),
        ("depth=56,seed=0,shortcut=projection", 0, 0.150, "c0"),
        ("depth=56,seed=1", 1, 0.160, "b1"),
    ):
        write_run(root / folder, "plain-56", seed, error, config_hash=hash_, **fp32)
    write_run(
        root / "bf16", "plain-56", 0, 0.17, config_hash="b0", speed={"precision": "bf16-mixed"}
    )
    variants = group_runs(find_runs(root))
    (p56,) = [v for v in variants if v.name == "plain-56" and "32-true" in v.recipe]
    assert sorted(r.seed for r in p56.runs) == [0, 1]
    assert {d.run.path.name: d.same_run for d in p56.duplicates} == {
        "depth=56,seed=0": True,  # the folder of the same run that sorts first is counted
        "depth=56,seed=0,shortcut=projection": False,
    }
    assert [v.recipe for v in variants if v.name == "plain-56"] == [
        "trainer.precision=32-true",
        "trainer.precision=bf16-mixed",
    ]
    verdict = judge("synthetic", [v for v in variants if "32-true" in v.recipe])
    (degradation,) = [c for c in verdict["comparisons"] if c["kind"] == "degradation"]
    assert degradation["n"] == [2, 3]
    text = " ".join(verdict["lines"])
    assert "2 duplicate run folder(s) counted once, one sample per seed" in text
    assert "depth=56,seed=0 (config hash b0, seed 0)" in text
    assert "depth=56,seed=0,shortcut=projection (seed 0, config hash c0 here, b0 there)" in text


def test_the_report_lists_duplicates_and_counts_each_seed_once(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_run(root / f"p20-{seed}", "plain-20", seed, PLAIN_20[seed], config_hash=f"a{seed}")
        write_run(root / f"p56-{seed}", "plain-56", seed, PLAIN_56[seed], config_hash=f"b{seed}")
    write_run(root / "p56-0-again", "plain-56", 0, PLAIN_56[0], config_hash="b0")
    report_main([str(root), "--out", str(tmp_path / "report")])
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    md = (tmp_path / "report" / "report.md").read_text()
    (p56,) = [v for v in data["variants"] if v["variant"] == "plain-56"]
    assert (p56["n"], p56["seeds"]) == (2, [0, 1])  # was: n = 3, seeds 0, 0, 1
    assert p56["duplicates"] == 1
    assert data["duplicates"] == [
        {
            "run": "p56-0-again",
            "counted": "p56-0",
            "same_run": True,
            "seed": 0,
            "config_hash": "b0",
            "status": "completed",
        }  # fmt: skip
    ]
    assert "1 duplicate run folder(s) counted once: p56-0-again: the same run as p56-0" in md
    assert "| p56-0-again | plain-56 | 0 | duplicate | the same run as p56-0 (config hash b0" in md
    assert "| p56-0-again | plain-56 | 0 | completed (duplicate, not counted) |" in md


# --- slow training (issue 21 §2) -------------------------------------------------------------


def falling(seed: int, final: float) -> list[tuple[int, float]]:
    """A curve still falling steeply at the end: 40 windows, down 0.4 % a window."""
    return [(10 * i + 9, final + 0.004 * (39 - i)) for i in range(40)]


def levelled(seed: int, final: float) -> list[tuple[int, float]]:
    """A curve flat over its last half, with a little noise."""
    return [(10 * i + 9, final + max(0.0, 0.01 * (20 - i)) + 0.002 * (i % 2)) for i in range(40)]


def test_near_chance_is_flagged_per_variant(tmp_path):
    """Two plain-56 seeds at 88 % and 91 % (chance 90 %): flagged, though others learned."""
    runs = {"plain-20": [0.37, 0.65, 0.37], "plain-56": [0.70, 0.886, 0.9125]}
    verdict = verdict_of(tmp_path, runs)
    assert (
        "Near chance: 2 of 3 plain-56 seeds end at or above 81.00 % (chance 90.00 %): 88.60 %, "
        "91.25 %; they have barely learned."
    ) in verdict["lines"]
    assert not [line for line in verdict["lines"] if "plain-20 seeds" in line]


def test_a_deeper_plain_net_still_falling_trains_slower_rather_than_degrades(tmp_path):
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56}
    slow = verdict_of(tmp_path / "slow", runs, curves={"plain-20": levelled, "plain-56": falling})
    (pair,) = slow["series"][0]["pairs"]
    assert pair["reading"] == "trains slower at this budget"
    assert pair["deep_ending"]["still_falling"] is True
    assert pair["deep_ending"]["change_pp"] == pytest.approx(-3.6)  # 9 × 0.4 %
    assert (
        "plain-56 trains slower at this budget rather than degrades: its mean training "
        "error still fell 3.60 pp over the last quarter of training." in " ".join(slow["lines"])
    )
    assert "the deeper net trains slower at this budget" in slow["degradation"]
    assert any(line.startswith("Still learning: plain-56's") for line in slow["lines"])

    flat = verdict_of(tmp_path / "flat", runs, curves={"plain-20": levelled, "plain-56": levelled})
    (pair,) = flat["series"][0]["pairs"]
    assert pair["reading"] == "degrades" and pair["deep_ending"]["still_falling"] is False
    assert "slower" not in " ".join(flat["lines"])


# --- the margin: fixed in the config, read from the runs, overridden by --margin ----------------


def test_the_margin_comes_from_the_runs_config_or_from_margin(tmp_path, capsys):
    runs = percent(FASHION_MNIST)  # resnet-56 5.6 pp above resnet-20
    root = write_runs(tmp_path / "runs", runs, config={"verdict": {"margin_pp": 20.0}})
    report_main([str(root), "--out", str(tmp_path / "wide")])
    (wide,) = json.loads((tmp_path / "wide" / "report.json").read_text())["verdict"]
    assert (wide["margin_pp"], the_case(wide)["outcome"]) == (20.0, "removed")
    assert (
        "Margin of 'removed': 20 pp (verdict.margin_pp, recorded in the runs' config)"
        in (wide["lines"][1])
    )
    report_main([str(root), "--out", str(tmp_path / "narrow"), "--margin", "2"])
    (narrow,) = json.loads((tmp_path / "narrow" / "report.json").read_text())["verdict"]
    assert (narrow["margin_pp"], the_case(narrow)["outcome"]) == (2.0, "reduced")
    assert "(--margin, which overrides the runs' 20 pp)" in narrow["lines"][1]


def test_margin_settles_runs_that_record_different_margins(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed, (p20, p56) in enumerate(zip(PLAIN_20, PLAIN_56, strict=True)):
        margin = {"verdict": {"margin_pp": 2.0 + seed % 2}}
        write_run(root / f"p20-{seed}", "plain-20", seed, p20, margin)
        write_run(root / f"p56-{seed}", "plain-56", seed, p56, margin)
    report_main([str(root), "--out", str(tmp_path / "report"), "--margin", "2.5"])
    (verdict,) = json.loads((tmp_path / "report" / "report.json").read_text())["verdict"]
    assert verdict["margin_pp"] == 2.5
    assert "(--margin, which overrides the runs' 2 and 3 pp)" in verdict["lines"][1]


@pytest.mark.parametrize(
    ("args", "config", "expected"),
    [
        (["--margin", "0"], None, "error: --margin 0 is not valid: it must be a positive number"),
        (["--margin", "nan"], None, "error: --margin nan is not valid: it must be a finite number"),
        (["--margin", "-1"], None, "error: --margin -1 is not valid: it must be a positive number"),
        ([], "abc", "verdict.margin_pp=abc is not valid: it must be a number"),
        (
            [],
            "mixed",
            "error: the runs of synthetic record different verdict.margin_pp: 2 (4 "
            "runs), 3 (4 runs); choose one with --margin PP",
        ),  # fmt: skip
    ],
)
def test_a_bad_or_disputed_margin_is_one_line_and_writes_nothing(
    tmp_path, capsys, args, config, expected
):
    root = tmp_path / "runs"
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56}
    for name, outcomes in runs.items():
        for seed, error in enumerate([*outcomes, outcomes[0] + 0.001]):
            margin = (2.0 if seed % 2 else 3.0) if config == "mixed" else config
            verdict = {"verdict": {"margin_pp": margin}} if config else None
            write_run(root / f"{name},seed={seed}", name, seed, error, verdict)
    with pytest.raises(SystemExit) as exit_:
        report_main([str(root), "--out", str(tmp_path / "report"), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and expected in err
    assert "Traceback" not in err and not (tmp_path / "report").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("verdict.margin_pp=0", "verdict.margin_pp=0.0 is not valid: it must be a positive number"),
        ("verdict.margin_pp=inf", "verdict.margin_pp=inf is not valid: it must be a finite number"),
        ("verdict.alpha=1", "verdict.alpha=1.0 is not valid: it must be in (0, 1)"),
    ],
)
def test_the_schema_checks_the_verdict_settings_of_a_run(compose_cfg, override, message):
    assert compose_cfg().verdict.margin_pp == 2.0 and compose_cfg().verdict.alpha == 0.05
    with pytest.raises(UserError, match=re.escape(message)):
        check_fields(compose_cfg(override))


# --- every run counts -------------------------------------------------------------------------


def test_diverged_skip_seeds_are_named_and_the_survivors_establish_nothing(tmp_path, capsys):
    """3 of 5 resnet-56 seeds diverged: the 2 survivors cannot establish anything."""
    survivors = RESNET_56[:2]
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56, "resnet-20": RESNET_20}
    runs["resnet-56"] = [*survivors, ("diverged", 300), ("diverged", 120), ("diverged", 940)]
    verdict, md, _ = report(tmp_path, runs, capsys)
    label = "not established, underpowered (3 of 5 resnet-56 seeds diverged)"
    versus = comparison(verdict, "resnet-56 below plain-56")
    assert versus["evidence"] == label
    assert_welch(versus, survivors, PLAIN_56, "less")  # the numbers are the survivors'
    (resnet56, _) = versus["runs"]
    assert (resnet56["runs"], resnet56["n"], resnet56["diverged"]) == (5, 2, 3)
    assert sorted(resnet56["diverged_steps"]) == [120, 300, 940]
    case = the_case(verdict)
    assert case["removed_test"]["evidence"] == label  # the skip net claimed lower lost seeds
    assert case["reduced_test"]["evidence"] == label  # resnet-56 is claimed lower there too
    assert case["outcome"] == "not reduced"
    lost = "resnet-56: 3 of 5 seeds diverged at steps 120, 300, 940"
    assert f"| {label} | {lost} |" in md
    assert f"Not in the test: {lost}." in md


def test_a_depth_whose_seeds_all_diverged_failed_to_train_and_stays_in_the_verdict(
    tmp_path, capsys
):
    diverged = [("diverged", 340), ("diverged", 120), ("diverged", 560)]
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56, "plain-110": diverged}
    runs |= {"resnet-20": RESNET_20, "resnet-56": RESNET_56, "resnet-110": [0.05, 0.055, 0.06]}
    verdict, md, printed = report(tmp_path, runs, capsys)
    degradation = (
        "yes, but not all established (3 of 3 depth pairs: 1 established, underpowered, "
        "2 qualitative)"
    )
    assert verdict["degradation"] == degradation
    assert f"degradation {degradation}; skips: " in printed
    pairs = {tuple(p["depths"]): p for p in verdict["series"][0]["pairs"]}
    assert set(pairs) == {(20, 56), (20, 110), (56, 110)}
    for shallow, mean in ((20, "10.50"), (56, "15.50")):
        pair = pairs[(shallow, 110)]
        assert pair["degraded"] is True
        assert pair["evidence"] == "qualitative (plain-110 failed to train)"
        text = (
            "Degradation, qualitative: plain-110 failed to train (3 of 3 seeds diverged at steps "
            f"120, 340, 560), while plain-{shallow} trained ({mean} %, n = 3); no t-test."
        )
        assert f"- {text}\n" in md
        c = pair["comparison"]
        assert c["p_one_sided"] is c["bound_pp"] is c["difference_pp"] is None  # no t-test
        assert (c["n"], c["runs"][0]["diverged"], c["runs"][0]["runs"]) == ([0, 3], 3, 3)
    cases = {tuple(c["depths"]): c for c in verdict["series"][0]["skips"][0]["pairs"]}
    assert cases[(56, 110)]["outcome"] == "removed"  # resnet-110 within 2 pp of resnet-56
    assert cases[(56, 110)]["evidence"] == "established, underpowered"
    assert cases[(56, 110)]["reduced_test"]["evidence"] == "qualitative (plain-110 failed to train)"


def test_seeds_against_the_claim_and_identical_seeds_are_not_established(tmp_path):
    verdict = verdict_of(tmp_path / "reversed", {"plain-20": PLAIN_56, "plain-56": PLAIN_20})
    assert verdict["degradation"] == "no (0 of 1 depth pairs degraded)"
    assert verdict["skips"] == "nothing to remove (no degradation)"
    (pair,) = verdict["series"][0]["pairs"]
    p = ttest_ind(PLAIN_20, PLAIN_56, equal_var=False, alternative="greater").pvalue
    assert (
        pair["evidence"]
        == f"not established, underpowered (p {p_text(p)})"
        == ("not established, underpowered (p > 0.99)")
    )
    assert pair["reading"] is None
    assert [line for line in verdict["lines"] if line.startswith("No degradation")] == [
        "No degradation: plain-56 ends 5.00 pp below plain-20 (10.50 % vs 15.50 %; one-sided "
        f"95 % bound ≥ {pair['comparison']['bound_pp']:+.2f} pp; p > 0.99, Holm > 0.99; n = 3 "
        "and 3): not established, underpowered."
    ]
    identical = {"plain-20": [0.1, 0.1, 0.1], "plain-56": [0.2, 0.2, 0.2]}
    (pair,) = verdict_of(tmp_path / "identical", identical)["series"][0]["pairs"]
    assert pair["comparison"]["p_one_sided"] is pair["comparison"]["bound_pp"] is None
    assert pair["evidence"] == "not established, underpowered (no variation between seeds)"


def test_failed_runs_are_named_and_a_variant_with_none_trained_is_not_dropped(tmp_path):
    oom = ("failed", "RuntimeError: CUDA out of memory\ntraceback")
    runs = {"plain-20": [*PLAIN_20, oom], "plain-56": PLAIN_56, "plain-110": [oom, oom]}
    verdict = verdict_of(tmp_path, runs)
    assert verdict["degradation"] == (
        "yes, established (1 of 1 depth pairs; 1 underpowered; 2 without the runs to judge)"
    )
    texts = [line for line in verdict["lines"] if "plain-20" in line and "plain-1" not in line]
    assert texts[-1].endswith(
        "Not in the test: plain-20: 1 of 4 runs failed (RuntimeError: CUDA out of memory)."
    )
    assert (
        "plain-110 vs plain-20: not enough runs, as plain-110 has no result (2 of 2 runs failed "
        "(RuntimeError: CUDA out of memory))."
    ) in " ".join(verdict["lines"])
    assert comparison(verdict, "plain-56 above plain-20")["n"] == [3, 3]


def test_single_seed_is_untested_and_ranks_lowest(tmp_path):
    verdict = verdict_of(tmp_path, {"plain-20": [0.10], "plain-56": PLAIN_56})
    (pair,) = verdict["series"][0]["pairs"]
    c = pair["comparison"]
    assert (c["bound_pp"], c["ci_low_pp"], c["p_one_sided"], c["p_holm"]) == (None,) * 4
    assert pair["evidence"] == "single seed"
    assert verdict["degradation"] == (
        "yes, but not established (1 of 1 depth pairs: 1 single seed)"
    )
    assert strength("single seed") < strength("not established, underpowered (p = 0.9)")


def test_the_statuses_summarise_every_depth_pair_and_skip_series(tmp_path):
    """plain-110 between plain-20 and plain-56; concatnet-56 rises more with depth than the
    plain nets did; no skip net at depth 110."""
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56, "plain-110": [0.12, 0.125, 0.13]}
    runs |= {"resnet-20": RESNET_20, "resnet-56": RESNET_56}
    runs |= {"concatnet-20": RESNET_20, "concatnet-56": [0.14, 0.145, 0.15]}
    verdict = verdict_of(tmp_path, runs)
    assert verdict["degradation"] == (
        "mixed (2 of 3 depth pairs degraded: 2 established, underpowered)"
    )
    skips = (
        "mixed (of 2 skip series × degraded depth pairs: 1 removed, 1 not reduced; "
        "2 without the runs to judge)"
    )
    assert verdict["skips"] == skips
    assert f"Overall: degradation {verdict['degradation']}; skips: {skips}." in verdict["lines"]
    removed = {s["series"]: s["removed"] for s in verdict["series"][0]["skips"]}
    assert removed == {
        "resnet": "removed (1 of 1 degraded depth pairs: 1 established, underpowered; 1 without "
        "the runs to judge)",
        "concatnet": "neither removal nor reduction shown (1 of 1 degraded depth pairs: 1 not "
        "established, underpowered; 1 without the runs to judge)",
    }
    (concat,) = [s for s in verdict["series"][0]["skips"] if s["series"] == "concatnet"]
    assert concat["pairs"][0]["outcome"] == "not reduced"
    assert (
        "Depths 20 → 110: not enough runs: no concatnet-110 runs to compare." in (verdict["lines"])
    )
    assert all(not math.isnan(c["p_holm"]) for c in verdict["comparisons"] if c["p_holm"])
