"""`build_model`: check a configuration, then build the family's net (resnet.py for cifar and
imagenet, keras.py for keras); `model.arch` records what was built."""

from __future__ import annotations

import operator

from degradation.choices import check_choice
from degradation.errors import UserError
from degradation.vocabulary import Family, HeadInit, values

from .blocks import BLOCK_TYPES, BLOCKS
from .keras import SHORTCUT as KERAS_SHORTCUT
from .keras import build_keras
from .resnet import ResNet
from .shortcuts import SHORTCUTS
from .skips import SKIPS

FAMILIES = values(Family)  # keras: models/keras.py
HEAD_INITS = values(HeadInit)  # the classifier's init: ResNet._init_weights

# ImageNet depth -> (natural block, blocks per stage), He et al. 2015, Table 1.
IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

# CIFAR: example depths shown when a depth does not fit 6n+2 (basic) / 9n+2 (bottleneck).
CIFAR_DEPTH_EXAMPLES = {
    "basic": "20, 32, 44, 56, 110, 1202",
    "bottleneck": "29, 56, 110, 164, 1001",
}


def _positive_int(name: str, value: object) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        number = 0
    if number < 1:
        raise UserError(f"{name}={value!r} is not valid; it must be an integer >= 1")
    return number


def _resolve_depth(family: str, depth: int, block: str | None) -> tuple[str, tuple[int, ...]]:
    """(block name, blocks per stage) for a family and depth, or a one-line UserError."""
    if family == "imagenet":
        if depth not in IMAGENET_DEPTHS:
            choices = ", ".join(str(d) for d in IMAGENET_DEPTHS)
            raise UserError(
                f"depth={depth} is not valid for an imagenet net; choose one of: {choices}"
            )
        natural, stage_blocks = IMAGENET_DEPTHS[depth]
        if block is not None and block != natural:
            raise UserError(
                f"block={block!r} is not valid for an imagenet net of depth {depth}; "
                f"choose block={natural!r} (18/34 basic, 50/101/152 bottleneck)"
            )
        return natural, stage_blocks

    block = block or "basic"
    convs_per_block = 2 if block == "basic" else 3
    per_stage, rest = divmod(depth - 2, 3 * convs_per_block)
    if rest or per_stage < 1:
        rule = f"{3 * convs_per_block}n+2"
        raise UserError(
            f"depth={depth} is not valid for a cifar net with {block} blocks: depth "
            f"must be {rule} ({CIFAR_DEPTH_EXAMPLES[block]}, ...)"
        )
    return block, (per_stage,) * 3


def _family_shortcut(family: str) -> str:
    """The family's own shortcut, `shortcut=None`'s choice: the command line's default too
    (resolvers.family_shortcut; tests/test_keras.py checks they agree)."""
    return KERAS_SHORTCUT if family == "keras" else "zero_pad"


def build_model(
    depth: int = 20,
    skip: object = "add",
    shortcut: object = None,
    num_classes: int = 10,
    in_channels: int = 3,
    *,
    family: object = "cifar",
    block: object = None,
    width: int = 1,
    preact: bool = False,
    zero_init_residual: bool = False,
    head_init: object = "pytorch",
) -> ResNet:
    """Check a configuration and build the net; `model.arch` records what was built.

    The defaults are the command line's (`python -m degradation.run` trains this net).
    Choices may be strings or `str` Enum members. `block=None` picks the family's natural
    block, `shortcut=None` the family's own shortcut, as the command line does: zero_pad
    (option A), all_projection for keras. With skip='none' the shortcut and
    zero_init_residual do not apply and are ignored (a given shortcut name must still be a
    valid one; `arch` records None and False). family='keras' (models/keras.py) takes depth
    50 only and, with skip='add', shortcut='all_projection' only. `build_model(**model.arch)`
    builds the same net again (module.Classifier's checkpoints rely on it). Raises
    `UserError` (a ValueError) with a one-line message.
    """
    family = check_choice("family", family, FAMILIES)
    block = None if block is None else check_choice("block", block, BLOCKS)
    depth = _positive_int("depth", depth)
    if family != "keras":  # its one depth is checked with its other settings below
        block, stage_blocks = _resolve_depth(family, depth, block)
    skip = check_choice("skip", skip, SKIPS)
    if skip == "none":
        if shortcut is not None:
            check_choice("shortcut", shortcut, SHORTCUTS)
        shortcut = None
    else:
        shortcut = check_choice(
            "shortcut", _family_shortcut(family) if shortcut is None else shortcut, SHORTCUTS
        )
    width = _positive_int("width", width)
    num_classes = _positive_int("num_classes", num_classes)
    in_channels = _positive_int("in_channels", in_channels)
    # a plain net has no residual branch to start at zero: ignored, as its shortcut is
    preact, zero_init_residual = bool(preact), bool(zero_init_residual) and skip != "none"
    head_init = check_choice("head_init", head_init, HEAD_INITS)
    # what every family's net takes, in its constructor's order
    net_args = (skip, shortcut, num_classes, in_channels, width, preact, zero_init_residual)
    if family == "keras":
        if head_init != "pytorch":
            raise UserError(
                f"head_init={head_init!r} is not valid for a keras net: it keeps Keras's own "
                "init (glorot_uniform, bias 0) in every layer; choose head_init='pytorch' "
                "(the default), which leaves that init alone"
            )
        return build_keras(depth, block, *net_args)  # its arch: build_model's kwargs too
    model = ResNet(family, BLOCK_TYPES[block], stage_blocks, *net_args, head_init)
    model.arch = {
        "family": family,
        "depth": depth,
        "block": block,
        "skip": skip,
        "shortcut": shortcut,
        "width": width,
        "preact": preact,
        "zero_init_residual": zero_init_residual,
        "head_init": head_init,
        "num_classes": num_classes,
        "in_channels": in_channels,
    }
    return model


__all__ = ["FAMILIES", "HEAD_INITS", "build_model"]
