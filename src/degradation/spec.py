"""The run spec: a composed Hydra config parsed once into frozen, typed parts.

    spec = preflight.parse(cfg)   # validated once (preflight.validate), auto/null resolved
    spec = read_spec(run_dir)     # a finished run's, from .hydra/config.yaml, as it was

Each part is what one component takes as its constructor argument: `ModelSpec` (build_model's
keyword arguments), `DataSpec` with its `AugmentSpec` (ImageDataModule), `OptimSpec` with the
warm-up (Classifier), `TrainerSpec` (lightning.Trainer's arguments), `speed.Speed` (the resolved
precision, compile mode and memory format), `RecordsSpec` (metric windows, checkpoints,
loggers, callbacks). Values are plain: Enums become their strings, lists tuples; a plain net
carries no shortcut (`ModelSpec.shortcut` is None) and the config hash is computed here.

Below `run.py` only this module, the validation that precedes it (preflight.py, with the
schema in config.py and its resolvers) and the run-folder writer (rundir.py) see an OmegaConf
config: tests/test_spec.py checks the imports. Learned from lightning-hydra-template (the
config stops at train.py) and nanoGPT (a typed config, saved with the model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from omegaconf import DictConfig, OmegaConf

from degradation.config import logger_kinds, trainer_arguments, variant_name
from degradation.speed import Speed, SpeedRequest


@dataclass(frozen=True)
class ModelSpec:
    """`models.build_model`'s arguments but the data's classes and channels."""

    depth: int
    skip: str
    shortcut: str | None  # None for a plain net: it has no shortcut
    family: str
    block: str | None  # None: the family's own (basic for cifar, by depth for imagenet)
    width: int
    preact: bool
    zero_init_residual: bool
    head_init: str

    def build_kwargs(self, num_classes: int, in_channels: int) -> dict[str, Any]:
        kwargs = dict(
            depth=self.depth,
            skip=self.skip,
            num_classes=num_classes,
            in_channels=in_channels,
            family=self.family,
            block=self.block,
            width=self.width,
            preact=self.preact,
            zero_init_residual=self.zero_init_residual,
            head_init=self.head_init,
        )
        if self.shortcut is not None:
            kwargs["shortcut"] = self.shortcut
        return kwargs

    @property
    def name(self) -> str:
        """'plain-56', 'resnet-56 projection', ... (config.variant_name)."""
        return variant_name(self)

    @property
    def shortcut_label(self) -> str:
        """The shortcut as summary.json records it: 'not_applicable' for a plain net."""
        return self.shortcut or "not_applicable"


@dataclass(frozen=True)
class SyntheticSpec:
    """The embedded dataset's generator settings (data/synthetic.py)."""

    seed: int
    train_size: int
    test_size: int
    num_classes: int
    image_size: int
    channels: int
    noise: float
    distractor: float
    tint: float


@dataclass(frozen=True)
class AugmentSpec:
    """Training augmentation: pad + random crop + horizontal flip (off: `enabled` false)."""

    enabled: bool
    pad: int
    pad_value: str
    flip: bool


@dataclass(frozen=True)
class DataSpec:
    name: str
    root: str | None
    download: bool
    verify: bool
    batch_size: int  # global: split evenly over DDP processes
    eval_batch_size: int
    val_size: int
    split_seed: int
    train_limit: int | None
    normalize: str
    num_workers: int
    loader: str
    augment: AugmentSpec
    synthetic: SyntheticSpec


@dataclass(frozen=True)
class OptimSpec:
    """SGD with its step schedule and the ResNet-110 warm-up (warmup_lr None: no warm-up).
    Field names are the config's: a checkpoint's saved hyperparameters rebuild it."""

    lr: float
    momentum: float
    weight_decay: float
    nesterov: bool
    milestones: tuple[int, ...]
    gamma: float
    warmup_lr: float | None
    warmup_until_error: float
    warmup_max_steps: int

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(self.milestones))


@dataclass(frozen=True)
class TrainerSpec:
    """lightning.Trainer's arguments as the config gives them (Lightning-default keys left at
    null dropped); the resolved precision and cudnn.benchmark are in `Speed`."""

    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class WandbSpec:
    mode: str
    project: str | None
    entity: str | None
    group: str | None
    job_type: str
    tags: tuple[str, ...]
    dir: str | None
    log_model: bool
    init_timeout: float


@dataclass(frozen=True)
class RecordsSpec:
    """What a run writes and how often: metric windows, checkpoints, gradient norms, the
    divergence stop, resume, loggers and the callbacks of config group `callbacks`."""

    log_every: int
    checkpoint_every: int
    grad_every: int
    diverge_loss: float
    resume: bool
    loggers: tuple[str, ...]  # csv, wandb, tensorboard (metrics.csv is always written)
    wandb: WandbSpec
    callbacks: Mapping[str, Mapping[str, Any]]  # {name: {_target_: ..., ...}}


