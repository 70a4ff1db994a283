"""Data: a dataset name → uint8 tensors in memory → a LightningDataModule.

Images stay uint8 until they reach the training device; augmentation and normalisation run
there, batched (`on_after_batch_transfer`). The validation split is held out of the training
images with a fixed `data.split_seed`, so every run of a sweep sees the same split, and the
test set is only ever evaluated, never used to choose anything.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from degradation.data.augment import Normalizer, augment_and_normalize
from degradation.data.loaders import DeviceBatches, PerSampleImages, framework_transform
from degradation.data.sampler import AUGMENT_STREAM, ORDER_STREAM, ResumableSampler, derive_seed
from degradation.data.sources import SOURCES, ImageSet, load_source
from degradation.errors import UserError
from degradation.spec import DataSpec

DATASETS = ("synthetic", *SOURCES)


def load_images(spec: DataSpec) -> ImageSet:
    if spec.name == "synthetic":
        from degradation.data.synthetic import make_synthetic

        return make_synthetic(spec.synthetic)
    if spec.name not in SOURCES:
        raise UserError(
            f"data.name='{spec.name}' is not known; choose one of: {', '.join(DATASETS)}"
        )
    return load_source(spec.name, spec.root, download=spec.download, verify=spec.verify)


def split_train_val(n: int, val_size: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint (train, val) index sets of a training split of n images, fixed by split_seed."""
    if val_size >= n:
        raise UserError(f"data.val_size={val_size} is not valid: the training split has {n} images")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return order[val_size:].sort().values, order[:val_size].sort().values


def per_device_batch_size(batch_size: int, world_size: int) -> int:
    """The global batch split evenly over the processes; UserError if it does not split."""
    if batch_size % world_size:
        raise UserError(
            f"data.batch_size={batch_size} does not split over {world_size} processes; "
            f"choose a multiple of {world_size}"
        )
    return batch_size // world_size


class ImageDataModule(L.LightningDataModule):
    """The run's images as a LightningDataModule, with all its randomness a function of
    (seed, position): the training order comes from a `ResumableSampler` and the augmentation
    of step s (run after the transfer to the device) draws from the global RNGs seeded with
    (seed, s, rank). Use it with `Trainer(use_distributed_sampler=False)`: the sampler shards
    by rank itself."""

    def __init__(self, spec: DataSpec, seed: int = 0):
        super().__init__()
        self.spec = spec
        self.seed = seed
        self.images = load_images(spec)
        train_idx, val_idx = split_train_val(
            len(self.images.train_labels), spec.val_size, spec.split_seed
        )
        if spec.train_limit is not None:
            train_idx = train_idx[: spec.train_limit]
        self.train_idx, self.val_idx = train_idx, val_idx
        train_images = self.images.train_images[train_idx]
        self.normalize = Normalizer(train_images, spec.normalize)

    @property
    def num_classes(self) -> int:
        return self.images.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.train_images.shape[1:])

    @property
    def num_train(self) -> int:
        return len(self.train_idx)

    def normalized(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images as the model sees them in training, without augmentation."""
        return self.normalize(images.float())

    def validation_images(self, max_images: int = 512) -> torch.Tensor:
        """The first `max_images` of the fixed validation split, normalised, on the CPU: the
        same images for every run of a sweep (Fig. 7's layer responses are measured on them)."""
        return self.normalized(self.images.train_images[self.val_idx[:max_images]])

    def _subset(self, images, labels, idx=None) -> TensorDataset:
        if idx is not None:
            images, labels = images[idx], labels[idx]
        return TensorDataset(images, labels)

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        ds = self._subset(self.images.train_images, self.images.train_labels, self.train_idx)
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        batch = per_device_batch_size(self.spec.batch_size, world)
        if batch > len(ds):
            raise UserError(
                f"data.batch_size={self.spec.batch_size} is larger than the "
                f"{len(ds)} training images"
            )
        sampler = ResumableSampler(
            len(ds),
            batch,
            self.seed,
            position=lambda: trainer.global_step if trainer is not None else 0,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=world,
        )
        if self.spec.loader == "tensor" and self._device().type == "cuda":
            return DeviceBatches(*ds.tensors, sampler, self._device())
        if self.spec.loader == "torchvision":
            aug = self.spec.augment
            pad, flip = aug.pad if aug.enabled else 0, aug.flip and aug.enabled
            transform = framework_transform(
                self.input_shape[1:], pad, flip, self.normalize, aug.pad_value
            )
            ds = PerSampleImages(*ds.tensors, transform)
        workers = self.spec.num_workers
        return DataLoader(
            ds,
            batch_size=batch,
            sampler=sampler,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            # workers' seeds come from here, not from the global RNGs reseeded every step
            generator=torch.Generator().manual_seed(derive_seed(ORDER_STREAM, self.seed, -1)),
        )

    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _eval_loader(self, ds: TensorDataset) -> DataLoader:
        return DataLoader(
            ds, batch_size=self.spec.eval_batch_size, num_workers=self.spec.num_workers
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(
            self._subset(self.images.train_images, self.images.train_labels, self.val_idx)
        )

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self._subset(self.images.test_images, self.images.test_labels))

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer is not None and self.trainer.training:
            step, rank = self.trainer.global_step, self.trainer.global_rank
            torch.manual_seed(derive_seed(AUGMENT_STREAM, self.seed, step, rank))
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        if training and self.spec.loader == "torchvision":
            return images, labels  # augmented and normalised image by image in the workers
        images = images.float()
        aug = self.spec.augment
        if training and aug.enabled:
            augmented = augment_and_normalize(
                images, self.normalize, aug.pad, aug.flip, aug.pad_value
            )
            return augmented, labels
        return self.normalize(images), labels
