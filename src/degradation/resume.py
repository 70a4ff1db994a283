"""Continuing a run exactly where it stopped: rerunning the same command loses nothing.

A run folder is named by its config (not the clock), so a rerun finds it again and
`plan_resume` decides what to do there:

- `summary.json` says completed or diverged, same `config_hash` and data: nothing to do
  (skipped; `finished_run` decides this without writing anything, before the lock);
- `checkpoints/last.ckpt` exists: training continues from it (`ckpt_path` of `trainer.fit`);
- otherwise (or with `resume=false`): the folder's checkpoints and metrics are cleared and the
  run starts afresh.

A folder of another config or of other data (`data_identity`: a `data.root` that points at
other files keeps the config hash) is never skipped or continued: UserError, one line naming
both. Identities a folder did not record (written before they were) are not compared.
`claim_run_dir` makes the job the folder's one writer before anything is changed there.

What makes the continuation exact lives where it belongs: the training order and augmentation
are functions of (seed, position) (`data.sampler`); Lightning restores weights, optimiser and
loop counters, the module and the callbacks their own state (`rundir.STATE_KEY`);
`callbacks.LastCheckpoint` saves at points Lightning resumes from cleanly, with the number of
metrics.csv rows it has seen, and `loggers.MetricsCSVLogger` cuts the file back to them.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from degradation.distributed import is_global_zero
from degradation.errors import UserError
from degradation.rundir import (
    CHECKPOINTS,
    LAST,
    LOCK,
    RESUME_KEY,
    SUMMARY,
    clear_run,
    is_disk_full,
    naming_full_disk,
    read_checkpoint,
    read_summary,
    remove_torn_writes,
)

FINISHED = ("completed", "diverged")  # `interrupted` and `failed` runs are continued
# What identifies a run's data, as summary.json and last.ckpt record it (`data_identity`).
DATA_KEYS = ("dataset", "dataset_checksum", "num_train", "num_test")


@dataclass
class ResumePlan:
    finished: dict[str, Any] | None = None  # summary of a finished run: nothing to do
    checkpoint: Path | None = None  # last.ckpt to continue from
    step: int = 0  # the checkpoint's global step
    metrics_rows: int | None = None  # rows of metrics.csv that the checkpoint had seen

    @property
    def resume_step(self) -> int | None:
        """Where a rerun would continue now: the checkpoint's step, or None (afresh)."""
        return self.step if self.checkpoint is not None else None


def data_identity(name: str, checksum: str, num_train: int, num_test: int) -> dict[str, Any]:
    """The data a run trains and is tested on, under the keys of DATA_KEYS."""
    return dict(zip(DATA_KEYS, (name, checksum, num_train, num_test), strict=True))


def finished_run(
    run_dir: Path, config_hash: str, data: Mapping[str, Any] | None = None, resume: bool = True
) -> dict[str, Any] | None:
    """The summary of the finished run this folder holds (nothing to do), else None; UserError
    if it holds another config's or other data's run. Reads only: a finished folder stays
    byte for byte as it is."""
    if not resume:
        return None
    try:
        summary = read_summary(run_dir)
    except ValueError:  # unreadable summary: the checkpoint (if any) decides
        return None
    if summary is None or summary.get("status") not in FINISHED:
        return None
    path = Path(run_dir) / SUMMARY
    if summary.get("config_hash") != config_hash:
        raise UserError(_other_config(path, summary.get("config_hash"), config_hash))
    _check_data(path, summary, data)
    return summary


