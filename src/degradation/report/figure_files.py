"""How every figure is written (the report's and the analyses'): a PNG at DPI for screens
and an SVG copy beside it (same name, .svg) for a paper; legends at LEGEND_FONTSIZE points."""

from __future__ import annotations

from pathlib import Path

DPI = 150  # the PNG's resolution: sharp on a screen, and on paper at the figure's size
LEGEND_FONTSIZE = 9  # points; titles and axis labels are matplotlib's 10
VECTOR = ".svg"


def vector_copy(png: Path) -> Path:
    """The SVG written beside a figure's PNG."""
    return Path(png).with_suffix(VECTOR)


def save_figure(fig, png: Path) -> Path:
    """Writes the figure as `png` and its SVG copy, then closes it; returns `png`."""
    import matplotlib.pyplot as plt

    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=DPI)
    fig.savefig(vector_copy(png))
    plt.close(fig)
    return png


def remove_figure(png: Path) -> None:
    """A figure of an earlier run of the same command that this one may not draw again."""
    Path(png).unlink(missing_ok=True)
    vector_copy(png).unlink(missing_ok=True)
