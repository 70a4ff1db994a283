"""The report's verdict: Welch statistics, evidence labels, and no run dropped silently.

Run folders are written by hand (a summary.json each: what a finished, diverged or failed run
leaves behind), so the training errors are exactly known; every CI and p-value is checked
against scipy.stats.ttest_ind called here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import ttest_ind

from degradation.report.__main__ import main as report_main
from degradation.report.runs import find_runs, group_runs
from degradation.report.verdict import judge

PLAIN_20 = [0.100, 0.110, 0.105]
PLAIN_56 = [0.150, 0.160, 0.155]
RESNET_20 = [0.080, 0.085, 0.090]
RESNET_56 = [0.060, 0.065, 0.070]


def write_runs(root: Path, runs: dict[str, list]) -> Path:
    """One run folder per entry: a float is a completed run's final training error,
    ("diverged", step) a diverged run, ("failed", error) a failed one."""
    for name, outcomes in runs.items():
        family, depth = name.split()[0].rsplit("-", 1)
        for seed, outcome in enumerate(outcomes):
            summary = {
                "name": name,
                "dataset": "synthetic",
                "seed": seed,
                "depth": int(depth),
                "skip": {"plain": "none", "resnet": "add", "concatnet": "concat"}[family],
                "status": "completed",
                "steps": 500,
                "final": {},
            }
            if isinstance(outcome, float):
                summary["final"]["train_error"] = outcome
            elif outcome[0] == "diverged":
                summary.update(status="diverged", diverged_step=outcome[1], steps=outcome[1])
            else:
                summary.update(status="failed", error=outcome[1])
            folder = root / f"{name},seed={seed}"
            folder.mkdir(parents=True)
            (folder / "summary.json").write_text(json.dumps(summary))
    return root


def report(tmp_path: Path, runs: dict[str, list], capsys) -> tuple[dict, str, str]:
    """(the study's verdict from report.json, report.md, what the CLI printed)."""
    root = write_runs(tmp_path / "runs", runs)
    report_main([str(root), "--out", str(tmp_path / "report")])
    printed = capsys.readouterr().out
    (verdict,) = json.loads((tmp_path / "report" / "report.json").read_text())["verdict"]
    return verdict, (tmp_path / "report" / "report.md").read_text(), printed


def verdict_of(tmp_path: Path, runs: dict[str, list]) -> dict:
    (study,) = {v.dataset for v in group_runs(find_runs(write_runs(tmp_path / "runs", runs)))}
    return judge(study, group_runs(find_runs(tmp_path / "runs")))


def comparison(verdict: dict, claim: str) -> dict:
    (found,) = [c for c in verdict["comparisons"] if c["claim"] == claim]
    return found


def assert_welch(c: dict, first: list[float], second: list[float], alternative: str, bound=0.0):
    """The comparison's numbers are scipy's Welch test of first vs second (errors in pp)."""
    two_sided = ttest_ind(first, second, equal_var=False).confidence_interval(0.95)
    shifted = [x - bound for x in first]
    p = ttest_ind(shifted, second, equal_var=False, alternative=alternative).pvalue
    assert c["ci_low_pp"] == pytest.approx(100 * two_sided.low)
    assert c["ci_high_pp"] == pytest.approx(100 * two_sided.high)
    assert c["p_one_sided"] == pytest.approx(p)
    assert c["difference_pp"] == pytest.approx(
        100 * (sum(first) / len(first) - sum(second) / len(second))
    )
    assert (c["n_first"], c["n_second"], c["alpha"]) == (len(first), len(second), 0.05)


def test_two_seeds_a_side_with_overlapping_errors_are_suggestive(tmp_path, capsys):
    """plain-20 = 10/11 %, plain-56 = 11.5/12.5 %: one-sided p = 0.084, not a result."""
    verdict, md, printed = report(
        tmp_path, {"plain-20": [0.10, 0.11], "plain-56": [0.115, 0.125]}, capsys
    )
    line = (
        "plain-56 ends above plain-20: 12.00 % vs 10.50 % (+1.50 pp, 95 % CI -1.54 to "
        "+4.54 pp, one-sided p = 0.084): suggestive (n = 2 and 2)."
    )
    status = "yes, but not established (1 of 1 depth pairs: 1 suggestive)"
    assert verdict["degradation"] == status and verdict["alpha"] == 0.05
    (pair,) = verdict["series"][0]["pairs"]
    assert (pair["text"], pair["evidence"], pair["degraded"]) == (
        line,
        "suggestive (n = 2 and 2)",
        True,
    )
    assert_welch(pair["comparison"], [0.115, 0.125], [0.10, 0.11], "greater")
    assert f"- {line}\n" in md
    assert "alpha = 0.05" in md
    row = "| synthetic | plain-56 above plain-20 | +1.50 | -1.54 to +4.54 | 0.084 | 2, 2 |"
    assert row + " suggestive (n = 2 and 2) | — |" in md
    assert printed.splitlines()[0] == (
        f"synthetic: degradation {status}; skips removed it: not enough runs"
    )


def test_three_clearly_separated_seeds_a_side_are_established(tmp_path, capsys):
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56, "resnet-20": RESNET_20}
    runs["resnet-56"] = RESNET_56
    verdict, md, printed = report(tmp_path, runs, capsys)
    assert verdict["degradation"] == "yes, established (1 of 1 depth pairs)"
    assert verdict["skips"] == "yes, established (1 of 1 degraded depth pairs)"
    assert printed.splitlines()[0] == (
        "synthetic: degradation yes, established (1 of 1 depth pairs); "
        "skips removed it: yes, established (1 of 1 degraded depth pairs)"
    )
    degradation = comparison(verdict, "plain-56 above plain-20")
    assert_welch(degradation, PLAIN_56, PLAIN_20, "greater")
    assert_welch(comparison(verdict, "resnet-56 below plain-56"), RESNET_56, PLAIN_56, "less")
    # the skip net's change with depth, tested against the plain CI's lower end
    margin = degradation["ci_low_pp"] / 100
    not_worse = comparison(verdict, f"resnet-56 − resnet-20 below {100 * margin:+.2f} pp")
    assert_welch(not_worse, RESNET_56, RESNET_20, "less", bound=margin)
    assert {c["evidence"] for c in verdict["comparisons"]} == {"established"}
    assert (
        "- plain-56 ends above plain-20: 15.50 % vs 10.50 % (+5.00 pp, 95 % CI +3.87 to "
        "+6.13 pp, one-sided p < 0.001, n = 3 and 3): established.\n"
    ) in md
    (case,) = verdict["series"][0]["skips"][0]["pairs"]
    assert case["outcome"] == "removed" and case["evidence"] == "established"
    assert case["text"].endswith(
        "resnet-56 vs resnet-20: 6.50 % vs 8.50 % (-2.00 pp, 95 % CI -3.13 to -0.87 pp, "
        "n = 3 and 3): a smaller change than the plain nets' +5.00 pp; one-sided p < 0.001 for "
        "a change below +3.87 pp, the lower end of their CI: established; so the skip net "
        "removed it: established."
    )


