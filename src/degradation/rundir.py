"""The run folder: the one module that names, writes and reads the files a run leaves behind.

    RUN_DIR/
      .hydra/               config.yaml, overrides.yaml, hydra.yaml (written when the job trains)
      run.log               the job's log (idem)
      run.lock              one writer per folder: who holds it (resume.claim_run_dir)
      summary.json          the run's outcome: completed / diverged / failed / interrupted
      metrics.csv           one row per logged step (loggers.MetricsCSVLogger; a resume goes on)
      grad_norms.csv        gradient norms every `grad_every` steps (callbacks.GradientFlow)
      layer_responses.json  std of each 3×3 layer's response at the end (He et al. 2015, Fig. 7)
      checkpoints/          last.ckpt (resume), best.ckpt (lowest val/error)
      wandb_run_id          with logger=wandb: the folder's W&B run id, made once (a resumed
                            run continues that W&B run; loggers.py)
      wandb/                with logger=wandb: wandb's own files, one folder per start
      tensorboard/          with logger=tensorboard: TensorBoard events (a file per start),
                            hparams.yaml (the HParams tab's hyperparameters; loggers.py)
      analysis/             landscape.npz, lesion.json and their figures (degradation.analyze)
      .replaced/            only while `resume=false` replaces a run: the old run's files, moved
                            aside, deleted once the new run has written its record

Every JSON and checkpoint file is replaced in one rename (`atomic_writer`), so a kill leaves the
old file or the new one, never half of one; the CSV files grow by whole lines (a failed append
is cut back, readers drop a torn last line), and metrics.csv, whose header grows when new
columns appear, is then rewritten whole through `atomic_writer` (`write_csv_rows`). A write that
fails for want of space (ENOSPC, EDQUOT; also torch's RuntimeError caused by one) is an OSError
naming its file (`naming_full_disk`), for the one-line error of train.py. Checkpoints are read
back with `torch.load(weights_only=True)`: opening a run folder never runs code
(`load_checkpoint_file`). Everything else in the package (training, resume, the analyses, the
report, the W&B report) reads and writes these files through the functions here;
docs/run-folder.md describes the folder and its guarantees for users. The readers check what
they read (JSON objects with the keys and types used, numbers in the CSV files, matching
array shapes): a file that is there but cannot be read is a `RunFolderError` naming it and
the reason, which the report and the analyses list and go on without (docs/reports.md).

A folder's name comes from the job's overrides less the keys that do not define a run
(`run_dir_name`), and what it computes is identified by `config_hash`: both derive from
`config.NON_DEFINING_KEYS`, so a rerun finds its folder and checks it under the same rule.

This module is over 300 lines on purpose: it is the single home of the run folder's layout.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from degradation import summary as summary_schema
from degradation.config import (
    NON_DEFINING_KEYS,
    RunConfig,
    is_non_defining,
    trainer_arguments,
)
from degradation.errors import UserError, first_line

SUMMARY = "summary.json"
METRICS = "metrics.csv"
GRAD_NORMS = "grad_norms.csv"
LAYER_RESPONSES = "layer_responses.json"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
BEST = "best"  # best.ckpt, written by Lightning's ModelCheckpoint(filename=BEST)
CONFIG = Path(".hydra") / "config.yaml"
LOG = "run.log"  # the name Hydra gives a job's log (`${hydra.job.name}.log`)
LOCK = "run.lock"
# inside a checkpoint: what resume checks ({"config_hash", "data", "metrics_rows"},
# LastCheckpoint) and the module's and callbacks' state a resumed run needs
RESUME_KEY = "resume"
STATE_KEY = "degradation"
ANALYSIS = "analysis"
WANDB_RUN_ID = "wandb_run_id"
TENSORBOARD = "tensorboard"
LANDSCAPE = "landscape.npz"
LESION = "lesion.json"
EVALUATION = "evaluation"  # degradation.evaluate: evaluation/<checkpoint>-<split>.json
REPLACED = ".replaced"
# What a run writes and a fresh start replaces (`set_aside_run`), summary.json first: once it
# is gone no interruption can leave a finished label over missing files. .hydra/ and run.log
# are the job's record (rewritten, appended), wandb/ may hold offline runs not yet uploaded.
RUN_OUTPUTS = (
    SUMMARY, CHECKPOINTS, METRICS, GRAD_NORMS, LAYER_RESPONSES, TENSORBOARD, WANDB_RUN_ID, ANALYSIS,
    EVALUATION,
)  # fmt: skip

# Keys already spelled out by the folder's path (output_root/sweeps/<name>/...) or standing for
# a set of values (an experiment file): never repeated in the folder's own name.
PATH_KEYS = ("name", "experiment")
MAX_NAME_BYTES = 255  # NAME_MAX of ext4, XFS, APFS, NTFS: longer names cannot be created
NAME_HASH_CHARS = 12
# What torch's weights-only unpickler must accept beyond tensors, dicts, lists and plain values
# to read our checkpoints: nothing. Measured with torch.serialization.
# get_unsafe_globals_in_checkpoint on last.ckpt and best.ckpt of CPU runs (32-true and
# bf16-mixed, fused SGD), which hold only those (Lightning 2.6, torch 2.14); add a type here
# only when a checkpoint of this program holds it.
CHECKPOINT_GLOBALS: tuple = ()
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


# --- names -------------------------------------------------------------------------------------


def run_dir_name(overrides: Iterable[str]) -> str:
    """The run folder's name from a job's overrides (`hydra.overrides.task`).

    The overrides that define the run, sorted and joined with ',' (Hydra's override_dirname
    rule, so folders of earlier versions are found again), or "default" if none. A name longer
    than a file system allows becomes a readable prefix plus '-h' and a 12-character hash of
    the whole name, so the same command still finds the same folder.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    texts = [str(o) for o in overrides]
    parsed = OverridesParser.create().parse_overrides(texts)
    lines = sorted(_as_set(o.input_line, o.key_or_group) for o in parsed if _defines_run(o))
    name = ",".join(lines) or "default"
    encoded = name.encode()
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:NAME_HASH_CHARS]
    keep = MAX_NAME_BYTES - len(digest) - 2
    prefix = encoded[:keep].decode(errors="ignore").rstrip(",")
    return f"{prefix}-h{digest}"


