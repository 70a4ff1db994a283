"""A run killed the way a scheduler kills a job: every process of it, after a checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch


def checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except Exception:  # not written yet
        return -1


def kill_after_checkpoint(
    args: list[str], last_ckpt: Path, step: int, cwd: Path, env: dict, group: bool = True
) -> int:
    """Start `python -m degradation.run ARGS`, wait until `last_ckpt` holds `step` or later,
    then SIGKILL the run: its whole process group (wandb's service process included, as a
    scheduler ends a job) or, with group=False, the training process alone (as the kernel's
    OOM killer does); returns the checkpoint's step."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "degradation.run", *args], cwd=cwd, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while checkpoint_step(last_ckpt) < step and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return checkpoint_step(last_ckpt)
