"""Nothing lost: a killed run resumes to the same numbers; a finished one is skipped."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli, summaries

from degradation.callbacks import AtomicCheckpointIO
from degradation.data.sampler import ResumableSampler
from degradation.errors import UserError
from degradation.loggers import MetricsCSVLogger
from degradation.rundir import read_checkpoint

# 30 steps of 12 batches per epoch (384 training images / 32): a checkpoint at step 10 is in
# the middle of an epoch and right before a validation (val_check_interval=10).
RUN = ["experiment=smoke", "depth=8", "trainer.max_steps=30", "log_every=4"]
FINAL_KEYS = ("train_error", "train_loss", "val_error", "val_loss", "test_error", "test_loss")


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    """metrics.csv without the timing column (wall-clock throughput is never reproducible)."""
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if k != "throughput_img_s"} for r in csv.DictReader(f)]


def only_run(root: Path) -> Path:
    (run_dir,) = summaries(root)
    return run_dir


def checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception:  # not written yet
        return -1


def test_killed_run_resumes_to_the_metrics_of_an_uninterrupted_one(tmp_path):
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    command = [sys.executable, "-m", "degradation.run", *RUN]
    # A (uninterrupted) runs alongside B; both use the same number of threads.
    run_a = subprocess.Popen(
        [*command, f"output_root={tmp_path / 'a'}"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    run_b = subprocess.Popen(
        [*command, f"output_root={tmp_path / 'b'}"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    last = tmp_path / "b" / "runs" / "smoke" / "depth=8,log_every=4,trainer.max_steps=30"
    last = last / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while checkpoint_step(last) < 10 and run_b.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run_b.send_signal(signal.SIGKILL)
    run_b.wait()
    assert run_a.wait(timeout=300) == 0
    killed_at = checkpoint_step(last)
    b_dir = last.parent.parent
    assert 10 <= killed_at < 30 and not (b_dir / "summary.json").exists(), "B was not cut short"

    resumed = run_cli(*RUN, f"output_root={tmp_path / 'b'}", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from last.ckpt at step {killed_at}" in resumed.stdout
    a_dir = only_run(tmp_path / "a")
    a, b = (json.loads((d / "summary.json").read_text()) for d in (a_dir, b_dir))
    assert b["status"] == "completed" and b["steps"] == 30 and b["resumed_from_step"] == killed_at
    for key in FINAL_KEYS:
        assert b["final"][key] == pytest.approx(a["final"][key], abs=1e-6), key
    assert b["best_val"] == a["best_val"]
    rows_a, rows_b = metrics_rows(a_dir), metrics_rows(b_dir)
    assert [int(r["step"]) for r in rows_b if r["lr"]] == list(range(30))  # no gaps, no repeats
    assert rows_b == rows_a  # every train, val and test row, step for step
    assert not list(b_dir.rglob("*.tmp"))  # no half-written file survives the resume


def test_rerunning_a_finished_sweep_retrains_nothing(tmp_path, out):
    sweep = ["-m", "experiment=smoke", "depth=8", "seed=0,1", "trainer.max_steps=4"]
    first = run_cli(*sweep, f"output_root={out}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run_files = [p for d in summaries(out) for p in d.rglob("*") if p.is_file()]
    run_files = [p for p in run_files if ".hydra" not in p.parts and p.suffix != ".log"]
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_files}
    assert sum(p.name == "summary.json" for p in files) == 2

    started = time.monotonic()
    again = run_cli(*sweep, f"output_root={out}", cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": already completed, skipping") == 2
    assert "sweep: 2 completed" in again.stdout
    for path, (data, mtime) in files.items():  # summaries, checkpoints, metrics: untouched
        assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime, path
    assert elapsed < 60, f"rerun took {elapsed:.0f} s"


def test_resume_false_starts_afresh_and_same_seed_gives_the_same_rows(tmp_path, out):
    run = ["experiment=smoke", "depth=8", "trainer.max_steps=6", f"output_root={out}"]
    assert run_cli(*run, cwd=tmp_path).returncode == 0
    run_dir = only_run(out)
    rows = metrics_rows(run_dir)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")

    fresh = run_cli(*run, "resume=false", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "[resume]" not in fresh.stdout
    assert only_run(out) == run_dir  # resume=false names no other folder
    assert metrics_rows(run_dir) == rows  # deterministic on the CPU, row for row
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 6


def test_a_folder_holding_another_configs_run_is_not_resumed(tmp_path, out):
    run = ["name=clash", "depth=8", "trainer.max_steps=4", f"output_root={out}"]
    assert run_cli("experiment=smoke", *run, cwd=tmp_path).returncode == 0
    summary = (only_run(out) / "summary.json").read_bytes()
    other = run_cli(*run, cwd=tmp_path)  # same folder, the default (non-smoke) recipe
    assert other.returncode == 2
    (line,) = other.stderr.strip().splitlines()
    assert line.startswith("error: ") and "another config" in line and "resume=false" in line
    assert (only_run(out) / "summary.json").read_bytes() == summary


# --- the pieces ----------------------------------------------------------------------------


def test_sampler_order_depends_on_seed_and_epoch_only_and_resumes_mid_epoch():
    step = [0]

    def sampler(seed=0, rank=0, world_size=1):
        return ResumableSampler(100, 8, seed, lambda: step[0], rank, world_size)

    step[0] = 12  # 12 batches of 8 per epoch: the start of epoch 1
    whole_epoch_1 = list(sampler())
    assert len(whole_epoch_1) == 96 and len(set(whole_epoch_1)) == 96
    step[0] = 0
    assert list(sampler()) != whole_epoch_1  # epoch 0 is another permutation
    assert list(sampler(seed=1)) != list(sampler())
    step[0] = 12 + 5  # resumed at the sixth batch of epoch 1
    assert list(sampler()) == whole_epoch_1[5 * 8 :]
    step[0] = 0
    shards = [list(sampler(rank=r, world_size=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 48 and not set(shards[0]) & set(shards[1])


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot be pickled")


def test_checkpoint_writes_are_atomic_and_a_corrupted_file_is_reported(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="cannot be pickled"):
        AtomicCheckpointIO().save_checkpoint({"bad": _Unpicklable()}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left
    path.write_bytes(before[: len(before) // 2])  # a torn write (not ours)
    with pytest.raises(UserError, match="last.ckpt is corrupted.*resume=false"):
        read_checkpoint(path)


def test_metrics_csv_is_cut_back_to_the_rows_the_checkpoint_saw(tmp_path):
    (tmp_path / "metrics.csv").write_text("lr,step\r\n0.1,0\r\n0.1,1\r\n0.1,2\r\n0.1,3")
    logger = MetricsCSVLogger(tmp_path, keep_rows=2)
    logger.log_metrics({"lr": 0.1, "train/loss": 2.5}, step=2)
    logger.save()
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [
        "lr,step,train/loss", "0.1,0,", "0.1,1,", "0.1,2,2.5",
    ]  # fmt: skip
    assert logger.rows_written == 3
    MetricsCSVLogger(tmp_path, keep_rows=None).save()  # a fresh run starts a new file
    assert not (tmp_path / "metrics.csv").exists()
