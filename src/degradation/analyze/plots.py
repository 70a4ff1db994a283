"""Figures of the analyses, per run and across runs (plain vs residual side by side).

    analysis_figures(run_dirs, out_dir) -> [(title, png_path, caption)]

is what the report calls: from whatever the given run folders hold (grad_norms.csv,
analysis/landscape.npz, analysis/lesion.json) it draws, into out_dir,

  analysis_gradient_flow.png     relative update ‖g‖/‖w‖ of each main-path 3×3 conv over
                                 training (layer × step heat map; one panel per run)
  analysis_gradient_profile.png  each layer's median RMS gradient per weight and median
                                 relative update against its position (input → output)
  analysis_landscape.png         loss increase over the central loss along a direction, and
                                 over the plane of two (Li et al. 2018)
  analysis_lesion.png            test error with each block deleted, and the fraction of the
                                 intact net's headroom to chance that each deletion loses

with captions whose numbers are computed here, from the same data as the drawing (the
measures: summaries.py, docs/analyses.md). One run per variant is shown (its lowest seed). A
heat map needs two recordings or more, so a run shorter than `grad_every` steps has none; a
run recorded before the gradient measure changed (raw norms, no `rel/` columns) is left out.
A file that cannot be read (rundir.RunFolderError) leaves its run out of that figure only.

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

from degradation.analyze.summaries import (  # noqa: E402
    RADII,
    gradient_summary,
    landscape_summary,
    lesion_summary,
)
from degradation.models.measure import REL, RMS  # noqa: E402
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
LINTHRESH = 0.01  # loss increases below this (nats): linear in 1-D, the lowest level in 2-D


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
    ax.legend(fontsize=8)
    return _save(fig, path) if fig is not None else None


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
    return _save(fig, path)


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
    chances = {r.get("chance_error") for r in records} - {None}
    for chance in chances:
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
        ax.legend(fontsize=8)
    left.set_ylim(bottom=0)
    fig.suptitle("Lesion study: one block deleted at test time (x = cannot be deleted)",
                 fontsize=11)  # fmt: skip
    return _save(fig, path)


# --- gradient flow ---------------------------------------------------------------------------


@dataclass
class GradientRecord:
    label: str
    depth: int
    skip: str
    steps: np.ndarray  # recordings
    layers: list[str]  # main-path 3×3 conv layers, input to output
    rms: np.ndarray  # recordings × layers: RMS gradient per weight, ‖g‖ / sqrt(numel)
    rel: np.ndarray  # recordings × layers: relative update ‖g‖ / ‖w‖


def gradient_record(run_dir: Path, label: str, depth: int, skip: str) -> GradientRecord | None:
    """The run's grad_norms.csv as per-layer arrays; None without one, or for a file of the
    earlier raw-norm format (no `rel/` columns)."""
    found = read_grad_norms(run_dir)
    if found is None:
        return None
    steps, columns, rows = found
    index = {c: i for i, c in enumerate(columns)}
    layers = [c.removeprefix(f"{REL}/") for c in columns if c.startswith(f"{REL}/")
              and not re.fullmatch(r"stages\.\d+", c.removeprefix(f"{REL}/"))]  # fmt: skip
    if not rows or not layers or any(f"{RMS}/{name}" not in index for name in layers):
        return None
    values = np.array(rows, dtype=float)
    return GradientRecord(
        label=label,
        depth=depth,
        skip=skip,
        steps=np.array(steps),
        layers=layers,
        rms=values[:, [index[f"{RMS}/{name}"] for name in layers]],
        rel=values[:, [index[f"{REL}/{name}"] for name in layers]],
    )


def plot_gradient_flow(records: list[GradientRecord], path: Path) -> Path:
    """Heat maps of log10 ‖g‖/‖w‖ (layer × step), rows = depth, columns = skip, one colour
    scale."""
    depths = sorted({r.depth for r in records})
    skips = sorted({r.skip for r in records}, key=lambda s: SKIP_ORDER.get(s, 9))
    fig = _figure(figsize=(1.0 + 4.2 * len(skips), 0.6 + 3.0 * len(depths)))
    axes = fig.subplots(len(depths), len(skips), squeeze=False)
    logs = [np.log10(_positive(r.rel)) for r in records]
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
        ax.set_ylabel("3×3 conv layer (1 = stem)")
    fig.colorbar(image, ax=axes, label="log10 ‖∇W‖ / ‖W‖")
    fig.suptitle("Gradient flow: relative update of each 3×3 conv layer", fontsize=11)
    return _save(fig, path)


def plot_gradient_profile(records: list[GradientRecord], path: Path) -> Path:
    """Each layer's median over the recordings against its position (input → output): left
    the RMS gradient per weight, right the relative update ‖g‖/‖w‖."""
    fig = _figure(figsize=(11, 4.0))
    left, right = fig.subplots(1, 2)
    for r, (colour, style) in zip(records, _styles(records), strict=True):
        summary = gradient_summary(r.rms, r.rel)
        position = np.arange(1, len(r.layers) + 1)
        left.plot(position, _positive(summary["rms"]), style, color=colour, label=r.label)
        right.plot(position, _positive(summary["rel"]), style, color=colour, label=r.label)
    labels = [
        ("median ‖∇W‖ / sqrt(#weights)", "RMS gradient per weight"),
        ("median ‖∇W‖ / ‖W‖", "relative update (step size relative to the weights, per lr)"),
    ]
    for ax, (y, title) in zip((left, right), labels, strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("3×3 conv layer (1 = stem)")
        ax.set_ylabel(y)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
    parts = []
    for r in records:
        g = gradient_summary(r.rms, r.rel)
        ratio = g["first_rel"] / g["last_rel"] if g["first_rel"] and g["last_rel"] else None
        parts.append(f"{r.label} {_fmt(g['first_rel'])} / {_fmt(g['last_rel'])} "
                     f"(×{_fmt(ratio, 2)})")  # fmt: skip
    every = int(records[0].steps[1] - records[0].steps[0])
    heat = plot_gradient_flow(records, out / f"{PREFIX}gradient_flow.png")
    profile = plot_gradient_profile(records, out / f"{PREFIX}gradient_profile.png")
    return [
        (
            "Gradient flow per layer",
            heat,
            "Relative update ‖∇W‖/‖W‖ of every 3×3 conv on the main path (log10; bottom = stem, "
            f"top = last block's second conv; the same layers for every skip type), recorded "
            f"every {every} steps during training (grad_norms.csv). Times the learning rate it "
            "is the step each layer's weights take relative to their size, i.e. how fast the "
            "layer learns; dark bands low in a panel mean the early layers learn slowly.",
        ),
        (
            "Gradient flow over depth",
            profile,
            "Median over training of each 3×3 conv's RMS gradient per weight (left; size-free, "
            "but it still scales as 1/‖W‖ for a layer followed by BN, so it also reflects each "
            "layer's weight scale) and of its relative update ‖∇W‖/‖W‖ (right; the step relative "
            "to the weights). Median relative update of the first / last 3×3 layer (first ÷ "
            f"last): {'; '.join(parts)}. A first/last quotient well below 1 means the early "
            "layers move much less per step than the late ones.",
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


LI_DEPTH = 56  # Li et al. 2018, Fig. 5: from 56 layers on, their no-skip nets turn chaotic


def _compared_to_li(datas: list[dict], kappas: list[float | None]) -> str:
    """For every depth with a plain and a residual net: which is sharper here, said against Li
    et al. 2018 (ResNet-20 with and without skips look alike; from 56 layers on the no-skip
    net's landscape turns chaotic and the residual one stays smooth, their Fig. 5)."""
    by_depth: dict[Any, dict[str, float]] = {}
    for d, kappa in zip(datas, kappas, strict=True):
        if kappa is not None:
            by_depth.setdefault(d.get("depth"), {})[str(d.get("skip"))] = kappa
    sentences = []
    for depth, found in sorted(by_depth.items(), key=lambda item: str(item[0])):
        if not {"none", "add"} <= set(found):
            continue
        plain, residual = found["none"], found["add"]
        here = "sharper" if residual > plain else "flatter"
        deep = isinstance(depth, int | np.integer) and depth >= LI_DEPTH
        if deep and here == "sharper":
            li = "the opposite of Li et al. 2018, whose plain nets of 56+ layers are the sharper"
        elif deep:
            li = "as Li et al. 2018 find for nets of 56+ layers"
        else:
            li = "Li et al. 2018 see little difference below 56 layers"
        sentences.append(f"At depth {depth} the residual net is {here} than its plain twin "
                         f"(κ {_fmt(residual)} vs {_fmt(plain)}; {li}).")  # fmt: skip
    return " ".join(sentences)


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
    parts, kappas = [], []
    for d in datas:
        summary = landscape_summary(d)
        kappas.append(summary["curvature"])
        rises = "/".join(_fmt(summary["increase"][r]) for r in RADII)
        parts.append(f"{d['label']}: L0 {_fmt(summary['central_loss'])}, +{rises}, "
                     f"κ {_fmt(summary['curvature'])}")  # fmt: skip
    radii = "/".join(f"{r:g}" for r in RADII)
    return [
        (
            "Loss landscape",
            path,
            "Training loss (eval-mode BN, fixed subset of training images) around the trained "
            "weights along random filter-normalised directions (BN and bias directions zeroed), "
            "drawn as the increase over each net's own loss at the trained weights L0, so nets "
            "that end at different losses compare. Per net: L0, the mean increase at distance "
            f"{radii} along the directions (n/a beyond the grid), and the curvature κ (second "
            "derivative of a quadratic fitted within ±0.5; larger = sharper): "
            + "; ".join(parts)
            + ". "
            + _compared_to_li(datas, kappas),
        )
    ]


def _lesion_figures(shown: list[_Shown], out: Path, problems: list) -> list[tuple[str, Path, str]]:
    records = _labelled(shown, read_lesion, problems)
    if not records:
        return []
    path = plot_lesion(records, out / f"{PREFIX}lesion.png")
    parts = []
    for r in records:
        summary = lesion_summary(r)
        rise = None if summary["mean_rise"] is None else 100 * summary["mean_rise"]
        part = (
            f"{r['label']}: intact {_fmt(_percent(summary['baseline_error']))} %, chance "
            f"{_fmt(_percent(summary['chance_error']))} %, mean rise "
            f"{'+' if rise is not None and rise >= 0 else ''}{_fmt(rise)} pp, headroom lost "
            f"mean {_fmt(summary['mean_lost'], 2)} / max {_fmt(summary['max_lost'], 2)}"
        )
        if summary["not_deletable"]:
            part += f" ({summary['not_deletable']} block(s) cannot be deleted: the shape changes)"
        parts.append(part)
    return [
        (
            "Lesion study",
            path,
            "Test error with one block deleted at a time (its branch removed, its shortcut "
            "kept; Veit et al. 2016). Nets whose intact errors differ are compared by the "
            "fraction of their headroom each deletion loses, (error − intact) / (chance − "
            "intact) with chance = 1 − 1/classes: 0 = no effect, 1 = down to chance (n/a for a "
            "net already at chance). " + "; ".join(parts) + ".",
        )
    ]


def _percent(x: float | None) -> float | None:
    return None if x is None else 100 * x


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
