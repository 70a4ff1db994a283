"""`family=keras`: the Keras "ResNet-50 for CIFAR-10" of a popular tutorial, layer for layer.

Source: Analytics Vidhya, "Understanding ResNet and analyzing various models on the CIFAR-10
dataset" (2021), https://www.analyticsvidhya.com/blog/2021/06/understanding-resnet-and-analyzing-various-models-on-the-cifar-10-dataset/

    Conv2D(64, 7, strides=2, padding="valid")          no BN, no ReLU after it
    MaxPool2D(3, strides=2, padding="same")            TF "same": extra padding bottom/right
    3/4/6/3 blocks of [64, 256] [128, 512] [256, 1024] [512, 2048], none strided:
        branch  1x1 f0 -> BN -> ReLU -> 3x3 f0 -> BN -> ReLU -> 1x1 f1 -> BN -> ReLU
        z2      1x1 f1 -> BN                      (a projection on every block)
        out     ReLU(branch + z2)
    GlobalAveragePooling2D -> Dense(10)                (its softmax is in our cross-entropy)

How it differs from the paper's nets (He et al. 2015): every conv and the Dense layer have a
bias (Keras's use_bias=True default); the branch ends with a ReLU *before* the addition; the
shortcut is a projection on every block (the paper's option C, here with a bias); nothing is
strided after the stem, so all 16 blocks work at the max-pool's resolution (7x7 for 32x32).
The plain twin (skip=none) is the same net without z2 and without the addition.

Keras's layer defaults are kept too, as they are part of what the tutorial trains: kernels
glorot_uniform, biases zero; BatchNormalization(momentum=0.99, epsilon=1e-3), i.e. torch's
momentum 0.01 (torch weighs the new batch, Keras the old average). Documented at
https://keras.io/api/layers/ (Conv2D, Dense, BatchNormalization).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from degradation import vocabulary
from degradation.errors import UserError

from .blocks import Block
from .resnet import ResNet
from .shortcuts import ProjectionShortcut
from .skips import AddSkip

DEPTH = 50
STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_FILTERS = ((64, 256), (128, 512), (256, 1024), (512, 2048))
STEM_FILTERS = 64
SKIPS = (vocabulary.Skip.none.value, vocabulary.Skip.add.value)  # no concat twin
SHORTCUT = vocabulary.KERAS_SHORTCUT.value  # its only shortcut: a 1x1 conv + BN on every block


def keras_batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNormalization() with Keras's defaults: epsilon 1e-3, moving average 0.99."""
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class SamePadMaxPool2d(nn.Module):
    """MaxPool2D(padding="same") as TensorFlow computes it.

    TF pads each spatial dim by max((ceil(n / s) - 1) * s + k - n, 0) in total, the smaller
    half before and the larger after (https://www.tensorflow.org/api_docs/python/tf/nn,
    "Notes on padding"), and padded cells never win the max. torch's MaxPool2d pads
    symmetrically only, so the padding is done here with -inf and the pool itself pads none.
    """

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def _pads(self, size: int) -> tuple[int, int]:
        out = -(-size // self.stride)  # ceil
        total = max((out - 1) * self.stride + self.kernel_size - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._pads(x.shape[-2])
        left, right = self._pads(x.shape[-1])
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding='same'"


class KerasProjection(ProjectionShortcut):
    """z2 of the tutorial's block: Conv2D 1x1 (with bias) + BatchNormalization.

    A ProjectionShortcut, so the analyses that skip shortcut paths (Fig. 7 layers, gradient
    flow's main path) treat it as one; only its conv's bias and its BN settings differ.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(in_ch, out_ch)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1)
        self.bn = keras_batch_norm(out_ch)


def _keras_branch(in_ch: int, filters: tuple[int, int]) -> nn.Sequential:
    """conv-BN-ReLU three times (1x1, 3x3 "same", 1x1); named conv1/bn1/relu1... in order."""
    reduce, expand = filters
    convs = [
        nn.Conv2d(in_ch, reduce, kernel_size=1),
        nn.Conv2d(reduce, reduce, kernel_size=3, padding=1),  # stride 1: "same" is symmetric
        nn.Conv2d(reduce, expand, kernel_size=1),
    ]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, conv in enumerate(convs, start=1):
        layers[f"conv{i}"] = conv
        layers[f"bn{i}"] = keras_batch_norm(conv.out_channels)
        layers[f"relu{i}"] = nn.ReLU()  # the third one too: the tutorial adds after a ReLU
    return nn.Sequential(layers)


class KerasBottleneck(Block):
    """The tutorial's `residual_block`: out = ReLU(branch(x) + z2(x)); plain: ReLU(branch(x))."""

    expansion = 4

    def __init__(self, in_ch: int, filters: tuple[int, int], skip: str) -> None:
        branch = _keras_branch(in_ch, filters)
        super().__init__(branch, in_ch, filters[1], 1, "none", None, preact=False)
        if skip == "add":  # Block builds the paper's shortcuts; this one is the tutorial's z2
            self.merge = AddSkip(KerasProjection(in_ch, filters[1]))


class KerasResNet50(ResNet):
    """stem -> stages -> head, with ResNet's attribute layout and forward (`stages[i][j]` is
    block j of stage i, `final_norm` an Identity), so lesion, Fig. 7 and gradient analyses
    work on it unchanged. ResNet.__init__ builds the paper's layers, so it is not called."""

    def __init__(self, skip: str, num_classes: int, in_channels: int) -> None:
        nn.Module.__init__(self)
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_channels, STEM_FILTERS, kernel_size=7, stride=2),
                pool=SamePadMaxPool2d(kernel_size=3, stride=2),
            )
        )
        self.stages = nn.ModuleList()
        in_ch = STEM_FILTERS
        for blocks, filters in zip(STAGE_BLOCKS, STAGE_FILTERS, strict=True):
            stage = []
            for _ in range(blocks):
                stage.append(KerasBottleneck(in_ch, filters, skip))
                in_ch = filters[1]
            self.stages.append(nn.Sequential(*stage))
        self.final_norm = nn.Identity()
        self.head = nn.Sequential(
            OrderedDict(
                pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(in_ch, num_classes)
            )
        )
        self._init_keras()

    def _init_keras(self) -> None:
        # Keras defaults: glorot_uniform kernels (fans include the receptive field, as torch's
        # xavier_uniform_), zero biases; BN gamma 1, beta 0 is torch's own default.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)


