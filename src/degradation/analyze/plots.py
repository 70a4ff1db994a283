"""The analysis figures: drawing only (their numbers and captions: figures.py).

Per run (the CLI's RUN_DIR/analysis/ and its combined figure of several runs):
  plot_landscape_1d(datas), plot_landscape_2d(datas), plot_lesion(records)
Per variant over its seeds (the report's analysis_*.png; a line is the mean, or the geometric
mean for quantities drawn on a log scale, and the shading or the thin lines the seeds):
  plot_gradient_flow(records)         relative gradient ‖g‖/‖w‖ of each main-path 3×3 conv
                                      over training (layer × step heat map, one panel each)
  plot_gradient_profile(groups)       each layer's median RMS gradient and relative gradient
                                      against its position (input → output)
  plot_landscape_seeds(groups, path)  loss increase over the central loss along a direction
                                      (each seed thin, the mean bold) and over the plane
  plot_lesion_seeds(groups, path)     test error with each block deleted, and the fraction of
                                      the intact net's headroom to chance each deletion loses

Over 300 lines: every analysis figure, per run and over seeds, in one style.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from degradation.report.figure_files import LEGEND_FONTSIZE, SKIP_STYLES, save_figure  # noqa: E402
from degradation.vocabulary import Skip, order  # noqa: E402

LINTHRESH = 0.01  # loss increases below this (nats): linear in 1-D, the lowest level in 2-D


# --- per run (the CLI) --------------------------------------------------------------------


def _dress_lesion_axes(left, right, chances: set, most: int) -> None:
    """Chance lines, labels, titles, limits and legends of a lesion figure's two panels
    (test error; fraction of headroom lost), per run or over seeds alike."""
    for chance in chances - {None}:
        left.axhline(100 * chance, color="0.4", linestyle="-.", linewidth=1)
    right.axhline(1.0, color="0.4", linestyle="-.", linewidth=1)
    titles = [
        ("test error (%)", "test error (dotted: intact; dash-dot: chance)"),
        ("fraction of headroom lost", "(error − intact) / (chance − intact)"),
    ]
    for ax, (y_label, title) in zip((left, right), titles, strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0.5, most + 0.5)
        ax.set_xlabel("deleted block (forward order)")
        ax.set_ylabel(y_label)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=LEGEND_FONTSIZE)
    left.set_ylim(bottom=0)


def _figure(**kwargs):
    # constrained layout places shared colour bars and suptitles, which tight_layout cannot
    return plt.figure(layout="constrained", **kwargs)


def _label(data: dict[str, Any]) -> str:
    return str(data.get("label") or data.get("name") or data.get("run") or "run")


def _field(item: Any, key: str) -> Any:
    value = item.get(key) if isinstance(item, dict) else getattr(item, key, None)
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def _styles(items: list) -> list[tuple[Any, str]]:
    """(colour, line style) per item, as in the report: colour = depth, dashed = plain."""
    palette = plt.get_cmap("tab10").colors
    depths = sorted({d for d in (_field(i, "depth") for i in items) if d is not None})
    colour = {d: palette[k % len(palette)] for k, d in enumerate(depths)}
    return [
        (colour.get(_field(i, "depth"), "k"), SKIP_STYLES.get(_field(i, "skip"), "-"))
        for i in items
    ]


def _positive(values: np.ndarray) -> np.ndarray:
    """For log axes: non-finite or non-positive values become NaN (a gap, not a crash)."""
    values = np.asarray(values, dtype=float).copy()
    values[~np.isfinite(values) | (values <= 0)] = np.nan
    return values


def _centre(values: Any, positions: Any) -> float:
    """The value at the grid point 0 (the trained weights)."""
    return float(np.asarray(values, dtype=float).flat[int(np.argmin(np.abs(positions)))])


def plot_landscape_1d(
    datas: list[dict[str, Any]], path: Path | None = None, ax=None
) -> Path | None:
    """Training-loss increase over each run's own central loss along the first direction, one
    line per run (symmetric log scale); into `ax` if given, else a figure of its own written to
    `path`."""
    fig = None
    if ax is None:
        fig = _figure(figsize=(5.5, 4.0))
        ax = fig.add_subplot()
    for data, (colour, style) in zip(datas, _styles(datas), strict=True):
        loss = np.asarray(data["loss_1d"], dtype=float)
        rise = loss - _centre(loss, data["alphas"])
        ax.plot(data["alphas"], rise, "o" + style, color=colour, markersize=3,
                label=_label(data))  # fmt: skip
    ax.set_yscale("symlog", linthresh=LINTHRESH)
    ax.set_xlabel("step along a filter-normalised direction")
    ax.set_ylabel("loss − loss at the trained weights")
    ax.set_title("1-D loss landscape, each net against its own centre", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=LEGEND_FONTSIZE)
    return save_figure(fig, path) if fig is not None else None


def _rise_2d(data: dict[str, Any]) -> np.ndarray:
    """The plane's loss minus its own central loss; non-finite (blown up) stays NaN."""
    loss = np.asarray(data["loss_2d"], dtype=float)
    centre = int(np.argmin(np.abs(np.asarray(data["alphas"], dtype=float))))
    rise = loss - loss[centre, centre]
    rise[~np.isfinite(rise)] = np.nan
    return rise


