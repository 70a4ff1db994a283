"""The one network class, `ResNet`, and `build_model`, which checks a configuration and builds it.

A plain net is a `ResNet` with skip='none': same stem, stages, blocks and head, only the
blocks' merge differs, so plain and residual twins are directly comparable.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from degradation.choices import check_choice
from degradation.errors import UserError

from .blocks import BLOCK_TYPES, BLOCKS, Block, conv3x3
from .shortcuts import SHORTCUTS
from .skips import SKIPS

FAMILIES = ("cifar", "imagenet")
HEAD_INITS = ("pytorch", "he_normal")  # see ResNet._init_weights

# Base widths of the stages before the width multiplier (planes; a bottleneck expands x4).
STAGE_PLANES = {"cifar": (16, 32, 64), "imagenet": (64, 128, 256, 512)}
STEM_CHANNELS = {"cifar": 16, "imagenet": 64}

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


class ResNet(nn.Module):
    """stem -> stages (ModuleList of Sequentials of blocks) -> final_norm -> head.

    `stages[i][j]` is block j of stage i, so a lesion study can delete or replace a block by
    index. `final_norm` is BN + ReLU for pre-activation nets (their blocks end with a bare
    conv) and an Identity otherwise.
    """

    def __init__(
        self,
        family: str,
        block: type[Block],
        stage_blocks: Sequence[int],
        skip: str = "add",
        shortcut: str | None = "zero_pad",
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 1,
        preact: bool = False,
        zero_init_residual: bool = False,
        head_init: str = "pytorch",
    ) -> None:
        super().__init__()
        stem_ch = STEM_CHANNELS[family] * width
        self.stem = self._make_stem(family, in_channels, stem_ch, preact)

        self.stages = nn.ModuleList()
        in_ch = stem_ch
        for i, (planes, blocks) in enumerate(zip(STAGE_PLANES[family], stage_blocks, strict=True)):
            stride = 1 if i == 0 else 2
            stage = self._make_stage(
                block, in_ch, planes * width, blocks, stride, skip, shortcut, preact
            )
            self.stages.append(stage)
            in_ch = planes * width * block.expansion

        self.final_norm = (
            nn.Sequential(OrderedDict(bn=nn.BatchNorm2d(in_ch), relu=nn.ReLU()))
            if preact
            else nn.Identity()
        )
        self.head = nn.Sequential(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(in_ch, num_classes)
            )
        )
        self._init_weights(zero_init_residual, head_init)

    @staticmethod
    def _make_stem(family: str, in_ch: int, out_ch: int, preact: bool) -> nn.Sequential:
        # Pre-act nets leave BN-ReLU to the first block, as in He et al. 2016 and timm.
        if family == "cifar":
            layers: OrderedDict[str, nn.Module] = OrderedDict(conv=conv3x3(in_ch, out_ch))
        else:
            layers = OrderedDict(
                conv=nn.Conv2d(in_ch, out_ch, kernel_size=7, stride=2, padding=3, bias=False)
            )
        if not preact:
            layers["bn"] = nn.BatchNorm2d(out_ch)
            layers["relu"] = nn.ReLU()
        if family == "imagenet":
            layers["pool"] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        return nn.Sequential(layers)

    @staticmethod
    def _make_stage(
        block: type[Block],
        in_ch: int,
        planes: int,
        blocks: int,
        stride: int,
        skip: str,
        shortcut: str | None,
        preact: bool,
    ) -> nn.Sequential:
        """`blocks` blocks; only the first changes stride and width."""
        layers = []
        for j in range(blocks):
            layers.append(block(in_ch, planes, stride if j == 0 else 1, skip, shortcut, preact))
            in_ch = planes * block.expansion
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool, head_init: str = "pytorch") -> None:
        """Convs: He normal, fan-in (He et al. 2015, "Delving Deep into Rectifiers", the
        forward case: keeps the activation variance through ReLU layers); BN: weight 1, bias 0.

        The classifier, by `head_init` (docs/recipe.md):
          pytorch    nn.Linear's own default, left as constructed: kaiming_uniform_ with
                     a=sqrt(5), i.e. weights ~ U(±1/sqrt(fan_in)), bias ~ U(±1/sqrt(fan_in));
                     torchvision's resnet.py keeps it too (its init loop skips nn.Linear)
          he_normal  weights ~ N(0, 2/fan_in) as the convs (its input is a pooled ReLU
                     output), bias 0
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if head_init == "he_normal":  # after the convs: "pytorch" draws nothing more
            nn.init.kaiming_normal_(self.head.fc.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.head.fc.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Block):
                    m.zero_init_last()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.final_norm(x))


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


def build_model(
    depth: int = 56,
    skip: object = "add",
    shortcut: object = "zero_pad",
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

    Choices may be strings or `str` Enum members. `block=None` picks the family's natural
    block. With skip='none' the shortcut does not apply and is ignored (a given name must
    still be a valid one). Raises `UserError` (a ValueError) with a one-line message.
    """
    family = check_choice("family", family, FAMILIES)
    block = None if block is None else check_choice("block", block, BLOCKS)
    depth = _positive_int("depth", depth)
    block, stage_blocks = _resolve_depth(family, depth, block)
    skip = check_choice("skip", skip, SKIPS)
    if skip == "none":
        if shortcut is not None:
            check_choice("shortcut", shortcut, SHORTCUTS)
        shortcut = None
    else:
        if shortcut is None:
            raise UserError(
                f"shortcut=None is not valid with skip={skip!r}; choose one of: "
                f"{', '.join(SHORTCUTS)}"
            )
        shortcut = check_choice("shortcut", shortcut, SHORTCUTS)
    width = _positive_int("width", width)
    num_classes = _positive_int("num_classes", num_classes)
    in_channels = _positive_int("in_channels", in_channels)
    preact, zero_init_residual = bool(preact), bool(zero_init_residual)
    head_init = check_choice("head_init", head_init, HEAD_INITS)
    if zero_init_residual and skip == "none":
        raise UserError(
            "zero_init_residual=True with skip='none' is not valid: a plain net would "
            "start with dead blocks; choose skip one of: add, concat, or "
            "zero_init_residual=False"
        )

    model = ResNet(
        family,
        BLOCK_TYPES[block],
        stage_blocks,
        skip,
        shortcut,
        num_classes,
        in_channels,
        width,
        preact,
        zero_init_residual,
        head_init,
    )
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
    }
    return model


__all__ = ["FAMILIES", "HEAD_INITS", "ResNet", "build_model"]
