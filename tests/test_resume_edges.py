"""Nothing lost at the edges of a resume: a metrics write that fails mid-way, Ctrl-C while
`resume=false` replaces a run, a run folder that was moved, a resume that would switch the
numerics (precision, channels_last, compile, fused SGD)."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import faults
import pytest
import torch
from conftest import run_cli, summaries

from degradation.callbacks import BestCheckpoint
from degradation.errors import UserError
from degradation.loggers import MetricsCSVLogger
from degradation.resume import plan_resume
from degradation.rundir import read_checkpoint
from degradation.speed import Speed

# 15 steps: one validation at step 10, right where last.ckpt is written; the run that fails at
# step 11 (DEGRADATION_FAIL_AT_STEP) leaves last.ckpt and best.ckpt of step 10. Pinned to fp32
# eager: a resume is compared with an uninterrupted run to the last bit.
BASE = [
    "experiment=smoke", "depth=8", "trainer.max_steps=15", "trainer.precision=32-true",
    "channels_last=false", "compile=none", "fused_sgd=false",
]  # fmt: skip
FAIL_AT_11 = faults.env({faults.FAIL_AT_STEP: "11"}, OMP_NUM_THREADS="1")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def only_run(root: Path) -> Path:
    (run_dir,) = summaries(root)
    return run_dir


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without the timing column (wall-clock throughput is never reproducible)."""
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if k != "throughput_img_s"} for r in csv.DictReader(f)]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The run folder of BASE, trained without an interruption."""
    root = tmp_path_factory.mktemp("reference") / "outputs"
    result = run_cli(*BASE, f"output_root={root}", cwd=root.parent, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(root)


@pytest.fixture(scope="module")
def failed_at_11(tmp_path_factory) -> Path:
    """An output root holding BASE's run failed at step 11 (last.ckpt and best.ckpt of step 10);
    tests copy it before they change it."""
    root = tmp_path_factory.mktemp("failed") / "outputs"
    result = run_cli(*BASE, f"output_root={root}", cwd=root.parent, env=FAIL_AT_11)
    assert result.returncode != 0 and "injected failure at step 11" in result.stderr
    run_dir = only_run(root)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "failed"
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 10
    return root


# --- metrics.csv: written so that no failure loses a row -------------------------------------


@pytest.mark.parametrize("fault", ["full disk", "kill"])
def test_a_metrics_rewrite_that_fails_midway_leaves_the_old_file_whole(
    tmp_path, monkeypatch, fault
):
    path = tmp_path / "metrics.csv"
    logger = MetricsCSVLogger(tmp_path)
    for step in range(3):
        logger.log_metrics({"lr": 0.1, "train/loss": 2.0 - step}, step=step)
    logger.save()
    before = path.read_bytes()
    real = csv.DictWriter.writerows

    def fails_midway(self, rows):
        rows = list(rows)
        real(self, rows[: len(rows) // 2])  # half of the rows reach the file, then:
        if fault == "kill":
            raise KeyboardInterrupt  # as a signal handler raises it
        raise OSError(errno.ENOSPC, "No space left on device")

    # new columns (the final test rows): Lightning rewrote the whole file in place here
    logger.log_metrics({"test/error": 0.5, "test/loss": 1.5}, step=3)
    with monkeypatch.context() as patched:
        patched.setattr(csv.DictWriter, "writerows", fails_midway)
        with pytest.raises((OSError, KeyboardInterrupt)) as caught:
            logger.save()
    assert path.read_bytes() == before  # every row it held, byte for byte
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary file left
    if fault == "full disk":
        assert caught.value.filename == str(path)  # train.py's one line names the file
    logger.save()  # space freed: the rows kept in memory are written after all
    rows = list(csv.DictReader(path.open(newline="")))
    assert [r["step"] for r in rows] == ["0", "1", "2", "3"] and rows[3]["test/error"] == "0.5"
    assert logger.rows_written == 4


def test_an_append_that_fails_midway_is_cut_back(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    logger = MetricsCSVLogger(tmp_path)
    logger.log_metrics({"lr": 0.1}, step=0)
    logger.save()
    before = path.read_bytes()
    logger.log_metrics({"lr": 0.1}, step=1)  # the same columns: appended
    real = os.write

    def full_disk(fd, data):
        real(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "write", full_disk)
        with pytest.raises(OSError, match="No space left"):
            logger.save()
    assert path.read_bytes() == before  # no torn row
    logger.save()
    assert path.read_text().splitlines() == ["lr,step", "0.1,0", "0.1,1"]


def test_a_metrics_csv_short_of_its_checkpoint_is_refused_never_completed(tmp_path, failed_at_11):
    root = tmp_path / "outputs"
    shutil.copytree(failed_at_11, root)
    run_dir = only_run(root)
    summary = (run_dir / "summary.json").read_bytes()
    (run_dir / "metrics.csv").write_bytes(b"")  # what Lightning's rewrite left after a kill
    rerun = run_cli(*BASE, f"output_root={root}", cwd=tmp_path, env=ONE_THREAD)
    assert rerun.returncode == 2
    (line,) = rerun.stderr.strip().splitlines()
    assert line.startswith(f"error: {run_dir / 'checkpoints' / 'last.ckpt'} (step 10) was saved")
    assert "metrics.csv, which holds 0 of those rows" in line and "resume=false" in line
    assert (run_dir / "summary.json").read_bytes() == summary  # still `failed`, not completed


# --- resume=false: the old run is set aside, then deleted ------------------------------------

# `python -m degradation.run` with one file-system call made to raise KeyboardInterrupt (what
# Ctrl-C raises) at the point where the old run is being cleared
INTERRUPTED_RUN = """
import os, runpy, shutil, sys
where = sys.argv.pop(1)
real_rmtree, real_rename = shutil.rmtree, os.rename
def rmtree(path, *args, **kwargs):
    real_rmtree(path, *args, **kwargs)  # one folder deleted, then Ctrl-C
    raise KeyboardInterrupt
