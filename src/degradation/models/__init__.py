"""Model zoo: plain, residual and concatenation-skip conv nets (He et al. 2015, Sec. 4).

Public API
----------
build_model(depth=56, skip="add", shortcut="zero_pad", num_classes=10, in_channels=3, *,
            family="cifar", block=None, width=1, preact=False, zero_init_residual=False,
            head_init="pytorch")
    Check a configuration and build a `ResNet`; bad values raise `UserError` (a ValueError)
    with a one-line message. `model.arch` is a plain dict describing what was built.
count_parameters(model) -> int
count_flops(model, input_shape=(3, 32, 32)) -> int      forward FLOPs per image
conv3x3_bn_layers(model) -> list[(name, BatchNorm2d)]   BNs after 3x3 convs (Fig. 7)
layer_responses(model, images) -> {"layers", "std", ...}  std of each 3x3 layer's response
gradient_norms(model) -> {column: value}  RMS gradient and relative update of each 3x3 conv
pack_models(models) -> PackedNet     K nets of one shape fused into one step (packed.py)
member_loss(logits, labels)          a packed step's loss: each member's gradient is its own

Valid choices: SKIPS, SHORTCUTS, BLOCKS, FAMILIES. Modules: shortcuts.py (options A/B/C),
skips.py (none/add/concat merges), blocks.py (basic/bottleneck, post- or pre-activation),
build.py (build_model), resnet.py (the net), measure.py (counting, layer lookup, responses and
gradient norms), packed.py (several members stepped together), keras.py (family='keras': a
Keras tutorial's "ResNet-50 for CIFAR-10", depth 50, and its plain twin).
"""

from .blocks import BLOCKS, BasicBlock, Block, Bottleneck
from .build import FAMILIES, build_model
from .keras import KerasResNet50
from .measure import (
    GradLayout,
    conv3x3_bn_layers,
    conv3x3_layers,
    count_flops,
    count_parameters,
    gradient_norms,
    layer_response_std,
    layer_responses,
)
from .packed import PackedNet, member_loss, pack_models
from .resnet import ResNet
from .shortcuts import SHORTCUTS, ProjectionShortcut, ZeroPadShortcut, make_shortcut
from .skips import SKIPS, AddSkip, ConcatSkip, NoSkip, make_skip

__all__ = [
    "BLOCKS",
    "GradLayout",
    "FAMILIES",
    "SHORTCUTS",
    "SKIPS",
    "AddSkip",
    "BasicBlock",
    "Block",
    "Bottleneck",
    "ConcatSkip",
    "KerasResNet50",
    "NoSkip",
    "PackedNet",
    "ProjectionShortcut",
    "ResNet",
    "ZeroPadShortcut",
    "build_model",
    "conv3x3_bn_layers",
    "conv3x3_layers",
    "count_flops",
    "count_parameters",
    "gradient_norms",
    "layer_response_std",
    "layer_responses",
    "make_shortcut",
    "make_skip",
    "member_loss",
    "pack_models",
]
