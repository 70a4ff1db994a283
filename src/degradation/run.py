"""`python -m degradation.run [-m] [OVERRIDES...]`: train one variant, or sweep them.

    python -m degradation.run depth=56 skip=none
    python -m degradation.run -m depth=20,56,110 skip=none,add
    python -m degradation.run experiment=demo

Before Hydra starts (and creates any folder), every value of the command line is composed and
checked (preflight.py); a mistake is reported as one line on stderr with exit code 2. So is a
mistake found when a single run starts (a corrupted checkpoint, a full disk), and a run folder
another process holds (busy); in a sweep either is that job's outcome only (`failed`, `busy`),
the other jobs run, and the sweep exits with 1 (hydra_plugins/degradation_sweeper). SIGINT and
SIGTERM end the run, and a sweep, with 130 / 143 (`_interrupted`; docs/run-folder.md).

This module wires the program together: the config schema, the OmegaConf resolvers and the
warning filters are registered here, once, by `register()`.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from degradation.config import RunConfig
from degradation.console import quiet_third_party
from degradation.errors import UserError, first_line
from degradation.preflight import check_command_line
from degradation.resolvers import register_recipe_resolvers


def _gpu_resolver(name: str):
    def resolve(*args):
        from degradation import distributed  # imports Lightning: only when a launcher asks

        return getattr(distributed, name)(*args)

    return resolve


def _run_dir_name(overrides) -> str:
    from degradation.rundir import run_dir_name

    return run_dir_name(overrides)


def _settings_help() -> str:
    from degradation.cli_help import settings_help  # the schema's keys, for --help

    return settings_help()


def register() -> None:
    """The schema (`schema` in Hydra's ConfigStore), every resolver the configs use, and the
    warning filters; idempotent."""
    ConfigStore.instance().store(name="schema", node=RunConfig)
    register_recipe_resolvers()
    OmegaConf.register_new_resolver("run_dir_name", _run_dir_name, replace=True)
    OmegaConf.register_new_resolver("degradation_settings", _settings_help, replace=True)
    # The launcher configs (conf/hydra/launcher/) size themselves with these.
    for name in ("visible_gpus", "gpu_job_slots"):
        OmegaConf.register_new_resolver(name, _gpu_resolver(name), replace=True)
    # Our hydra/launcher/{joblib,submitit_local}.yaml replace the plugins' configs of the same
    # name; Hydra still checks them against the plugins' schemas (wanted), with a warning (not).
    warnings.filterwarnings(
        "ignore", r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema", UserWarning
    )
    quiet_third_party()  # Lightning's advertising tips, a deprecation inside Lightning


register()


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> dict[str, Any]:
    """One job: train it; in a sweep, any failure is this job's outcome, not the sweep's."""
    from degradation.callbacks import RunInterrupted
    from degradation.preflight import parse
    from degradation.resume import RunDirBusy
    from degradation.train import train

    quiet_third_party()  # again: a parallel launcher's worker process never ran register()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweeping = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        summary = train(parse(cfg), run_dir)  # the config stops here: below, a typed spec
    except RunInterrupted as err:
        _interrupted(err, run_dir)
    except RunDirBusy as err:
        if sweeping:
            return {"status": "busy", "error": err.holder, "run_dir": str(run_dir)}
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except UserError as err:  # found once the run started (e.g. a corrupted checkpoint)
        if sweeping:
            return {"status": "failed", "error": f"UserError: {err}", "run_dir": str(run_dir)}
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        if not sweeping:
            raise
        error = f"{type(err).__name__}: {first_line(err)}"  # the traceback is in summary.json
        return {"status": "failed", "error": error, "run_dir": str(run_dir)}
    # train() printed the outcome line (into run.log too)
    error = f"at step {summary.get('diverged_step')}" if summary["status"] == "diverged" else None
    return {"status": summary["status"], "error": error, "run_dir": str(run_dir)}


def _interrupted(err, run_dir: Path) -> None:
    """One line, and exit 128 + the signal (130 SIGINT, 143 SIGTERM), ending a sweep too: the
    user asked to stop."""
    from degradation.rundir import CHECKPOINTS, LAST, read_summary

    summary = read_summary(run_dir) or {}
    step = summary.get("resume_step")
    resume = (
        f"a rerun of the same command resumes from {run_dir / CHECKPOINTS / LAST} (step {step})"
        if step is not None
        else "no checkpoint was written: a rerun of the same command starts it afresh"
    )
    line = f"interrupted by {err.signal_name}: {run_dir} is left as status interrupted; {resume}"
    print(line, file=sys.stderr)
    sys.exit(err.exit_code)


def main() -> None:
    try:
        check_command_line(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    hydra_entry()


if __name__ == "__main__":
    main()
