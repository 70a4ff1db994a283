"""The one config schema: every knob a run has, its type, its default, and its checks.

Hydra composes `conf/config.yaml` on top of `RunConfig` (registered as `schema`), so a
mistyped key or a value outside an Enum fails while the command line is parsed. Checks that
types cannot express (depth must be 6n+2, sizes must be positive) live in `validate`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

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


class Block(str, Enum):
    basic = "basic"
    bottleneck = "bottleneck"


class Normalize(str, Enum):
    per_channel = "per_channel"  # (x - mean_c) / std_c over the training split
    per_pixel_mean = "per_pixel_mean"  # the paper: subtract the per-pixel mean image
    none = "none"


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
    precision: str = "32-true"
    val_check_interval: int = 2000  # in training steps
    log_every_n_steps: int = 1  # lr is logged every step; train metrics every `log_every`
    enable_progress_bar: bool = True
    deterministic: Any = False
    sync_batchnorm: bool = False
    benchmark: Optional[bool] = None
    gradient_clip_val: Optional[float] = None


@dataclass
class RunConfig:
    # architecture
    depth: int = 20
    skip: Skip = Skip.add
    shortcut: Shortcut = Shortcut.zero_pad
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
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def register_configs() -> None:
    ConfigStore.instance().store(name="schema", node=RunConfig)


def value(x: Any) -> Any:
    """An Enum member's plain value (configs hold Enums, files and models want strings)."""
    return x.value if isinstance(x, Enum) else x


def _positive(cfg: DictConfig, *keys: str) -> None:
    for key in keys:
        v = OmegaConf.select(cfg, key)
        if v is not None and v <= 0:
            raise UserError(f"{key}={v} is not valid: it must be a positive number")


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
        "width",
        "data.synthetic.train_size",
        "data.synthetic.test_size",
        "data.train_limit",
        "optim.warmup_lr",
    )
    for key in ("data.val_size", "data.pad", "optim.momentum", "optim.weight_decay"):
        if OmegaConf.select(cfg, key) < 0:
            raise UserError(f"{key}={OmegaConf.select(cfg, key)} is not valid: it must be >= 0")
    if not 0 < cfg.optim.gamma <= 1:
        raise UserError(f"optim.gamma={cfg.optim.gamma} is not valid: it must be in (0, 1]")
    if list(cfg.optim.milestones) != sorted(cfg.optim.milestones):
        raise UserError(f"optim.milestones={list(cfg.optim.milestones)} must be increasing")
    check_architecture(cfg)


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
    """Human label of the architecture, seed left out: 'plain-56', 'resnet-56 projection'."""
    skip = value(cfg.skip)
    family = {"none": "plain", "add": "resnet", "concat": "concatnet"}[skip]
    label = f"{family}-{cfg.depth}"
    if value(cfg.block) == "bottleneck":
        label += " bottleneck"
    if cfg.preact:
        label += " preact"
    if skip != "none" and value(cfg.shortcut) != "zero_pad":
        label += f" {value(cfg.shortcut)}"
    if cfg.width != 1:
        label += f" x{cfg.width}"
    return label


def config_hash(cfg: DictConfig) -> str:
    """Identifies a run's resolved config (hydra section excluded)."""
    text = OmegaConf.to_yaml(cfg, resolve=True, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
