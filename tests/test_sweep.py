"""The sweeper: duplicate plain jobs are trained once; a failed job does not stop the sweep."""

from __future__ import annotations

from conftest import run_cli, summaries

from hydra_plugins.degradation_sweeper import drop_duplicate_plain_jobs


def test_plain_jobs_that_differ_only_in_shortcut_run_once():
    jobs = [
        [f"skip={s}", f"shortcut={c}", "depth=20"]
        for s in ("none", "add", "concat")
        for c in ("zero_pad", "projection")
    ]
    kept, skipped = drop_duplicate_plain_jobs(jobs)
    assert len(kept) == 5
    assert skipped == [["skip=none", "shortcut=projection", "depth=20"]]
    # a different depth is a different plain net
    kept, skipped = drop_duplicate_plain_jobs(
        [
            ["skip=none", "shortcut=zero_pad", "depth=20"],
            ["skip=none", "shortcut=projection", "depth=56"],
        ]
    )
    assert len(kept) == 2 and not skipped


def test_sweep_over_skips_and_shortcuts_trains_five_distinct_variants(tmp_path, out):
    result = run_cli(
        "-m", "skip=none,add,concat", "shortcut=zero_pad,projection", "experiment=smoke",
        "depth=8", "trainer.max_steps=4", f"output_root={out}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipping skip=none shortcut=projection" in result.stdout
    runs = summaries(out)
    variants = {(s["skip"], s["shortcut"]) for s in runs.values()}
    assert variants == {
        ("none", "not_applicable"),
        ("add", "zero_pad"), ("add", "projection"),
        ("concat", "zero_pad"), ("concat", "projection"),
    }  # fmt: skip
    assert len(runs) == 5
    assert "sweep: 5 completed" in result.stdout
