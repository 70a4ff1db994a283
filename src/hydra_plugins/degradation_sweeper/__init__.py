"""The sweeper of `python -m degradation.run -m`: Hydra's basic sweeper, plus two rules.

- A plain net has no shortcut, so `skip=none` jobs that differ only in `shortcut` are the
  same model: the first trains, the others are skipped with a message.
- One failed job does not stop the sweep: every job runs, a table of outcomes is printed at
  the end (the error of a failed job, the step of a diverged one), and `degradation.run`
  exits non-zero if any job failed.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules outside
# sys.modules, where dataclasses cannot resolve string annotations.
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

# Filled by the sweep, read by degradation.run after Hydra returns (same process).
OUTCOMES: list[dict[str, Any]] = []


@dataclass
class DegradationSweeperConf:
    _target_: str = "hydra_plugins.degradation_sweeper.DegradationSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="degradation", node=DegradationSweeperConf, provider="degradation"
)


def _as_dict(job: Sequence[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in job if "=" in o)


def drop_duplicate_plain_jobs(jobs: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """(jobs to run, jobs skipped): skip=none jobs equal up to `shortcut` run once."""
    kept, skipped, seen = [], [], set()
    for job in jobs:
        values = _as_dict(job)
        if values.get("skip") == "none" and "shortcut" in values:
            identity = tuple(sorted((k, v) for k, v in values.items() if k != "shortcut"))
            if identity in seen:
                skipped.append(job)
                continue
            seen.add(identity)
        kept.append(job)
    return kept, skipped


class DegradationSweeper(BasicSweeper):
    @staticmethod
    def split_arguments(overrides, max_batch_size):
        batches = BasicSweeper.split_arguments(overrides, max_batch_size=None)
        jobs, skipped = drop_duplicate_plain_jobs(batches[0])
        for job in skipped:
            print(
                f"[sweep] skipping {' '.join(job)}: a plain net (skip=none) has no shortcut, "
                "so this is the same model as a job already in the sweep"
            )
        if max_batch_size is None:
            return [jobs]
        return [jobs[i : i + max_batch_size] for i in range(0, len(jobs), max_batch_size)]

    def sweep(self, arguments: list[str]) -> Any:
        # BasicSweeper.sweep, except that a failed job is recorded instead of raised
        OUTCOMES.clear()
        params = self._parse_config() + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params), self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, first_index = [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=first_index)
            OUTCOMES.extend(
                _outcome(job, result) for job, result in zip(batch, results, strict=True)
            )
            first_index += len(batch)
            returns.append(results)
        print(outcome_table(OUTCOMES))
        return returns


def _outcome(job: Sequence[str], result: JobReturn) -> dict[str, Any]:
    if result.status == JobStatus.COMPLETED:
        status, error = str(result.return_value), None
    else:
        err = result._return_value
        status, error = "failed", f"{type(err).__name__}: {err}".splitlines()[0]
    run_dir = None
    if result.hydra_cfg is not None:
        run_dir = result.hydra_cfg.hydra.runtime.output_dir
    if status == "diverged" and run_dir is not None:
        error = f"at step {_summary(run_dir).get('diverged_step')}"
    return {"job": " ".join(job), "status": status, "error": error, "run_dir": run_dir}


def _summary(run_dir: str) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def outcome_table(outcomes: list[dict[str, Any]]) -> str:
    width = max([len(o["job"]) for o in outcomes] + [3])
    lines = [f"{'job':<{width}}  status", f"{'-' * width}  ---------"]
    for o in outcomes:
        lines.append(
            f"{o['job']:<{width}}  {o['status']}" + (f"  ({o['error']})" if o["error"] else "")
        )
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["status"]] = counts.get(o["status"], 0) + 1
    lines.append("sweep: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines)