def _as_set(line: str, key: str) -> str:
    """`+trainer.max_epochs=3` as `trainer.max_epochs=3`: Hydra's `+` on a key the schema has
    (set from null) is the same run as the plain override, so it names the same folder."""
    return line[1:] if line.startswith("+") and _schema_has(key) else line


def _schema_has(key: str) -> bool:
    """Whether a dotted key is a field of the schema (config.RunConfig and its sections)."""
    node: Any = RunConfig
    for part in key.split("."):
        fields = (
            {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
        )
        if part not in fields:
            return False
        node = fields[part].default_factory  # a section's class; MISSING or a lambda for a leaf
    return True


def _defines_run(override) -> bool:
    """Whether an override changes what the run computes. `callbacks=lr_monitor` (a group
    option) does not, `callbacks=[early_stopping,lr_monitor]` does: by each option's key."""
    key = override.key_or_group
    if key in PATH_KEYS:
        return False
    if key == "callbacks" and not override.is_delete():
        chosen = override.value()
        chosen = chosen if isinstance(chosen, list) else [chosen]
        return any(not is_non_defining(f"callbacks.{name}") for name in chosen if name)
    return not is_non_defining(key)


def config_hash(cfg: DictConfig) -> str:
    """Identifies what a run computes: its resolved config less NON_DEFINING_KEYS, and for a
    plain net less the shortcut and zero_init_residual, which it ignores (models/build.py)."""
    data = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if data.get("skip") == "none":
        data.pop("shortcut", None)
        data.pop("zero_init_residual", None)
    # keys added after runs were hashed, at their defaults: those runs keep their hash
    if "trainer" in data:
        data["trainer"] = trainer_arguments(data["trainer"])
    for key in NON_DEFINING_KEYS:
        *parents, leaf = key.split(".")
        node = data
        for parent in parents:
            node = node.get(parent) or {}
        node.pop(leaf, None)
    if not data.get("callbacks"):
        data.pop("callbacks", None)
    text = OmegaConf.to_yaml(OmegaConf.create(data), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- writing -------------------------------------------------------------------------------------


@contextmanager
def atomic_writer(path: Path, mode: str = "w", newline: str | None = None) -> Iterator[IO]:
    """A file to write `path` through: a temporary file in the same folder, on the disk (fsync)
    and renamed over `path` when the block ends without error, so readers (and a rerun after a
    kill) see old or new. `newline` as open() takes it (text modes only)."""
    path = Path(path)
    with naming_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, mode, newline=newline) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def disk_full_error(err: BaseException) -> OSError | None:
    """The full-disk OSError (ENOSPC, EDQUOT) that `err` is or arose from, else None.
    torch.save meeting a full disk raises a RuntimeError ("[enforce fail at
    inline_container.cc] unexpected pos ...") whose context is the file's OSError (measured
    with torch 2.14 on a full tmpfs: tests/test_records.py)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def is_disk_full(err: BaseException) -> bool:
    return disk_full_error(err) is not None


@contextmanager
def naming_full_disk(path: Path) -> Iterator[None]:
    """A full disk met while writing `path`, whatever the writer raised for it, is an OSError
    that names `path` (a failed write() names no file, a temporary file's name means nothing
    to the user)."""
    try:
        yield
    except Exception as err:
        full = disk_full_error(err)
        if full is None:
            raise
        raise OSError(full.errno, os.strerror(full.errno), str(path)) from err


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text)


def strict_json(data: Any, indent: int = 2) -> str:
    """JSON text every reader accepts: NaN and infinities (JSON has none) become null."""
    return json.dumps(finite_or_none(data), indent=indent, allow_nan=False, default=str) + "\n"


def finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite_or_none(v) for v in x]
    return x


def write_json(path: Path, data: Any) -> Path:
    """Strict JSON (NaN and infinities become null), replaced in one rename."""
    atomic_write_text(Path(path), strict_json(data))
    return Path(path)


def write_summary(run_dir: Path, summary: summary_schema.Summary) -> Path:
    return write_json(Path(run_dir) / SUMMARY, summary.to_dict())


def write_layer_responses(run_dir: Path, record: dict[str, Any]) -> Path:
    return write_json(Path(run_dir) / LAYER_RESPONSES, record)


def analysis_dir(run_dir: Path) -> Path:
    return Path(run_dir) / ANALYSIS


def write_evaluation(run_dir: Path, checkpoint: str, split: str, record: dict) -> Path:
    """evaluation/<checkpoint>-<split>.json (degradation.evaluate), replaced in one rename."""
    return write_json(Path(run_dir) / EVALUATION / f"{checkpoint}-{split}.json", record)


def write_lesion(run_dir: Path, record: dict[str, Any]) -> Path:
    return write_json(analysis_dir(run_dir) / LESION, record)


def write_landscape(run_dir: Path, arrays: dict[str, Any]) -> Path:
    """analysis/landscape.npz: the arrays (and 0-d scalars) of a loss landscape."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = analysis_dir(run_dir) / LANDSCAPE
    with atomic_writer(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def append_csv_row(path: Path, header: list[str], row: list[str]) -> None:
    """One whole line per write (the header first in a new file): a kill leaves at most a torn
    last line, which `read_csv_rows` drops; a full disk leaves the file as it was."""
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    append_text(path, (",".join(header) + "\n" if new else "") + ",".join(row) + "\n")


def append_text(path: Path, text: str, sync: bool = False) -> None:
    """Append whole lines to a file, all or nothing: a write that fails (a full disk) is cut
    back to the old end, so the file holds exactly what it held; `sync`: on the disk (fsync)
    before returning."""
    path = Path(path)
    with naming_full_disk(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            try:
                rest = memoryview(text.encode())
                while rest:  # a write may be partial
                    rest = rest[os.write(fd, rest) :]
                if sync:
                    os.fsync(fd)
            except BaseException:  # a full disk, or an exception from a signal handler
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)


def write_csv_rows(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    """Add `rows` (dicts, missing keys empty) to a CSV file under `header`, a superset of the
    file's own: the old rows and the new are written to a temporary file under the new header
    and renamed over the old file (`atomic_writer`), so a kill or a full disk mid-way leaves
    the old file whole. Values are written as Python's csv module writes them."""
    path = Path(path)
    old = read_csv_rows(path) or []
    old_rows = [dict(zip(old[0], row, strict=False)) for row in old[1:]] if old else []
    with atomic_writer(path, "w", newline="") as f:  # the csv module ends its lines itself
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(old_rows)
        writer.writerows(rows)


def csv_text(header: list[str], rows: list[dict[str, Any]]) -> str:
    """`rows` as CSV lines under `header` (no header line), as `write_csv_rows` writes them."""
    buffer = io.StringIO(newline="")
    csv.DictWriter(buffer, fieldnames=header).writerows(rows)
    return buffer.getvalue()


def keep_csv_rows(path: Path, header: list[str], keep) -> None:
    """Rewrite a CSV file with only the rows `keep(row)` accepts; delete it when its header
    differs or no row is kept."""
    rows = read_csv_rows(path)
    if rows is None:
        return
    kept = [r for r in rows[1:] if len(r) == len(header) and keep(r)]
    if not rows or rows[0] != header or not kept:
        path.unlink()
        return
    atomic_write_text(path, "".join(",".join(r) + "\n" for r in [header, *kept]))


def cut_csv_rows(path: Path, keep_rows: int | None) -> int:
    """Keep the header and the first keep_rows rows of a CSV file (delete it for None);
    returns the rows kept. One physical line per row (no value holds a newline)."""
    if keep_rows is None or not path.is_file():
        path.unlink(missing_ok=True)
        return 0
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)[: keep_rows + 1]
    lines = [line for line in lines if line.endswith("\n")]  # a torn last line is dropped
    atomic_write_text(path, "".join(lines))
    return max(len(lines) - 1, 0)


def write_job_config(run_dir: Path, config_yaml: str) -> None:
    """.hydra/config.yaml (the run's config as Hydra composed it, unresolved YAML: the spec's
    `config_yaml`), and inside a Hydra job hydra.yaml and overrides.yaml, as Hydra writes them.
    The config sets `hydra.output_subdir: null` and train() calls this once it knows the job
    trains, so a skipped rerun never replaces the record of what ran."""
    from hydra.core.hydra_config import HydraConfig

    folder = Path(run_dir) / CONFIG.parent
    atomic_write_text(folder / CONFIG.name, config_yaml)
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.instance().cfg  # {"hydra": ...}, as Hydra's own hydra.yaml
        atomic_write_text(folder / "hydra.yaml", OmegaConf.to_yaml(hydra_cfg))
        overrides = OmegaConf.to_yaml(hydra_cfg.hydra.overrides.task)
        atomic_write_text(folder / "overrides.yaml", overrides)


def write_wandb_run_id(run_dir: Path, run_id: str) -> None:
    """Record the folder's W&B run id, once: UserError if it already holds one."""
    path = Path(run_dir) / WANDB_RUN_ID
    if path.exists():
        raise UserError(f"{path} already holds a W&B run id; a run folder has one W&B run")
    atomic_write_text(path, run_id + "\n")


def set_aside_run(run_dir: Path) -> None:
    """Start afresh: move what a run wrote (RUN_OUTPUTS: checkpoints, metrics, summary.json,
    TensorBoard events, its W&B run id, so that the fresh start is a new W&B run, ...) into
    RUN_DIR/.replaced, one rename each, summary.json first. An interruption at any point leaves
    the old run whole, or no summary.json (a rerun then resumes from last.ckpt if it is still
    in place, or starts afresh): never a finished label over missing files. The new run deletes
    .replaced once it has written its record (`discard_replaced`). Hydra's .hydra/, run.log
    and the W&B files of earlier runs stay."""
    run_dir = Path(run_dir)
    aside = run_dir / REPLACED
    if aside.exists():  # left by an interrupted replacement: nothing a run still needs
        shutil.rmtree(aside)
    aside.mkdir(parents=True)
    for name in RUN_OUTPUTS:
        if (run_dir / name).exists():
            os.rename(run_dir / name, aside / name)
    remove_torn_writes(run_dir)


def discard_replaced(run_dir: Path) -> None:
    """Delete the files of a replaced run (`set_aside_run`): called once the new run holds the
    folder and has written its record."""
    aside = Path(run_dir) / REPLACED
    if aside.exists():
        shutil.rmtree(aside)


def remove_torn_writes(run_dir: Path) -> None:
    """Delete the temporary files of writes a kill interrupted (atomic_writer's `.NAME.*.tmp`)."""
    for folder in (Path(run_dir), Path(run_dir) / CHECKPOINTS):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


# --- reading -------------------------------------------------------------------------------------


def find_run_dirs(paths: Iterable[Path], marker: Path | str = SUMMARY) -> list[Path]:
    """Run folders: each path that holds `marker` (summary.json, or .hydra/config.yaml for the
    analyses, which need the config), else every folder below it that does; in order, each
    once. UserError for a path that does not exist or holds no run folder."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"{path}: no such folder; give a run, sweep or output folder")
        if not path.is_dir():
            raise UserError(f"{path} is not a folder; give a run, sweep or output folder")
        if (path / marker).is_file():
            found.append(path)
            continue
        depth = len(Path(marker).parts)
        marked = [p for p in path.rglob(str(marker)) if p.is_file()]
        # a run that resume=false is replacing (RUN_DIR/.replaced) is not a run of its own
        below = [p for p in marked if REPLACED not in p.relative_to(path).parts]
        below = sorted(p.parents[depth - 1] for p in below)
        if not below:
            raise UserError(f"{path}: no run folders found (no {marker} anywhere below it)")
        found += below
    return list(dict.fromkeys(found))


class RunFolderError(UserError):
    """A file of a run folder that is there but cannot be read, and why. A reader of many run
    folders (the report, the analyses) lists it and goes on with the others."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


def _why(err: BaseException) -> str:
    """An exception as a phrase: the OS's words, YAML's problem and line, or its first line."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = f" at line {err.problem_mark.line + 1}" if err.problem_mark else ""
        return f"{err.problem}{mark}"
    return first_line(err)


def _shown(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# What a reader needs a JSON value to be: (how the error names it, the test).
TEXT = ("a string", lambda v: isinstance(v, str))
INTEGER = ("an integer", _is_int)
NUMBER = ("a number", _is_number)
BOOLEAN = ("true or false", lambda v: isinstance(v, bool))
OBJECT = ("an object", lambda v: isinstance(v, dict))
OBJECTS = (
    "a list of objects",
    lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
)
TEXTS = ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
NUMBERS = (
    "a list of numbers (or null)",
    lambda v: isinstance(v, list) and all(x is None or _is_number(x) for x in v),
)
# summary.json: its schema is summary.Summary (required: the fields train() sets at the start)
_KIND_OF_TYPE = {str: TEXT, int: INTEGER, float: NUMBER, bool: BOOLEAN, dict: OBJECT}
SUMMARY_REQUIRED = summary_schema.REQUIRED
SUMMARY_FIELDS = {k: _KIND_OF_TYPE[t] for k, t in summary_schema.field_types().items()}
RESPONSES_FIELDS = {"std": NUMBERS, "layers": TEXTS, "step": INTEGER, "source": TEXT}
LESION_FIELDS = {"baseline": OBJECT, "blocks": OBJECTS, "run": TEXT, "depth": INTEGER, "skip": TEXT}
LESION_BLOCK_FIELDS = {"block": TEXT, "deleted": BOOLEAN, "test_error": NUMBER}


def _check_fields(
    path: Path, data: Any, fields: dict, required: Iterable[str] = (), where: str = ""
) -> dict[str, Any]:
    """`data` itself, once it is a JSON object whose `required` keys are not null and whose
    `fields` present have their types; RunFolderError naming the first that is not."""
    if not isinstance(data, dict):
        what = f"'{where.rstrip('.')}'" if where else "the file"
        raise RunFolderError(path, f"{what} holds {_shown(data)}, not a JSON object")
    missing = [f"'{where}{k}'" for k in required if data.get(k) is None]
    if missing:
        raise RunFolderError(path, f"{', '.join(missing)} missing")
    for key, (kind, holds) in fields.items():
        if data.get(key) is not None and not holds(data[key]):
            raise RunFolderError(path, f"'{where}{key}' is {_shown(data[key])}, not {kind}")
    return data


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it does not exist; RunFolderError when it is there
    but cannot be read or is not JSON."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise RunFolderError(path, f"not valid JSON ({err.msg} at {where})") from None
    except (OSError, UnicodeDecodeError, RecursionError) as err:
        raise RunFolderError(path, f"cannot be read ({_why(err)})") from None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """summary.json, or None without one; RunFolderError unless it is an object with the keys
    and types of SUMMARY_FIELDS (errors and losses in `final` and `best_val` numbers or null)."""
    path = Path(run_dir) / SUMMARY
    summary = read_json(path)
    if summary is None:
        return None
    _check_fields(path, summary, SUMMARY_FIELDS, SUMMARY_REQUIRED)
    for section in ("final", "best_val"):
        values = summary.get(section) or {}
        numbers = {k: NUMBER for k in values if k.endswith(("_error", "_loss"))}
        _check_fields(path, values, numbers, where=f"{section}.")
    return summary


def read_wandb_run_id(run_dir: Path) -> str | None:
    """The folder's W&B run id (`write_wandb_run_id`), or None before its first W&B start."""
    path = Path(run_dir) / WANDB_RUN_ID
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def read_layer_responses(run_dir: Path) -> dict[str, Any] | None:
    """layer_responses.json ({"std": [...], "layers": [...], ...}), or None without one."""
    path = Path(run_dir) / LAYER_RESPONSES
    record = read_json(path)
    return None if record is None else _check_fields(path, record, RESPONSES_FIELDS, ("std",))


def read_lesion(run_dir: Path) -> dict[str, Any] | None:
    """analysis/lesion.json, or None without one; every block has "block", "deleted" and
    "test_error" (null where not deleted), the baseline its "test_error"."""
    path = analysis_dir(run_dir) / LESION
    record = read_json(path)
    if record is None:
        return None
    _check_fields(path, record, LESION_FIELDS, ("baseline", "blocks"))
    _check_fields(path, record["baseline"], {"test_error": NUMBER}, where="baseline.")
    record["baseline"].setdefault("test_error", None)
    for i, block in enumerate(record["blocks"]):
        _check_fields(path, block, LESION_BLOCK_FIELDS, ("block", "deleted"), f"blocks.{i}.")
        block.setdefault("test_error", None)
    return record


def read_landscape(run_dir: Path) -> dict[str, Any] | None:
    """analysis/landscape.npz as {key: array or scalar}, or None without one; RunFolderError
    unless alphas and loss_1d are numbers of one length and loss_2d (if any) is alphas × betas."""
    import numpy as np

    path = analysis_dir(run_dir) / LANDSCAPE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: (f[k].item() if f[k].ndim == 0 else f[k]) for k in f.files}
    except Exception as err:  # numpy raises many kinds for a damaged or foreign file
        raise RunFolderError(path, f"not a readable .npz file ({_why(err)})") from None
    _check_landscape(path, data)
    return data


def _check_landscape(path: Path, data: dict[str, Any]) -> None:
    import numpy as np

    def numeric(key: str, ndim: int) -> np.ndarray:
        array = data.get(key)
        if not (isinstance(array, np.ndarray) and array.ndim == ndim):
            raise RunFolderError(path, f"'{key}' missing or not a {ndim}-D array")
        if not np.issubdtype(array.dtype, np.number):
            raise RunFolderError(path, f"'{key}' holds {array.dtype} values, not numbers")
        if min(array.shape) < 3:  # the analysis measures 3 points per axis or more
            raise RunFolderError(path, f"'{key}' is {array.shape}: fewer than 3 points an axis")
        return array

    alphas, loss = numeric("alphas", 1), numeric("loss_1d", 1)
    if len(loss) != len(alphas):
        raise RunFolderError(path, f"'loss_1d' has {len(loss)} values for {len(alphas)} alphas")
    if "loss_2d" in data:
        shape = (len(alphas), len(numeric("betas", 1)))
        if numeric("loss_2d", 2).shape != shape:
            raise RunFolderError(path, f"'loss_2d' is {data['loss_2d'].shape}, not {shape}")
    for key in ("depth", "span"):
        if key in data and not _is_number(data[key]):
            raise RunFolderError(path, f"'{key}' is {_shown(data[key])}, not a number")


def read_config(run_dir: Path) -> DictConfig:
    """The run's `.hydra/config.yaml` on top of the schema; RunFolderError if it cannot be read."""
    path = Path(run_dir) / CONFIG
    try:
        return OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.load(path))
    except (OmegaConfBaseException, OSError, ValueError, yaml.YAMLError) as err:
        raise RunFolderError(path, f"cannot be read: {_why(err)}") from None


