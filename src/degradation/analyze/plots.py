"""Figures of the analyses, per run and across runs (plain vs residual side by side).

    analysis_figures(run_dirs, out_dir) -> [(title, png_path, caption)]

is what the report calls: from whatever the given run folders hold (grad_norms.csv,
analysis/landscape.npz, analysis/lesion.json) it draws, into out_dir,

  analysis_gradient_flow.png    log10 gradient norm of each main-path conv layer over training
                                (layer × step heat map; one panel per run, depth × skip grid)
  analysis_gradient_ratio.png   first/last conv gradient-norm ratio over training, and each
                                layer's median gradient norm against its depth
  analysis_landscape.png        1-D loss curves overlaid, 2-D loss contours side by side
  analysis_lesion.png           test error with each block deleted

with captions that state the numbers. One run per variant is shown (its lowest seed). A
heat map needs two recordings or more, so a run shorter than `grad_every` steps has none. A
file that cannot be read (rundir.RunFolderError) leaves its run out of that figure only.

Over 300 lines: every analysis figure with the caption computed from its data, side by side.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from degradation.models import GRAD_RATIO as RATIO  # noqa: E402
from degradation.rundir import (  # noqa: E402
    RunFolderError,
    read_grad_norms,
    read_landscape,
    read_lesion,
    read_summary,
)

PREFIX = "analysis_"
SKIP_ORDER = {"none": 0, "add": 1, "concat": 2}
SKIP_STYLES = {"none": "--", "add": "-", "concat": ":"}
SKIP_TITLES = {"none": "plain", "add": "residual", "concat": "concatenation"}
DPI = 100


# --- per-run and combined plots (also used by the CLI) ------------------------------------


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


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


def plot_landscape_1d(
    datas: list[dict[str, Any]], path: Path | None = None, ax=None
) -> Path | None:
    """Training loss along the first direction, one line per run (log scale); into `ax` if
    given, else a figure of its own written to `path`."""
    fig = None
    if ax is None:
        fig = _figure(figsize=(5.5, 4.0))
        ax = fig.add_subplot()
    for data, (colour, style) in zip(datas, _styles(datas), strict=True):
        ax.plot(data["alphas"], _positive(data["loss_1d"]), "o" + style, color=colour,
                markersize=3, label=_label(data))  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("step along a filter-normalised direction")
    ax.set_ylabel("training loss (subset, eval-mode BN)")
    ax.set_title("1-D loss landscape", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path) if fig is not None else None


def _levels(datas: list[dict[str, Any]]) -> np.ndarray:
    """Log-spaced contour levels shared by all panels, from the lowest loss up to 100× it."""
    finite = np.concatenate([_positive(d["loss_2d"]).ravel() for d in datas])
    finite = finite[np.isfinite(finite)]
    low = float(finite.min()) if finite.size else 1e-3
    high = min(float(finite.max()) if finite.size else 1.0, 100 * low)
    return np.geomspace(low, max(high, low * 1.01), 16)


def plot_landscape_2d(
    datas: list[dict[str, Any]], path: Path | None = None, axes=None
) -> Path | None:
    """Training-loss contours over the plane of two directions, one panel per run, one colour
    scale; into `axes` if given, else a figure of its own written to `path`."""
    datas = [d for d in datas if "loss_2d" in d]
    if not datas:
        return None
    fig = None
    if axes is None:
        fig = _figure(figsize=(1.0 + 4.0 * len(datas), 4.0))
        axes = list(fig.subplots(1, len(datas), squeeze=False)[0])
    levels = _levels(datas)
    norm = LogNorm(vmin=levels[0], vmax=levels[-1])
    for k, (ax, data) in enumerate(zip(axes, datas, strict=True)):
        loss = np.clip(_positive(data["loss_2d"]), levels[0], levels[-1])
        loss = np.where(np.isnan(loss), levels[-1], loss)  # blown up: the top level
        a, b = np.meshgrid(data["alphas"], data["betas"], indexing="ij")
        filled = ax.contourf(a, b, loss, levels=levels, norm=norm, cmap="viridis", extend="max")
        ax.contour(a, b, loss, levels=levels, colors="k", linewidths=0.4, alpha=0.5)
        ax.plot([0], [0], "r+", markersize=10)
        ax.set_title(_label(data), fontsize=10)
        ax.set_xlabel("direction 1")
        if k == 0:  # the panels share their axes
            ax.set_ylabel("direction 2")
        ax.set_aspect("equal")
    axes[0].figure.colorbar(filled, ax=axes, label="training loss", format="%.2g")
    if fig is None:
        return None
    fig.suptitle("2-D loss landscape (contours log-spaced; + = trained weights)", fontsize=10)
    return _save(fig, path)


def plot_lesion(records: list[dict[str, Any]], path: Path) -> Path:
    """Test error with each block deleted (x = block in forward order), the intact model's
    error as a dotted line; blocks that cannot be deleted are gaps marked with an x."""
    most = max((len(r["blocks"]) for r in records), default=0)
    fig = _figure(figsize=(max(5.5, 0.18 * most), 4.0))
    ax = fig.add_subplot()
    for record, (colour, style) in zip(records, _styles(records), strict=True):
        blocks = record["blocks"]
        x = np.arange(1, len(blocks) + 1)
        y = [math.nan if b["test_error"] is None else 100 * b["test_error"] for b in blocks]
        ax.plot(x, y, "o" + style, color=colour, markersize=3, label=_label(record))
        if record["baseline"]["test_error"] is not None:
            base = 100 * record["baseline"]["test_error"]
            ax.axhline(base, color=colour, linestyle=":", linewidth=1)
        skipped = x[[not b["deleted"] for b in blocks]]
        ax.plot(skipped, [0] * len(skipped), "x", color=colour, clip_on=False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("deleted block (forward order; x = cannot be deleted)")
    ax.set_ylabel("test error (%)")
    ax.set_title("Lesion study: one block deleted at test time (dotted: intact)", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


# --- gradient flow ---------------------------------------------------------------------------


@dataclass
class GradientRecord:
    label: str
    depth: int
    skip: str
    steps: np.ndarray  # recordings
    layers: list[str]  # main-path conv layers, input to output
    norms: np.ndarray  # recordings × layers
    ratio: np.ndarray  # first/last per recording


def gradient_record(run_dir: Path, label: str, depth: int, skip: str) -> GradientRecord | None:
    found = read_grad_norms(run_dir)
    if found is None:
        return None
    steps, columns, rows = found
    if not rows:
        return None
    values = np.array(rows, dtype=float)
    # convs on the main path: not the shortcuts' 1×1 convs, the stage totals or the ratio
    layers = [
        c
        for c in columns
        if c != RATIO and not re.fullmatch(r"stages\.\d+", c) and ".shortcut." not in c
    ]
    index = {c: i for i, c in enumerate(columns)}
    return GradientRecord(
        label=label,
        depth=depth,
        skip=skip,
        steps=np.array(steps),
        layers=layers,
        norms=values[:, [index[c] for c in layers]],
        ratio=values[:, index[RATIO]] if RATIO in index else np.full(len(steps), np.nan),
    )


def plot_gradient_flow(records: list[GradientRecord], path: Path) -> Path:
    """Heat maps of log10 ‖∇W‖ (layer × step), rows = depth, columns = skip, one colour scale."""
    depths = sorted({r.depth for r in records})
    skips = sorted({r.skip for r in records}, key=lambda s: SKIP_ORDER.get(s, 9))
    fig = _figure(figsize=(1.0 + 4.2 * len(skips), 0.6 + 3.0 * len(depths)))
    axes = fig.subplots(len(depths), len(skips), squeeze=False)
    logs = [np.log10(_positive(r.norms)) for r in records]
    every = np.concatenate([v[np.isfinite(v)] for v in logs])
    vmin, vmax = np.percentile(every, [1, 99]) if every.size else (0.0, 1.0)
    for ax in axes.ravel():
        ax.axis("off")  # until a run fills it
    for record, log in zip(records, logs, strict=True):
        ax = axes[depths.index(record.depth)][skips.index(record.skip)]
        ax.axis("on")
        steps = record.steps
        half = (steps[1] - steps[0]) / 2
        extent = (steps[0] - half, steps[-1] + half, 0.5, len(record.layers) + 0.5)
        image = ax.imshow(log.T, origin="lower", aspect="auto", extent=extent, vmin=vmin,
                          vmax=vmax, cmap="magma", interpolation="nearest")  # fmt: skip
        ax.set_title(record.label, fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel("conv layer (1 = stem)")
    fig.colorbar(image, ax=axes, label="log10 gradient norm")
    fig.suptitle("Gradient flow: weight-gradient norm of each conv layer", fontsize=11)
    return _save(fig, path)


def plot_gradient_ratio(records: list[GradientRecord], path: Path) -> Path:
    """Left: first/last conv gradient-norm ratio over training. Right: each layer's median
    gradient norm over the recordings against its position (input → output)."""
    fig = _figure(figsize=(11, 4.0))
    left, right = fig.subplots(1, 2)
    for r, (colour, style) in zip(records, _styles(records), strict=True):
        left.plot(r.steps, _positive(r.ratio), style, color=colour, label=r.label)
        position = np.arange(1, len(r.layers) + 1)
        profile = np.nanmedian(_positive(r.norms), axis=0)
        right.plot(position, profile, style, color=colour, label=r.label)
    left.axhline(1.0, color="0.5", linewidth=0.8)
    labels = [
        ("iteration", "‖∇W first conv‖ / ‖∇W last conv‖", "first / last layer"),
        ("conv layer (1 = stem)", "median gradient norm", "per layer (median over time)"),
    ]
    for ax, (x, y, title) in zip((left, right), labels, strict=True):
        ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return _save(fig, path)


# --- the report's entry point ---------------------------------------------------------------


@dataclass
class _Shown:
    run_dir: Path
    label: str
    depth: int
    skip: str


def _or_none(problems: list, run_dir: Path, read, *args) -> Any:
    """read(*args), or None when a file of run_dir cannot be read ((run_dir, error) noted)."""
    try:
        return read(*args)
    except RunFolderError as err:
        problems.append((run_dir, err))
        return None


def _one_per_variant(run_dirs: list[Path], problems: list) -> list[_Shown]:
    """One run per variant (lowest seed), ordered by depth and skip."""
    chosen: dict[tuple, tuple[Any, _Shown]] = {}
    datasets = set()
    infos = []
    for run_dir in map(Path, run_dirs):
        summary = _or_none(problems, run_dir, read_summary, run_dir) or {}
        if "name" not in summary or "depth" not in summary:
            continue
        datasets.add(summary.get("dataset"))
        infos.append((run_dir, summary))
    for run_dir, s in infos:
        label = s["name"] + (f" ({s.get('dataset')})" if len(datasets) > 1 else "")
        shown = _Shown(run_dir, label, int(s["depth"]), str(s.get("skip")))
        seed = s.get("seed")
        seed_key = (0, seed) if isinstance(seed, int) else (1, str(seed))
        key = (label,)
        if key not in chosen or seed_key < chosen[key][0]:
            chosen[key] = (seed_key, shown)
    shown = [v for _, v in chosen.values()]
    return sorted(shown, key=lambda r: (r.depth, SKIP_ORDER.get(r.skip, 9), r.label))


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _gradient_figures(
    shown: list[_Shown], out: Path, problems: list
) -> list[tuple[str, Path, str]]:
    records = [
        _or_none(problems, s.run_dir, gradient_record, s.run_dir, s.label, s.depth, s.skip)
        for s in shown
    ]
    records = [r for r in records if r is not None and len(r.steps) >= 2]
    if not records:
        return []
    medians = [float(np.nanmedian(_positive(r.ratio))) for r in records]
    ratios = ", ".join(f"{r.label} {_fmt(m)}" for r, m in zip(records, medians, strict=True))
    every = int(records[0].steps[1] - records[0].steps[0])
    heat = plot_gradient_flow(records, out / f"{PREFIX}gradient_flow.png")
    curves = plot_gradient_ratio(records, out / f"{PREFIX}gradient_ratio.png")
    return [
        (
            "Gradient flow per layer",
            heat,
            f"Weight-gradient L2 norm of every main-path conv layer (log10; bottom = stem, top = "
            f"last block), recorded every {every} steps during training (grad_norms.csv). "
            "Dark bands low in a panel mean gradients shrink on their way to the input.",
        ),
        (
            "Gradient ratio first / last layer",
            curves,
            "Ratio of the first conv layer's gradient norm to the last one's over training "
            f"(median: {ratios}), and each layer's median gradient norm against its position. "
            "A ratio well below 1 means the early layers get a much smaller gradient.",
        ),
    ]


def _labelled(shown: list[_Shown], read, problems: list) -> list[dict]:
    """What `read` finds in each shown run folder, with that run's label, depth and skip."""
    found = []
    for s in shown:
        data = _or_none(problems, s.run_dir, read, s.run_dir)
        if data is not None:
            found.append({**data, "label": s.label, "depth": s.depth, "skip": s.skip})
    return found


