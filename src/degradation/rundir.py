"""The run folder: what a run leaves behind, written so that a kill never leaves half a file.

    RUN_DIR/
      .hydra/            config.yaml, overrides.yaml, hydra.yaml (written by Hydra)
      metrics.csv        one row per logged step (Lightning's CSVLogger; a resume continues it)
      checkpoints/       last.ckpt (resume), best.ckpt (lowest val/error)
      summary.json       the run's outcome; `status` is completed / diverged / failed

summary.json and checkpoints are replaced in one rename (`atomic_writer`; checkpoints through
resume.AtomicCheckpointIO); metrics.csv only grows, and a resumed run cuts it back to the rows
its checkpoint had seen (resume.MetricsCSVLogger).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import IO, Any

SUMMARY = "summary.json"
METRICS = "metrics.csv"
CHECKPOINTS = "checkpoints"


@contextmanager
def atomic_writer(path: Path, mode: str = "w") -> Iterator[IO]:
    """A file to write `path` through: a temporary file in the same folder, renamed over `path`
    when the block ends without error, so readers (and a rerun after a kill) see old or new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers see old or new."""
    with atomic_writer(path) as f:
        f.write(text)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """summary.json, strict JSON: NaN and infinities (a diverged run's losses) become null."""
    path = Path(run_dir) / SUMMARY
    atomic_write_text(path, strict_json(summary))
    return path


def strict_json(data: Any, indent: int = 2) -> str:
    """JSON text every reader accepts: NaN and infinities (JSON has none) become null."""
    return json.dumps(finite_or_none(data), indent=indent, allow_nan=False, default=str) + "\n"


def finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_or_none(v) for v in x]
    return x


def clear_run(run_dir: Path) -> None:
    """Remove what a run wrote (checkpoints, metrics.csv, summary.json) so it starts afresh;
    Hydra's .hydra/ and other tools' files stay."""
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    for name in (METRICS, SUMMARY):
        (run_dir / name).unlink(missing_ok=True)
    remove_torn_writes(run_dir)


def remove_torn_writes(run_dir: Path) -> None:
    """Delete the temporary files of writes a kill interrupted (atomic_writer's `.NAME.*.tmp`)."""
    for folder in (Path(run_dir), Path(run_dir) / CHECKPOINTS):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def git_state(start: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding this package, else of the cwd; None outside git."""
    for where in (Path(__file__).resolve().parent, start or Path.cwd()):
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
            )
            if commit.returncode != 0:
                continue
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=where,
                capture_output=True,
                text=True,
                timeout=10,
            )
            return commit.stdout.strip(), bool(status.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            continue
    return None, None


PACKAGES = ("torch", "torchvision", "lightning", "hydra-core", "omegaconf", "numpy", "matplotlib")


def environment() -> dict[str, Any]:
    """Python and package versions, platform, CPU count and GPU name(s) of this machine."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    gpus: list[str] = []
    try:
        import torch

        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return {
        "packages": versions,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": gpus or ["none"],
    }
