"""Scaling out: DDP processes for one job, GPUs for parallel jobs, and SLURM.

One run (one Hydra job) may use several processes: `trainer.devices=N` (and `trainer.num_nodes`).
`ddp` (and `auto` with several processes) becomes `ddp_relaunch.JobDDPStrategy`, which starts
the extra local ranks as this job rather than as the whole sweep, so
`-m depth=20,56 skip=none,add trainer.devices=2` runs four jobs of two processes each.

Where processes are created outside (SLURM's srun, torchrun) nothing is launched: each SLURM
task is one DDP process (Lightning's SLURMEnvironment). Requeueing is left to submitit, which
resubmits the same job into the same (deterministic) folder, where it resumes from last.ckpt.

Parallel jobs on one machine (`hydra/launcher=joblib` or `submitit_local`): each single-device
GPU job gets GPU `gpu_for_job(job_num, n_gpus, jobs_per_gpu)` (trainer.devices=[i]).
`jobs_per_gpu=auto` shares each GPU among up to 4 jobs (`auto_jobs_per_gpu`): a small CIFAR
net's step leaves an H100 mostly idle, and 4 processes summed 1.7x one (CUDA graphs) to 3.6x
(eager) on an H100 (docs/benchmarks.md: figures measured before this project had a GPU);
fewer where the GPU's memory or the CPU cores (one per job, to launch its kernels) would not
hold 4. Without a GPU, auto is 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.accelerators import AcceleratorRegistry
from lightning.pytorch.plugins.environments import SLURMEnvironment

from degradation.config import jobs_per_gpu_setting
from degradation.errors import UserError

# Launchers that run several jobs at once on this machine: GPUs are shared out among them.
PARALLEL_LAUNCHERS = ("JoblibLauncher", "LocalLauncher")
AUTO_JOBS_PER_GPU = 4  # most jobs `jobs_per_gpu=auto` puts on one GPU (see the module doc)
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
        from degradation.ddp_relaunch import JobDDPStrategy

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


# --- which process and which device -------------------------------------------------------------

# Where the rank of a process is before torch.distributed is initialised (DDP children, SLURM
# tasks, torchrun): Lightning's own list, plus NODE_RANK for nodes after the first.
RANK_ENV = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def is_global_zero(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this is the job's global rank 0, the one process that writes files and logs."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return all(str(environ.get(key, "0")).strip() in ("", "0") for key in RANK_ENV)


DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str, option: str = "--device") -> torch.device:
    """A command's `--device auto|cpu|cuda` as a torch.device; UserError naming the choices."""
    if device not in DEVICE_CHOICES:
        raise UserError(f"{option} {device!r} is not valid; choose one of: auto, cpu, cuda")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option} cuda: no CUDA device is visible here; choose auto or cpu")
    return torch.device(device)
