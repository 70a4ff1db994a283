"""Sweeps through hydra-submitit-launcher's local executor (the SLURM path on one machine),
and a submitit job killed after its first checkpoint, resumed by the rerun."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from conftest import run_cli, summaries

SMOKE = ["experiment=smoke", "trainer.accelerator=cpu", "hydra/launcher=submitit_local"]


def test_two_job_sweep_through_submitit_local_finishes_both(tmp_path, out):
    result = run_cli(
        "-m", "depth=8", "skip=none,add", *SMOKE, f"output_root={out}", "trainer.max_steps=2",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sweep: 2 completed" in result.stdout
    found = summaries(out)
    assert sorted(s["name"] for s in found.values()) == ["plain-8", "resnet-8"]
    assert all(s["status"] == "completed" and s["steps"] == 2 for s in found.values())
    sweep = out / "sweeps" / "smoke"
    assert {p.parent for p in found} == {sweep}
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # they ran as submitit jobs
    assert not (sweep / ".submitit" / "%j").exists()  # submitit's folder pattern, made by it


def _processes() -> dict[int, list[str]]:
    """pid -> command line of every process we can see (a /proc scan, no psutil)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().decode().split("\0")
            except OSError:
                continue
    return found


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_killed_submitit_job_resumes_from_its_checkpoint_on_rerun(tmp_path, out):
    max_steps = 100
    command = [
        sys.executable, "-m", "degradation.run", "-m", "depth=8", "skip=add", *SMOKE,
        f"output_root={out}", f"trainer.max_steps={max_steps}", "trainer.val_check_interval=50",
        "trainer.devices=2",  # the job's DDP child must die with it, too
    ]  # fmt: skip
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    with open(tmp_path / "first.log", "w") as log:
        sweep = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=log)
        try:
            checkpoints = "sweeps/smoke/*/checkpoints/last.ckpt"
            last = _wait_for(lambda: next(out.glob(checkpoints), None), 240, "last.ckpt")
            job_pids = [  # the submitit job: the process running the pickled Hydra job
                pid
                for pid, cmd in _processes().items()
                if "submitit.core._submit" in cmd and str(out) in " ".join(cmd)
            ]
            children = [
                pid
                for pid, cmd in _processes().items()
                if "degradation.run" in cmd and str(out) in " ".join(cmd) and pid != sweep.pid
            ]
            assert len(job_pids) == 1 and len(children) == 1, _processes()
            os.kill(job_pids[0], signal.SIGKILL)
        finally:
            sweep.kill()  # the sweep would only report the lost job: a rerun takes over
            sweep.wait()
    run_dir = last.parent.parent
    killed_at = int(torch.load(last, weights_only=False)["global_step"])
    assert 0 < killed_at < max_steps
    assert not (run_dir / "summary.json").exists()  # it did not finish
    # the DDP child died with its job (no rank left waiting for the dead one)
    _wait_for(lambda: not set(children) & set(_processes()), 30, "the DDP child to exit")

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = summaries(out)[run_dir]
    assert summary["status"] == "completed" and summary["steps"] == max_steps
    resumed_from = summary["resumed_from_step"]
    assert resumed_from == killed_at
    # metrics.csv continues: every step once, in order; nothing restarted at step 0
    with open(run_dir / "metrics.csv", newline="") as f:
        lr_steps = [int(row["step"]) for row in csv.DictReader(f) if row["lr"]]
    assert lr_steps == list(range(max_steps))
    logs = "".join(p.read_text() for p in (out / "sweeps/smoke/.submitit").glob("*/*_log.out"))
    assert f"resuming from last.ckpt at step {resumed_from}" in logs
