"""The sweeper of `python -m degradation.run -m`: Hydra's basic sweeper, plus two rules.

- A plain net has no shortcut, so `skip=none` jobs that differ only in `shortcut` are the
  same model: the first trains, the others are skipped with a message (`split_arguments`).
- One failed job does not stop the sweep: each job catches its own failure and returns it as
  its outcome (`degradation.run.hydra_entry`), so every job runs; at the end a table of
  outcomes is printed (the error of a failed job, the step of a diverged one) and, if any job
  failed, `SweepFailed` ends the program with one line and exit code 1.
- A job whose run folder another process holds (e.g. the same sweep started twice) is `busy`:
  not trained here, not a failure, but not done by this sweep either, so the sweep also ends
  with one line and exit code 1, saying where to look.

The basic sweeper is subclassed, not copied: it lives in Hydra's `_internal` package, and only
its documented override points (`split_arguments`, `sweep`) are used.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules outside
# sys.modules, where dataclasses cannot resolve string annotations.
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.errors import CompactHydraException


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
        returns = super().sweep(arguments)
        outcomes = [
            job_outcome(job, result)
            for batch, results in zip(self.overrides, returns, strict=True)
            for job, result in zip(batch, results, strict=True)
        ]
        print(outcome_table(outcomes))
        failed = sum(o["status"] == "failed" for o in outcomes)
        if failed:
            raise SweepFailed(f"error: {failed} of {len(outcomes)} jobs failed (see the table)")
        busy = sum(o["status"] == "busy" for o in outcomes)
        if busy:
            raise SweepFailed(
                f"error: {busy} of {len(outcomes)} jobs busy: another process is training them "
                "(see the table); rerun this command once it has ended to collect them"
            )
        return returns


class SweepFailed(CompactHydraException):
    """Printed by Hydra as its one-line message, with exit code 1."""


def job_outcome(job: Sequence[str], result: JobReturn) -> dict[str, Any]:
    """{"job", "status", "error", "run_dir"}: what the job returned (degradation.run)."""
    return {"job": " ".join(job), "error": None, "run_dir": None, **result.return_value}


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