def check_keras(
    depth: int,
    block: str | None,
    skip: str,
    shortcut: str | None,
    width: int,
    preact: bool,
    zero_init_residual: bool,
) -> None:
    """One-line UserError for a setting the tutorial's net does not have."""
    if depth != DEPTH:
        raise UserError(f"depth={depth} is not valid for a keras net; choose depth={DEPTH}")
    if block not in (None, "bottleneck"):
        raise UserError(f"block={block!r} is not valid for a keras net; choose block='bottleneck'")
    if skip not in SKIPS:
        raise UserError(
            f"skip={skip!r} is not valid for a keras net; choose one of: {', '.join(SKIPS)}"
        )
    if skip == "add" and shortcut != SHORTCUT:
        raise UserError(
            f"shortcut={shortcut!r} is not valid for a keras net (a 1x1 conv + BN projection on "
            f"every block); choose shortcut={SHORTCUT!r}"
        )
    if width != 1:
        raise UserError(f"width={width} is not valid for a keras net; choose width=1")
    if preact:
        raise UserError("preact=True is not valid for a keras net; choose preact=False")
    if zero_init_residual:
        raise UserError(
            "zero_init_residual=True is not valid for a keras net: its branch ends with a ReLU, "
            "so a zero last BN would never move; choose zero_init_residual=False"
        )


def build_keras(
    depth: int,
    block: str | None,
    skip: str,
    shortcut: str | None,
    num_classes: int,
    in_channels: int,
    width: int,
    preact: bool,
    zero_init_residual: bool,
) -> KerasResNet50:
    """build_model's family=keras case (choices already normalised); sets `model.arch`."""
    check_keras(depth, block, skip, shortcut, width, preact, zero_init_residual)
    model = KerasResNet50(skip, num_classes, in_channels)
    model.arch = {
        "family": "keras",
        "depth": DEPTH,
        "block": "bottleneck",
        "skip": skip,
        "shortcut": shortcut,
        "width": 1,
        "preact": False,
        "zero_init_residual": False,
        "head_init": "pytorch",
        "num_classes": num_classes,
        "in_channels": in_channels,
    }
    return model
