"""Continuing a run exactly where it stopped: rerunning the same command loses nothing.

A run folder is named by its config (not the clock), so a rerun finds it again and
`plan_resume` decides what to do there:

- `summary.json` says completed or diverged, same `config_hash`: nothing to do (skipped);
- `checkpoints/last.ckpt` exists: training continues from it (`ckpt_path` of `trainer.fit`);
- otherwise (or with `resume=false`): the folder's checkpoints and metrics are cleared and the
  run starts afresh.

A resumed run computes what the uninterrupted one would have, step for step, because
everything random is a function of the run seed and the position, never of history
(`ResumableData`): the training order of epoch e is a permutation drawn from (seed, e), and a
loader started at step s begins at batch s mod (batches per epoch) (`ResumableSampler`); the
augmentation of step s draws from RNGs seeded with (seed, s, rank). Lightning restores the
weights, the optimiser and the loop counters, the module its own state. `LastCheckpoint`
writes a checkpoint every `checkpoint_every` steps at a point Lightning resumes from cleanly
(after the step's validation, if one follows) and when training ends, with the number of
metrics.csv rows it has seen, so that the resumed run cuts off the rows the killed run logged
later (`MetricsCSVLogger`). Checkpoints are written atomically (`AtomicCheckpointIO`): a kill
loses at most `checkpoint_every` steps.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.utils.data import DataLoader, Sampler

from degradation.config import DataConfig
from degradation.data import ImageDataModule
from degradation.errors import UserError, first_line
from degradation.rundir import (
    CHECKPOINTS,
    METRICS,
    atomic_write_text,
    atomic_writer,
    clear_run,
    read_summary,
    remove_torn_writes,
)

LAST = "last.ckpt"
FINISHED = ("completed", "diverged")
CHECKPOINT_KEY = "resume"  # our entry in a checkpoint: {"config_hash", "metrics_rows"}
# Tags that keep the random streams apart (derive_seed's first part).
ORDER_STREAM, AUGMENT_STREAM = 1, 2


def derive_seed(*parts: int) -> int:
    """A 64-bit seed from integers (stream tag, run seed, position): unrelated for any change."""
    entropy = [int(p) % 2**63 for p in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


# --- what to do in a run folder ------------------------------------------------------------


@dataclass
class ResumePlan:
    finished: dict[str, Any] | None = None  # summary of a finished run: nothing to do
    checkpoint: Path | None = None  # last.ckpt to continue from
    step: int = 0  # the checkpoint's global step
    metrics_rows: int | None = None  # rows of metrics.csv that the checkpoint had seen


def plan_resume(run_dir: Path, config_hash: str, resume: bool = True) -> ResumePlan:
    """Skip, continue or start afresh (see the module doc); UserError if the folder holds a
    run of another config or an unreadable checkpoint. Starting afresh clears the folder."""
    run_dir = Path(run_dir)
    if not resume:
        _clear_on_rank_zero(run_dir)
        return ResumePlan()
    try:
        summary = read_summary(run_dir)
    except ValueError:  # unreadable summary: the checkpoint (if any) decides
        summary = None
    if summary is not None and summary.get("status") in FINISHED:
        if summary.get("config_hash") != config_hash:
            raise UserError(
                _other_config(run_dir / "summary.json", summary.get("config_hash"), config_hash)
            )
        return ResumePlan(finished=summary)
    path = run_dir / CHECKPOINTS / LAST
    if not path.is_file():
        _clear_on_rank_zero(run_dir)
        return ResumePlan()
    checkpoint = read_checkpoint(path)
    ours = checkpoint[CHECKPOINT_KEY]
    if ours.get("config_hash") != config_hash:
        raise UserError(_other_config(path, ours.get("config_hash"), config_hash))
    if rank_zero_only.rank == 0:
        remove_torn_writes(run_dir)
    return ResumePlan(
        checkpoint=path, step=int(checkpoint["global_step"]), metrics_rows=ours.get("metrics_rows")
    )


def _clear_on_rank_zero(run_dir: Path) -> None:
    # DDP children run this too (Lightning relaunches the command): one process clears.
    if rank_zero_only.rank == 0:
        clear_run(run_dir)


def _other_config(path: Path, found: Any, wanted: str) -> str:
    return (
        f"{path} was written by another config (config_hash {found}, this run's is {wanted}); "
        "rerun with resume=false to replace that run, or choose another name or output_root"
    )


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint of this program, loaded on the CPU; UserError naming the file otherwise."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        reason = first_line(err)
        raise UserError(
            f"checkpoint {path} is corrupted ({reason}); "
            "rerun with resume=false to start this run afresh"
        ) from None
    if not isinstance(checkpoint, dict) or not {"state_dict", "global_step", CHECKPOINT_KEY} <= set(
        checkpoint
    ):
        raise UserError(
            f"checkpoint {path} is not a checkpoint of this program; "
            "rerun with resume=false to start this run afresh"
        )
    return checkpoint


# --- the training order --------------------------------------------------------------------


class ResumableSampler(Sampler[int]):
    """Training indices in an order fixed by (seed, epoch), resumable in the middle of an epoch.

    Epoch e visits a permutation drawn from (seed, e); with several processes each takes every
    world_size-th index of it. An iterator started when the trainer is at step s (`position()`)
    begins at batch s mod (batches per epoch) of epoch s div (batches per epoch): a resumed run
    sees exactly the batches the uninterrupted one would. Incomplete last batches are dropped.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        position: Callable[[], int],
        rank: int = 0,
        world_size: int = 1,
    ):
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.position, self.rank, self.world_size = position, rank, world_size
        self.per_rank = num_samples // world_size
        self.batches_per_epoch = self.per_rank // batch_size

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derive_seed(ORDER_STREAM, self.seed, epoch))
        order = torch.randperm(self.num_samples, generator=generator)
        return order[self.rank : self.per_rank * self.world_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        if self.batches_per_epoch == 0:
            return iter(())
        epoch, first_batch = divmod(self.position(), self.batches_per_epoch)
        order = self.epoch_order(epoch)
        return iter(order[first_batch * self.batch_size : len(self)].tolist())


class ResumableData(ImageDataModule):
    """The run's ImageDataModule, with all its randomness a function of (seed, position):
    the training order comes from a ResumableSampler, and the augmentation of step s (run
    after the transfer to the device) draws from the global RNGs seeded with (seed, s, rank).
    Use it with `Trainer(use_distributed_sampler=False)`: the sampler shards by rank itself."""

    def __init__(self, cfg: DataConfig, seed: int):
        super().__init__(cfg)
        self.seed = seed

    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        if not isinstance(loader, DataLoader) or loader.batch_size is None:
            return loader  # not a plain batched DataLoader: left as it is
        trainer = self.trainer
        sampler = ResumableSampler(
            len(loader.dataset),
            loader.batch_size,
            self.seed,
            position=lambda: trainer.global_step,
            rank=trainer.global_rank,
            world_size=trainer.world_size,
        )
        workers = loader.num_workers
        return DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            worker_init_fn=loader.worker_init_fn,
            persistent_workers=loader.persistent_workers,
            prefetch_factor=loader.prefetch_factor if workers > 0 else None,
            # workers' seeds come from here, not from the global RNGs reseeded every step
            generator=torch.Generator().manual_seed(derive_seed(ORDER_STREAM, self.seed, -1)),
        )

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer is not None and self.trainer.training:
            step, rank = self.trainer.global_step, self.trainer.global_rank
            torch.manual_seed(derive_seed(AUGMENT_STREAM, self.seed, step, rank))
        return super().on_before_batch_transfer(batch, dataloader_idx)


