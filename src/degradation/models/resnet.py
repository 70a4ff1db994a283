"""The network class of the paper's nets, `ResNet` (build.py checks a configuration and
builds one).

A plain net is a `ResNet` with skip='none': same stem, stages, blocks and head, only the
blocks' merge differs, so plain and residual twins are directly comparable.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from .blocks import Block, conv3x3

# Base widths of the stages before the width multiplier (planes; a bottleneck expands x4).
STAGE_PLANES = {"cifar": (16, 32, 64), "imagenet": (64, 128, 256, 512)}
STEM_CHANNELS = {"cifar": 16, "imagenet": 64}


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


__all__ = ["ResNet"]
