"""The words of the architecture: each choice's values in order, and how runs are named.

Every other module takes these from here: the config schema (config.py re-exports the Enums),
the models' lists of valid choices, the report's and the analyses' orders, figure titles and
W&B sections, and the variant names ("plain-56", "resnet-56 projection") that training writes
to summary.json and W&B, and that the report shows. A value's *order* is its place in its Enum
(an unknown value, from another version of the program, goes last); its *label* is the word a
variant name uses (for a skip: plain/resnet/concatnet; for the other choices the value
itself); its *title* is the one wording of figures' panels and W&B's sections.

`Architecture` is a net's fields as summary.json stores them (skip, depth, shortcut, family,
block) plus the config's width and preact: the report groups runs by it, never by parsing
their names. Pure Python: imported by config.py, which Hydra reads before torch is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


# Choices are StrEnums: str() and f-strings give the plain value ("add", not "Skip.add"), as
# Hydra's tab completion shows a setting's value (`skip=<TAB>` completes to `skip=add`).
class Skip(StrEnum):
    none = "none"  # plain net
    add = "add"  # residual: F(x) + shortcut(x)
    concat = "concat"  # BN(conv1x1([shortcut(x), F(x)]))


class Shortcut(StrEnum):
    zero_pad = "zero_pad"  # option A
    projection = "projection"  # option B
    all_projection = "all_projection"  # option C


class Family(StrEnum):
    cifar = "cifar"
    imagenet = "imagenet"
    keras = "keras"  # a Keras tutorial's "ResNet-50 for CIFAR-10" (models/keras.py)


class Block(StrEnum):
    basic = "basic"
    bottleneck = "bottleneck"


class HeadInit(StrEnum):
    """How the classifier (the final nn.Linear) is initialised (docs/recipe.md)."""

    pytorch = "pytorch"  # nn.Linear's default, as torchvision's resnet.py keeps it
    he_normal = "he_normal"  # N(0, 2/fan_in) weights, zero bias, like the convs (He et al.)


# A skip's word in variant names (plain-56, resnet-56, concatnet-56) and its title
SKIP_LABELS = {Skip.none: "plain", Skip.add: "resnet", Skip.concat: "concatnet"}
SKIP_TITLES = {Skip.none: "plain", Skip.add: "residual", Skip.concat: "concatenation"}
KERAS_SHORTCUT = Shortcut.all_projection  # the keras family's only shortcut (models/keras.py)


def values(choice: type[StrEnum]) -> tuple[str, ...]:
    """A choice's plain values in order: the models' lists of valid choices."""
    return tuple(member.value for member in choice)


def order(choice: type[StrEnum], value: Any) -> int:
    """A value's place in its choice; an unknown value goes last."""
    names = values(choice)
    return names.index(value) if value in names else len(names)


def skip_label(skip: Any) -> str:
    """'plain', 'resnet', 'concatnet'; an unknown skip as it is."""
    return SKIP_LABELS.get(skip, str(skip))


def skip_title(skip: Any) -> str:
    """'plain', 'residual', 'concatenation'; an unknown skip as it is."""
    return SKIP_TITLES.get(skip, str(skip))


def family_shortcut(family: Any) -> str:
    """The shortcut a family takes when none is chosen: zero_pad, all_projection for keras."""
    return KERAS_SHORTCUT.value if str(family) == Family.keras else Shortcut.zero_pad.value


@dataclass(frozen=True)
class Architecture:
    """What a variant's runs share besides the recipe, normalised so that one net has one
    value: a plain net has no shortcut; a keras net's block and shortcut, and an imagenet
    net's block (set by its depth), are implied by the family and left out."""

    skip: str
    depth: int | None
    family: str = Family.cifar.value
    block: str | None = Block.basic.value
    shortcut: str | None = None
    preact: bool = False
    width: int = 1

    @classmethod
    def of(
        cls,
        skip: Any,
        depth: Any,
        family: Any = None,
        block: Any = None,
        shortcut: Any = None,
        preact: Any = False,
        width: Any = 1,
    ) -> Architecture:
        """From plain values or Enum members; None (a field an older summary.json lacks, or
        a config's null) is the family's default."""
        skip, family = str(skip), str(family or Family.cifar.value)
        if family != Family.cifar:
            block = None
        else:
            block = str(block or Block.basic.value)
        if skip == Skip.none or family == Family.keras:
            shortcut = None
        else:
            shortcut = str(shortcut or family_shortcut(family))
        return cls(skip, depth, family, block, shortcut, bool(preact), int(width or 1))

    def _words(self, shortcut: bool) -> list[str]:
        """After the skip and depth, in order: the family unless cifar, a bottleneck block,
        preact, a shortcut other than the family's (when asked), a width above 1."""
        if self.family == Family.keras:
            return [self.family]  # its block and shortcut are its family's
        words = [] if self.family == Family.cifar else [self.family]
        if self.block == Block.bottleneck:
            words.append(self.block)
        if self.preact:
            words.append("preact")
        if shortcut and self.shortcut not in (None, family_shortcut(self.family)):
            words.append(str(self.shortcut))
        if self.width != 1:
            words.append(f"x{self.width}")
        return words

    @property
    def shared(self) -> str:
        """The words a plain net and its skip twins share (no shortcut): '', 'imagenet',
        'bottleneck preact x2'."""
        return " ".join(self._words(shortcut=False))

    @property
    def label(self) -> str:
        """The variant name: 'plain-56', 'resnet-56 projection', 'resnet-18 imagenet',
        'resnet-50 keras', 'resnet-20 bottleneck preact x2' (seed left out)."""
        return " ".join([f"{skip_label(self.skip)}-{self.depth}", *self._words(shortcut=True)])

    @property
    def series(self) -> str:
        """The label without its depth: 'plain', 'resnet projection' (a depth series)."""
        return " ".join([skip_label(self.skip), *self._words(shortcut=True)])
