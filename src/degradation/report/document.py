"""The report as a list of blocks, rendered twice: to Markdown and to self-contained HTML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Image:
    path: Path  # a PNG file in the report folder
    title: str  # short: the alt text
    caption: str


Block = Heading | Paragraph | Bullets | Table | Image
