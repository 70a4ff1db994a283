"""The data path: embedded dataset, train/val split, batched augmentation, normalisation."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from degradation.data import ImageDataModule, split_train_val
from degradation.data.augment import Normalizer, augment_and_normalize, random_crop_flip
from degradation.data.loaders import PerSampleImages, framework_transform
from degradation.data.synthetic import make_synthetic
from degradation.preflight import spec_of_settings
from degradation.spec import SyntheticSpec


def small_synthetic(**kw) -> SyntheticSpec:
    settings = {"train_size": 300, "test_size": 100, **kw}
    settings = {f"data.synthetic.{k}": v for k, v in settings.items()}
    return spec_of_settings({**settings, "data.val_size": 50}).data.synthetic


def test_synthetic_is_deterministic_cifar_shaped_and_balanced_enough():
    a, b = make_synthetic(small_synthetic()), make_synthetic(small_synthetic())
    assert a.checksum == b.checksum
    assert torch.equal(a.train_images, b.train_images)
    assert a.train_images.shape == (300, 3, 32, 32) and a.train_images.dtype == torch.uint8
    assert a.num_classes == 10
    counts = torch.bincount(a.train_labels, minlength=10)
    assert counts.min() > 10  # every class present
    assert make_synthetic(small_synthetic(seed=1)).checksum != a.checksum
    # pixels use the range (not saturated to 0/255 nor collapsed to grey)
    assert 40 < a.train_images.float().std() < 90


# sha of the default embedded data as published before `tint` existed: tint 0 keeps it
DEFAULT_SYNTHETIC_CHECKSUM_PREFIX = "1ed398eedb4dae12"


def test_tint_zero_keeps_the_published_bytes_and_tint_colours_each_class():
    default = make_synthetic(spec_of_settings({}).data.synthetic)
    assert default.checksum.startswith(DEFAULT_SYNTHETIC_CHECKSUM_PREFIX)
    plain, tinted = make_synthetic(small_synthetic()), make_synthetic(small_synthetic(tint=0.3))
    assert tinted.checksum != plain.checksum
    assert torch.equal(plain.train_labels, tinted.train_labels)  # same draws, colour added
    shift = (tinted.train_images.float() - plain.train_images.float()).mean(dim=(2, 3))
    for k in range(10):  # one colour per class, the same for every image of it
        per_image = shift[plain.train_labels == k]
        assert (per_image.std(dim=0) < 6).all()  # only clipping at 0/255 varies it
    per_class = torch.stack([shift[plain.train_labels == k].mean(0) for k in range(10)])
    assert per_class.std(dim=0).min() > 3  # classes differ in colour (pixels: 0.3 * 64 scale)


def test_split_is_disjoint_seeded_and_stable():
    train, val = split_train_val(1000, 100, split_seed=0)
    assert len(train) == 900 and len(val) == 100
    assert not set(train.tolist()) & set(val.tolist())
    assert set(train.tolist()) | set(val.tolist()) == set(range(1000))
    again_train, again_val = split_train_val(1000, 100, split_seed=0)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert not torch.equal(split_train_val(1000, 100, split_seed=1)[1], val)


def test_datamodule_holds_out_val_and_limits_train():
    data = {"val_size": 50, "train_limit": 100, "batch_size": 32}
    data.update({"synthetic.train_size": 300, "synthetic.test_size": 60})
    dm = ImageDataModule(spec_of_settings({f"data.{k}": v for k, v in data.items()}).data)
    assert dm.num_train == 100 and len(dm.val_idx) == 50
    assert not set(dm.train_idx.tolist()) & set(dm.val_idx.tolist())
    assert dm.input_shape == (3, 32, 32) and dm.num_classes == 10


def test_random_crop_is_a_window_of_the_zero_padded_image():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 8, 8) + 1  # strictly positive, so padding zeros are visible
    out = random_crop_flip(x, pad=2, flip=False)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    offsets = set()
    for i in range(64):
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert matches, f"sample {i} is not a crop of its padded image"
        offsets.add(matches[0])
    assert len(offsets) > 10  # offsets vary across the batch


def test_flip_happens_half_the_time():
    torch.manual_seed(0)
    x = torch.arange(8.0).expand(4000, 1, 1, 8).contiguous()
    out = random_crop_flip(x, pad=0, flip=True)
    flipped = (out[:, 0, 0, 0] == 7).float().mean().item()
    assert 0.46 < flipped < 0.54


def test_per_channel_normalisation_uses_training_statistics():
    images = torch.randint(0, 256, (200, 3, 4, 4), dtype=torch.uint8)
    norm = Normalizer(images, "per_channel")
    z = norm(images.float())
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    pixel = Normalizer(images, "per_pixel_mean")(images.float())
    assert torch.allclose(pixel.mean(dim=0), torch.zeros(3, 4, 4), atol=1e-4)


def crop_offsets(out: torch.Tensor, padded: torch.Tensor, size: int, pad: int) -> list:
    """For each sample, the (dy, dx) of the windows of its padded image that it equals."""
    return [
        [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
         if torch.allclose(out[i], padded[i, :, dy : dy + size, dx : dx + size], atol=1e-5)]
        for i in range(len(out))
    ]  # fmt: skip


def test_pad_value_zero_pads_black_pixels_and_mean_pads_the_normalised_mean():
    torch.manual_seed(0)
    x = torch.randint(1, 256, (48, 3, 8, 8)).float()  # no black pixel inside the images
    norm = Normalizer(x, "per_channel")
    black = F.pad(x, (2, 2, 2, 2))  # zero: raw black pixels, normalised with the image
    for pad_value, padded in (("zero", norm(black)), ("mean", F.pad(norm(x), (2, 2, 2, 2)))):
        out = augment_and_normalize(x, norm, pad=2, flip=False, pad_value=pad_value)
        found = crop_offsets(out, padded, 8, 2)
        assert all(found), f"{pad_value}: a sample is not a window of its padded image"
        assert len({f[0] for f in found}) > 10  # offsets vary
    # the two differ: a black pixel normalises to -mean/std (not 0) on every channel
    assert (norm(torch.zeros(1, 3, 1, 1)) < -0.5).all()


def test_torchvision_loader_honours_pad_value():
    torch.manual_seed(0)
    x = torch.randint(1, 256, (32, 3, 8, 8), dtype=torch.uint8)
    norm = Normalizer(x, "per_channel")
    expected = {"zero": norm(F.pad(x.float(), (2, 2, 2, 2))),
                "mean": F.pad(norm(x.float()), (2, 2, 2, 2))}  # fmt: skip
    for pad_value, padded in expected.items():
        transform = framework_transform((8, 8), 2, False, norm, pad_value)
        images = PerSampleImages(x, torch.zeros(32, dtype=torch.long), transform)
        out = torch.stack([images[i][0] for i in range(len(images))])
        found = crop_offsets(out, padded, 8, 2)
        assert all(found) and len({f[0] for f in found}) > 5, pad_value


def test_datamodule_trains_with_the_configured_pad_value():
    data = {"val_size": 50, "pad": 2, "flip": False, "pad_value": "mean"}
    data.update({"synthetic.train_size": 300, "synthetic.test_size": 60})
    dm = ImageDataModule(spec_of_settings({f"data.{k}": v for k, v in data.items()}).data)
    dm.trainer = SimpleNamespace(training=True, global_step=0, global_rank=0)
    raw = dm.images.train_images[:64]
    torch.manual_seed(0)
    out, _ = dm.on_after_batch_transfer((raw, torch.zeros(64)), 0)
    found = crop_offsets(out, F.pad(dm.normalized(raw), (2, 2, 2, 2)), 32, 2)
    assert all(found)
    # the same batch with pad_value=zero is a window of the normalised black-padded images
    dm.spec = replace(dm.spec, augment=replace(dm.spec.augment, pad_value="zero"))
    out, _ = dm.on_after_batch_transfer((raw, torch.zeros(64)), 0)
    black = dm.normalized(F.pad(raw, (2, 2, 2, 2)))
    assert all(crop_offsets(out, black, 32, 2))
