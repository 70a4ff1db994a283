"""The one config schema: every knob a run has, its type, its default, and its checks.

Hydra composes `conf/config.yaml` on top of `RunConfig` (registered as `schema`), so a
mistyped key or a value outside an Enum fails while the command line is parsed. Checks that
types cannot express (depth must be 6n+2, sizes must be positive) live in `validate`.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, DictConfig, OmegaConf

from degradation.errors import UserError


class Skip(str, Enum):
    none = "none"  # plain net
    add = "add"  # residual: F(x) + shortcut(x)
    concat = "concat"  # BN(conv1x1([shortcut(x), F(x)]))


class Shortcut(str, Enum):
    zero_pad = "zero_pad"  # option A
    projection = "projection"  # option B
    all_projection = "all_projection"  # option C


class Family(str, Enum):
    cifar = "cifar"
    imagenet = "imagenet"
    keras = "keras"  # a Keras tutorial's "ResNet-50 for CIFAR-10" (models/keras.py)


class Block(str, Enum):
    basic = "basic"
    bottleneck = "bottleneck"


class Normalize(str, Enum):
    per_channel = "per_channel"  # (x - mean_c) / std_c over the training split
    per_pixel_mean = "per_pixel_mean"  # the paper: subtract the per-pixel mean image
    none = "none"


class Loader(str, Enum):
    tensor = "tensor"  # uint8 tensors, batched augmentation; resident on the GPU under CUDA
    torchvision = "torchvision"  # the common recipe: per-sample transforms, DataLoader workers


# Functional form so that the member names are torch.compile's own mode names.
Compile = Enum(
    "Compile",
    {m: m for m in ("auto", "none", "default", "reduce-overhead", "max-autotune")},
    type=str,
)
Compile.__doc__ = "torch.compile mode; auto: reduce-overhead (CUDA graphs) on CUDA, none on CPU"


@dataclass
class SyntheticConfig:
    """The embedded default dataset, generated from `seed` (see data/synthetic.py)."""

    seed: int = 0
    train_size: int = 6000
    test_size: int = 2000
    num_classes: int = 10
    image_size: int = 32
    channels: int = 3
    noise: float = 0.6
    distractor: float = 0.7


@dataclass
class DataConfig:
    name: str = "synthetic"
    root: Optional[str] = None
    download: bool = False  # CIFAR only: fetch into `root` when the files are missing
    verify: bool = True  # CIFAR only: check torchvision's MD5 sums
    batch_size: int = 128  # global batch, split evenly over DDP processes
    eval_batch_size: int = 512
    val_size: int = 1000  # held out of the training split, used for model selection
    split_seed: int = 0  # fixed across runs so every run sees the same train/val split
    train_limit: Optional[int] = None  # use only the first N training images (CPU budgets)
    augment: bool = True  # pad + random crop + horizontal flip
    pad: int = 4
    flip: bool = True
    normalize: Normalize = Normalize.per_channel
    num_workers: int = 0
    loader: Loader = Loader.tensor
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class OptimConfig:
    """SGD with a step-based multi-step schedule (He et al. 2015, Sec. 4.2)."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    milestones: List[int] = field(default_factory=lambda: [32000, 48000])
    gamma: float = 0.1
    # ResNet-110 warm-up: lr = warmup_lr until the training error drops below
    # warmup_until_error or warmup_max_steps pass, whichever comes first. null = no warm-up.
    warmup_lr: Optional[float] = None
    warmup_until_error: float = 0.8
    warmup_max_steps: int = 400


@dataclass
class TrainerConfig:
    """Arguments passed to `lightning.Trainer` as they are."""

    max_steps: int = 64000
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # auto: bf16-mixed on CUDA, 32-true elsewhere (speed.py)
    val_check_interval: int = 2000  # in training steps
    log_every_n_steps: int = 1  # lr is logged every step; train metrics every `log_every`
    enable_progress_bar: bool = True
    deterministic: Any = False
    sync_batchnorm: bool = False
    benchmark: Optional[bool] = None
    gradient_clip_val: Optional[float] = None


class LoggerKind(str, Enum):
    csv = "csv"  # metrics.csv only
    wandb = "wandb"  # metrics.csv and a W&B run