def rename(src, dst, *args, **kwargs):
    if os.path.basename(src) == "checkpoints":  # summary.json moved, checkpoints not yet
        raise KeyboardInterrupt
    real_rename(src, dst, *args, **kwargs)
if where == "rmtree":
    shutil.rmtree = rmtree
else:
    os.rename = rename
sys.argv = ["degradation.run", *sys.argv[1:]]
runpy.run_module("degradation.run", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("where", ["rmtree", "rename"])
def test_ctrl_c_while_resume_false_clears_a_run_never_leaves_completed_over_missing_files(
    tmp_path, out, where
):
    run = ["experiment=smoke", "depth=8", "trainer.max_steps=4", f"output_root={out}"]
    assert run_cli(*run, cwd=tmp_path, env=ONE_THREAD).returncode == 0
    run_dir = only_run(out)
    rows = metrics_rows(run_dir)

    env = {**os.environ, "HYDRA_FULL_ERROR": "0", **ONE_THREAD}
    cut = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_RUN, where, *run, "resume=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert cut.returncode != 0 and "KeyboardInterrupt" in cut.stderr, cut.stderr[-3000:]

    rerun = run_cli(*run, cwd=tmp_path, env=ONE_THREAD)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "already completed, skipping" not in rerun.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert metrics_rows(run_dir) == rows  # every row, as the first run wrote them
    assert not (run_dir / ".replaced").exists()  # the old files are gone once it trained
    assert list(summaries(out)) == [run_dir]  # nothing else looks like a run


# --- a moved run folder resumes as if it had never moved -------------------------------------


def test_a_moved_run_folder_resumes_to_the_best_model_of_an_uninterrupted_run(
    tmp_path, failed_at_11, reference
):
    copied = tmp_path / "copied"
    shutil.copytree(failed_at_11, copied)
    moved = tmp_path / "moved"
    copied.rename(moved)  # as `mv`: the checkpoints' absolute paths point nowhere now
    resumed = run_cli(*BASE, f"output_root={moved}", cwd=tmp_path, env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from last.ckpt at step 10" in resumed.stdout
    run_dir = only_run(moved)
    got, want = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    assert got["status"] == "completed" and got["best_val"] is not None
    assert got["best_val"] == want["best_val"]
    best, reference_best = (weights(d / "checkpoints" / "best.ckpt") for d in (run_dir, reference))
    assert best.keys() == reference_best.keys()
    assert all(torch.equal(best[k], reference_best[k]) for k in best)


def test_best_checkpoint_state_is_restored_from_where_the_folder_is_now(tmp_path):
    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    saved = BestCheckpoint(dirpath=old, filename="best", monitor="val/error", save_top_k=1)
    saved.best_model_score = torch.tensor(0.25)
    saved.best_model_path = str(old / "best.ckpt")
    saved.best_k_models = {str(old / "best.ckpt"): torch.tensor(0.25)}
    restored = BestCheckpoint(dirpath=new, filename="best", monitor="val/error", save_top_k=1)
    restored.load_state_dict(saved.state_dict())
    assert restored.best_model_score == pytest.approx(0.25)  # Lightning dropped it
    here = str(Path(os.path.realpath(new)) / "best.ckpt")
    assert restored.best_model_path == here and list(restored.best_k_models) == [here]


# --- numerics: a resume never switches them --------------------------------------------------


@pytest.mark.parametrize(
    ("switch", "was", "now"),
    [
        ("channels_last=true", "channels_last=false", "channels_last=true"),
        ("compile=default", "compile=none", "compile=default"),
        ("fused_sgd=true", "fused_sgd=false", "fused_sgd=true"),
    ],
)
def test_a_resume_that_switches_the_numerics_is_refused(tmp_path, failed_at_11, switch, was, now):
    root = tmp_path / "outputs"
    shutil.copytree(failed_at_11, root)
    run_dir = only_run(root)
    last = (run_dir / "checkpoints" / "last.ckpt").read_bytes()
    other = [a for a in BASE if a.split("=")[0] != switch.split("=")[0]] + [switch]
    refused = run_cli(*other, f"output_root={root}", cwd=tmp_path, env=ONE_THREAD)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: {run_dir / 'checkpoints' / 'last.ckpt'} was trained with")
    assert f"trained with {was}, this run resolves {now}:" in line
    assert f"rerun with {was} to resume it, or with resume=false" in line
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == last
    assert only_run(root) == run_dir  # the same folder: these keys are outside the hash


def test_a_resume_with_the_same_numerics_goes_on(tmp_path, failed_at_11, reference):
    root = tmp_path / "outputs"
    shutil.copytree(failed_at_11, root)
    resumed = run_cli(*BASE, f"output_root={root}", cwd=tmp_path, env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got, want = (json.loads((d / "summary.json").read_text()) for d in (only_run(root), reference))
    assert got["status"] == "completed" and got["resumed_from_step"] == 10
    assert got["final"] == want["final"] and got["best_val"] == want["best_val"]


def _checkpoint(path: Path, numerics: dict | None) -> None:
    resume = {"config_hash": "h", "data": None, "metrics_rows": None}
    if numerics is not None:
        resume["numerics"] = numerics
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 10, "resume": resume}, path)


FP32 = {"trainer.precision": "32-true", "compile": "none", "channels_last": False}
NO_BF16 = "auto on CPU: the CPU has no native bf16 (no amx_bf16 or avx512_bf16)"


def test_auto_precision_resolving_otherwise_on_another_machine_is_a_switch(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    _checkpoint(path, {**FP32, "trainer.precision": "bf16-mixed", "fused_sgd": False})
    here = Speed("32-true", "none", False, False, None, False, NO_BF16)  # auto on this CPU
    with pytest.raises(UserError) as refused:
        plan_resume(tmp_path, "h", speed=here)
    message = str(refused.value)
    assert "trained with trainer.precision=bf16-mixed, this run resolves " in message
    assert f"trainer.precision=32-true ({NO_BF16})" in message
    assert "rerun with trainer.precision=bf16-mixed to resume it" in message
    assert "\n" not in message
    # the same resolution resumes; a checkpoint from before numerics were recorded is not compared
    bf16 = Speed("bf16-mixed", "none", False, False, None, False, "auto on CPU: native bf16")
    assert plan_resume(tmp_path, "h", speed=bf16).checkpoint == path
    path.unlink()
    path.parent.rmdir()
    _checkpoint(path, None)
    assert plan_resume(tmp_path, "h", speed=here).checkpoint == path