def test_a_skip_net_that_still_rises_with_depth_is_said_to_remove_it_only_relatively(
    tmp_path, capsys
):
    """resnet-56 ends 2 pp above resnet-20, far less than the plain nets' 10 pp: 'removed'
    in the verdict's sense (relative to the plain nets), and the line says it still rises."""
    runs = {"plain-20": PLAIN_20, "plain-56": [e + 0.05 for e in PLAIN_56]}
    runs.update({"resnet-20": RESNET_20, "resnet-56": [e + 0.02 for e in RESNET_20]})
    verdict, _, _ = report(tmp_path, runs, capsys)
    (case,) = verdict["series"][0]["skips"][0]["pairs"]
    assert case["outcome"] == "removed" and case["evidence"] == "established"
    assert case["text"].endswith(
        "so the skip net removed it: established (relative to the plain nets: resnet-56 still "
        "ends +2.00 pp above resnet-20)."
    )


def test_diverged_skip_seeds_are_named_and_keep_skips_from_a_clean_yes(tmp_path, capsys):
    """3 of 5 resnet-56 seeds diverged: the 2 survivors cannot establish anything."""
    survivors = RESNET_56[:2]
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56, "resnet-20": RESNET_20}
    runs["resnet-56"] = [*survivors, ("diverged", 300), ("diverged", 120), ("diverged", 940)]
    verdict, md, _ = report(tmp_path, runs, capsys)
    assert verdict["degradation"] == "yes, established (1 of 1 depth pairs)"
    assert verdict["skips"] == (
        "yes, but not established (1 of 1 degraded depth pairs: 1 not established)"
    )
    label = "not established (3 of 5 resnet-56 seeds diverged)"
    versus = comparison(verdict, "resnet-56 below plain-56")
    assert versus["evidence"] == label
    assert_welch(versus, survivors, PLAIN_56, "less")  # the numbers are the survivors'
    (resnet56, _) = versus["runs"]
    assert (resnet56["runs"], resnet56["n"], resnet56["diverged"]) == (5, 2, 3)
    assert sorted(resnet56["diverged_steps"]) == [120, 300, 940]
    (case,) = verdict["series"][0]["skips"][0]["pairs"]
    assert case["outcome"] == "removed" and case["evidence"] == label
    assert case["text"].endswith(
        f"so the skip net removed it as far as these runs show; not established: weakest leg "
        f"resnet-56 below plain-56, {label}. resnet-56: 3 of 5 seeds diverged at steps 120, "
        "300, 940."
    )
    assert f"- {case['text']}\n" in md
    assert f"| {label} | resnet-56: 3 of 5 seeds diverged at steps 120, 300, 940 |" in md


