"""Several nets of one shape stepped as one: `pack_models` fuses K members channel-wise.

Small CIFAR nets leave a GPU idle at batch 128: the step is bound by kernel launches, not
arithmetic (H100 figures in docs/benchmarks.md). Packing K members into one module keeps the
launch count of one net while each kernel does K nets' work:

    conv  Cin -> Cout        becomes  conv K·Cin -> K·Cout with groups = K (member k: group k)
    BatchNorm(C)             becomes  BatchNorm(K·C): per channel, so per member, exactly
    Linear(in, out)          becomes  K independent matmuls (`PackedLinear`)
    zero-pad shortcut        pads each member's channels on its own (`PackedZeroPad`)

Member k's channels are the k-th slice of every packed tensor, so no member sees another's
activations, and with a loss that is the *sum* of the members' mean losses (`member_loss`)
each member's gradients, and so its SGD update (momentum and weight decay are per element),
are those of training it alone. Members may differ in seed (initial weights) and in skip,
plain (`none`) against residual (`add`), when the residual shortcut has no parameters (zero_pad
or identity): a per-channel mask adds the shortcut for residual members only. Concat skips and
members of different depth or width cannot be packed.

Input: a batch of K·B images, member k training on images k·B .. (k+1)·B-1 (or a K×B×C×H×W
tensor); output: K×B×classes logits.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from degradation.errors import UserError

from .shortcuts import ProjectionShortcut, ZeroPadShortcut
from .skips import AddSkip, ConcatSkip, NoSkip

# Modules with neither parameters nor buffers whose work is per channel (or per tensor):
# packed as they are.
STATELESS = (nn.ReLU, nn.Identity, nn.Flatten, nn.AdaptiveAvgPool2d, nn.MaxPool2d)


class PackedLinear(nn.Module):
    """K independent Linear layers on a (B, K·in) input; returns (B, K, out)."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.members = len(layers)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unflatten(1, (self.members, -1))  # (B, K, in)
        return torch.einsum("bki,koi->bko", x, self.weight) + self.bias


class PackedZeroPad(nn.Module):
    """Option A shortcut for K members: subsample, then zero-pad each member's channels."""

    def __init__(self, shortcut: ZeroPadShortcut, members: int) -> None:
        super().__init__()
        self.members, self.stride = members, shortcut.stride
        self.pad = (0, 0, 0, 0, shortcut.pad_before, shortcut.pad_after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        padded = F.pad(x.unflatten(1, (self.members, -1)), self.pad)  # (B, K, C', H, W)
        return padded.flatten(1, 2)


class PackedAddSkip(nn.Module):
    """branch + shortcut(x) for the residual members' channels, branch alone for the plain."""

    def __init__(self, shortcut: nn.Module | None, residual: Sequence[bool]) -> None:
        super().__init__()
        self.shortcut = shortcut
        # 1-D: .to(memory_format=channels_last) rejects 5-D tensors
        self.register_buffer("residual", torch.tensor(list(residual)), persistent=False)

    def forward(self, x: torch.Tensor, branch_out: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        k = len(self.residual)
        added = (branch_out + identity).unflatten(1, (k, -1))  # views: (B, K, C, H, W)
        mask = self.residual.view(1, k, 1, 1, 1)
        # where, not a multiply: a plain member's output is exactly its branch
        return torch.where(mask, added, branch_out.unflatten(1, (k, -1))).flatten(1, 2)


class PackedNet(nn.Module):
    """K members fused into one module (see the module docstring)."""

    def __init__(self, net: nn.Module, archs: Sequence[dict | None]) -> None:
        super().__init__()
        self.net, self.members = net, len(archs)
        self.arch = {"members": list(archs)}  # each member's `arch` (build_model's record)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # K·B images, member-major
            x = x.unflatten(0, (self.members, -1))
        k, b = x.shape[:2]
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        x = x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:])  # (B, K·C, H, W)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x).transpose(0, 1)  # (K, B, classes)


