"""Scaling out (distributed.py): DDP per job inside a sweep, GPUs for parallel jobs, launchers."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from conftest import run_cli, summaries
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm

from degradation.data import per_device_batch_size
from degradation.data.sampler import ResumableSampler
from degradation.ddp_relaunch import JobDDPStrategy, _quoted
from degradation.distributed import (
    choose_strategy,
    cluster_plugins,
    distributed_trainer_args,
    gpu_for_job,
    gpu_job_slots,
    processes_per_node,
    resolve_jobs_per_gpu,
)
from degradation.errors import UserError
from degradation.run import register as register_configs

# --- GPUs for parallel jobs -------------------------------------------------------------------


def test_gpu_for_job_packs_consecutive_jobs_and_takes_gpus_in_turn():
    assert [gpu_for_job(k, n_gpus=8, jobs_per_gpu=4) for k in (0, 3, 4, 31, 32)] == [0, 0, 1, 7, 0]
    assert [gpu_for_job(k, n_gpus=3, jobs_per_gpu=1) for k in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert {gpu_for_job(k, n_gpus=1, jobs_per_gpu=4) for k in range(9)} == {0}
    # any n_gpus * jobs_per_gpu consecutive jobs (those running at once) fill every GPU evenly
    for start in (0, 32, 64):
        gpus = [gpu_for_job(k, 8, 4) for k in range(start, start + 32)]
        assert [gpus.count(g) for g in range(8)] == [4] * 8


def test_auto_jobs_per_gpu_shares_a_gpu_four_ways_within_memory_and_cores(monkeypatch):
    from types import SimpleNamespace

    from degradation import distributed

    def machine(gpus: int, gib: int, cores: int) -> int:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        props = SimpleNamespace(total_memory=gib * 2**30)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
        monkeypatch.setattr(distributed.os, "cpu_count", lambda: cores)
        return resolve_jobs_per_gpu("auto")

    assert machine(gpus=1, gib=80, cores=16) == 4  # an H100: AUTO_JOBS_PER_GPU (docs/benchmarks.md)
    assert machine(gpus=8, gib=80, cores=16) == 2  # 2 cores per GPU
    assert machine(gpus=1, gib=10, cores=16) == 2  # 4 GiB per job
    assert machine(gpus=1, gib=2, cores=1) == 1
    assert machine(gpus=0, gib=0, cores=16) == 1  # no GPU: one job at a time
    assert gpu_job_slots("auto") == 1 and gpu_job_slots(3) == 3 == resolve_jobs_per_gpu("3")
    assert machine(gpus=2, gib=80, cores=16) == 4 and gpu_job_slots("auto") == 8
    with pytest.raises(UserError, match="jobs_per_gpu=many is not valid: choose auto or"):
        resolve_jobs_per_gpu("many")


def test_gpu_for_job_rejects_impossible_arguments():
    with pytest.raises(UserError, match="jobs_per_gpu=0"):
        gpu_for_job(0, n_gpus=2, jobs_per_gpu=0)
    with pytest.raises(ValueError, match="n_gpus=0"):
        gpu_for_job(0, n_gpus=0, jobs_per_gpu=1)


# --- strategy and batch -----------------------------------------------------------------------


def test_processes_per_node_reads_devices_as_lightning_does():
    assert processes_per_node("cpu", 2) == 2
    assert processes_per_node("cpu", "3") == 3
    assert processes_per_node("cpu", 1) == 1
    assert processes_per_node("cpu", "auto") == 1  # Lightning: one CPU process


@pytest.mark.parametrize(
    "args, expected",
    [
        ({"accelerator": "cpu", "devices": 2, "strategy": "auto"}, JobDDPStrategy),
        ({"accelerator": "cpu", "devices": 1, "strategy": "ddp"}, JobDDPStrategy),
        ({"accelerator": "cpu", "devices": 1, "strategy": "auto", "num_nodes": 2}, JobDDPStrategy),
        ({"accelerator": "cpu", "devices": 1, "strategy": "auto"}, "auto"),
        ({"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}, "ddp_spawn"),
    ],
)
def test_ddp_and_auto_with_several_processes_relaunch_the_job(args, expected):
    chosen = choose_strategy(args)
    assert isinstance(chosen, expected) if isinstance(expected, type) else chosen == expected


def test_trainer_gets_gloo_ddp_and_sync_batchnorm_on_cpu():
    args = distributed_trainer_args(
        {"accelerator": "cpu", "devices": 2, "strategy": "auto", "sync_batchnorm": True}
    )
    trainer = L.Trainer(**args, logger=False, enable_checkpointing=False)  # launches nothing
    assert isinstance(trainer.strategy, JobDDPStrategy)
    assert trainer.world_size == 2
    assert trainer.strategy._get_process_group_backend() == "gloo"
    assert isinstance(trainer.strategy._layer_sync, TorchSyncBatchNorm)


def test_under_slurm_each_task_is_one_process_and_only_submitit_requeues(monkeypatch):
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1",
             "SLURM_JOB_NAME": "run", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
             "SLURM_NODEID": "0", "SLURM_JOB_ID": "42", "SLURM_NODELIST": "node1"}  # fmt: skip
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # launch() keeps it
    args = distributed_trainer_args({"accelerator": "cpu", "devices": 2, "strategy": "auto"})
    trainer = L.Trainer(**args, plugins=cluster_plugins(), logger=False)
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and not environment.auto_requeue
    assert environment.creates_processes_externally and trainer.global_rank == 1
    launcher = trainer.strategy.launcher
    assert launcher.launch(lambda: "ran") == "ran" and launcher.procs == []  # nothing started
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")  # an allocation that does not fit
    with pytest.raises(ValueError, match="devices=2"):
        launcher.launch(lambda: "ran")


def test_global_batch_splits_evenly_or_is_a_one_line_error():
    assert per_device_batch_size(128, 2) == 64
    assert per_device_batch_size(128, 8) == 16
    with pytest.raises(UserError, match=r"data.batch_size=30 does not split over 4") as err:
        per_device_batch_size(30, 4)
    assert "\n" not in str(err.value)


def test_ranks_get_disjoint_shards_reshuffled_every_epoch():
    n, batch, steps_per_epoch = 103, 8, 6  # 51 per rank: 6 full batches, 3 dropped
    shards = []
    for rank in (0, 1):
        step = {"now": 0}
        sampler = ResumableSampler(n, batch, seed=5, position=lambda s=step: s["now"], rank=rank,
                                   world_size=2)  # fmt: skip
        epochs = []
        for epoch in range(2):
            step["now"] = epoch * steps_per_epoch
            epochs.append(list(sampler))
        shards.append(epochs)
    for epoch in range(2):
        rank0, rank1 = shards[0][epoch], shards[1][epoch]
        assert len(rank0) == len(rank1) == steps_per_epoch * batch  # drop_last
        assert not set(rank0) & set(rank1)
    assert shards[0][0] != shards[0][1]  # a new order each epoch


def test_job_folder_is_passed_to_children_verbatim():
    folder = "/tmp/out/sweeps/smoke/depth=20,skip=none,name='x'"
    parsed = OverridesParser.create().parse_overrides([f"hydra.run.dir={_quoted(folder)}"])[0]
    assert not parsed.is_sweep_override()
    assert parsed.value() == folder


# --- launcher configs -------------------------------------------------------------------------


# Our joblib/submitit_local configs replace the plugins' ones of the same name (see config.py)
_SAME_NAME_SCHEMA = r"ignore:\s*'hydra/launcher/\w+' is validated against ConfigStore:UserWarning"


def _launcher(*overrides: str):
    register_configs()
    with initialize_config_module(config_module="degradation.conf", version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    return cfg.hydra.launcher


def test_slurm_launcher_composes_with_the_cluster_knobs():
    launcher = _launcher(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.account=my-project",
        "hydra.launcher.nodes=2",
        "hydra.launcher.gpus_per_node=8",
        "hydra.launcher.timeout_min=240",
    )
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.account) == ("gpu", "my-project")
    assert launcher.timeout_min == 240
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 8, 8)
    assert launcher.array_parallelism > 0 and launcher.max_num_timeout > 0  # requeue resumes


@pytest.mark.filterwarnings(_SAME_NAME_SCHEMA)
def test_local_launchers_size_themselves_from_the_visible_gpus():
    gpus = torch.cuda.device_count()
    joblib = _launcher("hydra/launcher=joblib", "jobs_per_gpu=3")
    assert joblib._target_.endswith("JoblibLauncher")
    assert joblib.n_jobs == max(gpus, 1) * 3
    assert _launcher("hydra/launcher=joblib", "hydra.launcher.n_jobs=2").n_jobs == 2
    auto = resolve_jobs_per_gpu("auto")  # the default; 1 without a GPU
    assert _launcher("hydra/launcher=joblib").n_jobs == max(gpus, 1) * auto
    local = _launcher("hydra/launcher=submitit_local")
    assert local._target_.endswith("LocalLauncher")
    assert (local.gpus_per_node, local.tasks_per_node) == (gpus, 1)


# --- the CLI: DDP inside a multirun -----------------------------------------------------------


def test_ddp_sweep_runs_each_job_on_two_processes_without_relaunching_the_sweep(tmp_path, out):
    result = run_cli(
        "-m", "depth=8,20", "skip=none,add", "experiment=smoke", f"output_root={out}",
        "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=4",
        "data.batch_size=128",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sweep: 4 completed" in result.stdout
    # exactly the four job folders: no child started a sweep or a single run of its own
    assert sorted(p.relative_to(out).as_posix() for p in out.iterdir()) == ["sweeps"]
    sweep = out / "sweeps" / "smoke"
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 4 and all(j.endswith("trainer.devices=2,trainer.max_steps=4") for j in jobs)
    found = summaries(out)
    assert {p.parent for p in found} == {sweep}
    for run_dir, summary in found.items():
        assert summary["status"] == "completed"
        assert summary["world_size"] == 2
        assert summary["per_device_batch_size"] == 64 == 128 // 2
        assert summary["steps"] == 4
        # rank 0's own (not yet reduced) metric window counts the images it trained on
        checkpoint = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)
        assert checkpoint["degradation"]["window"][2] == 4 * 64
        # one writer: each step logged once, one Hydra log, no second .hydra/
        with open(run_dir / "metrics.csv", newline="") as f:
            lr_steps = [int(row["step"]) for row in csv.DictReader(f) if row["lr"]]
        assert lr_steps == [0, 1, 2, 3]
        assert sorted(p.name for p in run_dir.glob("*.log")) == ["run.log"]
        assert sorted(p.name for p in (run_dir / ".hydra").iterdir()) == [
            "config.yaml", "hydra.yaml", "overrides.yaml"
        ]  # fmt: skip


def test_batch_that_does_not_split_over_the_processes_is_a_one_line_error(tmp_path, out):
    result = run_cli(
        "experiment=smoke", "depth=8", f"output_root={out}", "trainer.accelerator=cpu",
        "trainer.devices=3", "data.batch_size=32",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: data.batch_size=32 does not split over 3 processes; choose a multiple of 3"
    )
    assert not list(out.rglob("*.ckpt")) and not list(out.rglob("metrics.csv"))
