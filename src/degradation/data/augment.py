"""Batched augmentation and normalisation, on whatever device the batch is on.

The paper's augmentation: pad 4 pixels, take a random crop of the original size, flip
horizontally with probability 1/2. Done for the whole batch at once with index arithmetic,
so it runs on the GPU without per-sample Python work.

What the padding holds is `data.pad_value` (docs/recipe.md): `zero` pads the raw pixels with 0
(black) and normalises afterwards, so the pad becomes -mean/std; `mean` normalises first and
pads with 0, which is then the mean, as fb.resnet.torch does (datasets/cifar10.lua normalises
with ColorNormalize before RandomCrop(32, 4); datasets/transforms.lua's RandomCrop fills the
padding with zeros).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(images: torch.Tensor, pad: int, flip: bool) -> torch.Tensor:
    """images: B×C×H×W float; padded with 0 (raw pixels: black; normalised: the mean)."""
    b, c, h, w = images.shape
    out = images
    if pad > 0:
        padded = F.pad(images, (pad, pad, pad, pad))
        dev = images.device
        off_y = torch.randint(0, 2 * pad + 1, (b, 1), device=dev)
        off_x = torch.randint(0, 2 * pad + 1, (b, 1), device=dev)
        rows = (off_y + torch.arange(h, device=dev))[:, None, :, None]
        cols = (off_x + torch.arange(w, device=dev))[:, None, None, :]
        batch = torch.arange(b, device=dev)[:, None, None, None]
        chans = torch.arange(c, device=dev)[None, :, None, None]
        out = padded[batch, chans, rows, cols]
    if flip:
        flipped = torch.rand(b, device=images.device) < 0.5
        out = torch.where(flipped[:, None, None, None], out.flip(3), out)
    return out


class Normalizer:
    """Pixel statistics of the training split, applied to float batches."""

    def __init__(self, train_images: torch.Tensor, mode: str):
        x = train_images.float()
        if mode == "per_channel":
            self.mean = x.mean(dim=(0, 2, 3), keepdim=True)[0]
            self.std = x.std(dim=(0, 2, 3), keepdim=True)[0].clamp_min(1e-3)
        elif mode == "per_pixel_mean":
            self.mean = x.mean(dim=0)
            self.std = torch.full_like(self.mean[:, :1, :1], 255.0 * 0.25)  # keeps inputs O(1)
        else:
            self.mean = torch.zeros(x.shape[1], 1, 1)
            self.std = torch.full_like(self.mean, 255.0)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.device not in self._on:
            self._on[images.device] = (self.mean.to(images.device), self.std.to(images.device))
        mean, std = self._on[images.device]
        return (images - mean) / std


def augment_and_normalize(
    images: torch.Tensor, normalize, pad: int, flip: bool, pad_value: str
) -> torch.Tensor:
    """A training batch (float, raw pixel scale) augmented and normalised, the padding as
    `pad_value` says: "zero" (crop, then normalise) or "mean" (normalise, then crop)."""
    if pad_value == "mean":
        return random_crop_flip(normalize(images), pad, flip)
    return normalize(random_crop_flip(images, pad, flip))
