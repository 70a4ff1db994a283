"""`python -m degradation.report.compare A B` on hand-made run folders: same or different
verdict, final errors within or beyond seed noise, single seeds, bad folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats

from degradation.report.compare import compare_paths, main

# final training errors by variant, three seeds: plain-56 degrades, resnet-56 removes it
BASE = {
    ("none", 20): [0.10, 0.11, 0.12],
    ("none", 56): [0.30, 0.31, 0.32],
    ("add", 20): [0.08, 0.09, 0.10],
    ("add", 56): [0.06, 0.07, 0.08],
}


def write_runs(root: Path, errors: dict, test_gap: float = 0.02) -> Path:
    """One run folder (summary.json) per seed of each variant; test error = train + test_gap."""
    for (skip, depth), values in errors.items():
        family = "plain" if skip == "none" else "resnet"
        for seed, train_error in enumerate(values):
            run = root / f"depth={depth},seed={seed},skip={skip}"
            run.mkdir(parents=True)
            summary = {
                "name": f"{family}-{depth}",
                "depth": depth,
                "skip": skip,
                "dataset": "synthetic",
                "seed": seed,
                "status": "completed",
                "steps": 400,
                "final": {"train_error": train_error, "test_error": train_error + test_gap},
            }
            (run / "summary.json").write_text(json.dumps(summary))
    return root


def shifted(errors: dict, by: float, only=None) -> dict:
    return {k: [x + by for x in v] if only in (None, k) else v for k, v in errors.items()}


def row(result: dict, variant: str, metric: str = "train_error") -> dict:
    return next(r for r in result["errors"] if (r["variant"], r["metric"]) == (variant, metric))


def test_same_verdict_and_errors_within_seed_noise(tmp_path, capsys):
    a = write_runs(tmp_path / "a", BASE)
    b = write_runs(tmp_path / "b", shifted(BASE, 0.005))
    result = compare_paths(a, b)
    assert result["same_verdict"] and result["errors_agree"] is True and result["agree"]
    assert {r["outcome"] for r in result["errors"]} == {"agree"} and len(result["errors"]) == 8
    plain20 = row(result, "plain-20")
    assert plain20["difference"] == pytest.approx(-0.005)
    welch = stats.ttest_ind(BASE[("none", 20)], shifted(BASE, 0.005)[("none", 20)], equal_var=False)
    assert plain20["p"] == pytest.approx(welch.pvalue)
    answers = {r["question"]: (r["a"], r["b"]) for r in result["studies"][0]["answers"]}
    assert answers == {
        "plain 20 -> 56 degraded": ("yes", "yes"),
        "resnet 20 -> 56": ("removed", "removed"),
    }
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "Result: same verdict; final errors agree within seed noise." in out
    line = "plain-20 train error: A 11.00 ± 1.00 % (n=3), B 11.50 ± 1.00 % (n=3), A-B -0.50 pp"
    assert line in out


def test_different_verdicts_are_reported_and_exit_1(tmp_path, capsys):
    a = write_runs(tmp_path / "a", BASE)
    no_degradation = {**BASE, ("none", 56): [0.05, 0.06, 0.07]}
    b = write_runs(tmp_path / "b", no_degradation)
    result = compare_paths(a, b)
    assert not result["same_verdict"] and not result["agree"]
    answers = {r["question"]: (r["a"], r["b"]) for r in result["studies"][0]["answers"]}
    assert answers["plain 20 -> 56 degraded"] == ("yes", "no")
    assert answers["resnet 20 -> 56"] == ("removed", "nothing to remove (no degradation)")
    assert main([str(a), str(b)]) == 1
    assert "Result: different verdicts;" in capsys.readouterr().out


def test_an_error_beyond_seed_noise_is_flagged_though_the_verdict_matches(tmp_path, capsys):
    a = write_runs(tmp_path / "a", BASE)
    b = write_runs(tmp_path / "b", shifted(BASE, 0.10, only=("add", 20)))
    result = compare_paths(a, b)
    assert result["same_verdict"] and result["errors_agree"] is False and not result["agree"]
    flagged = {(r["variant"], r["metric"]) for r in result["errors"] if r["outcome"] == "differ"}
    assert flagged == {("resnet-20", "train_error"), ("resnet-20", "test_error")}
    assert row(result, "resnet-20")["p_adjusted"] < 0.05 <= row(result, "plain-56")["p_adjusted"]
    assert main([str(a), str(b)]) == 1
    assert "final errors differ beyond seed noise" in capsys.readouterr().out


def test_single_seeds_are_named_and_not_tested(tmp_path, capsys):
    one_seed = {k: v[:1] for k, v in BASE.items()}
    a = write_runs(tmp_path / "a", one_seed)
    b = write_runs(tmp_path / "b", shifted(one_seed, 0.03))
    result = compare_paths(a, b)
    assert {r["outcome"] for r in result["errors"]} == {"single seed"}
    assert result["errors_agree"] is None and result["same_verdict"] and result["agree"]
    assert main([str(a), str(b), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    line = "plain-20 train error: A 10.00 % (n=1), B 13.00 % (n=1), A-B -3.00 pp: single seed"
    assert line in out
    assert "final errors not tested (single seed)" in out
    assert json.loads((tmp_path / "c.json").read_text())["errors_agree"] is None


def test_identical_seeds_without_spread_agree(tmp_path):
    flat = {k: [v[0]] * 3 for k, v in BASE.items()}
    result = compare_paths(write_runs(tmp_path / "a", flat), write_runs(tmp_path / "b", flat))
    assert {(r["p"], r["outcome"]) for r in result["errors"]} == {(1.0, "agree")}


def test_a_folder_without_runs_is_one_line_exit_2(tmp_path, capsys):
    a = write_runs(tmp_path / "a", BASE)
    (tmp_path / "empty").mkdir()
    assert main([str(a), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no run folders found" in err and err.count("\n") == 1