def _levels(rises: list[np.ndarray]) -> np.ndarray:
    """Log-spaced contour levels of the loss increase, shared by all panels: LINTHRESH up to
    the largest finite increase (at most 100 nats)."""
    finite = np.concatenate([r.ravel() for r in rises])
    finite = finite[np.isfinite(finite)]
    high = min(float(finite.max()) if finite.size else 1.0, 100.0)
    return np.geomspace(LINTHRESH, max(high, 2 * LINTHRESH), 16)


def plot_landscape_2d(
    datas: list[dict[str, Any]], path: Path | None = None, axes=None
) -> Path | None:
    """Contours of the training-loss increase over each run's own central loss in the plane of
    two directions, one panel per run, one colour scale; into `axes` if given, else a figure of
    its own written to `path`."""
    datas = [d for d in datas if "loss_2d" in d]
    if not datas:
        return None
    fig = None
    if axes is None:
        fig = _figure(figsize=(1.0 + 4.0 * len(datas), 4.0))
        axes = list(fig.subplots(1, len(datas), squeeze=False)[0])
    rises = [_rise_2d(d) for d in datas]
    levels = _levels(rises)
    norm = LogNorm(vmin=levels[0], vmax=levels[-1])
    for k, (ax, data, rise) in enumerate(zip(axes, datas, rises, strict=True)):
        rise = np.where(np.isnan(rise), levels[-1], np.clip(rise, levels[0], levels[-1]))
        a, b = np.meshgrid(data["alphas"], data["betas"], indexing="ij")
        filled = ax.contourf(a, b, rise, levels=levels, norm=norm, cmap="viridis", extend="max")
        ax.contour(a, b, rise, levels=levels, colors="k", linewidths=0.4, alpha=0.5)
        ax.plot([0], [0], "r+", markersize=10)
        ax.set_title(_label(data), fontsize=10)
        ax.set_xlabel("direction 1")
        if k == 0:  # the panels share their axes
            ax.set_ylabel("direction 2")
        ax.set_aspect("equal")
    axes[0].figure.colorbar(filled, ax=axes, label="loss − central loss", format="%.2g")
    if fig is None:
        return None
    fig.suptitle("2-D loss landscape (log-spaced contours of the increase; + = trained weights)",
                 fontsize=10)  # fmt: skip
    return save_figure(fig, path)


def plot_lesion(records: list[dict[str, Any]], path: Path) -> Path:
    """Left: test error with each block deleted (x = block in forward order), the intact
    model's error dotted, chance dash-dotted. Right: the fraction of the intact net's headroom
    to chance that each deletion loses (summaries.headroom_lost). Blocks that cannot be deleted
    are gaps marked with an x."""
    most = max((len(r["blocks"]) for r in records), default=0)
    fig = _figure(figsize=(2 * max(5.0, 0.16 * most), 4.0))
    left, right = fig.subplots(1, 2)
    for record, (colour, style) in zip(records, _styles(records), strict=True):
        blocks = record["blocks"]
        x = np.arange(1, len(blocks) + 1)
        y = [math.nan if b["test_error"] is None else 100 * b["test_error"] for b in blocks]
        left.plot(x, y, "o" + style, color=colour, markersize=3, label=_label(record))
        if record["baseline"]["test_error"] is not None:
            base = 100 * record["baseline"]["test_error"]
            left.axhline(base, color=colour, linestyle=":", linewidth=1)
        lost = [b.get("headroom_lost") for b in blocks]
        right.plot(x, [math.nan if v is None else v for v in lost], "o" + style, color=colour,
                   markersize=3, label=_label(record))  # fmt: skip
        skipped = x[[not b["deleted"] for b in blocks]]
        for ax in (left, right):  # at the bottom edge (x: data, y: axes fraction)
            ax.plot(skipped, [0.03] * len(skipped), "x", color=colour,
                    transform=ax.get_xaxis_transform())  # fmt: skip
    _dress_lesion_axes(left, right, {r.get("chance_error") for r in records}, most)
    fig.suptitle("Lesion study: one block deleted at test time (x = cannot be deleted)",
                 fontsize=11)  # fmt: skip
    return save_figure(fig, path)