def test_a_depth_whose_seeds_all_diverged_failed_to_train_and_stays_in_the_verdict(
    tmp_path, capsys
):
    diverged = [("diverged", 340), ("diverged", 120), ("diverged", 560)]
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56, "plain-110": diverged}
    runs |= {"resnet-20": RESNET_20, "resnet-56": RESNET_56, "resnet-110": [0.05, 0.055, 0.06]}
    verdict, md, printed = report(tmp_path, runs, capsys)
    degradation = "yes, but not established (3 of 3 depth pairs: 1 established, 2 qualitative)"
    skips = "yes, but not established (3 of 3 degraded depth pairs: 1 established, 2 qualitative)"
    assert (verdict["degradation"], verdict["skips"]) == (degradation, skips)
    assert f"degradation {degradation}; skips removed it: {skips}" in printed
    pairs = {tuple(p["depths"]): p for p in verdict["series"][0]["pairs"]}
    assert set(pairs) == {(20, 56), (20, 110), (56, 110)}
    for shallow, mean in ((20, "10.50"), (56, "15.50")):
        pair = pairs[(shallow, 110)]
        assert pair["degraded"] is True
        assert pair["evidence"] == "qualitative (plain-110 failed to train)"
        assert pair["text"] == (
            "plain-110 failed to train: 3 of 3 seeds diverged at steps 120, 340, 560, while "
            f"plain-{shallow} trained ({mean} %, n = 3): degradation of a qualitative kind, "
            "not a t-test result."
        )
        assert f"- {pair['text']}\n" in md
        c = pair["comparison"]
        assert c["p_one_sided"] is c["ci_low_pp"] is c["difference_pp"] is None  # no t-test
        assert (c["n_first"], c["runs"][0]["diverged"], c["runs"][0]["runs"]) == (0, 3, 3)
    cases = {tuple(c["depths"]): c for c in verdict["series"][0]["skips"][0]["pairs"]}
    assert cases[(56, 110)]["outcome"] == "removed"
    assert cases[(56, 110)]["evidence"] == "qualitative (plain-110 failed to train)"


def test_seeds_against_the_claim_and_identical_seeds_are_not_established(tmp_path):
    verdict = verdict_of(tmp_path / "reversed", {"plain-20": PLAIN_56, "plain-56": PLAIN_20})
    assert verdict["degradation"] == "no (0 of 1 depth pairs degraded)"
    assert verdict["skips"] == "nothing to remove (no degradation)"
    (pair,) = verdict["series"][0]["pairs"]
    p = ttest_ind(PLAIN_20, PLAIN_56, equal_var=False, alternative="greater").pvalue
    assert pair["evidence"] == f"not established (p = {p:.2g})"
    assert pair["text"].startswith(
        "No degradation between plain-20 and plain-56: the deeper net ends at 10.50 %, not "
        "above 15.50 % (-5.00 pp, 95 % CI"
    )

    identical = {"plain-20": [0.1, 0.1, 0.1], "plain-56": [0.2, 0.2, 0.2]}
    (pair,) = verdict_of(tmp_path / "identical", identical)["series"][0]["pairs"]
    assert pair["comparison"]["p_one_sided"] is pair["comparison"]["ci_low_pp"] is None
    assert pair["text"] == (
        "plain-56 ends above plain-20: 20.00 % vs 10.00 % (+10.00 pp, no CI or test, n = 3 "
        "and 3): not established (no variation between seeds)."
    )


