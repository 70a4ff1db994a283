"""The run's Lightning loggers: metrics.csv always, plus W&B and TensorBoard when chosen.

    build_loggers(spec, run_dir, keep_rows, resume_step)  # [MetricsCSVLogger, ...]; starts W&B
    finish_loggers(summary)       # summary.json's figures into TensorBoard and W&B; both closed
    finish_wandb(summary)         # the W&B half alone

`logger.kind` (config.logger_kinds) names the loggers: `csv` (always on), `wandb`,
`tensorboard`, or several (`logger=[wandb,tensorboard]`). Every logger gets the same rows under
the same names (callbacks.MetricWindow, GradientFlow, Lightning's val/ and test/ rows), at the
trainer's step.

metrics.csv is written by `MetricsCSVLogger`, a logger on Lightning's public Logger base that
writes the file Lightning's CSVLogger wrote (same header, columns and numbers) through the run
folder's writers: it continues the file of a resumed run instead of deleting it, and no failure
loses a row already on disk (Lightning's CSVLogger rewrote the whole file in place when new
columns appeared: a kill or a full disk during that write left it empty). TensorBoard:
`RunTensorBoardLogger`, one event file in RUN_DIR/tensorboard per start of the run, its
hyperparameters (`run_hparams`) in hparams.yaml and, at the end of a completed or diverged run,
with summary.json's final errors in the event file for TensorBoard's HParams tab; a resumed run
sets `purge_step`, so TensorBoard hides what the killed run logged after its checkpoint.

W&B: one W&B run per run folder. Its id is made at the folder's first W&B start and kept in the
folder (rundir.WANDB_RUN_ID); every later start (a resume after a kill or preemption) continues
that run (`resume="allow"`). W&B's own step is the trainer's step, so the history holds one row
per step, and `WandbRunLogger` leaves out the steps this W&B run already holds: online, W&B says
where its history ends (`run.starting_step`); offline, wandb cannot ask a server (a resumed
offline run starts from step 0), so the end is read from the run's earlier folders
(wandb_files.py). The resumed run trains those steps again from its checkpoint, to the same
numbers, so nothing is lost; `wandb sync` of all the run's folders uploads them into one run.

W&B mode (`logger.wandb.mode`): `auto` is online when an API key or a `wandb login` is found
and offline otherwise; an online start that fails (no network, bad key) falls back to offline
with a one-line warning after `logger.wandb.init_timeout` seconds. wandb never prompts, and
nothing changes the process environment beyond the job, so every job of a Hydra multirun is
its own W&B run. Only the global-rank-0 process of a DDP job makes a W&B run.

wandb and tensorboard are imported only when chosen: they are optional dependencies.

Over 300 lines: the one home of the run's loggers, W&B's start, resume and finish included.
"""

from __future__ import annotations

import copy
import json
import netrc
import os
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from degradation.config import is_non_defining
from degradation.distributed import is_global_zero
from degradation.environment import git_root, git_state
from degradation.errors import first_line
from degradation.private_api import open_tensorboard_writer, tensorboard_file_writer
from degradation.rundir import (
    METRICS,
    TENSORBOARD,
    append_text,
    csv_text,
    cut_csv_rows,
    flatten_config,
    read_metrics,
    read_wandb_run_id,
    write_csv_rows,
    write_wandb_run_id,
)
from degradation.spec import RunSpec
from degradation.wandb_files import last_step, segments, written

DEFAULT_PROJECT = "degradation"
DEFAULT_HOST = "https://api.wandb.ai"
STEP_METRIC = "trainer/global_step"  # the x axis Lightning's WandbLogger logs with every row
# Set by wandb or by Lightning's WandbLogger(offline=True); restored at the end of each job.
GUARDED_ENV = ("WANDB_MODE", "WANDB_SILENT", "WANDB_DIR", "WANDB_PROJECT")


@dataclass
class _WandbSession:
    run: Any
    mode: str  # "online" or "offline"
    saved_env: dict[str, str | None]
    first_step: int  # the first step this start logs: the W&B run holds the steps before it


_session: _WandbSession | None = None  # the W&B run of the job in progress, if any
_tensorboard: RunTensorBoardLogger | None = None  # rank 0's TensorBoard logger of that job


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


