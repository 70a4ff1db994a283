"""The settings part of `python -m degradation.run --help`, generated from the schema.

Hydra prints the app help from conf/hydra/help/degradation.yaml, whose template calls the
resolver `degradation_settings` (registered by run.register): one line per top-level key of
`config.RunConfig`, in the schema's order, with its default, its choices where its type is an
Enum, and the line from `SETTINGS` below. Keys, defaults and choices come from the schema, so
they cannot drift from it; tests/test_console.py checks that every key has its line here.
"""

from __future__ import annotations

import dataclasses
import typing
from enum import Enum
from typing import Any

from degradation.config import RunConfig

SETTINGS = {
    "depth": "layers: 6n+2 for cifar (20, 32, 44, 56, 110), 9n+2 with bottlenecks",
    "skip": "plain, residual F(x)+x, or concat + 1x1 conv",
    "shortcut": "where shapes change: the paper's A, B, C (keras: all_projection)",
    "family": "the paper's CIFAR (Sec. 4.2) or ImageNet (Table 1) nets, or keras (depth 50)",
    "block": "null: basic for cifar, by depth for imagenet",
    "width": "channel multiplier",
    "preact": "pre-activation blocks (He et al. 2016)",
    "zero_init_residual": "residual branches start at 0 (last BN gamma); plain nets: ignored",
    "head_init": "the classifier's init: PyTorch's default or He normal (docs/recipe.md)",
    "seed": "model init, data order and augmentation",
    "name": "the experiment: its runs go to output_root/{runs,sweeps}/NAME",
    "output_root": "where run folders are made",
    "log_every": "steps per training-metric window (one line, one metrics row)",
    "checkpoint_every": "steps between checkpoints/last.ckpt (what a rerun resumes from)",
    "resume": "a rerun skips a finished run, resumes an unfinished one; false: afresh",
    "diverge_loss": "a window's loss above this (or NaN) stops the run as diverged",
    "grad_every": "steps between gradient-norm rows (grad_norms.csv); 0: off",
    "compile": "torch.compile; auto: reduce-overhead on CUDA; on CPU default for 5000+ steps",
    "channels_last": "channels-last weights; null: with bf16 (CUDA, or a CPU with native bf16)",
    "fused_sgd": "SGD's fused kernel; null: on CUDA",
    "jobs_per_gpu": "parallel sweep jobs sharing one GPU (hydra/launcher=joblib)",
    "data": "the dataset: group data=NAME; data.batch_size, data.root, ...",
    "optim": "SGD and its schedule: optim.lr, optim.milestones, optim.warmup_lr, ...",
    "trainer": "any lightning.Trainer argument: trainer.max_steps, trainer.precision (auto: "
    "bf16-mixed on CUDA or a CPU with native bf16, else 32-true), trainer.max_epochs, ...",
    "logger": "group logger=csv|wandb|tensorboard, or a list: logger=[csv,tensorboard]",
    "verdict": "how the report judges the runs: verdict.margin_pp, verdict.alpha",
    "callbacks": "group callbacks=early_stopping|lr_monitor|model_summary|rich_progress_bar|"
    "device_stats, or a list: callbacks=[early_stopping,lr_monitor]",
}


def schema_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def settings_help() -> str:
    """One line per top-level key: 'key=default  {choices}  what it sets'."""
    hints = typing.get_type_hints(RunConfig)
    defaults = RunConfig()
    lines = []
    for key in schema_keys():
        default = getattr(defaults, key)
        group = dataclasses.is_dataclass(default) or isinstance(default, dict)
        shown = f"{key}.*" if group else f"{key}={_text(default, key)}"
        choices = _choices(hints[key])
        about = " ".join(p for p in (choices, SETTINGS.get(key, "")) if p)
        lines.append(f"  {shown:<26} {about}".rstrip())
    return "\n".join(lines)


# Defaults that are interpolations (resolved per run), shown as what they resolve to.
RESOLVED_DEFAULTS = {"shortcut": "zero_pad"}


def _text(default: Any, key: str = "") -> str:
    if key in RESOLVED_DEFAULTS:
        return RESOLVED_DEFAULTS[key]
    if default is None:
        return "null"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)  # a StrEnum's str() is its value


def _choices(hint: Any) -> str:
    """'{none,add,concat}' for an Enum type (also inside Optional[...]), else ''."""
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return "{" + ",".join(str(m.value) for m in candidate) + "}"
    return ""