# --- per variant, over its seeds (the report) -----------------------------------------------


def _band(ax, x, rows: np.ndarray, colour, style: str, label: str, log: bool = False) -> None:
    """The mean of `rows` (seeds × points; geometric mean with `log`) as a line, their range
    over seeds shaded (nothing to shade for one seed)."""
    rows = np.asarray(rows, dtype=float)
    with warnings.catch_warnings():  # a point without one finite seed: a gap
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.exp(np.nanmean(np.log(rows), axis=0)) if log else np.nanmean(rows, axis=0)
        low, high = np.nanmin(rows, axis=0), np.nanmax(rows, axis=0)
    if log:  # exp of a mean of logs can underflow to 0: a gap on a log axis, not a crash
        centre, low, high = _positive(centre), _positive(low), _positive(high)
    ax.plot(x, centre, style, color=colour, label=label)
    if len(rows) > 1 and np.isfinite(low + high).any():  # all NaN would break a log axis
        ax.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0)


def plot_gradient_flow(records: list, path: Path) -> Path:
    """Heat maps of log10 ‖g‖/‖w‖ (layer × step), rows = depth, columns = skip, one colour
    scale; each record (label, depth, skip, steps, layers, rel) is one panel."""
    depths = sorted({r.depth for r in records})
    skips = sorted({r.skip for r in records}, key=lambda s: order(Skip, s))
    rows_of = {(d, s): [r for r in records if (r.depth, r.skip) == (d, s)] for d in depths
               for s in skips}  # fmt: skip
    height = max(len(v) for v in rows_of.values())  # several recipes of one variant: stacked
    fig = _figure(figsize=(1.0 + 4.2 * len(skips), 0.6 + 3.0 * len(depths) * height))
    axes = fig.subplots(len(depths) * height, len(skips), squeeze=False)
    logs = [np.log10(_positive(r.rel)) for r in records]
    every = np.concatenate([v[np.isfinite(v)] for v in logs])
    vmin, vmax = np.percentile(every, [1, 99]) if every.size else (0.0, 1.0)
    for ax in axes.ravel():
        ax.axis("off")  # until a run fills it
    for record, log in zip(records, logs, strict=True):
        row = depths.index(record.depth) * height
        row += rows_of[record.depth, record.skip].index(record)
        ax = axes[row][skips.index(record.skip)]
        ax.axis("on")
        steps = record.steps
        half = (steps[1] - steps[0]) / 2
        extent = (steps[0] - half, steps[-1] + half, 0.5, len(record.layers) + 0.5)
        image = ax.imshow(log.T, origin="lower", aspect="auto", extent=extent, vmin=vmin,
                          vmax=vmax, cmap="magma", interpolation="nearest")  # fmt: skip
        ax.set_title(record.label, fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel("3×3 conv layer (1 = stem)")
    fig.colorbar(image, ax=axes, label="log10 ‖∇W‖ / ‖W‖")
    fig.suptitle("Gradient flow: gradient relative to the weights, each 3×3 conv layer",
                 fontsize=11)  # fmt: skip
    return save_figure(fig, path)


def plot_gradient_profile(groups: list[dict[str, Any]], path: Path) -> Path:
    """Each layer's median over training against its position (input → output), per variant
    ("label", "depth", "skip", "rms" and "rel": seeds × layers): left the RMS gradient per
    weight, right the relative gradient ‖g‖/‖w‖; the geometric mean over seeds, their range
    shaded."""
    fig = _figure(figsize=(11, 4.0))
    left, right = fig.subplots(1, 2)
    for g, (colour, style) in zip(groups, _styles(groups), strict=True):
        position = np.arange(1, np.shape(g["rel"])[1] + 1)
        _band(left, position, _positive(g["rms"]), colour, style, g["label"], log=True)
        _band(right, position, _positive(g["rel"]), colour, style, g["label"], log=True)
    labels = [
        ("median ‖∇W‖ / sqrt(#weights)", "RMS gradient per weight"),
        ("median ‖∇W‖ / ‖W‖", "gradient relative to the weights (not the step)"),
    ]
    for ax, (y, title) in zip((left, right), labels, strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("3×3 conv layer (1 = stem)")
        ax.set_ylabel(y)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=LEGEND_FONTSIZE)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return save_figure(fig, path)


def plot_landscape_seeds(groups: list[dict[str, Any]], path: Path) -> Path:
    """Left: the loss increase over each net's own central loss along the first direction,
    per variant ("label", "depth", "skip", "alphas", "rises": seeds × points), each seed thin,
    the mean bold. Right: one panel per variant with a plane ("rise_2d": the mean over seeds
    of the increase), log-spaced contours on one colour scale."""
    planes = [
        {"label": g["label"], "alphas": g["alphas"], "betas": g["alphas"], "loss_2d": g["rise_2d"]}
        for g in groups
        if g.get("rise_2d") is not None
    ]
    fig = _figure(figsize=(5.5 + 4.0 * len(planes), 4.2))
    axes = fig.subplots(1, 1 + len(planes), squeeze=False,
                        width_ratios=[1.3] + [1] * len(planes))[0]  # fmt: skip
    ax = axes[0]
    for g, (colour, style) in zip(groups, _styles(groups), strict=True):
        rises = np.asarray(g["rises"], dtype=float)
        for rise in rises if len(rises) > 1 else []:
            ax.plot(g["alphas"], rise, style, color=colour, linewidth=0.6, alpha=0.45)
        with warnings.catch_warnings():  # a point without one finite seed: a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(rises, axis=0)
        ax.plot(g["alphas"], mean, "o" + style, color=colour, markersize=3, label=g["label"])
    ax.set_yscale("symlog", linthresh=LINTHRESH)
    ax.set_xlabel("step along a filter-normalised direction")
    ax.set_ylabel("loss − loss at the trained weights")
    ax.set_title("1-D: each seed thin, the mean bold", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=LEGEND_FONTSIZE)
    if planes:
        plot_landscape_2d(planes, axes=list(axes[1:]))
    fig.suptitle("Loss landscape around the trained weights (Li et al. 2018); 2-D: the mean "
                 "increase over seeds", fontsize=11)  # fmt: skip
    return save_figure(fig, path)


def plot_lesion_seeds(groups: list[dict[str, Any]], path: Path) -> Path:
    """Per variant ("label", "depth", "skip", "errors" and "lost": seeds × blocks, NaN where a
    block was not deleted; "baselines": per seed; "chance"): left the test error with each
    block deleted, right the fraction of the headroom lost; the mean over seeds, their range
    shaded; the intact error's mean dotted, chance dash-dotted; x = cannot be deleted."""
    most = max((np.shape(g["errors"])[1] for g in groups), default=0)
    fig = _figure(figsize=(2 * max(5.0, 0.16 * most), 4.0))
    left, right = fig.subplots(1, 2)
    for g, (colour, style) in zip(groups, _styles(groups), strict=True):
        errors = 100 * np.asarray(g["errors"], dtype=float)
        x = np.arange(1, errors.shape[1] + 1)
        _band(left, x, errors, colour, "o" + style, g["label"])
        _band(right, x, np.asarray(g["lost"], dtype=float), colour, "o" + style, g["label"])
        baselines = [b for b in g["baselines"] if b is not None]
        if baselines:
            left.axhline(100 * float(np.mean(baselines)), color=colour, linestyle=":",
                         linewidth=1)  # fmt: skip
        skipped = x[np.all(np.isnan(errors), axis=0)]
        for ax in (left, right):  # at the bottom edge (x: data, y: axes fraction)
            ax.plot(skipped, [0.03] * len(skipped), "x", color=colour,
                    transform=ax.get_xaxis_transform())  # fmt: skip
    _dress_lesion_axes(left, right, {g.get("chance") for g in groups}, most)
    fig.suptitle("Lesion study: one block deleted at test time; mean over seeds, range shaded "
                 "(x = cannot be deleted)", fontsize=11)  # fmt: skip
    return save_figure(fig, path)
