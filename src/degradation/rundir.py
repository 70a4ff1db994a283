"""The run folder: what a run leaves behind, written so that a kill never leaves half a file.

    RUN_DIR/
      .hydra/            config.yaml, overrides.yaml, hydra.yaml (written by Hydra)
      metrics.csv        one row per logged step (Lightning's CSVLogger)
      checkpoints/       last.ckpt (resume), best.ckpt (lowest val/error)
      summary.json       the run's outcome; `status` is completed / diverged / failed
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"
METRICS = "metrics.csv"
CHECKPOINTS = "checkpoints"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers see old or new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    path = Path(run_dir) / SUMMARY
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return path


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
