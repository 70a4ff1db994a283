"""How every figure is written (the report's and the analyses'): a PNG at DPI for screens
and an SVG copy beside it (same name, .svg) for a paper; legends at LEGEND_FONTSIZE points;
each skip's line style (SKIP_STYLES); text from run folders drawn as written, never parsed as
math (`literal_text`)."""

from __future__ import annotations

from pathlib import Path

from degradation.vocabulary import Skip

DPI = 150  # the PNG's resolution: sharp on a screen, and on paper at the figure's size
LEGEND_FONTSIZE = 9  # points; titles and axis labels are matplotlib's 10
VECTOR = ".svg"
SKIP_STYLES = {Skip.none: "--", Skip.add: "-", Skip.concat: ":"}  # another skip: "-"


def vector_copy(png: Path) -> Path:
    """The SVG written beside a figure's PNG."""
    return Path(png).with_suffix(VECTOR)


def save_figure(fig, png: Path) -> Path:
    """Writes the figure as `png` and its SVG copy, its text as written (`literal_text`),
    then closes it; returns `png`."""
    import matplotlib.pyplot as plt

    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    literal_text(fig)
    fig.savefig(png, dpi=DPI)
    fig.savefig(vector_copy(png))
    plt.close(fig)
    return png


def literal_text(fig) -> None:
    """Titles, labels and legends hold text from run folders (names, config values): a `$`
    there must not reach matplotlib's math parser (a parse error would end the report), nor a
    matplotlibrc's usetex LaTeX. Call before anything measures the text (tight_layout); tick
    labels keep their formatter's mathtext (10⁻² on log axes)."""
    formatted = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            formatted.add(axis.offsetText)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                formatted.update((tick.label1, tick.label2))
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        if text not in formatted:
            text.set_parse_math(False)
            text.set_usetex(False)


def remove_figure(png: Path) -> None:
    """A figure of an earlier run of the same command that this one may not draw again."""
    Path(png).unlink(missing_ok=True)
    vector_copy(png).unlink(missing_ok=True)
