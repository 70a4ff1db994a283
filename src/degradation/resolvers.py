"""The OmegaConf resolvers a run's saved config uses, so that every reader can resolve it.

`${warmup_lr_from_depth:${depth},110,0.01}` (conf/experiment/paper_cifar10.yaml): the paper warms
up ResNet-110 alone, and a Hydra sweep cannot set a value for one depth only. `degradation.run`
registers these with the launch-time resolvers (folder names, GPU slots); `rundir.read_config`
registers them before it reads a saved `.hydra/config.yaml`.
"""

from __future__ import annotations

from omegaconf import OmegaConf


def warmup_lr_from_depth(depth: int, min_depth: int, lr: float) -> float | None:
    """The warm-up lr for nets at least `min_depth` deep, None (no warm-up) for the others."""
    return lr if depth >= min_depth else None


RECIPE_RESOLVERS = {"warmup_lr_from_depth": warmup_lr_from_depth}


def register_recipe_resolvers() -> None:
    for name, resolver in RECIPE_RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)
