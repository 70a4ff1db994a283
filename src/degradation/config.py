"""The one config schema: every knob a run has, its type, its default and its own constraint.

Hydra composes `conf/config.yaml` on top of `RunConfig` (registered by `degradation.run` as
`schema`), so a mistyped key or a value outside an Enum fails while the command line is parsed.
A constraint that a type cannot express is declared on the field itself (`checked(default,
POSITIVE)`); `preflight.validate` walks the schema and checks every declared rule, plus the
checks that involve several fields. This module only declares: it registers nothing, validates
nothing and imports nothing of the project but `choices`, `errors` and `vocabulary`.

`NON_DEFINING_KEYS` is the one list of keys that say where or how a run is written, logged,
launched or sped up, not what it computes: the run folder's name and the config hash are both
derived from it (`rundir.run_dir_name`, `rundir.config_hash`).

Over 300 lines: the whole schema, with each field's rule beside it, in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Dict, List, Optional

from omegaconf import II

from degradation.errors import UserError
from degradation.vocabulary import Architecture, Block, Family, HeadInit, Shortcut, Skip

# Choices are StrEnums: str() and f-strings give the plain value ("add", not "Skip.add"), as
# Hydra's tab completion shows a setting's value (`skip=<TAB>` completes to `skip=add`). The
# architecture's choices (Skip, Shortcut, Family, Block, HeadInit) live in vocabulary.py with
# their words; they are imported above, so `from degradation.config import Skip` works.


class Normalize(StrEnum):
    per_channel = "per_channel"  # (x - mean_c) / std_c over the training split
    per_pixel_mean = "per_pixel_mean"  # the paper: subtract the per-pixel mean image
    none = "none"


class PadValue(StrEnum):
    """What the augmentation's padding holds (docs/recipe.md)."""

    zero = "zero"  # raw pixels padded with 0 (black), then normalised: the pad is -mean/std
    mean = "mean"  # normalised, then padded with 0: the pad is the mean (fb.resnet.torch)


class Loader(StrEnum):
    tensor = "tensor"  # uint8 tensors, batched augmentation; resident on the GPU under CUDA
    torchvision = "torchvision"  # the common recipe: per-sample transforms, DataLoader workers


# Functional form so that the member names are torch.compile's own mode names.
Compile = StrEnum(
    "Compile", {m: m for m in ("auto", "none", "default", "reduce-overhead", "max-autotune")}
)
Compile.__doc__ = (
    "torch.compile mode; auto: reduce-overhead (CUDA graphs) on CUDA, on a CPU default for a run"
    " of speed.CPU_COMPILE_MIN_STEPS steps or more, else none"
)


class LoggerKind(StrEnum):
    csv = "csv"  # metrics.csv (always written)
    wandb = "wandb"  # a W&B run
    tensorboard = "tensorboard"  # TensorBoard event files in RUN_DIR/tensorboard


class WandbMode(StrEnum):
    auto = "auto"  # online with an API key or `wandb login`, offline otherwise
    online = "online"
    offline = "offline"  # files under the run folder; upload later with `wandb sync`
    disabled = "disabled"