def _landscape_figures(
    shown: list[_Shown], out: Path, problems: list
) -> list[tuple[str, Path, str]]:
    datas = _labelled(shown, read_landscape, problems)
    if not datas:
        return []
    with_2d = [d for d in datas if "loss_2d" in d]
    fig = _figure(figsize=(5.5 + 4.0 * len(with_2d), 4.2))
    axes = fig.subplots(1, 1 + len(with_2d), squeeze=False,
                        width_ratios=[1.3] + [1] * len(with_2d))[0]  # fmt: skip
    plot_landscape_1d(datas, ax=axes[0])
    if with_2d:
        plot_landscape_2d(with_2d, axes=list(axes[1:]))
    fig.suptitle("Loss landscape around the trained weights (Li et al. 2018)", fontsize=11)
    path = _save(fig, out / f"{PREFIX}landscape.png")
    parts = []
    for d in datas:
        loss = np.asarray(d["loss_1d"], dtype=float)
        mid = len(loss) // 2
        edge = float(np.mean([loss[0], loss[-1]]))
        part = f"{d['label']} {_fmt(loss[mid])} → {_fmt(edge)}"
        if "loss_2d" in d:
            flat = np.asarray(d["loss_2d"], dtype=float)
            inside = np.mean(np.isfinite(flat) & (flat <= 2 * loss[mid]))
            part += f" ({100 * inside:.0f} % of the plane within 2× the centre)"
        parts.append(part)
    span = datas[0].get("span", "?")
    return [
        (
            "Loss landscape",
            path,
            "Training loss (eval-mode BN, fixed subset of training images) around the trained "
            "weights along random filter-normalised directions, BN and bias directions zeroed. "
            f"Loss at the trained weights → mean at ±{span}: " + "; ".join(parts) + ". "
            "A loss that rises faster, with contours less round, is a sharper, more chaotic "
            "surface.",
        )
    ]


