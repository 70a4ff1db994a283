"""Continuing a run exactly where it stopped: rerunning the same command loses nothing.

A run folder is named by its config (not the clock), so a rerun finds it again and
`plan_resume` decides what to do there:

- `summary.json` says completed or diverged, same `config_hash`: nothing to do (skipped);
- `checkpoints/last.ckpt` exists: training continues from it (`ckpt_path` of `trainer.fit`);
- otherwise (or with `resume=false`): the folder's checkpoints and metrics are cleared and the
  run starts afresh.

What makes the continuation exact lives where it belongs: the training order and augmentation
are functions of (seed, position) (`data.sampler`); Lightning restores weights, optimiser and
loop counters, the module and the callbacks their own state (`rundir.STATE_KEY`);
`callbacks.LastCheckpoint` saves at points Lightning resumes from cleanly, with the number of
metrics.csv rows it has seen, and `loggers.MetricsCSVLogger` cuts the file back to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from degradation.distributed import is_global_zero
from degradation.errors import UserError
from degradation.rundir import (
    CHECKPOINTS,
    LAST,
    RESUME_KEY,
    SUMMARY,
    clear_run,
    read_checkpoint,
    read_summary,
    remove_torn_writes,
)

FINISHED = ("completed", "diverged")


@dataclass
class ResumePlan:
    finished: dict[str, Any] | None = None  # summary of a finished run: nothing to do
    checkpoint: Path | None = None  # last.ckpt to continue from
    step: int = 0  # the checkpoint's global step
    metrics_rows: int | None = None  # rows of metrics.csv that the checkpoint had seen


def plan_resume(run_dir: Path, config_hash: str, resume: bool = True) -> ResumePlan:
    """Skip, continue or start afresh (see the module doc); UserError if the folder holds a
    run of another config or an unreadable checkpoint. Starting afresh clears the folder."""
    run_dir = Path(run_dir)
    if not resume:
        _clear_on_rank_zero(run_dir)
        return ResumePlan()
    try:
        summary = read_summary(run_dir)
    except ValueError:  # unreadable summary: the checkpoint (if any) decides
        summary = None
    if summary is not None and summary.get("status") in FINISHED:
        if summary.get("config_hash") != config_hash:
            raise UserError(
                _other_config(run_dir / SUMMARY, summary.get("config_hash"), config_hash)
            )
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