class WandbMode(str, Enum):
    auto = "auto"  # online with an API key or `wandb login`, offline otherwise
    online = "online"
    offline = "offline"  # files under the run folder; upload later with `wandb sync`
    disabled = "disabled"


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
    init_timeout: float = 15.0  # seconds an online start may take before going offline


@dataclass
class LoggerConfig:
    """Config group `logger`: `csv` (default) or `wandb`; metrics.csv is always written."""

    kind: LoggerKind = LoggerKind.csv
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class RunConfig:
    # architecture
    depth: int = 20
    skip: Skip = Skip.add
    # null-free default that follows the family: zero_pad, but all_projection for keras
    shortcut: Shortcut = II("family_shortcut:${family}")
    family: Family = Family.cifar
    block: Optional[Block] = None  # null: basic for cifar, by depth for imagenet
    width: int = 1
    preact: bool = False
    zero_init_residual: bool = False
    # run
    seed: int = 0
    name: str = "default"  # experiment name: the folder a run or sweep goes to
    output_root: str = "outputs"
    log_every: int = 50  # steps per training-metric window (one host sync per window)
    checkpoint_every: int = 500  # steps between writes of checkpoints/last.ckpt
    # rerun = continue: skip a finished run, resume an unfinished one from last.ckpt (false:
    # start afresh, clearing the folder's checkpoints and metrics)
    resume: bool = True
    diverge_loss: float = 1e4  # a training-loss window above this (or NaN/inf): diverged, stop
    grad_every: int = 50  # steps between gradient-norm records (grad_norms.csv); 0 = off
    # speed (speed.py): torch.compile mode, channels_last weights and SGD's fused kernel
    # (weight decay, momentum and update in one pass over the parameters); null: on CUDA
    compile: Compile = Compile["auto"]
    channels_last: Optional[bool] = None
    fused_sgd: Optional[bool] = None
    # parallel sweeps (hydra/launcher=joblib): jobs sharing one GPU, or `auto` (distributed.py)
    jobs_per_gpu: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="schema", node=RunConfig)


def warmup_lr_from_depth(depth: int, min_depth: int, lr: float) -> Optional[float]:
    """`${warmup_lr_from_depth:${depth},110,0.01}`: warm up only nets at least min_depth deep.

    The paper warms up ResNet-110 alone; a Hydra sweep cannot set a value for one depth only.
    """
    return lr if depth >= min_depth else None


# Registered on import so that every reader of a saved config (.hydra/config.yaml) resolves it.
OmegaConf.register_new_resolver("warmup_lr_from_depth", warmup_lr_from_depth, replace=True)


def family_shortcut(family: Any) -> str:
    """`shortcut`'s default: a keras net has a projection on every block and nothing else;
    the paper's nets default to option A. Resolved, a cifar run's config (and its
    config_hash) is what it was before keras existed."""
    return "all_projection" if value(family) == "keras" else "zero_pad"


OmegaConf.register_new_resolver("family_shortcut", family_shortcut, replace=True)


def _gpu_resolver(name: str):
    def resolve(*args):
        from degradation import distributed  # imports Lightning: only when a launcher asks

        return getattr(distributed, name)(*args)

    return resolve


# The launcher configs (conf/hydra/launcher/) size themselves with these.
for _name in ("visible_gpus", "gpu_job_slots"):
    OmegaConf.register_new_resolver(_name, _gpu_resolver(_name), replace=True)
# Our hydra/launcher/{joblib,submitit_local}.yaml replace the plugins' configs of the same
# name; Hydra still checks them against the plugins' schemas (wanted), with a warning (not).
warnings.filterwarnings(
    "ignore", r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema", UserWarning
)


def value(x: Any) -> Any:
    """An Enum member's plain value (configs hold Enums, files and models want strings)."""
    return x.value if isinstance(x, Enum) else x


def _positive(cfg: DictConfig, *keys: str) -> None:
    for key in keys:
        v = OmegaConf.select(cfg, key)
        if v is not None and v <= 0:
            raise UserError(f"{key}={v} is not valid: it must be a positive number")


def jobs_per_gpu_setting(setting: Any) -> int | str:
    """`jobs_per_gpu` checked: "auto" or a positive integer; UserError (one line) otherwise."""
    text = str(setting)
    if text == "auto":
        return text
    if not (text.isdigit() and int(text) >= 1):
        raise UserError(f"jobs_per_gpu={text} is not valid: choose auto or a positive integer")
    return int(text)


