"""Shortcut paths of a residual block: what the block's input becomes before the merge.

He et al. (2015), Sec. 3.3, three options for a shortcut whose shapes change:
  A  `zero_pad`        subsample + zero channels, no parameters (paper's CIFAR choice);
  B  `projection`      1x1 conv + BN where shapes change, identity elsewhere;
  C  `all_projection`  1x1 conv + BN on every shortcut.
`make_shortcut` returns None for an identity shortcut, so callers add no module at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from degradation.choices import check_choice
from degradation.vocabulary import Shortcut, values

SHORTCUTS = values(Shortcut)


class ZeroPadShortcut(nn.Module):
    """Option A: take every `stride`-th pixel, then zero-fill the new channels.

    Half of the new zero channels go before the old ones and half after (16 -> 8 + 16 + 8),
    as in the widely used reimplementations, so published option-A weights compute the same
    function. With an odd count the extra zero channel goes after.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"zero padding cannot shrink channels: {in_ch} -> {out_ch}")
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.pad_before = (out_ch - in_ch) // 2
        self.pad_after = out_ch - in_ch - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # F.pad lists dims from the last one back: (W left, W right, H top, H bottom, C, C).
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        return f"{self.in_ch}, {self.out_ch}, stride={self.stride}"


class ProjectionShortcut(nn.Module):
    """Options B and C: a strided 1x1 conv (no bias) followed by BatchNorm."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


SHORTCUT_TYPES = (ZeroPadShortcut, ProjectionShortcut)


def make_shortcut(mode: object, in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    """The shortcut module for one block, or None where the shortcut is the identity."""
    mode = check_choice("shortcut", mode, SHORTCUTS)
    if mode == "all_projection":
        return ProjectionShortcut(in_ch, out_ch, stride)
    if in_ch == out_ch and stride == 1:
        return None
    if mode == "zero_pad":
        return ZeroPadShortcut(in_ch, out_ch, stride)
    return ProjectionShortcut(in_ch, out_ch, stride)