def _lesion_figures(shown: list[_Shown], out: Path, problems: list) -> list[tuple[str, Path, str]]:
    records = _labelled(shown, read_lesion, problems)
    if not records:
        return []
    path = plot_lesion(records, out / f"{PREFIX}lesion.png")
    parts = []
    for r in records:
        errors = [b["test_error"] for b in r["blocks"] if b["test_error"] is not None]
        base = r["baseline"]["test_error"]
        rise = 100 * (float(np.mean(errors)) - base) if errors and base is not None else None
        kept = sum(not b["deleted"] for b in r["blocks"])
        part = f"{r['label']} {'+' if rise is not None and rise >= 0 else ''}{_fmt(rise)} pp"
        if kept:
            part += f" ({kept} block(s) cannot be deleted: the shape changes)"
        parts.append(part)
    return [
        (
            "Lesion study",
            path,
            "Test error with one block deleted at a time (its branch removed, its shortcut "
            "kept; Veit et al. 2016). Mean change in test error over the deleted blocks: "
            + "; ".join(parts)
            + ".",
        )
    ]


def analysis_figures(
    run_dirs: list[Path], out_dir: Path, unreadable: list | None = None
) -> list[tuple[str, Path, str]]:
    """The analyses' figures for these run folders, drawn into out_dir: a list of
    (title, png path, caption); empty when no run has anything to show. A file that cannot be
    read is left out, and (run_dir, RunFolderError) appended to `unreadable` if given."""
    problems = [] if unreadable is None else unreadable
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{PREFIX}*.png"):  # of an earlier call, maybe not drawn now
        stale.unlink()
    shown = _one_per_variant(run_dirs, problems)
    makers = (_gradient_figures, _landscape_figures, _lesion_figures)
    return [figure for make in makers for figure in make(shown, out, problems)]