def run_name(spec: RunSpec) -> str:
    """'plain-56 s0', 'resnet-56 zero_pad s1', 'resnet-110 projection s2'."""
    label = spec.model.name
    shortcut = spec.model.shortcut
    if shortcut is not None and shortcut not in label:
        label += f" {shortcut}"
    return f"{label} s{spec.seed}"


def variant_group(spec: RunSpec) -> str:
    """One W&B group per variant, seeds left out: 'demo/plain-56 #1a2b3c'.

    The prefix is `logger.wandb.group` or the experiment name; the suffix is the config_hash
    of the resolved config without seed and name (spec.variant_digest), so runs that differ
    in anything but the seed (dataset, steps, lr, ...) never share a group and W&B's
    mean ± std is honest.
    """
    prefix = spec.records.wandb.group or spec.name
    return f"{prefix}/{spec.model.name} #{spec.variant_digest}"


def build_loggers(
    spec: RunSpec, run_dir: Path, keep_rows: int | None = None, resume_step: int | None = None
) -> list:
    """[MetricsCSVLogger(run_dir, keep_rows)], plus a RunTensorBoardLogger with
    `logger=tensorboard` and, on global rank 0, a WandbRunLogger with `logger=wandb`.
    `resume_step`: the checkpoint's step a resumed run continues from (None: a fresh start)."""
    global _tensorboard
    run_dir = Path(run_dir)
    loggers: list = [MetricsCSVLogger(run_dir, keep_rows)]
    if "tensorboard" in spec.records.loggers:
        loggers.append(RunTensorBoardLogger(run_dir, resume_step, run_hparams(spec)))
        if is_global_zero():  # the one process that writes the events: it finishes them
            _tensorboard = loggers[-1]
    if "wandb" in spec.records.loggers and is_global_zero():
        session = _start_wandb_run(spec, run_dir)
        if session is not None:
            if resume_step is not None:
                backfill_wandb(session.run, run_dir, session.first_step, resume_step)
            log_model = spec.records.wandb.log_model and session.mode == "online"
            loggers.append(WandbRunLogger(session.run, session.first_step, log_model))
    return loggers


def backfill_wandb(run: Any, run_dir: Path, first_step: int, resume_step: int) -> None:
    """Log the metrics.csv rows of steps first_step .. resume_step - 1 into the W&B run: the
    steps its history lacks before the checkpoint a run resumes from (a kill that lost W&B's
    last rows, an upload that lagged, or W&B added on a rerun). metrics.csv holds every row up
    to the checkpoint (gradient norms only as its narrow columns)."""
    rows: dict[int, dict[str, float]] = {}
    for column, points in read_metrics(run_dir).items():
        for step, number in points:
            if first_step <= step < resume_step:
                rows.setdefault(step, {})[column] = number
    for step in sorted(rows):
        run.log({**rows[step], STEP_METRIC: step}, step=step)
    if rows:
        print(f"[wandb] steps {min(rows)}-{max(rows)} logged from metrics.csv (W&B lacked them)")


class WandbRunLogger(WandbLogger):
    """Lightning's WandbLogger on a started W&B run, logging each row at W&B step = trainer
    step (one history row per step: the rows of a step merge) and leaving out the steps before
    `first_step`, which this W&B run already holds from an earlier start (a killed run trains
    them again from its checkpoint). Lightning's module imports no wandb: this one neither."""

    def __init__(self, run: Any, first_step: int, log_model: bool = False):
        super().__init__(experiment=run, log_model=log_model)
        self.first_step = first_step

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if step is None:  # Lightning always gives one; without it W&B counts on its own
            super().log_metrics(metrics)
        elif step >= self.first_step:
            self.experiment.log({**metrics, STEP_METRIC: step}, step=step)


