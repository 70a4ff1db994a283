"""Residual-net blocks: a `branch` of conv/BN/ReLU layers plus a `merge` from skips.py.

Post-activation (He et al. 2015, default):  conv-BN-ReLU, conv-BN, merge, ReLU.
Pre-activation  (He et al. 2016, preact):   BN-ReLU-conv, BN-ReLU-conv, merge (no ReLU after).
The shortcut always sees the block's raw input, so an identity shortcut is a true identity.

Branch layers are named conv1/bn1/relu1, ... in data order; `conv3x3_bn_layers` in
resnet.py relies on that order to find the BN that follows each 3x3 conv. ReLUs are not
in-place so a forward hook on a BN keeps the pre-ReLU response (the paper's Fig. 7).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from degradation import vocabulary

from .skips import carried_channels, make_skip

BLOCKS = vocabulary.values(vocabulary.Block)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 conv with padding 1 and no bias (BN follows or precedes every conv)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv with no bias."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


def _branch(convs: list[nn.Conv2d], preact: bool) -> nn.Sequential:
    """Interleave convs with BN and ReLU in post- or pre-activation order."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    last = len(convs)
    for i, conv in enumerate(convs, start=1):
        if preact:
            layers[f"bn{i}"] = nn.BatchNorm2d(conv.in_channels)
            layers[f"relu{i}"] = nn.ReLU()
            layers[f"conv{i}"] = conv
        else:
            layers[f"conv{i}"] = conv
            layers[f"bn{i}"] = nn.BatchNorm2d(conv.out_channels)
            if i < last:  # the last ReLU comes after the merge
                layers[f"relu{i}"] = nn.ReLU()
    return nn.Sequential(layers)


class Block(nn.Module):
    """Common forward for all blocks: out = act(merge(x, branch(x)))."""

    expansion = 1

    def __init__(
        self,
        branch: nn.Sequential,
        in_ch: int,
        out_ch: int,
        stride: int,
        skip: object,
        shortcut: object,
        preact: bool,
    ) -> None:
        super().__init__()
        self.preact, self.out_ch = preact, out_ch
        self.branch = branch
        self.merge = make_skip(skip, shortcut, in_ch, out_ch, stride)
        self.act = nn.Identity() if preact else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.merge(x, self.branch(x)))

    def zero_init_last(self) -> None:
        """Make the branch output zero at init on the channels the shortcut carries, so a
        residual block starts as its shortcut.

        Post-act: last BN gamma = 0 (torchvision/timm). Pre-act: the branch ends with a conv,
        and a zero gamma there would sit before a ReLU whose gradient at 0 is 0 (stuck for
        good), so zero the last conv's weight instead, as timm does for pre-act blocks.
        Option A's zero-filled channels keep their init: with gamma 0 there the block's output
        would be ReLU(0 + 0) on them, whose gradient is 0, and they would stay dead for good
        (measured: 48 of the 64 last-stage channels of a ResNet-56 never moved).
        """
        carried = carried_channels(self.merge, self.out_ch)
        with torch.no_grad():
            if self.preact:
                convs = [m for m in self.branch if isinstance(m, nn.Conv2d)]
                convs[-1].weight[carried] = 0.0
            else:
                norms = [m for m in self.branch if isinstance(m, nn.BatchNorm2d)]
                norms[-1].weight[carried] = 0.0


class BasicBlock(Block):
    """Two 3x3 convs; the first carries the stride. Output channels = planes."""

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        skip: object = "add",
        shortcut: object = "zero_pad",
        preact: bool = False,
    ) -> None:
        out_ch = planes * self.expansion
        convs = [conv3x3(in_ch, planes, stride), conv3x3(planes, out_ch)]
        super().__init__(_branch(convs, preact), in_ch, out_ch, stride, skip, shortcut, preact)


class Bottleneck(Block):
    """1x1 reduce, 3x3 (carries the stride, as torchvision's "v1.5"), 1x1 expand x4."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        planes: int,
        stride: int = 1,
        skip: object = "add",
        shortcut: object = "zero_pad",
        preact: bool = False,
    ) -> None:
        out_ch = planes * self.expansion
        convs = [conv1x1(in_ch, planes), conv3x3(planes, planes, stride), conv1x1(planes, out_ch)]
        super().__init__(_branch(convs, preact), in_ch, out_ch, stride, skip, shortcut, preact)


BLOCK_TYPES: dict[str, type[Block]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
