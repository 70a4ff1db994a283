"""`python -m degradation.run [-m] [OVERRIDES...]`: train one variant, or sweep them.

    python -m degradation.run depth=56 skip=none
    python -m degradation.run -m depth=20,56,110 skip=none,add
    python -m degradation.run experiment=demo

Before Hydra starts (and creates any folder), every value of the command line is composed and
checked; a mistake is reported as one line on stderr with exit code 2. So is a mistake found
when a single run starts (a corrupted checkpoint); in a sweep it fails that job only. A sweep
exits with 1 if any job failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from degradation.config import register_configs
from degradation.errors import UserError
from degradation.preflight import check_command_line

register_configs()
OmegaConf.register_new_resolver(
    "run_dir_name", lambda overrides: overrides or "default", replace=True
)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def hydra_entry(cfg: DictConfig) -> str:
    from degradation.train import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = train(cfg, run_dir)
    except UserError as err:  # found once the run started (e.g. a corrupted checkpoint)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # one failed job: the sweep records it and goes on
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    final = summary.get("final") or {}
    print(
        f"{summary['name']} s{summary['seed']}: {summary['status']}, "
        f"train error {_fraction(final.get('train_error'))}, "
        f"test error {_fraction(final.get('test_error'))} -> {run_dir}"
    )
    return summary["status"]


def _fraction(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def main() -> None:
    try:
        check_command_line(sys.argv[1:])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    hydra_entry()
    from hydra_plugins.degradation_sweeper import OUTCOMES

    if any(o["status"] == "failed" for o in OUTCOMES):
        sys.exit(1)


if __name__ == "__main__":
    main()
