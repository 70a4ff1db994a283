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
- Each job prints one line as it starts and one as it ends (`JobLines`), with its number
  i/N, its outcome, its time and an estimate of the sweep's time left.
- No launcher leaves a stray folder: submitit_local's literal `.submitit/%j` is removed.

The basic sweeper is subclassed, not copied: it lives in Hydra's `_internal` package (imported
through degradation.private_api, which pins the Hydra version), and only its public methods
(`setup`, `split_arguments`, `get_job_batch`, `sweep`) are overridden.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules outside
# sys.modules, where dataclasses cannot resolve string annotations.
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.errors import CompactHydraException

from degradation.private_api import BasicSweeper


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


class JobLines:
    """The sweep's task function, printing a line as each job starts and one as it ends:

        [sweep] job 2/4 started: depth=56 skip=none
        [sweep] job 2/4 completed in 1m 05s: depth=56 skip=none; about 2m 10s left

    The time left is the sweep's time so far per finished job, times the jobs left. The lines
    are printed by the job itself, in whatever process the launcher runs it: with the basic
    launcher jobs run one after another and so do their lines; a parallel launcher (joblib)
    runs k jobs at once, so lines of different jobs interleave (each line stays whole), and
    job i ends after about i/k job-times, which the same estimate still extrapolates; under
    submitit each job's lines go to its own log. The estimate counts jobs by their number, so
    with jobs finishing out of order it is a rough one.
    """

    def __init__(self, task_function: Callable[[Any], Any]):
        self.task_function = task_function
        self.total = 0  # jobs in the sweep, set by the sweeper before the first launch
        self.sweep_started = time.time()  # wall clock: parallel workers are other processes

    def __call__(self, cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig

        from degradation.console import duration

        hydra = HydraConfig.get()
        number, job = hydra.job.num + 1, " ".join(hydra.overrides.task)
        print(f"[sweep] job {number}/{self.total} started: {job}", flush=True)
        started, status = time.time(), "failed"
        try:
            result = self.task_function(cfg)
            status = result.get("status", "done") if isinstance(result, dict) else "done"
            return result
        except SystemExit as stop:  # degradation.run exits 128 + the signal on SIGINT/SIGTERM
            status = "interrupted" if stop.code in (130, 143) else "failed"
            raise
        finally:
            now = time.time()
            line = f"[sweep] job {number}/{self.total} {status} in {duration(now - started)}: {job}"
            if number < self.total:
                left = (now - self.sweep_started) / number * (self.total - number)
                line += f"; about {duration(left)} left"
            print(line, flush=True)


class DegradationSweeper(BasicSweeper):
    def setup(self, *, hydra_context, task_function, config) -> None:
        self.job_lines = JobLines(task_function)
        super().setup(hydra_context=hydra_context, task_function=self.job_lines, config=config)

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        if self.batch_index == 0:  # the sweep's jobs are known, none launched yet
            self.job_lines.total = sum(len(batch) for batch in self.overrides)
            self.job_lines.sweep_started = time.time()
        return super().get_job_batch()

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
        try:
            returns = super().sweep(arguments)
        finally:
            remove_unexpanded_folder(self.config.hydra.launcher)
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


def remove_unexpanded_folder(launcher: Any) -> None:
    """submitit's local executor makes its folder pattern (`.submitit/%j`) as a folder before
    it puts each job in its own (`.submitit/<pid>`): that empty, literally named folder goes."""
    pattern = launcher.get("submitit_folder") if launcher is not None else None
    if pattern and "%j" in str(pattern):
        folder = Path(str(pattern))
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


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
