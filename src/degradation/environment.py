"""Where a run ran: the code's git state and the machine's software and hardware."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "torchvision", "lightning", "hydra-core", "omegaconf", "numpy", "matplotlib")


def _git(args: list[str], where: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _checkouts(start: Path | None = None) -> list[Path]:
    """Where to look for git: the checkout holding this package, else the working directory."""
    return [Path(__file__).resolve().parent, start or Path.cwd()]


def git_state(start: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout holding this package, else of the cwd; None outside git."""
    for where in _checkouts(start):
        commit = _git(["rev-parse", "HEAD"], where)
        if commit is not None:
            status = _git(["status", "--porcelain", "--untracked-files=no"], where)
            return commit, bool(status)
    return None, None


def git_root(start: Path | None = None) -> str | None:
    """The top folder of that checkout, or None outside git."""
    for where in _checkouts(start):
        top = _git(["rev-parse", "--show-toplevel"], where)
        if top is not None:
            return top
    return None


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
