"""The two training loaders besides the default DataLoader over uint8 tensors.

- `DeviceBatches` (default on CUDA): the uint8 training images live on the GPU; each step
  gathers its batch there by index, in the order of the run's `ResumableSampler` (so resume
  and DDP sharding by rank behave exactly as with the DataLoader); no workers, no copies.
- `PerSampleImages` (`data.loader=torchvision`, and the benchmark's baseline): the common
  recipe, one image at a time through torchvision transforms in DataLoader workers.

Both produce the augmentation distribution of `augment.random_crop_flip` (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from degradation.data.sampler import ResumableSampler


class DeviceBatches:
    """(uint8 images, labels) batches gathered on `device` from a resident copy of the data."""

    def __init__(self, images, labels, sampler: ResumableSampler, device: torch.device):
        self.images, self.labels = images.to(device), labels.to(device)
        self.sampler, self.device = sampler, device

    def __len__(self) -> int:
        return self.sampler.batches_per_epoch

    def __iter__(self):
        # One host-to-device copy of the epoch's order; each step slices it on the device.
        order = torch.as_tensor(list(self.sampler), dtype=torch.long).to(self.device)
        for idx in order.split(self.sampler.batch_size):
            yield self.images[idx], self.labels[idx]


class PerSampleImages(Dataset):
    """uint8 N×C×H×W images served one at a time through `transform`; `pil=True` hands the
    transform a PIL image, as torchvision's CIFAR10 dataset does."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable, pil=False):
        self.images, self.labels, self.transform, self.pil = images, labels, transform, pil

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = self.images[i]
        if self.pil:
            image = Image.fromarray(image.permute(1, 2, 0).squeeze(2).numpy())
        return self.transform(image), int(self.labels[i])


class ToFloat:
    """uint8 tensor → float at pixel scale (0..255), what `augment.Normalizer` expects."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.float()


def framework_transform(
    size: tuple[int, int], pad: int, flip: bool, normalize: Callable, pad_value: str = "zero"
):
    """Per-sample twin of the batched path (`augment.augment_and_normalize`): pad + crop, flip,
    float, the run's normalisation; with pad_value="mean" the normalisation comes first, so the
    zero padding is the mean."""
    steps = [transforms.RandomCrop(size, padding=pad)] if pad > 0 else []
    steps += [transforms.RandomHorizontalFlip()] if flip else []
    if pad_value == "mean":
        return transforms.Compose([ToFloat(), normalize, *steps])
    return transforms.Compose([*steps, ToFloat(), normalize])


def common_recipe_transform(size: int, pad: int, mean, std):
    """The common CIFAR recipe on PIL images: crop, flip, ToTensor (0..1), Normalize."""
    return transforms.Compose(
        [
            transforms.RandomCrop(size, padding=pad),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
