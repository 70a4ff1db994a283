"""experiments/gpu/run.sh, the prepared GPU call, run here on a CPU with its tiny settings:
every phase runs and the results come back as the few files the device tool returns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from test_sources import write_fake_fashion_mnist

from degradation.run import register as register_configs
from hydra_plugins.degradation_sweeper import DegradationSweeper

SCRIPT = REPO / "experiments" / "gpu" / "run.sh"
PHASES = ["tests", "demo_fast", "demo_eager", "fig6", "bench", "bench_share"]
OUT_LIMITS = {"files": 8, "file_bytes": 16 * 2**20}  # what the device tool brings back


def run_script(tmp_path: Path, *phases: str, timeout: float = 600, **env: str):
    data = tmp_path / "fashion-mnist"
    write_fake_fashion_mnist(data, n_train=400, n_test=100)
    full_env = {
        **os.environ,
        "DEVICE": "cpu",
        "SMOKE": "1",
        "PYTHON": sys.executable,
        "OUT": str(tmp_path / "out"),
        "RESULTS": str(tmp_path / "results"),
        "DATA_ROOT": str(data),
        **env,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *phases],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=tmp_path,
    )


def phases_of(out: Path) -> dict[str, list[str]]:
    rows = [line.split("\t") for line in (out / "phases.tsv").read_text().splitlines()]
    return {r[0]: r[1:] for r in rows if not r[0].startswith("#")}


def summaries_in(tar: tarfile.TarFile, folder: str) -> list[dict]:
    names = [n for n in tar.getnames() if n.startswith(folder) and n.endswith("/summary.json")]
    return [json.load(tar.extractfile(n)) for n in names]


@pytest.mark.slow
def test_the_whole_call_runs_on_a_cpu_and_packs_its_results(tmp_path):
    result = run_script(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "out"
    files = sorted(p.name for p in out.iterdir())
    assert files == ["phases.tsv", "results.tar.gz", "run.log"]
    for path in out.iterdir():
        assert re.fullmatch(r"[A-Za-z0-9._-]+", path.name)
        assert path.stat().st_size <= OUT_LIMITS["file_bytes"]
    assert {name: row[0] for name, row in phases_of(out).items()} == dict.fromkeys(PHASES, "0")
    with tarfile.open(out / "results.tar.gz") as tar:
        names = tar.getnames()
        assert all(n.startswith("results/") for n in names)
        assert not [n for n in names if "checkpoints/" in n or n.endswith(".ckpt")]
        for phase in PHASES:
            assert f"results/logs/{phase}.log" in names
        assert "results/machine.txt" in names
        for path in ("demo_fast", "demo_eager", "fig6"):
            (summary,) = summaries_in(tar, f"results/runs/{path}/")
            assert summary["status"] == "completed" and summary["steps"] == 4
            run = [n for n in names if n.startswith(f"results/runs/{path}/")]
            for name in (".hydra/config.yaml", "metrics.csv", "layer_responses.json"):
                assert any(n.endswith("/" + name) for n in run), (path, name)
        (eager,) = summaries_in(tar, "results/runs/demo_eager/")
        assert eager["speed"]["compile"] == "none" and eager["speed"]["precision"] == "32-true"
        (fig6,) = summaries_in(tar, "results/runs/fig6/")
        assert fig6["dataset"] == "fashion_mnist"
        (speed,) = json.load(tar.extractfile("results/bench/bench.json"))
        (share,) = json.load(tar.extractfile("results/bench/bench_share.json"))
        assert speed["framework_img_s"] > 0 and speed["baseline_img_s"] > 0
        assert share["fuse"] == 2 and share["fused_img_s"] > 0
    log = (out / "run.log").read_text()
    assert "model " in log and "resnet-8" in log  # the benchmark's table reaches the console
    assert "exit 0;" in result.stdout


def test_a_spent_budget_skips_every_phase_and_still_packs(tmp_path):
    result = run_script(tmp_path, "demo", "bench", BUDGET_S="10")
    assert result.returncode == 1
    out = tmp_path / "out"
    skipped = ["skipped", "0", "0"]
    assert phases_of(out) == dict.fromkeys(["demo_fast", "demo_eager", "bench"], skipped)
    assert "demo_fast: skipped, the budget of 10 s is spent" in result.stdout
    with tarfile.open(out / "results.tar.gz") as tar:
        assert "results/machine.txt" in tar.getnames()


def test_an_unknown_phase_is_one_line_exit_2(tmp_path):
    result = run_script(tmp_path, "demo", "benchmark")
    assert result.returncode == 2
    assert result.stderr == (
        "error: unknown phase 'benchmark'; choose from: tests demo fig6 bench bench_share\n"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only machine")
def test_cuda_asked_for_without_a_gpu_stops_at_once(tmp_path):
    result = run_script(tmp_path, "bench", DEVICE="cuda")
    assert result.returncode == 1
    assert "error: DEVICE=cuda but torch sees no CUDA device" in result.stdout
    assert not (tmp_path / "results" / "logs" / "bench.log").exists()


def test_the_gpu_fig6_sweep_has_the_papers_schedule_shape_and_seeds_outermost():
    register_configs()
    with initialize_config_module(config_module="degradation.conf", version_base="1.3"):
        cfg = compose("config", ["experiment=fashion_mnist_fig6_gpu"], return_hydra_config=True)
    steps = cfg.trainer.max_steps
    assert list(cfg.optim.milestones) == [steps // 2, steps * 3 // 4] and cfg.optim.gamma == 0.1
    assert (cfg.data.name, cfg.data.batch_size, cfg.trainer.precision) == (
        "fashion_mnist",
        128,
        "auto",
    )
    params = [f"{key}={values}" for key, values in cfg.hydra.sweeper.params.items()]
    (jobs,) = DegradationSweeper.split_arguments(
        OverridesParser.create().parse_overrides(params), max_batch_size=None
    )
    jobs = [dict(o.split("=", 1) for o in job) for job in jobs]
    assert len(jobs) == 12
    # the first four jobs are the four different nets: the others reuse their compiled graphs
    assert {(j["seed"], j["depth"], j["skip"]) for j in jobs[:4]} == {
        ("0", d, s) for d in ("20", "56") for s in ("none", "add")
    }