def read_flat_config(run_dir: Path) -> dict[str, Any]:
    """`.hydra/config.yaml` as it was saved (unresolved), flattened to dotted keys; {} if none;
    RunFolderError if it is not YAML or not a mapping."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return {}
    try:
        tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except (OmegaConfBaseException, OSError, ValueError, yaml.YAMLError) as err:
        raise RunFolderError(path, f"not readable as YAML ({_why(err)})") from None
    if not isinstance(tree, dict):
        raise RunFolderError(path, f"holds {_shown(tree)}, not a mapping of keys")
    return flatten_config(tree)


def flatten_config(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config (plain containers) as {dotted key: leaf}: {'data.batch_size': 128, ...}."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, sub in tree.items():
        flat.update(flatten_config(sub, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in flat.items()}


def read_csv_rows(path: Path) -> list[list[str]] | None:
    """A CSV file's whole lines (a torn last line dropped) as rows, or None without a file;
    RunFolderError when it is not UTF-8 text or not CSV."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open(path, newline="", encoding="utf-8") as f:
            lines = [line for line in f.read().splitlines(keepends=True) if line.endswith("\n")]
        return list(csv.reader(lines))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise RunFolderError(path, f"cannot be read as CSV text ({_why(err)})") from None


def _number_cell(path: Path, line: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        shown = _shown(text)
        raise RunFolderError(path, f"line {line}: '{column}' is {shown}, not a number") from None


def read_metrics(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.csv as column -> [(step, value)] (sparse rows; a repeated step keeps its last);
    {} without one. RunFolderError for a file without a 'step' column, a row whose length is
    not the header's or a cell that is not a number (Lightning's writer leaves none of these)."""
    path = Path(run_dir) / METRICS
    rows = read_csv_rows(path)
    if not rows:
        return {}
    header = rows[0]
    if "step" not in header:
        raise RunFolderError(path, f"no 'step' column in its header {_shown(','.join(header))}")
    columns: dict[str, dict[int, float]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise RunFolderError(
                path, f"line {line} has {len(row)} fields, its header {len(header)}"
            )
        cells = dict(zip(header, row, strict=True))
        if not cells["step"]:
            continue
        step = int(_number_cell(path, line, "step", cells["step"]))
        for key, text in cells.items():
            if key not in ("step", "epoch") and text:
                columns.setdefault(key, {})[step] = _number_cell(path, line, key, text)
    return {k: sorted(v.items()) for k, v in columns.items()}


def read_grad_norms(run_dir: Path) -> tuple[list[int], list[str], list[list[float]]] | None:
    """(steps, columns, rows of floats) from grad_norms.csv, or None without one; rows whose
    length is not the header's are left out; RunFolderError for a cell that is not a number."""
    path = Path(run_dir) / GRAD_NORMS
    rows = read_csv_rows(path)
    if not rows:
        return None
    header = rows[0]
    if header[:1] != ["step"]:
        raise RunFolderError(
            path, f"its header {_shown(','.join(header))} does not start with 'step'"
        )
    steps, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            continue
        steps.append(int(_number_cell(path, line, "step", row[0])))
        cells = zip(header[1:], row[1:], strict=True)
        values.append([_number_cell(path, line, c, x) if x else math.nan for c, x in cells])
    return steps, header[1:], values


def load_checkpoint_file(path: Path, map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True: tensors, dicts, lists, plain values and
    CHECKPOINT_GLOBALS only, so a crafted file cannot run code. UserError naming the file for
    anything else (refused) or an unreadable file (corrupted)."""
    import torch

    try:
        with torch.serialization.safe_globals(list(CHECKPOINT_GLOBALS)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if str(err).startswith("Weights only load failed"):
            raise UserError(_refused(path, str(err))) from None
        raise UserError(_corrupted(path, err)) from None
    except Exception as err:
        raise UserError(_corrupted(path, err)) from None


def _refused(path: Path, message: str) -> str:
    found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    what = f"a reference to {found.group(1)}" if found else "content"
    return (
        f"checkpoint {path} was not loaded: it holds {what}, which a checkpoint of this program "
        "never holds, and loading it could run code; delete it, or rerun with resume=false "
        "to start this run afresh"
    )


def _corrupted(path: Path, err: Exception) -> str:
    return (
        f"checkpoint {path} is corrupted ({first_line(err)}); "
        "rerun with resume=false to start this run afresh"
    )


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint of this program, loaded on the CPU without running code
    (`load_checkpoint_file`); UserError naming the file otherwise."""
    checkpoint = load_checkpoint_file(path)
    if not isinstance(checkpoint, dict) or not {"state_dict", "global_step"} <= set(checkpoint):
        raise UserError(
            f"checkpoint {path} is not a checkpoint of this program; "
            "rerun with resume=false to start this run afresh"
        )
    return checkpoint


def model_weights(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model's state_dict inside a Lightning checkpoint (its `model.` prefix dropped)."""
    return {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