def test_failed_runs_are_named_and_a_variant_with_none_trained_is_not_dropped(tmp_path):
    oom = ("failed", "RuntimeError: CUDA out of memory\ntraceback")
    runs = {"plain-20": [*PLAIN_20, oom], "plain-56": PLAIN_56, "plain-110": [oom, oom]}
    verdict = verdict_of(tmp_path, runs)
    assert verdict["degradation"] == (
        "yes, established (1 of 1 depth pairs; 2 without the runs to judge)"
    )
    texts = [p["text"] for p in verdict["series"][0]["pairs"]]
    assert texts[0].endswith(
        "established. plain-20: 1 of 4 runs failed (RuntimeError: CUDA out of memory)."
    )
    assert texts[1] == (
        "plain-20 vs plain-110: not enough runs, as plain-110 has no result: 2 of 2 runs "
        "failed (RuntimeError: CUDA out of memory). plain-20: 1 of 4 runs failed "
        "(RuntimeError: CUDA out of memory)."
    )
    assert comparison(verdict, "plain-56 above plain-20")["n_second"] == 3


def test_single_seed_has_no_ci_or_p(tmp_path):
    verdict = verdict_of(tmp_path, {"plain-20": [0.10], "plain-56": PLAIN_56})
    (pair,) = verdict["series"][0]["pairs"]
    c = pair["comparison"]
    assert (c["ci_low_pp"], c["ci_high_pp"], c["p_one_sided"]) == (None, None, None)
    assert pair["evidence"] == "single seed"
    assert verdict["degradation"] == "yes, but not established (1 of 1 depth pairs: 1 single seed)"


def test_the_statuses_summarise_every_depth_pair_and_skip_series(tmp_path):
    """plain-110 between plain-20 and plain-56; concatnet-56 rises more with depth than the
    plain nets did; no skip net at depth 110."""
    runs = {"plain-20": PLAIN_20, "plain-56": PLAIN_56, "plain-110": [0.12, 0.125, 0.13]}
    runs |= {"resnet-20": RESNET_20, "resnet-56": RESNET_56}
    runs |= {"concatnet-20": RESNET_20, "concatnet-56": [0.14, 0.145, 0.15]}
    verdict = verdict_of(tmp_path, runs)
    assert verdict["degradation"] == "mixed (2 of 3 depth pairs degraded: 2 established)"
    skips = (
        "mixed (1 of 2 skip series × degraded depth pairs removed: 1 established; "
        "2 without the runs to judge)"
    )
    assert verdict["skips"] == skips
    assert (
        f"Overall: degradation {verdict['degradation']}; skips removed it: {skips}."
        in (verdict["lines"])
    )
    removed = {s["series"]: s["removed"] for s in verdict["series"][0]["skips"]}
    assert removed == {
        "resnet": "yes, established (1 of 1 degraded depth pairs; 1 without the runs to judge)",
        "concatnet": "no (0 of 1 degraded depth pairs removed; 1 without the runs to judge)",
    }
    (concat,) = [s for s in verdict["series"][0]["skips"] if s["series"] == "concatnet"]
    case = concat["pairs"][0]
    assert case["outcome"] == "not removed"
    margin = comparison(verdict, "plain-56 above plain-20")["ci_low_pp"]
    assert case["text"].endswith(
        "so these runs do not show that the skip net removed it (fails: concatnet-56 − "
        f"concatnet-20 below {margin:+.2f} pp)."
    )
    assert concat["pairs"][1]["text"] == (
        "Depths 20 → 110: not enough runs: no concatnet-110 runs to compare."
    )