# --- constraints declared on fields -----------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A constraint on one field's value: `holds(value)`; `text` is the advice that follows
    "KEY=VALUE is not valid: " in the error."""

    text: str
    holds: Callable[[Any], bool]


RULES = "rules"  # the dataclass field metadata key holding a field's rules

POSITIVE = Rule("it must be a positive number", lambda v: v > 0)
NON_NEGATIVE = Rule("it must be >= 0", lambda v: v >= 0)
AT_LEAST_TWO = Rule("it must be >= 2", lambda v: v >= 2)
FRACTION = Rule("it must be in (0, 1]", lambda v: 0 < v <= 1)
UNIT_INTERVAL = Rule("it must be in [0, 1]", lambda v: 0 <= v <= 1)
INCREASING = Rule(
    "it must be increasing and >= 0", lambda v: list(v) == sorted(v) and min(v, default=0) >= 0
)
# numpy's and Lightning's seeds are unsigned 32-bit: a larger one would be replaced at random
SEED = Rule("it must be an integer in 0 .. 4294967295", lambda v: 0 <= v <= 2**32 - 1)
AUTO_OR_POSITIVE_INT = Rule(
    "choose auto or a positive integer",
    lambda v: str(v) == "auto" or (str(v).isdigit() and int(v) >= 1),
)
# `name` is the experiment's folder below output_root/runs and output_root/sweeps
FOLDER_NAME = Rule(
    "choose one folder name: no '/' or '\\', not empty, '.' or '..'",
    lambda v: str(v) not in ("", ".", "..") and not {"/", "\\"} & set(str(v)),
)
# Lightning reads any other value as true (Trainer(deterministic=...), _set_torch_flags)
DETERMINISTIC = Rule(
    "choose true, false or warn", lambda v: isinstance(v, bool) or str(v) == "warn"
)
# Every float field must also be finite: `preflight` checks that for all of them.
FINITE = Rule("it must be a finite number", lambda v: not isinstance(v, float) or math.isfinite(v))


def checked(default: Any = None, *rules: Rule, factory: Callable[[], Any] | None = None):
    """A dataclass field with its default and the rules its value must follow (None, where a
    field allows it, is never checked)."""
    if factory is not None:
        return field(default_factory=factory, metadata={RULES: rules})
    return field(default=default, metadata={RULES: rules})


# --- the schema ---------------------------------------------------------------------------------


@dataclass
class SyntheticConfig:
    """The embedded default dataset, generated from `seed` (see data/synthetic.py)."""

    seed: int = checked(0, SEED)
    train_size: int = checked(6000, POSITIVE)
    test_size: int = checked(2000, POSITIVE)
    num_classes: int = checked(10, AT_LEAST_TWO)
    image_size: int = checked(32, POSITIVE)
    channels: int = checked(3, POSITIVE)
    noise: float = checked(0.6, NON_NEGATIVE)
    distractor: float = checked(0.7, NON_NEGATIVE)
    tint: float = checked(0.0, NON_NEGATIVE)  # class colour offset (data/synthetic.py)


@dataclass
class DataConfig:
    name: str = "synthetic"
    root: Optional[str] = None
    download: bool = False  # CIFAR only: fetch into `root` when the files are missing
    verify: bool = True  # CIFAR only: check torchvision's MD5 sums
    batch_size: int = checked(128, POSITIVE)  # global batch, split evenly over DDP processes
    eval_batch_size: int = checked(512, POSITIVE)
    val_size: int = checked(1000, POSITIVE)  # held out of the training split: model selection
    split_seed: int = checked(0, SEED)  # fixed across runs: every run sees the same split
    train_limit: Optional[int] = checked(None, POSITIVE)  # the first N training images only
    augment: bool = True  # pad + random crop + horizontal flip
    pad: int = checked(4, NON_NEGATIVE)
    pad_value: PadValue = PadValue.zero
    flip: bool = True
    normalize: Normalize = Normalize.per_channel
    num_workers: int = checked(0, NON_NEGATIVE)
    loader: Loader = Loader.tensor
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class OptimConfig:
    """SGD with a step-based multi-step schedule (He et al. 2015, Sec. 4.2)."""

    lr: float = checked(0.1, POSITIVE)
    momentum: float = checked(0.9, NON_NEGATIVE)
    weight_decay: float = checked(1e-4, NON_NEGATIVE)
    nesterov: bool = False
    milestones: List[int] = checked(None, INCREASING, factory=lambda: [32000, 48000])
    gamma: float = checked(0.1, FRACTION)
    # ResNet-110 warm-up (docs/recipe.md): lr = warmup_lr until a window's training error
    # drops below warmup_until_error, the paper's rule. warmup_max_steps is a safety cap only:
    # a warm-up it ends is recorded as such (summary.json warmup_end_reason "cap") with a
    # warning. null warmup_lr = no warm-up.
    warmup_lr: Optional[float] = checked(None, POSITIVE)
    warmup_until_error: float = checked(0.8, UNIT_INTERVAL)
    warmup_max_steps: int = checked(4000, POSITIVE)  # 10x the paper's "about 400 iterations"


@dataclass
class TrainerConfig:
    """Arguments passed to `lightning.Trainer` as they are (preflight lets Lightning check
    accelerator, devices, strategy and precision before anything runs)."""

    max_steps: int = checked(64000, POSITIVE)
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = checked(1, POSITIVE)
    strategy: str = "auto"
    precision: str = "auto"  # auto: bf16-mixed on CUDA, 32-true elsewhere (speed.py)
    val_check_interval: int = checked(2000, POSITIVE)  # in training steps
    log_every_n_steps: int = checked(1, POSITIVE)  # lr: every step; train metrics: log_every
    enable_progress_bar: bool = True
    deterministic: Any = checked(False, DETERMINISTIC)
    sync_batchnorm: bool = False
    benchmark: Optional[bool] = None
    gradient_clip_val: Optional[float] = checked(None, NON_NEGATIVE)
    # Every other `lightning.Trainer` argument, passed as it is when set; null: Lightning's
    # default. Set, it is part of the config hash unless NON_DEFINING_KEYS lists it; left null,
    # it is not (runs from before these keys existed keep their hash). A run that stops before
    # max_steps (max_epochs, max_time, callbacks=early_stopping) is
    # `completed` with summary.json `steps` where it stopped; the lr schedule stays in steps.
    max_epochs: Optional[int] = checked(None, POSITIVE)
    min_epochs: Optional[int] = checked(None, NON_NEGATIVE)
    min_steps: Optional[int] = checked(None, NON_NEGATIVE)
    max_time: Any = None  # "DD:HH:MM:SS" or {hours: 2}: the run ends at that wall time
    limit_val_batches: Any = checked(None, NON_NEGATIVE)  # 0: no validation, no best.ckpt
    limit_test_batches: Any = checked(None, NON_NEGATIVE)
    limit_predict_batches: Any = checked(None, NON_NEGATIVE)
    num_sanity_val_steps: Optional[int] = None  # Lightning's default: 2; -1: all
    gradient_clip_algorithm: Optional[str] = None  # norm (Lightning's default) or value
    inference_mode: Optional[bool] = None
    profiler: Optional[str] = None  # simple, advanced or pytorch: a report at the end
    detect_anomaly: Optional[bool] = None
    reload_dataloaders_every_n_epochs: Optional[int] = checked(None, NON_NEGATIVE)
    enable_autolog_hparams: Optional[bool] = None
    model_registry: Optional[str] = None


# The keys TrainerConfig adds to the project's own (null = Lightning's default, left out of the
# config hash while null: rundir.config_hash).
LIGHTNING_DEFAULT_TRAINER_KEYS = (
    "max_epochs",
    "min_epochs",
    "min_steps",
    "max_time",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "num_sanity_val_steps",
    "gradient_clip_algorithm",
    "inference_mode",
    "profiler",
    "detect_anomaly",
    "reload_dataloaders_every_n_epochs",
    "enable_autolog_hparams",
    "model_registry",
)


def trainer_arguments(trainer: Any) -> dict[str, Any]:
    """The trainer section as lightning.Trainer takes it: the LIGHTNING_DEFAULT_TRAINER_KEYS
    left at null dropped (Lightning's own default applies; the config hash leaves them out)."""
    return {
        k: v for k, v in trainer.items() if not (k in LIGHTNING_DEFAULT_TRAINER_KEYS and v is None)
    }


# `lightning.Trainer` arguments this program sets itself, with what to use instead: the rest
# of Trainer's signature is TrainerConfig (tests/test_lightning_open.py checks both lists
# against the installed Lightning, so a new argument is noticed).
MANAGED_TRAINER_ARGS = {
    "logger": "choose loggers with logger=csv|wandb|tensorboard (metrics.csv is always written)",
    "callbacks": "add callbacks with callbacks=early_stopping|lr_monitor|model_summary|"
    "rich_progress_bar|device_stats (conf/callbacks/)",
    "enable_model_summary": "add callbacks=model_summary",
    "plugins": "set by this program (checkpoint writing, cluster environment)",
    "default_root_dir": "every file of a run goes to its run folder; set output_root instead",
    "enable_checkpointing": "checkpoints are how a run resumes; set checkpoint_every instead",
    "use_distributed_sampler": "the data module shards batches by rank itself",
    "check_val_every_n_epoch": "validation runs every trainer.val_check_interval steps",
    "fast_dev_run": "it writes no checkpoint or record; use experiment=smoke for a quick check",
    "barebones": "it turns off the metrics and checkpoints a run is made of",
    "overfit_batches": "use data.train_limit=N to train on the first N images",
    "limit_train_batches": "the data order runs on by steps across epochs; use trainer.max_steps"
    " or data.train_limit",
    "accumulate_grad_batches": "the data order and the lr schedule count optimizer steps; set "
    "data.batch_size instead",
}


@dataclass
class WandbConfig:
    """W&B run settings (see loggers.py); used with `logger=wandb`."""

    mode: WandbMode = WandbMode.auto
    project: Optional[str] = None  # null: $WANDB_PROJECT, else "degradation"
    entity: Optional[str] = None  # null: $WANDB_ENTITY, else your default entity
    group: Optional[str] = None  # prefix of the group; null: the experiment name
    job_type: str = "train"
    tags: List[str] = field(default_factory=list)  # added to depth/skip/shortcut/dataset
    dir: Optional[str] = None  # null: $WANDB_DIR, else the run folder
    log_model: bool = False  # upload checkpoints as artifacts (online only)
    init_timeout: float = checked(15.0, POSITIVE)  # seconds an online start may take


# `logger.kind`: one LoggerKind, or several. Each option of the config group `logger` adds its
# name to a mapping ({csv: true}), so that Hydra's list of group options, `logger=[csv,
# tensorboard]`, merges into {csv: true, tensorboard: true} (a list would be replaced by the last
# option's). A plain name (`logger.kind=wandb`, saved configs of earlier versions) or a list of
# names mean the same; `logger_kinds` reads all three forms.
LOGGER_KINDS = Rule(
    "choose csv, wandb or tensorboard, or several: logger=[csv,tensorboard]",
    lambda v: bool(logger_kinds(v)) and set(logger_kinds(v)) <= {k.value for k in LoggerKind},
)


def logger_kinds(kind: Any) -> list[str]:
    """The logger names `logger.kind` selects, in order, each once: 'wandb' -> ['wandb'],
    {csv: true, tensorboard: true} -> ['csv', 'tensorboard'], ['csv', 'wandb'] -> the same."""
    if kind is None:
        names = []
    elif isinstance(kind, str | Enum):
        names = [str(kind)]  # a StrEnum's str() is its value
    elif hasattr(kind, "items"):
        names = [str(name) for name, chosen in kind.items() if chosen]
    else:
        names = [str(name) for name in kind]
    return list(dict.fromkeys(names))


@dataclass
class LoggerConfig:
    """Config group `logger`: `csv` (default), `wandb`, `tensorboard`, or several at once
    (`logger=[wandb,tensorboard]`); metrics.csv is always written."""

    kind: Any = checked("csv", LOGGER_KINDS)  # see LOGGER_KINDS above
    wandb: WandbConfig = field(default_factory=WandbConfig)


# a test's level: 0 and 1 would make every claim fail or hold whatever the runs show
ALPHA = Rule("it must be in (0, 1)", lambda v: 0 < v < 1)


@dataclass
class VerdictConfig:
    """How the report judges these runs (docs/reports.md), fixed with the runs, before their
    results exist: recorded in each run's .hydra/config.yaml, read back by the report."""

    # non-inferiority margin of "skips removed the degradation": the deeper skip net may end
    # at most this many percentage points above the shallower one
    margin_pp: float = checked(2.0, POSITIVE)
    alpha: float = checked(0.05, ALPHA)  # level of every one-sided test of the verdict


@dataclass
class RunConfig:
    # architecture
    depth: int = checked(20, POSITIVE)
    skip: Skip = Skip.add
    # follows the family (resolvers.family_shortcut): zero_pad, but all_projection for keras
    shortcut: Shortcut = II("family_shortcut:${family}")
    family: Family = Family.cifar
    block: Optional[Block] = None  # null: basic for cifar, by depth for imagenet
    width: int = checked(1, POSITIVE)
    preact: bool = False
    zero_init_residual: bool = False
    head_init: HeadInit = HeadInit.pytorch
    # run
    seed: int = checked(0, SEED)
    name: str = checked("default", FOLDER_NAME)  # experiment name: the folder of its runs
    output_root: str = "outputs"
    log_every: int = checked(50, POSITIVE)  # steps per training-metric window (one host sync)
    checkpoint_every: int = checked(500, POSITIVE)  # steps between checkpoints/last.ckpt
    # rerun = continue: skip a finished run, resume an unfinished one from last.ckpt (false:
    # start afresh, clearing the folder's checkpoints and metrics)
    resume: bool = True
    diverge_loss: float = checked(1e4, POSITIVE)  # a window's loss above this (or NaN): stop
    grad_every: int = checked(50, NON_NEGATIVE)  # steps between grad_norms.csv rows; 0 = off
    # speed (speed.py): torch.compile mode, channels_last weights and SGD's fused kernel
    # (weight decay, momentum and update in one pass over the parameters); null: on CUDA
    compile: Compile = Compile["auto"]
    channels_last: Optional[bool] = None
    fused_sgd: Optional[bool] = None
    # parallel sweeps (hydra/launcher=joblib): jobs sharing one GPU, or `auto` (distributed.py)
    jobs_per_gpu: str = checked("auto", AUTO_OR_POSITIVE_INT)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    verdict: VerdictConfig = field(default_factory=VerdictConfig)
    # Config group `callbacks` (conf/callbacks/): Lightning callbacks by name, each a mapping
    # with `_target_` that hydra.utils.instantiate builds; callbacks=[early_stopping,lr_monitor]
    callbacks: Dict[str, Any] = field(default_factory=dict)


# Where and how a run is written, logged, launched or sped up, not what it computes: left out
# of the run folder's name and of config_hash (a key covers the keys below it, e.g. `logger`).
NON_DEFINING_KEYS = (
    "hydra",
    "resume",
    "output_root",
    "logger",  # metrics.csv is always written; W&B is a copy
    "trainer.enable_progress_bar",
    "trainer.num_sanity_val_steps",  # a check before training; the training is the same
    "trainer.limit_predict_batches",  # nothing here predicts
    "trainer.inference_mode",  # evaluation under no_grad or inference_mode: the same numbers
    "trainer.profiler",
    "trainer.detect_anomaly",
    "trainer.enable_autolog_hparams",
    "trainer.model_registry",
    # callbacks that only watch (conf/callbacks/); early_stopping, or one of your own, defines
    "callbacks.lr_monitor",
    "callbacks.model_summary",
    "callbacks.rich_progress_bar",
    "callbacks.device_stats",
    "grad_every",  # records gradient norms; the training itself is the same
    "compile",  # how fast, not what: a rerun may switch these
    "channels_last",
    "fused_sgd",
    "jobs_per_gpu",  # where a job runs
    "checkpoint_every",  # how often state is saved
    "data.root",  # where the files live: the data checksum identifies the data
    "data.download",
    "data.num_workers",
    "verdict",  # how the report judges the runs, not what they compute
)


def covers(keys: tuple[str, ...], key: str) -> bool:
    """Whether a dotted config key is, or lies below, one of `keys`."""
    return any(key == k or key.startswith(k + ".") for k in keys)


def is_non_defining(key: str) -> bool:
    """Whether a dotted config key is, or lies below, one of NON_DEFINING_KEYS."""
    return covers(NON_DEFINING_KEYS, key)


def jobs_per_gpu_setting(setting: Any) -> int | str:
    """`jobs_per_gpu` as "auto" or an int; UserError (one line) for anything else."""
    if not AUTO_OR_POSITIVE_INT.holds(setting):
        raise UserError(f"jobs_per_gpu={setting} is not valid: {AUTO_OR_POSITIVE_INT.text}")
    text = str(setting)
    return text if text == "auto" else int(text)


def variant_name(cfg: Any) -> str:
    """Human label of the architecture, seed left out: 'plain-56', 'resnet-56 projection',
    'resnet-18 imagenet', 'resnet-50 keras' (the family is named unless it is cifar, so that
    nets of one depth from different families are never averaged together in reports or W&B;
    vocabulary.Architecture says which fields it names)."""
    return architecture(cfg).label


def architecture(cfg: Any) -> Architecture:
    """The run config's architecture fields, as the report reads them from summary.json."""
    return Architecture.of(
        cfg.skip, cfg.depth, cfg.family, cfg.block, cfg.shortcut, cfg.preact, cfg.width
    )
