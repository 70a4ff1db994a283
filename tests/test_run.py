"""End to end through the real CLI: Hydra multirun, Lightning training, run folders."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile

from conftest import REPO, run_cli, summaries

SUMMARY_KEYS = {
    "depth", "skip", "shortcut", "dataset", "seed", "params", "status", "steps", "final",
    "wall_time_s", "throughput_img_s", "git_commit", "config_hash", "family", "block", "flops",
}  # fmt: skip
FINAL_KEYS = {"train_error", "train_loss", "val_error", "test_error"}


def test_smoke_sweep_writes_four_completed_run_folders(smoke_sweep):
    out = smoke_sweep.parent.parent
    runs = summaries(out)
    assert len(runs) == 4
    variants = {(s["depth"], s["skip"]) for s in runs.values()}
    assert variants == {(20, "none"), (20, "add"), (56, "none"), (56, "add")}
    for run_dir, summary in runs.items():
        assert run_dir.parent == out / "sweeps" / "smoke"
        assert SUMMARY_KEYS <= summary.keys()
        assert FINAL_KEYS <= summary["final"].keys()
        assert summary["status"] == "completed"
        assert summary["steps"] == 20
        assert summary["dataset"] == "synthetic"
        for key in FINAL_KEYS:
            assert 0 <= summary["final"][key] <= 1 or key.endswith("loss")
        assert (run_dir / ".hydra" / "config.yaml").is_file()
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
        rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
        lr_steps = [int(r["step"]) for r in rows if r["lr"]]
        assert lr_steps == list(range(20)), "lr must be logged at every training step"
        errors = [float(r["train/error"]) for r in rows if r["train/error"]]
        assert len(errors) == 4  # 20 steps, one window of 5 steps each
        assert summary["final"]["train_error"] == errors[-1]
        assert any(r["val/error"] for r in rows) and any(r["test/error"] for r in rows)
    by_variant = {(s["depth"], s["skip"]): s for s in runs.values()}
    # plain and option-A residual twins have exactly the same parameters (docs/recipe.md)
    assert by_variant[(20, "none")]["params"] == by_variant[(20, "add")]["params"] == 269_722
    assert by_variant[(56, "none")]["params"] == by_variant[(56, "add")]["params"] == 853_018
    assert by_variant[(56, "none")]["shortcut"] == "not_applicable"


def test_single_run_folder_is_named_by_its_overrides(tmp_path, out):
    result = run_cli(
        "experiment=smoke", "depth=8", "skip=none", "trainer.max_steps=6", f"output_root={out}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = out / "runs" / "smoke" / "depth=8,skip=none,trainer.max_steps=6"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["name"] == "plain-8"
    assert summary["steps"] == 6
    assert summary["command"].startswith("python -m degradation.run experiment=smoke")
    assert "plain-8 s0: completed" in result.stdout


def test_wheel_ships_configs_and_runs_from_another_directory(tmp_path):
    """`pip install .` (not editable): the configs must travel inside the package."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wheel = next(wheels.glob("degradation-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "degradation/conf/config.yaml" in names
    assert "degradation/conf/experiment/smoke.yaml" in names
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); sys.argv = ['run', *sys.argv[2:]];"
         "import degradation, degradation.run as r; assert sys.argv[0]"
         " and degradation.__file__.startswith(sys.path[0]), degradation.__file__; r.main()",
         str(site), "experiment=smoke", "depth=8", "trainer.max_steps=4"],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(summaries(elsewhere / "outputs")) == 1