# --- writing checkpoints -------------------------------------------------------------------


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, except that a kill mid-write leaves the old file intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_writer(Path(path), "wb") as f:
            torch.save(checkpoint, f)


class LastCheckpoint(Checkpoint):
    """Writes checkpoints/last.ckpt every `every` training steps and when training ends, for a
    rerun to resume from.

    A periodic write happens at the end of the step, or after the step's validation when one
    follows (Lightning does not repeat a validation that a checkpoint precedes); the final one
    when training ends (after the last validation). Before writing, the loggers are flushed,
    and the checkpoint records how many metrics.csv rows exist.
    """

    def __init__(self, dirpath: Path, every: int, config_hash: str):
        self.path = Path(dirpath) / LAST
        self.every, self.config_hash = every, config_hash
        self._due = False  # a write waits for the validation that follows this step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if self._due:  # the awaited validation did not come (no validation data): write now
            self._save(trainer)
        final = 0 < trainer.max_steps <= trainer.global_step
        if trainer.global_step % self.every or final:
            return
        if _validation_follows(trainer):
            self._due = True
        else:
            self._save(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._due and not trainer.sanity_checking:
            self._save(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._save(trainer)

    def _save(self, trainer: Trainer) -> None:
        self._due = False
        for logger in trainer.loggers:
            logger.save()
        trainer.save_checkpoint(self.path)

    def on_save_checkpoint(self, trainer: Trainer, pl_module, checkpoint: dict) -> None:
        rows = [lg.rows_written for lg in trainer.loggers if isinstance(lg, MetricsCSVLogger)]
        checkpoint[CHECKPOINT_KEY] = {
            "config_hash": self.config_hash,
            "metrics_rows": rows[0] if rows else None,
        }


def _validation_follows(trainer: Trainer) -> bool:
    """Whether Lightning validates right after the current training step (step-based
    validation, `check_val_every_n_epoch=None`, as train.py configures the Trainer)."""
    if not trainer.enable_validation:
        return False
    every = trainer.val_check_batch
    step = trainer.fit_loop.epoch_loop.total_batch_idx + 1
    return trainer.should_stop or (isinstance(every, int) and step % every == 0)


# --- metrics.csv -------------------------------------------------------------------------


class MetricsCSVLogger(CSVLogger):
    """Lightning's CSVLogger writing RUN_DIR/metrics.csv, which it continues instead of deleting.

    `keep_rows`: a resumed run first cuts the file back to its header and that many rows (those
    its checkpoint had seen; the killed run's later rows will be logged again); None starts a
    new file. `rows_written` counts the rows on disk, for the next checkpoint to record.
    Files are touched on global rank 0 only, when the first row is logged.
    """

    def __init__(self, run_dir: Path, keep_rows: int | None = None):
        super().__init__(run_dir, name="", version="")
        self.keep_rows = keep_rows
        self.rows_written = 0

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self.rows_written = _cut_rows(Path(self.log_dir) / METRICS, self.keep_rows)
            self._experiment = _AppendingWriter(self.log_dir)
        return self._experiment

    @rank_zero_only
    def save(self) -> None:
        writer = self.experiment
        rows = len(writer.metrics)
        super().save()
        self.rows_written += rows


def _cut_rows(path: Path, keep_rows: int | None) -> int:
    """Keep the header and the first keep_rows rows of a CSV file (delete it for None)."""
    if keep_rows is None or not path.is_file():
        path.unlink(missing_ok=True)
        return 0
    # One physical line per row (no value holds a newline); a torn last line is dropped.
    with open(path, newline="") as f:
        lines = f.read().splitlines(keepends=True)[: keep_rows + 1]
    lines = [line for line in lines if line.endswith("\n")]
    atomic_write_text(path, "".join(lines))
    return max(len(lines) - 1, 0)


class _AppendingWriter(ExperimentWriter):
    """Appends to an existing metrics.csv, whose header says which columns it has."""

    def __init__(self, log_dir: str):
        super().__init__(log_dir)
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                header = f.readline().strip()
            self.metrics_keys = header.split(",") if header else []

    def _check_log_dir_exists(self) -> None:
        pass  # Lightning deletes metrics.csv here; MetricsCSVLogger has decided what stays


def with_metrics_csv(loggers: list, run_dir: Path, keep_rows: int | None) -> list:
    """The loggers, Lightning's plain CSVLogger replaced by a MetricsCSVLogger."""
    return [MetricsCSVLogger(run_dir, keep_rows) if type(lg) is CSVLogger else lg for lg in loggers]
