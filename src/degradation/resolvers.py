"""The OmegaConf resolvers a run's config uses, so that every reader can resolve it.

The package registers them when it is imported (`degradation/__init__.py`): the schema's own
default for `shortcut` is one (`${family_shortcut:${family}}`), and a saved config may use
`${warmup_lr_from_depth:...}`.

`${warmup_lr_from_depth:${depth},110,0.01}` (conf/experiment/paper_cifar10.yaml): the paper warms
up ResNet-110 alone, and a Hydra sweep cannot set a value for one depth only. `degradation.run`
adds the launch-time resolvers (folder names, GPU slots).
"""

from __future__ import annotations

from omegaconf import OmegaConf

from degradation import vocabulary


def warmup_lr_from_depth(depth: int, min_depth: int, lr: float) -> float | None:
    """The warm-up lr for nets at least `min_depth` deep, None (no warm-up) for the others."""
    return lr if depth >= min_depth else None


def family_shortcut(family) -> str:
    """`shortcut`'s default: a keras net (models/keras.py) has a projection on every block
    and nothing else; the paper's nets default to option A. Resolved, a cifar run's config
    (and its config_hash) is what it was before keras existed."""
    return vocabulary.family_shortcut(getattr(family, "value", family))


RECIPE_RESOLVERS = {
    "warmup_lr_from_depth": warmup_lr_from_depth,
    "family_shortcut": family_shortcut,
}


def register_recipe_resolvers() -> None:
    for name, resolver in RECIPE_RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)
