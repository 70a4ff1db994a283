"""Published CIFAR-10 test errors (%) to compare against: the paper and three reproductions.

The one place these numbers live (sources: He et al. 2015, arXiv:1512.03385, Table 6 and
Fig. 6; the repositories named below, each with its own link). Keys are our variant
names (`plain-D`, `resnet-D`: option A shortcuts, basic blocks, as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PAPER_DATASET = "cifar10"
PAPER_STEPS = 64000  # iterations at batch 128


@dataclass(frozen=True)
class Published:
    mean: float  # test error in %
    std: float | None = None
    n: int | None = None
    note: str = ""

    def text(self) -> str:
        out = f"{self.mean:.2f}"
        if self.std is not None:
            out += f" ± {self.std:.2f}"
        if self.n is not None:
            out += f" (n={self.n})"
        return out


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    errors: dict[str, Published] = field(default_factory=dict)
    caveat: str = ""


PAPER = Source(
    "He et al. 2015, Table 6",
    "https://arxiv.org/abs/1512.03385",
    {
        "resnet-20": Published(8.75),
        "resnet-32": Published(7.51),
        "resnet-44": Published(7.17),
        "resnet-56": Published(6.97),
        "resnet-110": Published(6.43, note="best of 5 runs; mean 6.61 ± 0.16"),
        "resnet-1202": Published(7.93, note="training error < 0.1 %: overfitting"),
    },
    caveat="Plain nets have no table in the paper, only curves (Fig. 6): training error rises "
    "with depth (plain-56 > 44 > 32 > 20), plain-110 stays above 60 %.",
)

REPRODUCTIONS = (
    Source(
        "nabla0001/resnet",
        "https://github.com/nabla0001/resnet",
        {
            "plain-20": Published(9.78, 0.13, 5),
            "plain-56": Published(12.95, 0.22, 5),
            "resnet-20": Published(8.51, 0.22, 5),
            "resnet-56": Published(7.40, 0.27, 5),
            "resnet-110": Published(7.14, 0.20, 5),
        },
    ),
    Source(
        "a-martyn/resnet",
        "https://github.com/a-martyn/resnet",
        {
            "plain-20": Published(9.5),
            "plain-32": Published(9.92),
            "plain-44": Published(11.35),
            "plain-56": Published(12.76),
            "resnet-20": Published(8.0),
            "resnet-32": Published(7.51),
            "resnet-44": Published(7.38),
            "resnet-56": Published(7.33),
        },
    ),
    Source(
        "akamaster/pytorch_resnet_cifar10",
        "https://github.com/akamaster/pytorch_resnet_cifar10",
        {
            "resnet-20": Published(8.27),
            "resnet-32": Published(7.37),
            "resnet-44": Published(6.90),
            "resnet-56": Published(6.61),
            "resnet-110": Published(6.32),
            "resnet-1202": Published(6.18),
        },
        caveat="picks its best checkpoint on the test set and trains 200 epochs, unlike the "
        "paper: its numbers are optimistic and not directly comparable.",
    ),
)

SOURCES = (PAPER, *REPRODUCTIONS)