def member_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy whose gradient is each member's own: the mean over a batch for one net
    (B×classes logits), the sum over members of their means for K×B×classes logits."""
    if logits.dim() == 2:
        return F.cross_entropy(logits, labels)
    labels = labels.view(logits.shape[:2])
    total = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
    return total / logits.shape[1]


def pack_models(models: Sequence[nn.Module]) -> PackedNet:
    """Fuse nets of one architecture (e.g. `build_model` with different seeds, or plain and
    residual twins with zero_pad shortcuts) into a `PackedNet` holding copies of their weights,
    running statistics and train/eval modes. Raises UserError where they cannot be packed."""
    if not models:
        raise UserError("pack_models needs at least one model")
    net = _pack(list(models), "model")
    return PackedNet(net, [getattr(m, "arch", None) for m in models])


def _pack(mods: list[nn.Module], where: str) -> nn.Module:
    first, k = mods[0], len(mods)
    if isinstance(first, (NoSkip, AddSkip)) and all(isinstance(m, (NoSkip, AddSkip)) for m in mods):
        return _pack_merge(mods, where)
    kinds = {type(m) for m in mods}
    if len(kinds) > 1:
        names = ", ".join(sorted(t.__name__ for t in kinds))
        raise UserError(f"cannot pack {where}: the members differ there ({names})")
    if isinstance(first, ConcatSkip):
        raise UserError("cannot pack skip='concat' nets; pack skip none/add")
    if isinstance(first, nn.Conv2d):
        return _pack_conv(mods, where)
    if isinstance(first, nn.BatchNorm2d):
        return _pack_norm(mods)
    if isinstance(first, nn.Linear):
        return PackedLinear(mods)
    if isinstance(first, ZeroPadShortcut):
        return PackedZeroPad(first, k)
    if isinstance(first, STATELESS):
        return copy.deepcopy(first)
    if first._parameters or first._buffers:
        raise UserError(f"cannot pack {where}: {type(first).__name__} holds its own tensors")
    # a container (ResNet, Sequential, block, ...): same class, its children packed one by one
    packed = copy.copy(first)  # its own hook and attribute dicts, and no children yet
    packed.__dict__ = {k: v.copy() if isinstance(v, dict) else v for k, v in vars(first).items()}
    packed._modules.clear()
    names = list(first._modules)
    if any(list(m._modules) != names for m in mods):
        raise UserError(f"cannot pack {where}: the members' layers differ (depth or block?)")
    for name in names:
        packed._modules[name] = _pack([m._modules[name] for m in mods], f"{where}.{name}")
    return packed


def _pack_conv(convs: list[nn.Conv2d], where: str) -> nn.Conv2d:
    c = convs[0]
    if any(m.weight.shape != c.weight.shape for m in convs):
        raise UserError(f"cannot pack {where}: the members' conv shapes differ")
    k = len(convs)
    packed = nn.Conv2d(
        k * c.in_channels,
        k * c.out_channels,
        c.kernel_size,
        stride=c.stride,
        padding=c.padding,
        dilation=c.dilation,
        groups=k * c.groups,
        bias=c.bias is not None,
    ).to(c.weight.device, c.weight.dtype)
    with torch.no_grad():
        packed.weight.copy_(torch.cat([m.weight for m in convs]))
        if c.bias is not None:
            packed.bias.copy_(torch.cat([m.bias for m in convs]))
    packed.train(c.training)
    return packed


def _pack_norm(norms: list[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    n = norms[0]
    packed = nn.BatchNorm2d(len(norms) * n.num_features, eps=n.eps, momentum=n.momentum)
    packed.to(n.weight.device, n.weight.dtype)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(packed, name).copy_(torch.cat([getattr(m, name) for m in norms]))
        packed.num_batches_tracked.copy_(n.num_batches_tracked)
    packed.train(n.training)
    return packed


def _pack_merge(merges: list[nn.Module], where: str) -> nn.Module:
    residual = [isinstance(m, AddSkip) for m in merges]
    if not any(residual):
        return NoSkip()
    shortcuts = [m.shortcut for m in merges if isinstance(m, AddSkip)]
    if any(isinstance(s, ProjectionShortcut) for s in shortcuts) and not all(residual):
        raise UserError(
            f"cannot pack plain and residual members at {where}: a projection shortcut has "
            "weights; pack them with shortcut=zero_pad, or pack plain and residual apart"
        )
    if all(residual):
        shortcut = None if shortcuts[0] is None else _pack(shortcuts, f"{where}.shortcut")
        return AddSkip(shortcut)
    # plain members borrow a residual member's parameter-free shortcut, masked out
    template = shortcuts[0]
    shortcut = None if template is None else PackedZeroPad(template, len(merges))
    return PackedAddSkip(shortcut, residual)
