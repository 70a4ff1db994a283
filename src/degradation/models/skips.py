"""Skip connections: how a block merges its branch output with its (shortcut) input.

`merge(x, branch_out)` is the last step of every block before the final ReLU (post-act):
  none    plain net: the branch output alone; holds no shortcut module at all;
  add     ResNet: branch + shortcut(x);
  concat  DenseNet-like: cat([shortcut(x), branch]) -> 1x1 conv 2C->C -> BN, so the block
          keeps its width and the next block sees the same shapes as in the other variants.
"""

from __future__ import annotations

import torch
from torch import nn

from degradation.choices import check_choice
from degradation.vocabulary import Skip, values

from .shortcuts import ZeroPadShortcut, make_shortcut

SKIPS = values(Skip)


def carried_channels(merge: nn.Module, out_ch: int) -> slice:
    """The output channels a block's shortcut carries: all of them, except under option A
    (zero_pad), whose new channels are zero on the shortcut and carry only the branch."""
    shortcut = getattr(merge, "shortcut", None)
    if isinstance(shortcut, ZeroPadShortcut):
        return slice(shortcut.pad_before, shortcut.pad_before + shortcut.in_ch)
    return slice(0, out_ch)


class NoSkip(nn.Module):
    """Plain net: the block's output is its branch output."""

    def forward(self, x: torch.Tensor, branch_out: torch.Tensor) -> torch.Tensor:
        return branch_out


class AddSkip(nn.Module):
    """Residual addition; `shortcut=None` is the identity."""

    def __init__(self, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor, branch_out: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return branch_out + identity


class ConcatSkip(nn.Module):
    """Concatenate shortcut and branch along channels, then fuse 2C -> C with a 1x1 conv + BN."""

    def __init__(self, shortcut: nn.Module | None, channels: int) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.fuse = nn.Conv2d(2 * channels, channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, branch_out: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.bn(self.fuse(torch.cat([identity, branch_out], dim=1)))


def make_skip(
    skip: object, shortcut_mode: object, in_ch: int, out_ch: int, stride: int
) -> nn.Module:
    """The merge module of one block; `shortcut_mode` is ignored for skip='none'."""
    skip = check_choice("skip", skip, SKIPS)
    if skip == "none":
        return NoSkip()
    shortcut = make_shortcut(shortcut_mode, in_ch, out_ch, stride)
    if skip == "add":
        return AddSkip(shortcut)
    return ConcatSkip(shortcut, out_ch)