def validate(cfg: DictConfig) -> None:
    """Checks the schema's types cannot express; raises UserError with one line."""
    _positive(
        cfg,
        "data.batch_size",
        "data.eval_batch_size",
        "optim.lr",
        "trainer.max_steps",
        "trainer.val_check_interval",
        "log_every",
        "checkpoint_every",
        "diverge_loss",
        "width",
        "data.synthetic.train_size",
        "data.synthetic.test_size",
        "data.train_limit",
        "optim.warmup_lr",
    )
    jobs_per_gpu_setting(cfg.jobs_per_gpu)
    for key in ("data.val_size", "data.pad", "optim.momentum", "optim.weight_decay", "grad_every"):
        if OmegaConf.select(cfg, key) < 0:
            raise UserError(f"{key}={OmegaConf.select(cfg, key)} is not valid: it must be >= 0")
    if not 0 < cfg.optim.gamma <= 1:
        raise UserError(f"optim.gamma={cfg.optim.gamma} is not valid: it must be in (0, 1]")
    if list(cfg.optim.milestones) != sorted(cfg.optim.milestones):
        raise UserError(f"optim.milestones={list(cfg.optim.milestones)} must be increasing")
    if cfg.data.name == "synthetic" and cfg.data.root:
        raise UserError(
            f"data.root={cfg.data.root} is not used by data=synthetic (generated, no files); "
            "drop it or choose a dataset with files: cifar10, cifar100, fashion_mnist"
        )
    check_architecture(cfg)
    from degradation.loggers import check_logger_available

    check_logger_available(cfg)


def check_architecture(cfg: DictConfig) -> None:
    """Builds the model on the meta device: every impossible combination fails here, cheaply."""
    import torch

    from degradation.models import build_model

    try:
        with torch.device("meta"):
            build_model(**model_kwargs(cfg, num_classes=10, in_channels=3))
    except ValueError as err:
        raise UserError(str(err)) from None


def model_kwargs(cfg: DictConfig, num_classes: int, in_channels: int) -> dict:
    return dict(
        depth=cfg.depth,
        skip=value(cfg.skip),
        shortcut=value(cfg.shortcut),
        num_classes=num_classes,
        in_channels=in_channels,
        family=value(cfg.family),
        block=value(cfg.block),
        width=cfg.width,
        preact=cfg.preact,
        zero_init_residual=cfg.zero_init_residual,
    )


def variant_name(cfg: DictConfig) -> str:
    """Human label of the architecture, seed left out: 'plain-56', 'resnet-56 projection'.

    A keras net is 'resnet-50 keras' / 'plain-50 keras' (its block and shortcut are implied):
    the word after the depth keeps it out of the paper nets' series in reports and W&B.
    """
    skip = value(cfg.skip)
    family = {"none": "plain", "add": "resnet", "concat": "concatnet"}[skip]
    label = f"{family}-{cfg.depth}"
    if value(cfg.family) == "keras":
        return f"{label} keras"
    if value(cfg.block) == "bottleneck":
        label += " bottleneck"
    if cfg.preact:
        label += " preact"
    if skip != "none" and value(cfg.shortcut) != "zero_pad":
        label += f" {value(cfg.shortcut)}"
    if cfg.width != 1:
        label += f" x{cfg.width}"
    return label


# Where and how a run is written or shown, not what it computes: left out of config_hash.
NOT_HASHED = ("hydra", "resume", "output_root", "logger", "trainer.enable_progress_bar")
NOT_HASHED += ("grad_every",)  # records gradient norms; the training itself is the same
NOT_HASHED += ("compile", "channels_last", "fused_sgd")  # how fast, not what: may switch
NOT_HASHED += ("jobs_per_gpu",)  # where a job runs, not what it computes
# where files live and how often state is saved: the data checksum identifies the data
NOT_HASHED += ("checkpoint_every", "data.root", "data.download", "data.num_workers")


def config_hash(cfg: DictConfig) -> str:
    """Identifies what a run computes: its resolved config, less the keys in NOT_HASHED."""
    data = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    for key in NOT_HASHED:
        *parents, leaf = key.split(".")
        node = data
        for parent in parents:
            node = node.get(parent) or {}
        node.pop(leaf, None)
    text = OmegaConf.to_yaml(OmegaConf.create(data), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
