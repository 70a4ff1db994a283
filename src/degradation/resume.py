"""Continuing a run exactly where it stopped: rerunning the same command loses nothing.

A run folder is named by its config (not the clock), so a rerun finds it again and
`plan_resume` decides what to do there:

- `summary.json` says completed or diverged, same `config_hash` and data: nothing to do
  (skipped; `finished_run` decides this without writing anything, before the lock);
- `checkpoints/last.ckpt` exists: training continues from it (`ckpt_path` of `trainer.fit`);
- otherwise (or with `resume=false`): the old run's files are moved aside
  (`rundir.set_aside_run`, summary.json first) and the run starts afresh; train.py deletes them
  once the new run has written its record.

A folder of another config or of other data (`data_identity`: a `data.root` that points at
other files keeps the config hash) is never skipped or continued: UserError, one line naming
both. Nor is a checkpoint continued with other numerics (`speed.numerics`: precision,
channels_last, compile, fused_sgd, as resolved on this machine; outside the config hash, they
change a run's rounding, so a run that switches mid-way matches neither setting), nor one whose
metrics.csv lacks rows the checkpoint had seen (the record would be incomplete). Identities a
folder did not record (written before they were) are not compared. `claim_run_dir` makes the
job the folder's one writer before anything is changed there.

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
    METRICS,
    RESUME_KEY,
    SUMMARY,
    is_disk_full,
    naming_full_disk,
    read_checkpoint,
    read_csv_rows,
    read_summary,
    remove_torn_writes,
    set_aside_run,
)
from degradation.speed import Speed, numerics

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
    run_dir: Path,
    config_hash: str,
    data: Mapping[str, Any] | None = None,
    resume: bool = True,
    speed: Speed | None = None,
) -> ResumePlan:
    """Skip, continue or start afresh (see the module doc); UserError if the folder holds a
    run of another config or other data, a checkpoint of other numerics than `speed`'s, an
    unreadable checkpoint or a metrics.csv short of its rows. Starting afresh sets the old run
    aside: call it while holding the folder (`claim_run_dir`)."""
    run_dir = Path(run_dir)
    if not resume:
        _set_aside_on_rank_zero(run_dir)
        return ResumePlan()
    summary = finished_run(run_dir, config_hash, data)
    if summary is not None:
        return ResumePlan(finished=summary)
    path = run_dir / CHECKPOINTS / LAST
    if not path.is_file():
        _set_aside_on_rank_zero(run_dir)
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
    _check_numerics(path, ours.get("numerics") or {}, speed)
    step, rows = int(checkpoint["global_step"]), ours.get("metrics_rows")
    _check_metrics(run_dir / METRICS, rows, path, step)
    if is_global_zero():
        remove_torn_writes(run_dir)
    return ResumePlan(checkpoint=path, step=step, metrics_rows=rows)


def _set_aside_on_rank_zero(run_dir: Path) -> None:
    # DDP children run this too (Lightning relaunches the command): one process moves.
    if is_global_zero():
        set_aside_run(run_dir)


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


def _check_numerics(path: Path, recorded: Mapping[str, Any], speed: Speed | None) -> None:
    """UserError naming every numeric setting (`speed.numerics`) that `speed` resolves to
    another value than the checkpoint's run trained with; keys it lacks are not compared."""
    if speed is None:
        return
    now = numerics(speed)
    differ = [k for k in now if k in recorded and recorded[k] != now[k]]
    if not differ:
        return
    was = " ".join(_override(k, recorded[k]) for k in differ)
    resolved = " ".join(_override(k, now[k]) for k in differ)
    why = f" ({speed.reason})" if "trainer.precision" in differ and speed.reason else ""
    raise UserError(
        f"{path} was trained with {was}, this run resolves {resolved}{why}: a run that "
        f"switches mid-way matches neither setting's numbers; rerun with {was} to resume it, "
        "or with resume=false to start it afresh"
    )


def _override(key: str, setting: Any) -> str:
    """key=value as a command line writes it (true/false for booleans)."""
    shown = str(setting).lower() if isinstance(setting, bool) else setting
    return f"{key}={shown}"


def _check_metrics(path: Path, rows: int | None, checkpoint: Path, step: int) -> None:
    """UserError if metrics.csv holds fewer whole rows than the checkpoint had seen: the rows
    before it are lost, and resuming would finish a run whose record lacks them."""
    if rows is None:  # a checkpoint from before the count was recorded
        return
    found = read_csv_rows(path) or []
    have = max(len(found) - 1, 0)
    if have >= rows:
        return
    state = "is missing" if not path.is_file() else f"holds {have} of those rows"
    raise UserError(
        f"{checkpoint} (step {step}) was saved after {rows} rows of {path}, which {state}: "
        "the metrics of the steps before the checkpoint are lost and resuming cannot bring "
        "them back; rerun with resume=false to train this run afresh"
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
