"""Scaling out: DDP processes for one job, GPUs for parallel jobs, and SLURM.

One run (one Hydra job) may use several processes: `trainer.devices=N` (and `trainer.num_nodes`).
Lightning's own DDP launcher re-runs `sys.argv` for every extra local rank, which under
`python -m degradation.run -m ...` is the whole sweep (and under submitit not our program at
all): the children start sweeps of their own or hang (Lightning #11300, Hydra #2070).
`JobDDPStrategy` launches instead *this job*, as a single run in this job's folder:

    python -m degradation.run <the job's own overrides> hydra.run.dir=<job folder> \
        hydra.output_subdir=null hydra/job_logging=stdout

so `-m depth=20,56 skip=none,add trainer.devices=2` runs four jobs of two processes each.
Children are started with LOCAL_RANK=k, write nothing (rank 0 writes summary.json, metrics and
checkpoints), keep stderr but not stdout, and die with their parent. When a job ends,
`end_job_processes` waits for them, closes the process group and restores the environment
variables the launch set, so that the next job of a sweep in the same process starts afresh.

Where processes are created outside (SLURM's srun, torchrun) nothing is launched: each SLURM
task is one DDP process (Lightning's SLURMEnvironment). Requeueing is left to submitit, which
resubmits the same job into the same (deterministic) folder, where it resumes from last.ckpt.

Parallel jobs on one machine (`hydra/launcher=joblib` or `submitit_local`): each single-device
GPU job gets GPU `gpu_for_job(job_num, n_gpus, jobs_per_gpu)` (trainer.devices=[i]).
`jobs_per_gpu=auto` shares each GPU among up to 4 jobs (`auto_jobs_per_gpu`): a small CIFAR
net's step leaves an H100 mostly idle, and 4 processes summed 1.7x one (CUDA graphs) to 3.6x
(eager) in docs/brief.md §5; fewer where the GPU's memory or the CPU cores (one per job, to
launch its kernels) would not hold 4. Without a GPU, auto is 1.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning.fabric.utilities.distributed import _set_num_threads_if_needed
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

from degradation.config import jobs_per_gpu_setting
from degradation.errors import UserError

# What the launch sets in os.environ (and torch's thread count): restored when the job ends.
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
LAUNCH_ENV += ("OMP_NUM_THREADS",)
# Launchers that run several jobs at once on this machine: GPUs are shared out among them.
PARALLEL_LAUNCHERS = ("JoblibLauncher", "LocalLauncher")
CHILD_EXIT_GRACE_S = 120.0  # how long a finished job waits for its children to exit
AUTO_JOBS_PER_GPU = 4  # most jobs `jobs_per_gpu=auto` puts on one GPU (docs/brief.md §5)
GPU_MEMORY_PER_JOB = 4 * 2**30  # bytes: CUDA context, resident data, a CIFAR net's activations


# --- how many processes, which strategy ------------------------------------------------------


def resolve_accelerator(accelerator: str) -> str:
    """`auto`/`gpu` as Lightning resolves them: cuda, else mps, else cpu (auto only)."""
    name = str(accelerator)
    if name in ("auto", "gpu"):
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu" if name == "auto" else "cuda"
    return name


def processes_per_node(accelerator: str, devices: Any) -> int:
    """How many processes `Trainer(accelerator, devices)` runs on each node."""
    name = resolve_accelerator(accelerator)
    if name not in AcceleratorRegistry.available_accelerators():
        return 1  # an accelerator we do not know: Lightning decides (and reports)
    accel = AcceleratorRegistry[name]["accelerator"]
    if devices == "auto":
        return accel.auto_device_count()
    try:
        return len(accel.get_parallel_devices(accel.parse_devices(devices)))
    except Exception:
        return 1  # impossible devices: Lightning reports them when the Trainer is built


def choose_strategy(trainer_args: dict[str, Any]) -> Any:
    """`ddp`, and `auto` with several processes, become JobDDPStrategy; others pass through."""
    strategy = trainer_args.get("strategy", "auto")
    if strategy not in ("auto", "ddp"):
        return strategy  # e.g. ddp_spawn, fsdp: Lightning's own launchers
    procs = processes_per_node(trainer_args.get("accelerator", "auto"), trainer_args["devices"])
    if strategy == "ddp" or procs > 1 or trainer_args.get("num_nodes", 1) > 1:
        return JobDDPStrategy()
    return strategy


def cluster_plugins() -> list:
    """Under SLURM: Lightning's SLURMEnvironment without its own requeue (submitit requeues)."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def distributed_trainer_args(trainer_args: dict[str, Any], jobs_per_gpu: int | str = 1) -> dict:
    """`lightning.Trainer` arguments (cfg.trainer as a dict) with the job's GPU and strategy."""
    args = assign_gpu(dict(trainer_args), jobs_per_gpu)
    args["strategy"] = choose_strategy(args)
    return args


