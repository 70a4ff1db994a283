"""The run's Lightning loggers: metrics.csv always, plus one W&B run with `logger=wandb`.

    build_loggers(cfg, run_dir)   # [CSVLogger] or [CSVLogger, WandbLogger]; starts the W&B run
    finish_wandb(summary)         # summary.json's figures into the W&B run, then finish it

W&B mode (`logger.wandb.mode`): `auto` is online when an API key or a `wandb login` is found
and offline otherwise; an online start that fails (no network, bad key) falls back to offline
with a one-line warning after `logger.wandb.init_timeout` seconds. wandb never prompts, and
nothing changes the process environment beyond the job, so every job of a Hydra multirun is
its own W&B run. Only the global-rank-0 process of a DDP job makes a W&B run.

wandb is imported here only, and only when a W&B run is made: it is an optional dependency.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf

from degradation.config import config_hash, value, variant_name
from degradation.errors import UserError, first_line

DEFAULT_PROJECT = "degradation"
DEFAULT_HOST = "https://api.wandb.ai"
STEP_METRIC = "trainer/global_step"  # the x axis Lightning's WandbLogger logs with every row
# Set by wandb or by Lightning's WandbLogger(offline=True); restored at the end of each job.
GUARDED_ENV = ("WANDB_MODE", "WANDB_SILENT", "WANDB_DIR", "WANDB_PROJECT")
RANK_ENV = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


@dataclass
class _WandbSession:
    run: Any
    mode: str  # "online" or "offline"
    saved_env: dict[str, str | None]


_session: _WandbSession | None = None  # the W&B run of the job in progress, if any


def wandb_requested(cfg: DictConfig) -> bool:
    return value(OmegaConf.select(cfg, "logger.kind", default="csv")) == "wandb"


def check_logger_available(cfg: DictConfig) -> None:
    """Called by config.validate: `logger=wandb` without wandb installed is a user mistake."""
    if not wandb_requested(cfg) or value(cfg.logger.wandb.mode) == "disabled":
        return
    if cfg.logger.wandb.init_timeout <= 0:
        timeout = cfg.logger.wandb.init_timeout
        raise UserError(f"logger.wandb.init_timeout={timeout} is not valid: it must be > 0")
    if importlib.util.find_spec("wandb") is None:
        raise UserError(
            "logger=wandb: the wandb package is not installed; `pip install wandb`, "
            "or choose logger=csv (or logger.wandb.mode=disabled)"
        )


def has_wandb_credentials(environ: Mapping[str, str] = os.environ) -> bool:
    """An API key in the environment, or a `wandb login` entry in the netrc file, for the host."""
    if environ.get("WANDB_API_KEY") or environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(environ.get("WANDB_BASE_URL") or DEFAULT_HOST).netloc
    home = Path(environ.get("HOME") or Path.home())
    candidates = [Path(environ["NETRC"]).expanduser()] if environ.get("NETRC") else []
    candidates += [home / ".netrc", home / "_netrc"]
    for path in candidates:
        if path.is_file():
            try:
                entry = netrc.netrc(path).authenticators(host)
            except (netrc.NetrcParseError, OSError):
                return False
            return bool(entry and entry[2])
    return False


def resolve_mode(requested: str, environ: Mapping[str, str] = os.environ) -> str:
    """online / offline / disabled: `auto` follows WANDB_MODE if set, else the credentials."""
    if requested != "auto":
        return requested
    from_env = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline"}
    from_env["disabled"] = "disabled"
    if environ.get("WANDB_MODE") in from_env:
        return from_env[environ["WANDB_MODE"]]
    return "online" if has_wandb_credentials(environ) else "offline"


def run_name(cfg: DictConfig) -> str:
    """'plain-56 s0', 'resnet-56 zero_pad s1', 'resnet-110 projection s2'."""
    label = variant_name(cfg)
    shortcut = value(cfg.shortcut)
    if value(cfg.skip) != "none" and shortcut not in label:
        label += f" {shortcut}"
    return f"{label} s{cfg.seed}"


def variant_group(cfg: DictConfig) -> str:
    """One W&B group per variant, seeds left out: 'demo/plain-56 #1a2b3c'.

    The prefix is `logger.wandb.group` or the experiment name; the suffix is the config_hash
    of the resolved config without seed and name, so runs that differ in anything but the seed
    (dataset, steps, lr, ...) never share a group and W&B's mean ± std is honest.
    """
    seedless = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    seedless.pop("seed", None)
    seedless.pop("name", None)
    digest = config_hash(seedless)[:6]
    prefix = OmegaConf.select(cfg, "logger.wandb.group") or cfg.name
    return f"{prefix}/{variant_name(cfg)} #{digest}"


def _is_global_rank_zero(environ: Mapping[str, str] = os.environ) -> bool:
    # Called before the Trainer exists: DDP children and SLURM tasks carry their rank in env.
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return all(str(environ.get(key, "0")).strip() in ("", "0") for key in RANK_ENV)


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    """[CSVLogger(run_dir)] plus, with `logger=wandb` on global rank 0, a WandbLogger."""
    from lightning.pytorch.loggers import CSVLogger

    loggers: list = [CSVLogger(run_dir, name="", version="")]
    if not wandb_requested(cfg) or not _is_global_rank_zero():
        return loggers
    session = _start_wandb_run(cfg, Path(run_dir))
    if session is not None:
        from lightning.pytorch.loggers import WandbLogger

        log_model = bool(cfg.logger.wandb.log_model) and session.mode == "online"
        loggers.append(WandbLogger(experiment=session.run, log_model=log_model))
    return loggers


def _init_args(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from degradation.rundir import git_state

    wcfg = cfg.logger.wandb
    commit, dirty = git_state()
    group = variant_group(cfg)
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    config.update(variant=variant_name(cfg), group=group, git_commit=commit, git_dirty=dirty)
    shortcut = value(cfg.shortcut) if value(cfg.skip) != "none" else "not_applicable"
    tags = [f"depth={cfg.depth}", f"skip={value(cfg.skip)}", f"shortcut={shortcut}"]
    tags += [f"dataset={cfg.data.name}", *wcfg.tags]
    wandb_dir = wcfg.dir or (None if os.environ.get("WANDB_DIR") else str(run_dir))
    if wandb_dir:
        Path(wandb_dir).mkdir(parents=True, exist_ok=True)
    return dict(
        project=wcfg.project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        entity=wcfg.entity,
        group=group,
        job_type=wcfg.job_type,
        name=run_name(cfg),
        tags=tags,
        config=config,
        dir=wandb_dir,
    )


def _start_wandb_run(cfg: DictConfig, run_dir: Path) -> _WandbSession | None:
    global _session
    import wandb

    mode = resolve_mode(value(cfg.logger.wandb.mode))
    if mode == "disabled":
        print("[wandb] disabled (logger.wandb.mode or WANDB_MODE): metrics.csv only")
        return None
    if wandb.run is not None:  # left over from earlier in this process: never log into it
        wandb.finish()
    saved_env = {key: os.environ.get(key) for key in GUARDED_ENV}
    args = _init_args(cfg, run_dir)
    # silent: our own two lines say where the run went; init_timeout: no 90 s hang offline
    settings = dict(silent=True, init_timeout=float(cfg.logger.wandb.init_timeout))
    settings.update(_git_settings())
    run = None
    if mode == "online" and not has_wandb_credentials():
        print("[wandb] warning: no W&B login (WANDB_API_KEY or `wandb login`): logging offline")
        mode = "offline"
    if mode == "online":
        try:
            run = wandb.init(mode="online", settings=wandb.Settings(**settings), **args)
        except Exception as err:  # network down, bad key, server error: keep training
            reason = first_line(err)
            print(f"[wandb] warning: online start failed ({reason}): logging offline")
            _restore_env(saved_env)
            mode = "offline"
    if run is None:
        run = wandb.init(mode="offline", settings=wandb.Settings(**settings), **args)
    run.define_metric(STEP_METRIC)
    run.define_metric("*", step_metric=STEP_METRIC, step_sync=True)
    where = run.url if mode == "online" else run.settings.sync_dir
    print(f"[wandb] {mode} run '{args['name']}' (group '{args['group']}'): {where}")
    _session = _WandbSession(run=run, mode=mode, saved_env=saved_env)
    return _session


def _git_settings() -> dict[str, Any]:
    """wandb looks for git in its own folder (often outside the checkout): point it at ours."""
    for where in (Path(__file__).resolve().parent, Path.cwd()):
        try:
            found = subprocess.run(
                ["git", "rev-parse", "--show-toplevel"],
                cwd=where,
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if found.returncode == 0:
            return {"git_root": found.stdout.strip()}
    return {"disable_git": True}


def summary_figures(summary: Mapping[str, Any]) -> dict[str, Any]:
    """summary.json flattened for the W&B run summary: {'final/test_error': 0.07, ...}."""
    figures: dict[str, Any] = {}
    for key, val in summary.items():
        if key == "traceback":
            continue
        if isinstance(val, Mapping):
            figures.update({f"{key}/{k}": v for k, v in val.items()})
        else:
            figures[key] = val
    return figures


def finish_wandb(summary: Mapping[str, Any]) -> None:
    """End of a job (success or failure): push summary.json's figures, finish the W&B run,
    restore the environment, and say where an offline run is and how to upload it."""
    global _session
    session, _session = _session, None
    if session is None:
        return
    try:
        session.run.summary.update(summary_figures(summary))
        failed = summary.get("status") not in ("completed", "diverged")
        session.run.finish(exit_code=1 if failed else 0)
    except Exception as err:  # summary.json is written: W&B trouble must not fail the job
        print(f"[wandb] warning: could not finish the W&B run: {type(err).__name__}: {err}")
    finally:
        _restore_env(session.saved_env)
    if session.mode == "offline":
        sync_dir = session.run.settings.sync_dir
        print(f"[wandb] offline run saved; upload with: wandb sync {shlex.quote(str(sync_dir))}")


def _restore_env(saved: Mapping[str, str | None]) -> None:
    for key, old in saved.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
