"""The one home of the Lightning and Hydra private names the package uses, pinned.

Private names (a leading underscore, Hydra's `_internal` package, attributes that are no
documented API) may change in any release. The package reaches them only through this module,
which names each one, who uses it and why, and the versions they were tested with:

    Lightning (TESTED_LIGHTNING; ddp_relaunch.check_lightning_version refuses another version
    before a DDP job launches):
      _SubprocessScriptLauncher   lightning.pytorch.strategies.launchers   subclassed by
      _ChildProcessObserver       lightning.fabric.strategies.launchers.subprocess_script
      _set_num_threads_if_needed  lightning.fabric.utilities.distributed
                                  ddp_relaunch (JobLauncher, _Observer): DDP inside a sweep;
                                  they override `_call_children_scripts` and `_run`, and call
                                  `_check_can_spawn_children`
      DDPStrategy._configure_launcher, ._launcher   overridden in ddp_relaunch.JobDDPStrategy
      rank_zero_only.rank         the process's rank as Lightning's rank-zero helpers read it;
                                  a Trainer built for a check sets it: `keeping_process_rank`
                                  puts it back (preflight.check_trainer)
    Hydra (TESTED_HYDRA; pyproject.toml pins hydra-core to the same minor version):
      BasicSweeper                hydra._internal.core_plugins.basic_sweeper, subclassed by
                                  hydra_plugins.degradation_sweeper (only its public methods
                                  are overridden)
      TensorBoardLogger._experiment   the logger's SummaryWriter if one was opened (the public
                                  `experiment` opens one): `open_tensorboard_writer`
    torch (requirements/constraints.txt pins it):
      SummaryWriter._get_file_writer  the event file writer, to add the HParams summaries torch
                                  builds but only writes with new scalars of its own:
                                  `tensorboard_file_writer` (loggers.RunTensorBoardLogger)
    hydra-joblib-launcher (TESTED_JOBLIB_LAUNCHER; requirements/constraints.txt pins it):
      _core                       hydra_plugins.hydra_joblib_launcher._core: the plugin's job
                                  set-up and runner (`setup_globals`, `configure_log`,
                                  `process_joblib_cfg`, `launch`, `execute_job`), reused by
                                  hydra_plugins.degradation_joblib: `joblib_launcher_core()`

docs/development.md lists the same names. Lightning's are imported on first use (module
`__getattr__`): the sweeper plugin imports this module whenever Hydra starts, tab completion
included, which must load no torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

TESTED_LIGHTNING = ("2.6.",)  # version prefixes whose private names were tested
TESTED_HYDRA = ("1.3.",)
TESTED_JOBLIB_LAUNCHER = ("1.2.",)

# name -> the Lightning module it is imported from
_LIGHTNING = {
    "_SubprocessScriptLauncher": "lightning.pytorch.strategies.launchers",
    "_ChildProcessObserver": "lightning.fabric.strategies.launchers.subprocess_script",
    "_set_num_threads_if_needed": "lightning.fabric.utilities.distributed",
}

__all__ = ["BasicSweeper", "TESTED_HYDRA", "TESTED_JOBLIB_LAUNCHER", "TESTED_LIGHTNING"]
__all__ += ["joblib_launcher_core", "keeping_process_rank", *_LIGHTNING]
__all__ += ["open_tensorboard_writer", "tensorboard_file_writer"]


def __getattr__(name: str) -> Any:
    if name in _LIGHTNING:
        return getattr(importlib.import_module(_LIGHTNING[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextmanager
def keeping_process_rank() -> Iterator[None]:
    """The block may build Trainers (under a SLURM or torchrun environment, a Trainer sets
    `rank_zero_only.rank` to the cluster's global rank); the process's rank as it was before
    is put back after it. Lightning has no public way to undo that."""
    from lightning.pytorch.utilities import rank_zero_only

    rank = rank_zero_only.rank
    try:
        yield
    finally:
        rank_zero_only.rank = rank


def open_tensorboard_writer(logger: Any) -> Any | None:
    """A Lightning TensorBoardLogger's SummaryWriter, or None before anything opened it (its
    public `experiment` would open a new event file)."""
    return logger._experiment


def tensorboard_file_writer(writer: Any) -> Any:
    """torch's SummaryWriter's event file writer (add_summary of a ready protobuf)."""
    return writer._get_file_writer()


def joblib_launcher_core() -> Any:
    """hydra-joblib-launcher's private `_core` module (an optional dependency: imported here,
    when the launcher runs, never when Hydra scans its plugins)."""
    return importlib.import_module("hydra_plugins.hydra_joblib_launcher._core")
