"""Shared helpers: run the real CLI in a subprocess, read what a run left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One thread per torch process, this one and the runs it starts (they inherit it): `make test`
# runs two pytest workers on a 2-core machine, and two-thread OpenMP regions there would wait
# on each other's cores. Results do not depend on it (the golden sweep pins it anyway).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_tool(tool: str, *args: str, cwd: Path, timeout: float = 300, env: dict | None = None):
    """`python -m degradation.TOOL ARGS` as a user types it; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", f"degradation.{tool}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
    )


def run_cli(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None):
    """`python -m degradation.run ARGS` as a user types it; returns the CompletedProcess."""
    return run_tool("run", *args, cwd=cwd, timeout=timeout, env=env)


def summaries(root: Path) -> dict[Path, dict]:
    """Every summary.json below root, keyed by its run folder."""
    return {p.parent: json.loads(p.read_text()) for p in sorted(root.rglob("summary.json"))}


# The README's smoke sweep as the golden record holds it (tests/test_golden.py): pinned to eager
# fp32, since `auto` may pick bf16 or channels_last on some CPUs, and to one thread, so the same
# machine reproduces the record bit for bit whatever its core count (the thread count changes
# float32 summation order) and an oversubscribed CI box does not stall in OpenMP barriers.
SMOKE_SWEEP = (
    "-m", "depth=20,56", "skip=none,add", "experiment=smoke",
    "trainer.precision=32-true", "channels_last=false", "compile=none",
)  # fmt: skip
SMOKE_SWEEP_ENV = {"OMP_NUM_THREADS": "1"}


def run_smoke_sweep(out: Path) -> Path:
    """Runs SMOKE_SWEEP with output_root=out (cwd: out's parent); returns its sweep folder."""
    result = run_cli(*SMOKE_SWEEP, f"output_root={out}", cwd=out.parent, env=SMOKE_SWEEP_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "sweeps" / "smoke"


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory) -> Path:
    """The sweep folder of SMOKE_SWEEP (four jobs of 20 steps), run once per session."""
    return run_smoke_sweep(tmp_path_factory.mktemp("smoke") / "outputs")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty output root; runs go below it via `output_root=...`."""
    return tmp_path / "outputs"


@pytest.fixture
def compose_cfg():
    """compose_cfg(*overrides): the composed config of `experiment=smoke depth=8 OVERRIDES`,
    as the CLI composes it (its resolvers and schema registered)."""
    from hydra import compose, initialize_config_module

    from degradation.run import register

    register()

    def _compose(*overrides: str):
        with initialize_config_module(config_module="degradation.conf", version_base="1.3"):
            return compose("config", overrides=["experiment=smoke", "depth=8", *overrides])

    return _compose


@pytest.fixture
def compose_spec(compose_cfg):
    """compose_spec(*overrides): compose_cfg's config parsed into the run's spec (spec.parse)."""
    from degradation.preflight import parse

    return lambda *overrides: parse(compose_cfg(*overrides))


@pytest.fixture(autouse=True)
def _restore_lightning_rank():
    """Building a Trainer under a faked cluster sets Lightning's process-wide rank (e.g. to 1),
    which would silence every rank-zero-only writer in later tests of the same process."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    rank = rank_zero_only.rank
    yield
    rank_zero_only.rank = rank
