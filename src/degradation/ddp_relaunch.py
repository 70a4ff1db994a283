"""DDP inside a Hydra multirun: extra local ranks run *this job*, not the whole sweep.

Lightning's own DDP launcher re-runs `sys.argv` for every extra local rank, which under
`python -m degradation.run -m ...` is the whole sweep (and under submitit not our program at
all): the children start sweeps of their own or hang (Lightning issue #11300, Hydra #2070).
`JobDDPStrategy` launches instead this job, as a single run in this job's folder:

    python -m degradation.run <the job's own overrides> hydra.run.dir=<job folder> \
        hydra.output_subdir=null hydra/job_logging=stdout

Children are started with LOCAL_RANK=k, write nothing (rank 0 writes summary.json, metrics and
checkpoints), keep stderr but not stdout, and die with their parent. When a job ends,
`end_job_processes` waits for them, closes the process group and restores the environment
variables the launch set, so that the next job of a sweep in the same process starts afresh.

PRIVATE LIGHTNING API: the launch subclasses Lightning's private launcher and observer, imported
through degradation.private_api, which lists every private name used here and the Lightning
versions they were tested with (TESTED_LIGHTNING; pyproject.toml pins the same range); with
another version the strategy refuses to start, in one line, instead of misbehaving.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any

import torch
from lightning.pytorch.strategies import DDPStrategy

from degradation.errors import UserError
from degradation.private_api import (
    TESTED_LIGHTNING,
    _ChildProcessObserver,
    _set_num_threads_if_needed,
    _SubprocessScriptLauncher,
)

# What the launch sets in os.environ (and torch's thread count): restored when the job ends.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
LAUNCH_ENV += ("OMP_NUM_THREADS",)
CHILD_EXIT_GRACE_S = 120.0  # how long a finished job waits for its children to exit


def check_lightning_version(version: str | None = None) -> None:
    """UserError unless Lightning is a version this module's private API use was tested with."""
    version = version or metadata.version("lightning")
    if not version.startswith(TESTED_LIGHTNING):
        tested = ", ".join(v + "x" for v in TESTED_LIGHTNING)
        raise UserError(
            f"lightning {version}: DDP jobs are launched through Lightning internals tested "
            f"with lightning {tested} only; install lightning=={TESTED_LIGHTNING[0]}* "
            "(or use trainer.strategy=ddp_spawn)"
        )


def job_command() -> list[str]:
    """This Hydra job as a single run in its own folder (what every extra local rank runs)."""
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    command = [sys.executable, "-m", "degradation.run"]
    if hydra.job.config_name:
        command += ["--config-name", hydra.job.config_name]
    for source in hydra.runtime.config_sources:
        if source.provider == "command-line":  # --config-dir
            command += ["--config-dir", str(source.path).removeprefix("file://")]
    command += list(hydra.overrides.task)
    command += [
        f"hydra.run.dir={_quoted(str(hydra.runtime.output_dir))}",
        "hydra.output_subdir=null",  # rank 0 wrote .hydra/
        "hydra/job_logging=stdout",  # no second writer of the job's log file
    ]
    return command


def _quoted(text: str) -> str:
    """A Hydra override value that is read verbatim (a folder name holds ',' and '=')."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _die_with_parent() -> None:
    """In a child, before exec: SIGKILL it when its parent dies (Linux), so a killed job
    leaves no rank waiting in a collective."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Observer(_ChildProcessObserver):
    """Lightning's watchdog over the children (a failed child takes the job down), which can
    be stopped before the children are ended on purpose."""

    def __init__(self, main_pid: int, child_processes: list) -> None:
        super().__init__(main_pid=main_pid, child_processes=child_processes)
        self._lock = threading.Lock()
        self._stopped = False

    def _run(self) -> bool:
        with self._lock:
            return True if self._stopped else super()._run()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


class JobLauncher(_SubprocessScriptLauncher):
    """Starts local ranks 1..N-1 as `job_command()` (see the module doc), once per job."""

    def launch(self, function: Callable, *args: Any, trainer=None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(
            num_devices=self.num_processes, num_nodes=self.num_nodes
        )
        # after the first launch of a job LOCAL_RANK is set: fit, validate, test reuse them
        if not self.cluster_environment.creates_processes_externally:
            self._saved_env = {key: os.environ.get(key) for key in LAUNCH_ENV}
            self._saved_threads = torch.get_num_threads()
            self._call_children_scripts()
            self._observer = _Observer(main_pid=os.getpid(), child_processes=self.procs)
            self._observer.start()
            _LAUNCHED.append(self)
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        command = job_command()
        linux = sys.platform.startswith("linux")
        for local_rank in range(1, self.num_processes):
            child_env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            self.procs.append(
                subprocess.Popen(
                    command,
                    env=child_env,
                    cwd=os.getcwd(),  # relative paths (output_root, data.root) mean the same
                    stdout=subprocess.DEVNULL,  # rank 0 prints; a child's errors go to stderr
                    preexec_fn=_die_with_parent if linux else None,
                )
            )

    def end(self, failed: bool) -> None:
        """Wait for the children (kill them at once after a failure), restore the environment."""
        self._observer.stop()
        for proc in self.procs:
            try:
                proc.wait(timeout=0 if failed else CHILD_EXIT_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(self._saved_threads)


_LAUNCHED: list[JobLauncher] = []  # launches of the job now running in this process


def end_job_processes(failed: bool = False) -> None:
    """At the end of a job (train() calls it on every rank): end the children this process
    launched, close the process group, undo the launch's environment variables."""
    while _LAUNCHED:
        _LAUNCHED.pop().end(failed)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class JobDDPStrategy(DDPStrategy):
    """Lightning's DDP strategy, whose extra local ranks run this job (not sys.argv)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        check_lightning_version()
        super().__init__(*args, **kwargs)

    def _configure_launcher(self) -> None:
        # always a launcher (as Lightning's): under SLURM it checks devices/num_nodes against
        # the allocation and starts nothing
        assert self.cluster_environment is not None
        self._launcher = JobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)
