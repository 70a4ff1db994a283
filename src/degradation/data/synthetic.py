"""The embedded default dataset: CIFAR-shaped images generated from a seed.

Each class is a smooth periodic colour pattern. An image shows its class pattern at a random
circular shift, a weaker pattern of another class (also shifted) and pixel noise, so a net must
learn translation-invariant pattern detectors and weigh two of them: easy for a shallow net to
start on, hard to fit perfectly, which leaves room for depth to matter. Same seed, same bytes.

`tint` > 0 adds a class colour (a per-channel offset, uniform in ±tint on the pattern scale):
a first-order cue that a net picks up within its first steps, so the start of training no
longer waits for a chance plateau of random length (the demo's plain-20 sat at chance for
30 to 90 steps, a seed-to-seed spread larger than the effect it measures). The colours come
from their own generator, so tint 0 gives the same bytes as before it existed.
"""

from __future__ import annotations

import math

import torch

from degradation.data.sources import ImageSet, checksum_of
from degradation.spec import SyntheticSpec

FREQUENCIES_PER_PATTERN = 6
TINT_SEED_OFFSET = 0x74696E74  # "tint" in ASCII: the class colours' own generator seed
MAX_FREQUENCY = 4


def class_patterns(num_classes: int, channels: int, size: int, g: torch.Generator):
    """num_classes × channels × size × size patterns in [-1, 1], periodic in both axes."""
    shape = (num_classes, channels, FREQUENCIES_PER_PATTERN)
    fy = torch.randint(-MAX_FREQUENCY, MAX_FREQUENCY + 1, shape, generator=g)
    fx = torch.randint(1, MAX_FREQUENCY + 1, shape, generator=g)
    phase = torch.rand(shape, generator=g) * 2 * math.pi
    amplitude = torch.rand(shape, generator=g) + 0.5
    grid = torch.arange(size, dtype=torch.float32) * 2 * math.pi / size
    angle = (fy[..., None, None] * grid[:, None] + fx[..., None, None] * grid[None, :]) + phase[
        ..., None, None
    ]
    patterns = (amplitude[..., None, None] * torch.sin(angle)).sum(dim=2)
    return patterns / patterns.abs().amax(dim=(1, 2, 3), keepdim=True)


def shifted(patterns: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """patterns[labels], each circularly shifted by its own random offset."""
    n, size = len(labels), patterns.shape[-1]
    dy = torch.randint(0, size, (n, 1), generator=g)
    dx = torch.randint(0, size, (n, 1), generator=g)
    rows = (torch.arange(size) + dy) % size  # n × size
    cols = (torch.arange(size) + dx) % size
    picked = patterns[labels]  # n × C × size × size
    picked = picked.gather(2, rows[:, None, :, None].expand_as(picked))
    return picked.gather(3, cols[:, None, None, :].expand_as(picked))


def class_colours(cfg: SyntheticSpec) -> torch.Tensor:
    """num_classes × channels offsets, uniform in ±cfg.tint, from their own generator."""
    g = torch.Generator().manual_seed(cfg.seed + TINT_SEED_OFFSET)
    return (torch.rand(cfg.num_classes, cfg.channels, generator=g) * 2 - 1) * cfg.tint


def _sample(cfg: SyntheticSpec, patterns: torch.Tensor, n: int, g: torch.Generator):
    k = cfg.num_classes
    labels = torch.randint(k, (n,), generator=g)
    others = (labels + torch.randint(1, k, (n,), generator=g)) % k
    images = shifted(patterns, labels, g) + cfg.distractor * shifted(patterns, others, g)
    if cfg.tint:
        images = images + class_colours(cfg)[labels][:, :, None, None]
    images = images + cfg.noise * torch.randn(images.shape, generator=g)
    pixels = (images * 0.25 + 0.5).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8), labels


def make_synthetic(cfg: SyntheticSpec) -> ImageSet:
    g = torch.Generator().manual_seed(cfg.seed)
    patterns = class_patterns(cfg.num_classes, cfg.channels, cfg.image_size, g)
    train_x, train_y = _sample(cfg, patterns, cfg.train_size, g)
    test_x, test_y = _sample(cfg, patterns, cfg.test_size, g)
    return ImageSet(
        name="synthetic",
        train_images=train_x,
        train_labels=train_y,
        test_images=test_x,
        test_labels=test_y,
        num_classes=cfg.num_classes,
        source=f"generated (seed {cfg.seed})",
        checksum=checksum_of(train_x, train_y, test_x, test_y),
    )