def _init_args(spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    wcfg = spec.records.wandb
    commit, dirty = git_state()
    group = variant_group(spec)
    config = copy.deepcopy(dict(spec.config))
    config.update(variant=spec.model.name, group=group, git_commit=commit, git_dirty=dirty)
    model = spec.model
    tags = [f"depth={model.depth}", f"skip={model.skip}", f"shortcut={model.shortcut_label}"]
    tags += [f"dataset={spec.data.name}", *wcfg.tags]
    wandb_dir = wcfg.dir or (None if os.environ.get("WANDB_DIR") else str(run_dir))
    if wandb_dir:
        Path(wandb_dir).mkdir(parents=True, exist_ok=True)
    return dict(
        project=wcfg.project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        entity=wcfg.entity,
        group=group,
        job_type=wcfg.job_type,
        name=run_name(spec),
        tags=tags,
        config=config,
        dir=wandb_dir,
        id=_wandb_run_id(run_dir),
        resume="allow",  # the folder's W&B run: continued if it exists, else created
    )


def _wandb_run_id(run_dir: Path) -> str:
    """The run folder's W&B run id, made and kept at its first W&B start: 12 random hex
    digits (W&B ids are letters and digits; wandb's own generator is not public API)."""
    run_id = read_wandb_run_id(run_dir)
    if run_id is None:
        run_id = secrets.token_hex(6)
        write_wandb_run_id(run_dir, run_id)
    return run_id


def _start_wandb_run(spec: RunSpec, run_dir: Path) -> _WandbSession | None:
    global _session
    import wandb

    mode = resolve_mode(spec.records.wandb.mode)
    if mode == "disabled":
        print("[wandb] disabled (logger.wandb.mode or WANDB_MODE): metrics.csv only")
        return None
    if wandb.run is not None:  # left over from earlier in this process: never log into it
        wandb.finish()
    saved_env = {key: os.environ.get(key) for key in GUARDED_ENV}
    args = _init_args(spec, run_dir)
    # silent: our own two lines say where the run went; init_timeout: no 90 s hang offline
    settings = dict(silent=True, init_timeout=float(spec.records.wandb.init_timeout))
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
            # wandb's service still holds the run id of the failed start: a new service
            wandb.teardown()
            _restore_env(saved_env)
            mode = "offline"
    if run is None:
        try:
            run = wandb.init(mode="offline", settings=wandb.Settings(**settings), **args)
        except Exception as err:  # e.g. a shared wandb service (WANDB_SERVICE) that still
            # holds this run for a killed process: train on, metrics.csv has every row
            print(f"[wandb] warning: could not start W&B ({first_line(err)}): metrics.csv only")
            _restore_env(saved_env)
            return None
    run.define_metric(STEP_METRIC)
    run.define_metric("*", step_metric=STEP_METRIC, step_sync=True)
    first_step = _first_new_step(run, mode)
    where = run.url if mode == "online" else run.settings.sync_dir
    resumed = f", continued from step {first_step}" if first_step else ""
    print(f"[wandb] {mode} run '{args['name']}' (group '{args['group']}'{resumed}): {where}")
    _session = _WandbSession(run=run, mode=mode, saved_env=saved_env, first_step=first_step)
    return _session


def _first_new_step(run: Any, mode: str) -> int:
    """The first step this start may log: the W&B run holds the steps before it. Online, W&B
    says (its history's last step + 1); offline, wandb starts a resumed run at 0, so the run's
    earlier folders next to this one are read."""
    if mode == "online":
        return int(run.starting_step)
    this = Path(run.settings.sync_dir)
    earlier = [p for p in segments(this.parent, run.id) if p != this]
    last = last_step(earlier)
    return 0 if last is None else last + 1


def _git_settings() -> dict[str, Any]:
    """wandb looks for git in its own folder (often outside the checkout): point it at ours."""
    root = git_root()
    return {"git_root": root} if root is not None else {"disable_git": True}


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


def finish_loggers(summary: Mapping[str, Any]) -> None:
    """End of a job (success or failure), after summary.json: its final numbers into
    TensorBoard's HParams tab and the W&B run summary; both closed. No-op without them."""
    global _tensorboard
    tensorboard, _tensorboard = _tensorboard, None
    if tensorboard is not None:
        try:
            tensorboard.finish(summary)
        except Exception as err:  # summary.json is written: TensorBoard must not fail the job
            print(f"[tensorboard] warning: could not finish the event file: {first_line(err)}")
    finish_wandb(summary)


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
        print(f"[wandb] offline run saved; upload with: {sync_command(session.run)}")


def sync_command(run: Any) -> str:
    """`wandb sync` of every offline folder of the run that holds anything (its earlier starts
    too): wandb uploads them into the one run, in order of start time."""
    this = Path(run.settings.sync_dir)
    folders = [p for p in segments(this.parent, run.id) if p.name.startswith("offline-run-")]
    folders = [p for p in folders if p == this or written(p)]
    return "wandb sync " + " ".join(shlex.quote(str(p)) for p in folders)


def _restore_env(saved: Mapping[str, str | None]) -> None:
    for key, old in saved.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


# --- TensorBoard ------------------------------------------------------------------------------

# The HParams tab's metrics: summary.json's final numbers (section, key), one point each at the
# run's last step.
HPARAM_METRICS = {
    "hparams/train_error": ("final", "train_error"),
    "hparams/test_error": ("final", "test_error"),
    "hparams/best_val_test_error": ("best_val", "test_error"),
}
# The HParams tab shows five hyperparameter columns at first (the others are a tick away): those
# marked as differing between runs, then the rest by name. Marked: the axes that name a variant
# and a sweep varies (as a run's name and W&B tags say), so that these five are the ones shown.
HPARAMS_SHOWN = ("depth", "skip", "shortcut", "data.name", "seed")


def run_hparams(spec: RunSpec) -> dict[str, Any]:
    """The run's hyperparameters for TensorBoard: its resolved config flattened to dotted keys
    ('depth', 'skip', 'data.batch_size', 'optim.lr', ...) less config.NON_DEFINING_KEYS, i.e.
    what the run computes (as config_hash; Lightning arguments left at their null default too).
    A plain net ignores the shortcut and zero_init_residual: 'not_applicable', as summary.json
    says."""
    config = {**dict(spec.config), "trainer": dict(spec.trainer.arguments)}
    flat = flatten_config(copy.deepcopy(config))
    hparams = {k: v for k, v in flat.items() if not is_non_defining(k)}
    if hparams.get("skip") == "none":
        hparams.update(shortcut="not_applicable", zero_init_residual="not_applicable")
    return hparams


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger writing RUN_DIR/tensorboard, one event file per start.

    Lightning's `finalize` closes the writer after each fit, validate and test, and the next
    stage opens a new event file (four a run); here it only flushes, and `finish` (the end of
    the job) closes the file. `hparams` (run_hparams) go to hparams.yaml at the start of fit;
    `finish` writes them with summary.json's final errors (HPARAM_METRICS) as the run's
    HParams session.

    A resumed run logs again from its checkpoint's step: its event file starts with a purge
    mark there (torch's SummaryWriter(purge_step=...)), after which TensorBoard hides the
    events the killed run wrote from that step on: each step shows once. Lightning writes on
    global rank 0 only (`experiment`, `save`, `finalize` are rank-zero-only)."""

    def __init__(
        self, run_dir: Path, resume_step: int | None, hparams: Mapping[str, Any] | None = None
    ):
        super().__init__(
            save_dir=run_dir,
            name=TENSORBOARD,
            version="",  # no version_N subfolder: one run folder, one TensorBoard run
            default_hp_metric=False,  # no placeholder `hp_metric` scalar
            purge_step=resume_step,
        )
        self.hparams = dict(hparams or {})  # Lightning's save() writes them to hparams.yaml

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if open_tensorboard_writer(self) is not None:
            self.save()  # flushed; the file stays open for the next stage

    @rank_zero_only
    def finish(self, summary: Mapping[str, Any]) -> None:
        """The end of the job: a completed or diverged run's HParams session, then the event
        file closed. A failed or interrupted run writes no session: its rerun writes it
        (TensorBoard keeps the first session a run states)."""
        if summary.get("status") in ("completed", "diverged"):
            self._log_session(summary)
        writer = open_tensorboard_writer(self)
        if writer is not None:
            writer.close()

    def _log_session(self, summary: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        step = int(summary.get("steps") or 0)
        metrics = {}
        for name, (section, key) in HPARAM_METRICS.items():
            metrics[name] = (summary.get(section) or {}).get(key)
            if metrics[name] is not None:  # no validation: no best_val
                self.experiment.add_scalar(name, metrics[name], step)
        values = {key: _hparam_value(v) for key, v in self.hparams.items()}
        experiment, start, end = hparams(values, metrics)
        _mark_shown(experiment, HPARAMS_SHOWN)
        writer = tensorboard_file_writer(self.experiment)
        for protobuf in (experiment, start, end):
            writer.add_summary(protobuf, step)


def _mark_shown(experiment: Any, names: tuple[str, ...]) -> None:
    """Mark `names` as the hyperparameters that differ between runs in the experiment summary
    torch made (which marks none): TensorBoard shows those first."""
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    plugin_data = experiment.value[0].metadata.plugin_data
    content = HParamsPluginData.FromString(plugin_data.content)
    for info in content.experiment.hparam_infos:
        info.differs = info.name in names
    plugin_data.content = content.SerializeToString()


def _hparam_value(v: Any) -> int | float | str:
    """A config value as TensorBoard's HParams tab takes it: numbers and strings as they are,
    the rest as JSON (YAML) text: 'true', 'null', '[15]' (torch would turn a bool into 1.0)."""
    if isinstance(v, (int, float, str)) and not isinstance(v, bool):
        return v
    return json.dumps(v)


# --- metrics.csv ------------------------------------------------------------------------------


class MetricsCSVLogger(Logger):
    """RUN_DIR/metrics.csv, on Lightning's public Logger base and the run folder's writers.

    One row per `log_metrics` call: the values (a tensor read as its number) and `step`, under
    a header that is the sorted names of every column seen, and rows written by Python's csv
    module: the same file as Lightning's CSVLogger wrote. Rows wait in memory until `save()`
    (Lightning calls it after each row it logs itself; LastCheckpoint before each checkpoint;
    at most FLUSH_EVERY steps apart, as Lightning's CSVLogger flushed). A save appends the rows
    whole and synced to the disk (rundir.append_text: a failed append is cut back); rows that
    bring new columns (val/, test/, lr-SGD, ...) rewrite the file under the longer header
    through a temporary file renamed over it (rundir.write_csv_rows), so that no failure loses
    a row already on disk; rows a failed save kept are written by the next one.

    `keep_rows`: a resumed run first cuts the file back to its header and that many rows (those
    its checkpoint had seen; the killed run's later rows will be logged again); None starts a
    new file. `rows_written` counts the rows on disk, for the next checkpoint to record.
    Files are touched on global rank 0 only, at the first row or save.
    """

    FLUSH_EVERY = 100  # steps

    def __init__(self, run_dir: Path, keep_rows: int | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS
        self.keep_rows = keep_rows
        self.rows_written = 0
        self.columns: list[str] | None = None  # the file's header; None until it is opened
        self._rows: list[dict[str, Any]] = []  # logged, not yet on disk

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:  # Trainer.log_dir: the run folder, as with Lightning's CSVLogger
        return str(self.run_dir)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass  # the run's whole config is in .hydra/config.yaml

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self._open()
        if step is None:
            step = len(self._rows)
        row = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics.items()}
        self._rows.append({**row, "step": step})
        if (step + 1) % self.FLUSH_EVERY == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        self._open()
        if not self._rows:
            return
        columns = sorted({*self.columns, *(key for row in self._rows for key in row)})
        if columns != self.columns or not self.path.is_file() or not self.path.stat().st_size:
            write_csv_rows(self.path, columns, self._rows)
        else:
            append_text(self.path, csv_text(columns, self._rows), sync=True)
        self.columns = columns
        self.rows_written += len(self._rows)
        self._rows = []

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self.columns is not None:  # nothing to write for a logger that never opened
            self.save()

    def _open(self) -> None:
        """Cut the file back to `keep_rows` (delete it for None) and read its header, once."""
        if self.columns is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.rows_written = cut_csv_rows(self.path, self.keep_rows)
        header = ""
        if self.path.is_file():
            with open(self.path, newline="") as f:
                header = f.readline().strip()
        self.columns = header.split(",") if header else []
