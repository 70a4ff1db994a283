"""`hydra/launcher=joblib` of this program: hydra-joblib-launcher's jobs in worker processes,
with Ctrl-C (SIGINT) and SIGTERM handled as under the default launcher (docs/run-folder.md):
every running job ends as `interrupted` at a step boundary, no job starts after the signal,
and the sweep ends with one line and exit code 128 + the signal.

The plugin alone cannot: the terminal sends Ctrl-C to every process of its foreground group,
the parent raised KeyboardInterrupt inside joblib.Parallel, which killed the workers before
their jobs had recorded anything, and an idle worker died of it, breaking the pool. Here:

- Each worker leads its own process group (`_worker_started`), so a signal reaches the parent
  only, which forwards it, once, to every worker's group (`_Stop`): a running job gets exactly
  one signal, as it would alone, and a second Ctrl-C is a second signal there too.
- In a worker, a signal between jobs is noted and no later job starts there; one during a
  job's set-up (before training) ends that job before it writes anything; during training the
  job's own handler (callbacks.Interruption) ends it cleanly.
- A job's interruption (degradation.run exits 130 / 143 inside the worker) comes back to the
  parent as an outcome, not an exception, so joblib does not kill the other workers; the
  parent hands out no further job and waits for the running ones.

hydra-joblib-launcher is an optional dependency (the `cluster` extra): it is imported when
the launcher runs, never when Hydra scans its plugins. With one job at a time (n_jobs=1)
joblib runs the jobs in this process, one after another, as the default launcher does.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules outside sys.modules.
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Interrupted:
    """A job a signal ended (`started`: it was set up; False: it never began training)."""

    signum: int
    started: bool


class JoblibLauncher(Launcher):
    """hydra-joblib-launcher's JoblibLauncher (same settings), with signals handled."""

    def __init__(self, **kwargs: Any) -> None:
        self.config = self.task_function = self.hydra_context = None
        self.joblib = kwargs  # joblib.Parallel's arguments, as the plugin takes them

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        from joblib import Parallel, delayed, effective_n_jobs

        from degradation.private_api import joblib_launcher_core

        _core = joblib_launcher_core()  # the plugin's private job set-up and runner
        _core.setup_globals()
        _core.configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        joblib_cfg = {**self.joblib, "backend": "loky"}  # as the plugin: Hydra needs processes
        _core.process_joblib_cfg(joblib_cfg)
        in_process = effective_n_jobs(joblib_cfg.get("n_jobs")) == 1
        if in_process or threading.current_thread() is not threading.main_thread():
            return _core.launch(self, job_overrides, initial_job_idx)  # no workers to manage

        sweep_dir = str(self.config.hydra.sweep.dir)
        os.makedirs(sweep_dir, exist_ok=True)
        log.info(f"Joblib.Parallel(n_jobs={joblib_cfg['n_jobs']}) is launching "
                 f"{len(job_overrides)} jobs, sweep output dir: {sweep_dir}")  # fmt: skip
        state = Singleton.get_state()
        outcomes: dict[int, Any] = {}
        with _Stop() as stop:

            def jobs():  # read lazily by joblib: none is handed out after a signal
                for idx, overrides in enumerate(job_overrides):
                    if stop.signum is not None:
                        return
                    args = (initial_job_idx + idx, overrides, self.hydra_context, self.config)
                    yield delayed(_run_job)(idx, *args, self.task_function, state)

            parallel = Parallel(
                **joblib_cfg, return_as="generator_unordered", initializer=_worker_started
            )
            try:
                for idx, outcome in parallel(jobs()):
                    outcomes[idx] = outcome
                    if isinstance(outcome, Interrupted) and stop.signum is None:
                        stop.signum = outcome.signum  # a job stopped alone ends the sweep too
            except Exception:
                if stop.signum is None:
                    raise  # e.g. a worker killed by the system: the plugin's error
        if stop.signum is None:
            return [outcomes[i] for i in range(len(job_overrides))]
        _end_sweep(stop.signum, list(outcomes.values()), len(job_overrides))


class _Stop:
    """The parent's SIGINT / SIGTERM handlers for the sweep: note the first signal (no job is
    handed out after it) and forward each signal to every worker's process group."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_Stop":
        self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
        import multiprocessing

        for worker in multiprocessing.active_children():  # loky's workers among them
            try:
                if os.getpgid(worker.pid) == worker.pid:  # a worker in its own group
                    os.killpg(worker.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass  # it ended meanwhile


def _end_sweep(signum: int, outcomes: list, total: int) -> None:
    """One line, and exit 128 + the signal, as degradation.run ends an interrupted sweep."""
    stopped = sum(isinstance(o, Interrupted) and o.started for o in outcomes)
    ended = sum(not isinstance(o, Interrupted) for o in outcomes)
    name = signal.Signals(signum).name
    print(
        f"interrupted by {name}: the sweep stopped; {stopped} running job(s) left as status "
        f"interrupted, {ended} ended before, {total - stopped - ended} not started; a rerun of "
        "the same command skips the finished jobs and resumes the others",
        file=sys.stderr,
    )
    sys.exit(128 + signum)


# --- in the worker processes ---------------------------------------------------------------

_noted: int | None = None  # the signal that ended the sweep, as this worker saw it


def _worker_started() -> None:
    """loky's initializer: a process group of its own (signals come from the parent only)
    and, between jobs, a signal is noted instead of ending the worker (which breaks the pool)."""
    os.setpgid(0, 0)
    for s in SIGNALS:
        signal.signal(s, _note)


def _note(signum: int, frame) -> None:
    global _noted
    _noted = _noted or signum


class _StoppedBeforeTraining(SystemExit):
    """A signal during a job's set-up: it ends the job as degradation.run's exit code would."""


def _stop_job(signum: int, frame) -> None:
    _note(signum, frame)
    raise _StoppedBeforeTraining(128 + signum)


def _run_job(idx: int, *args) -> tuple[int, JobReturn | Interrupted]:
    """One job in a worker: (its index, the plugin's JobReturn or how a signal ended it)."""
    from degradation.private_api import joblib_launcher_core

    execute_job = joblib_launcher_core().execute_job
    try:
        for s in SIGNALS:  # before the check below: a signal from here on stops the job
            signal.signal(s, _stop_job)  # (training installs its own, and puts this back)
        if _noted is not None:
            return idx, Interrupted(_noted, started=False)
        return idx, execute_job(*args)
    except _StoppedBeforeTraining as stop:
        return idx, Interrupted(stop.code - 128, started=False)
    except SystemExit as stop:  # degradation.run._interrupted: 128 + the signal
        if stop.code not in (128 + s for s in SIGNALS):
            raise
        _note(stop.code - 128, None)
        return idx, Interrupted(stop.code - 128, started=True)
    finally:
        for s in SIGNALS:
            signal.signal(s, _note)  # between jobs