@dataclass(frozen=True)
class RunSpec:
    model: ModelSpec
    data: DataSpec
    optim: OptimSpec
    trainer: TrainerSpec
    speed: Speed | None  # None for a run read back (read_spec): not resolved on this machine
    records: RecordsSpec
    seed: int
    name: str  # the experiment
    output_root: str
    jobs_per_gpu: int | str
    config_hash: str  # what the run computes (rundir.config_hash)
    variant_digest: str  # the hash without seed and name: one W&B group per variant
    # the resolved config as plain values (W&B's run config, TensorBoard's hyperparameters) and
    # as Hydra composed it (.hydra/config.yaml, interpolations kept)
    config: Mapping[str, Any] = field(repr=False)
    config_yaml: str = field(repr=False)

    @property
    def label(self) -> str:
        """'plain-56 s0'."""
        return f"{self.model.name} s{self.seed}"


def read_spec(run_dir: Path) -> RunSpec:
    """A run folder's spec, from its .hydra/config.yaml (rundir.read_config), as it was: not
    validated again (the rules may have moved on) and no speed resolved (`speed` None)."""
    from degradation.rundir import read_config

    return build_spec(read_config(run_dir), speed=None)


def build_spec(cfg: DictConfig, speed: Speed | None) -> RunSpec:
    """The spec of a composed config as it is (preflight.parse validates first); `speed`: the
    resolved speed settings, or None for a run read back."""
    from degradation.rundir import config_hash

    plain = _plain(cfg)
    seedless = {k: v for k, v in plain.items() if k not in ("seed", "name")}
    return RunSpec(
        model=_model(plain),
        data=_data(plain["data"]),
        optim=OptimSpec(**plain["optim"]),
        trainer=TrainerSpec(MappingProxyType(trainer_arguments(plain["trainer"]))),
        speed=speed,
        records=_records(plain),
        seed=plain["seed"],
        name=plain["name"],
        output_root=plain["output_root"],
        jobs_per_gpu=plain["jobs_per_gpu"],
        config_hash=config_hash(cfg),
        variant_digest=config_hash(OmegaConf.create(seedless))[:6],
        config=MappingProxyType(plain),
        config_yaml=OmegaConf.to_yaml(cfg),
    )


def model_spec(cfg: DictConfig) -> ModelSpec:
    """The model part alone (preflight builds it on the meta device)."""
    return _model(_plain(cfg))


def data_spec(cfg: DictConfig) -> DataSpec:
    """The data part alone (preflight reads a dataset's files once per dataset)."""
    return _data(_plain(cfg.data))


def speed_request(config: Mapping[str, Any]) -> SpeedRequest:
    """What the config asks of speed.resolve_speed (a composed config or its plain values)."""
    trainer = config["trainer"]
    return SpeedRequest(
        accelerator=str(trainer["accelerator"]),
        precision=str(trainer["precision"]),
        compile=str(config["compile"]),  # a StrEnum's str() is its value
        channels_last=config["channels_last"],
        fused_sgd=config["fused_sgd"],
        benchmark=trainer["benchmark"],
        deterministic=trainer["deterministic"],
        max_steps=int(trainer["max_steps"]),
    )


def _plain(node: DictConfig) -> dict[str, Any]:
    """A config node resolved into plain Python values all the way down, Enums as their
    values (a frozen spec holds no OmegaConf node)."""
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


def _model(c: Mapping[str, Any]) -> ModelSpec:
    plain_net = c["skip"] == "none"
    return ModelSpec(
        depth=c["depth"],
        skip=c["skip"],
        shortcut=None if plain_net else c["shortcut"],
        family=c["family"],
        block=c["block"],
        width=c["width"],
        preact=c["preact"],
        zero_init_residual=c["zero_init_residual"] and not plain_net,
        head_init=c["head_init"],
    )


def _data(d: Mapping[str, Any]) -> DataSpec:
    augment = AugmentSpec(d["augment"], d["pad"], d["pad_value"], d["flip"])
    rest = {k: v for k, v in d.items() if k not in ("augment", "pad", "pad_value", "flip")}
    return DataSpec(**{**rest, "augment": augment, "synthetic": SyntheticSpec(**d["synthetic"])})


def _records(c: Mapping[str, Any]) -> RecordsSpec:
    wandb = dict(c["logger"]["wandb"])
    wandb["tags"] = tuple(wandb["tags"])
    callbacks = {name: MappingProxyType(dict(node)) for name, node in c["callbacks"].items()}
    return RecordsSpec(
        log_every=c["log_every"],
        checkpoint_every=c["checkpoint_every"],
        grad_every=c["grad_every"],
        diverge_loss=c["diverge_loss"],
        resume=c["resume"],
        loggers=tuple(logger_kinds(c["logger"]["kind"])),
        wandb=WandbSpec(**wandb),
        callbacks=MappingProxyType(callbacks),
    )
