"""One run, start to finish: config → data → model → Lightning Trainer → run folder."""

from __future__ import annotations

import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig, OmegaConf

from degradation.config import config_hash, model_kwargs, validate, value, variant_name
from degradation.data import ImageDataModule
from degradation.models import build_model, count_flops, count_parameters
from degradation.module import Classifier
from degradation.rundir import CHECKPOINTS, git_state, write_summary


def _trainer(cfg: DictConfig, run_dir: Path) -> tuple[L.Trainer, ModelCheckpoint]:
    last = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINTS,
        save_last=True,
        save_top_k=0,
        every_n_train_steps=cfg.checkpoint_every,
    )
    best = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINTS,
        filename="best",
        monitor="val/error",
        mode="min",
        save_top_k=1,
        enable_version_counter=False,
    )
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer = L.Trainer(
        **trainer_args,
        check_val_every_n_epoch=None,  # validate every val_check_interval *steps*
        logger=CSVLogger(run_dir, name="", version=""),
        callbacks=[last, best],
        default_root_dir=run_dir,
        enable_model_summary=False,
    )
    return trainer, best


def _test_error(trainer: L.Trainer, module, dm, ckpt_path=None) -> dict[str, float]:
    results = trainer.test(module, datamodule=dm, ckpt_path=ckpt_path, verbose=False)
    return {k.split("/")[1]: float(v) for k, v in results[0].items()}


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Trains one variant into run_dir and returns its summary (also written to summary.json)."""
    run_dir = Path(run_dir)
    validate(cfg)
    started = time.time()
    summary: dict[str, Any] = {
        "name": variant_name(cfg),
        "depth": cfg.depth,
        "skip": value(cfg.skip),
        "shortcut": value(cfg.shortcut) if value(cfg.skip) != "none" else "not_applicable",
        "family": value(cfg.family),
        "block": None,
        "dataset": cfg.data.name,
        "seed": cfg.seed,
        "status": "failed",
        "command": command_line(),
        "config_hash": config_hash(cfg),
    }
    commit, dirty = git_state()
    summary.update(git_commit=commit, git_dirty=dirty)
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        dm = ImageDataModule(cfg.data)
        model = build_model(**model_kwargs(cfg, dm.num_classes, dm.input_shape[0]))
        summary.update(
            block=model.arch["block"],
            params=count_parameters(model),
            flops=count_flops(model, dm.input_shape),
            dataset_checksum=dm.images.checksum,
            num_train=dm.num_train,
        )
        module = Classifier(model, cfg.optim, cfg.log_every)
        trainer, best = _trainer(cfg, run_dir)
        summary["world_size"] = trainer.world_size
        trainer.fit(module, datamodule=dm)
        final_val = trainer.validate(module, datamodule=dm, verbose=False)[0]
        final_test = _test_error(trainer, module, dm)
        best_test = _test_error(trainer, module, dm, ckpt_path=best.best_model_path or None)
        train_metrics = module.last_window or {}
        summary.update(
            status="diverged" if module.diverged_at is not None else "completed",
            steps=trainer.global_step,
            final={
                "train_error": train_metrics.get("train/error"),
                "train_loss": train_metrics.get("train/loss"),
                "val_error": float(final_val["val/error"]),
                "val_loss": float(final_val["val/loss"]),
                "test_error": final_test["error"],
                "test_loss": final_test["loss"],
            },
            best_val={
                "val_error": float(best.best_model_score) if best.best_model_score else None,
                "test_error": best_test["error"],
                "checkpoint": Path(best.best_model_path).name if best.best_model_path else None,
            },
            diverged_step=module.diverged_at,
            warmup_end_step=module.warmup_end_step,
            throughput_img_s=module.train_images / max(module.train_time_s, 1e-9),
        )
    except Exception as err:
        summary.update(error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
        raise
    finally:
        summary["wall_time_s"] = round(time.time() - started, 3)
        if _is_global_zero():
            write_summary(run_dir, summary)
    return summary


def command_line() -> str:
    """The command as the user typed it (argv[0] of `python -m` is the module's file)."""
    program = sys.argv[0]
    if program.endswith(("degradation/run.py", "degradation/run")):
        program = "python -m degradation.run"
    return " ".join([program, *(shlex.quote(a) for a in sys.argv[1:])])


def _is_global_zero() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