def per_device_batch_size(batch_size: int, world_size: int) -> int:
    """The global batch split evenly over the processes; UserError if it does not split."""
    if batch_size % world_size:
        raise UserError(
            f"data.batch_size={batch_size} does not split over {world_size} processes; "
            f"choose a multiple of {world_size}"
        )
    return batch_size // world_size


# --- GPUs for parallel jobs ------------------------------------------------------------------


def auto_jobs_per_gpu() -> int:
    """What `jobs_per_gpu=auto` means on this machine (see the module docstring)."""
    n_gpus = visible_gpus()
    if n_gpus < 1:
        return 1
    memory = min(torch.cuda.get_device_properties(i).total_memory for i in range(n_gpus))
    cores_per_gpu = (os.cpu_count() or 1) // n_gpus
    return max(1, min(AUTO_JOBS_PER_GPU, memory // GPU_MEMORY_PER_JOB, cores_per_gpu))


def resolve_jobs_per_gpu(setting: int | str) -> int:
    """`jobs_per_gpu` as a number: `auto` decided for this machine, else the integer given."""
    jobs = jobs_per_gpu_setting(setting)
    return auto_jobs_per_gpu() if jobs == "auto" else jobs


def gpu_for_job(job_num: int, n_gpus: int, jobs_per_gpu: int = 1) -> int:
    """The GPU of job `job_num`: jobs_per_gpu consecutive jobs share a GPU, GPUs in turn.

    With n_jobs = n_gpus * jobs_per_gpu jobs at a time, every GPU holds jobs_per_gpu of them.
    """
    if n_gpus < 1:
        raise ValueError(f"n_gpus={n_gpus}: need at least one GPU")
    if jobs_per_gpu < 1:
        raise UserError(f"jobs_per_gpu={jobs_per_gpu} is not valid: it must be at least 1")
    return (job_num // jobs_per_gpu) % n_gpus


def parallel_job_num() -> int | None:
    """This job's number when a launcher runs several jobs at once here, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    target = str(hydra.launcher.get("_target_", ""))
    if hydra.mode != RunMode.MULTIRUN or not target.endswith(PARALLEL_LAUNCHERS):
        return None
    return int(hydra.job.num)


def assign_gpu(trainer_args: dict[str, Any], jobs_per_gpu: int | str = 1) -> dict[str, Any]:
    """A single-GPU job of a parallel sweep gets its own GPU (`devices=[i]`); else unchanged."""
    job_num = parallel_job_num()
    if job_num is None or resolve_accelerator(trainer_args.get("accelerator", "auto")) != "cuda":
        return trainer_args
    if trainer_args.get("devices") not in (1, "1") or trainer_args.get("num_nodes", 1) != 1:
        return trainer_args  # several or chosen devices: the user placed the job
    n_gpus = torch.cuda.device_count()
    if n_gpus < 1:
        return trainer_args
    per_gpu = resolve_jobs_per_gpu(jobs_per_gpu)
    gpu = gpu_for_job(job_num, n_gpus, per_gpu)
    chosen = ", auto" if str(jobs_per_gpu) == "auto" else ""
    print(f"[gpus] job {job_num}: GPU {gpu} of {n_gpus} ({per_gpu} job(s) per GPU{chosen})")
    return {**trainer_args, "devices": [gpu]}


def visible_gpus() -> int:
    return torch.cuda.device_count()


def gpu_job_slots(jobs_per_gpu: int | str) -> int:
    """How many jobs run at once by default: visible GPUs (at least 1) × jobs_per_gpu."""
    return max(visible_gpus(), 1) * resolve_jobs_per_gpu(jobs_per_gpu)


# --- DDP launched per job --------------------------------------------------------------------


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

    def _configure_launcher(self) -> None:
        # always a launcher (as Lightning's): under SLURM it checks devices/num_nodes against
        # the allocation and starts nothing
        assert self.cluster_environment is not None
        self._launcher = JobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)