def plan_resume(
    run_dir: Path, config_hash: str, data: Mapping[str, Any] | None = None, resume: bool = True
) -> ResumePlan:
    """Skip, continue or start afresh (see the module doc); UserError if the folder holds a
    run of another config or other data, or an unreadable checkpoint. Starting afresh clears
    the folder: call it while holding the folder (`claim_run_dir`)."""
    run_dir = Path(run_dir)
    if not resume:
        _clear_on_rank_zero(run_dir)
        return ResumePlan()
    summary = finished_run(run_dir, config_hash, data)
    if summary is not None:
        return ResumePlan(finished=summary)
    path = run_dir / CHECKPOINTS / LAST
    if not path.is_file():
        _clear_on_rank_zero(run_dir)
        return ResumePlan()
    checkpoint = read_checkpoint(path)
    ours = checkpoint.get(RESUME_KEY)
    if not isinstance(ours, dict):
        raise UserError(
            f"checkpoint {path} is not a checkpoint of this program; "
            "rerun with resume=false to start this run afresh"
        )
    if ours.get("config_hash") != config_hash:
        raise UserError(_other_config(path, ours.get("config_hash"), config_hash))
    _check_data(path, ours.get("data") or {}, data)
    if is_global_zero():
        remove_torn_writes(run_dir)
    return ResumePlan(
        checkpoint=path, step=int(checkpoint["global_step"]), metrics_rows=ours.get("metrics_rows")
    )


def _clear_on_rank_zero(run_dir: Path) -> None:
    # DDP children run this too (Lightning relaunches the command): one process clears.
    if is_global_zero():
        clear_run(run_dir)


def _other_config(path: Path, found: Any, wanted: str) -> str:
    return (
        f"{path} was written by another config (config_hash {found}, this run's is {wanted}); "
        "rerun with resume=false to replace that run, or choose another name or output_root"
    )


def _check_data(path: Path, recorded: Mapping[str, Any], data: Mapping[str, Any] | None) -> None:
    """UserError if `recorded` (a summary or a checkpoint's RESUME_KEY["data"]) names other data;
    keys it lacks (a folder from before they were recorded) are not compared."""
    if data is None:
        return
    differ = [k for k in DATA_KEYS if recorded.get(k) is not None and recorded[k] != data.get(k)]
    if differ:
        raise UserError(
            f"{path} holds a run on other data ({_describe(recorded)}; this run's data: "
            f"{_describe(data)}); to keep both, give this run its own folder with output_root= "
            "or name=, or rerun with resume=false to replace that run"
        )


def _describe(data: Mapping[str, Any]) -> str:
    sizes = f"{data.get('num_train', '?')} training / {data.get('num_test', '?')} test images"
    return f"{data.get('dataset', '?')}, checksum {data.get('dataset_checksum', '?')}, {sizes}"


# --- one writer per run folder ----------------------------------------------------------------


class RunDirBusy(UserError):
    """Another process holds the run folder (`claim_run_dir`); `holder` says which."""

    def __init__(self, run_dir: Path, holder: str):
        self.holder = holder
        super().__init__(
            f"{run_dir} is in use by another process ({holder}); this job did not start: wait "
            "for that one to end (or stop it), then rerun this command to see the outcome"
        )


@contextmanager
def claim_run_dir(run_dir: Path, command: str) -> Iterator[None]:
    """Hold the run folder for the block: an exclusive flock on RUN_DIR/run.lock, which records
    the holder (pid, host, start time, command). The system releases the lock when the process
    ends in any way, so a killed run never blocks its rerun. RunDirBusy if another process
    holds it. Global rank 0 only: the DDP ranks it launches share its claim."""
    if not is_global_zero():
        yield
        return
    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with naming_full_disk(path):
        fd = _open_lock(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirBusy(Path(run_dir), _holder(path)) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": command,
        }
        with naming_full_disk(path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _open_lock(path: Path) -> int:
    """The lock file's descriptor (not inherited by child processes); UserError naming it
    when something else stands at its path."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError:
        raise UserError(
            f"{path} is a folder, but this run keeps its lock file there: move that folder out "
            f"of {path.parent} (or delete it), then rerun the same command"
        ) from None
    except OSError as err:
        if is_disk_full(err):  # the one-line full-disk error of train.py
            raise
        raise UserError(
            f"{path}: cannot open this run's lock file ({err.strerror}); make the run folder "
            "writable for you, or choose another output_root"
        ) from None


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        return (
            f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: "
            f"{holder['command']}"
        )
    except (OSError, ValueError, KeyError, TypeError):  # being written at this very moment
        return "holder unknown"
