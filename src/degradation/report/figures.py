"""The paper's figures, redrawn from run folders: first the data (returned and saved as
figures.json, so a test can check the mean and its band), then the PNG and its SVG copy
(matplotlib, Agg; figure_files.py).

Per study (one dataset and recipe):
- fig1: training and validation error vs iterations, plain nets of two depths (Fig. 1).
- fig6: plain | residual (| concat): dashed = training error, solid = validation error, one
  colour per depth, the final test error as a cross (Fig. 6).
- degradation: final training error vs depth, one line per skip type.
- fig7: standard deviation of each 3×3 layer's response, in layer order and sorted (Fig. 7),
  on a log axis when the stds span more than two orders of magnitude (`yscale`).

Every series is a mean over the completed runs (seeds) of a variant, with its sample std and
count per x; a ± std band is drawn only where two or more runs share the x. Diverged and
failed runs are left out, and each caption says how many.

Only `val/error` is logged during training, so the solid curves are validation error and say
so. The test set is evaluated at the end only, twice: the final model (metrics.csv `test/error`,
summary.json `final.test_error`, the cross drawn here) and best.ckpt (`best/test_error`,
`best_val.test_error`, in the tables).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from degradation.report.figure_files import (  # noqa: E402
    LEGEND_FONTSIZE,
    SKIP_STYLES,
    literal_text,
    save_figure,
)
from degradation.report.runs import Run, Variant  # noqa: E402
from degradation.report.stats import describe  # noqa: E402
from degradation.vocabulary import Skip, order, skip_label, skip_title  # noqa: E402

# Fig. 7 on a log axis when its stds span more than this factor: a plain-56's (~1e5) would
# otherwise flatten every other curve onto zero
LOG_AXIS_SPAN = 100.0


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "runs"


def _series(label: str, variant: Variant, metric: str, points: dict[float, list[float]]) -> dict:
    xs = sorted(points)
    stats = [describe(points[x]) for x in xs]
    return {
        "label": label,
        "variant": variant.label,
        "depth": variant.depth,
        "skip": variant.skip,
        "metric": metric,
        "x": xs,
        "mean": [s.mean for s in stats],
        "std": [s.std for s in stats],
        "n": [s.n for s in stats],
    }


def curve(variant: Variant, column: str, label: str) -> dict:
    """Mean ± std over the variant's completed runs of a metrics.csv column, per step."""
    points: dict[float, list[float]] = {}
    for run in variant.usable:
        for step, v in run.metrics.get(column, []):
            points.setdefault(step, []).append(v)
    return _series(label, variant, column, points)


def final_test_point(variant: Variant) -> dict:
    """The final model's test error at its last step (the test set is evaluated only there)."""
    points: dict[float, list[float]] = {}
    for run in variant.usable:
        if run.final("test_error") is not None and run.summary.get("steps") is not None:
            points.setdefault(run.summary["steps"], []).append(run.final("test_error"))
    return _series(f"{variant.label} test (final)", variant, "test/error", points)


def _left_out(variants: list[Variant]) -> str:
    n = sum(len(v.runs) - len(v.usable) for v in variants)
    return f" {n} diverged or failed run(s) left out (see 'Runs not in the means')." if n else ""


def _no_curves(variants: list[Variant]) -> str:
    """Variants drawn without curves: none of their completed runs has a readable metrics.csv."""
    bare = [v.label for v in variants if v.usable and not any(r.metrics for r in v.usable)]
    if not bare:
        return ""
    return (
        f" No curves for {', '.join(bare)}: no readable metrics.csv (see 'Runs that could not "
        "be read')."
    )


def _seeds_note(variants: list[Variant]) -> str:
    counts = sorted({len(v.usable) for v in variants if v.usable})
    if counts == [1]:
        return " One run per variant: no band."
    return " Lines are means over seeds; bands are ± one sample std where two or more seeds."


def fig1(study: str, variants: list[Variant]) -> dict | None:
    """Plain nets of the shallowest and deepest trained depth (the paper's Fig. 1)."""
    plain = [v for v in variants if v.skip == "none" and v.usable]
    series_names = sorted({(v.shared != "", v.series) for v in plain})  # the paper's first
    for _, name in series_names:
        chosen = sorted((v for v in plain if v.series == name), key=lambda v: v.depth or 0)
        if len(chosen) >= 2:
            pair = [chosen[0], chosen[-1]]
            break
    else:
        return None
    train = [curve(v, "train/error", f"{v.label} train") for v in pair]
    val = [curve(v, "val/error", f"{v.label} val") for v in pair]
    val += [final_test_point(v) for v in pair]
    return {
        "id": f"fig1_{slug(study)}",
        "kind": "fig1",
        "title": f"Plain nets, {pair[0].label} vs {pair[1].label} — {study}",
        "caption": f"Fig. 1 style ({study}): training error (left) and validation error (right, "
        "solid; the final test error is the cross) vs iterations for plain nets of two depths."
        + _seeds_note(pair)
        + _no_curves(pair)
        + _left_out(pair),
        "panels": [
            {"title": "training error", "series": train},
            {"title": "validation error (× = final test error)", "series": val},
        ],
    }


def fig6(study: str, variants: list[Variant]) -> dict | None:
    used = [v for v in variants if v.usable]
    if not used:
        return None
    panels = []
    # a skip of another version of the program goes last
    for skip in sorted({v.skip for v in used}, key=lambda s: (order(Skip, s), s)):
        for series in sorted({v.series for v in used if v.skip == skip}):
            members = sorted(
                (v for v in used if v.skip == skip and v.series == series),
                key=lambda v: v.depth or 0,
            )
            lines = []
            for v in members:
                lines.append(curve(v, "train/error", f"{v.label} train"))
                lines.append(curve(v, "val/error", f"{v.label} val"))
                lines.append(final_test_point(v))
            # the paper's nets by their skip's title, any other by its series
            title = skip_title(skip) if series == skip_label(skip) else series
            panels.append({"title": title, "series": lines})
    return {
        "id": f"fig6_{slug(study)}",
        "kind": "fig6",
        "title": f"Training (dashed) and validation (solid) error — {study}",
        "caption": f"Fig. 6 style ({study}): dashed = training error (running, augmented), "
        "solid = validation error (held-out split of the training set; the paper plots test "
        "error), × = final test error; one colour per depth."
        + _seeds_note(used)
        + _no_curves(used)
        + _left_out(variants),
        "panels": panels,
    }


def degradation(study: str, variants: list[Variant]) -> dict | None:
    used = [v for v in variants if v.usable and v.depth is not None]
    if not used:
        return None
    series = []
    for _, name in sorted({(v.skip != Skip.none, v.series) for v in used}):  # plain nets first
        members = [v for v in used if v.series == name]
        points: dict[float, list[float]] = {}
        for v in members:
            values = [r.final("train_error") for r in v.usable]
            points[v.depth] = [x for x in values if x is not None]
        s = _series(name, members[0], "final train/error", points)
        s["variant"] = name
        series.append(s)
    return {
        "id": f"degradation_{slug(study)}",
        "kind": "degradation",
        "title": f"Final training error vs depth — {study}",
        "caption": f"The degradation problem in one picture ({study}): final training error "
        "(running error of the last logging window) vs depth, one line per skip type; error "
        "bars = ± one sample std over seeds, dots = single runs. Degradation shows as a plain "
        "line rising with depth." + _left_out(variants),
        "panels": [{"title": "final training error", "series": series}],
    }


def _responses_series(variant: Variant, ordered: bool) -> dict | None:
    runs = [r for r in variant.usable if r.responses and r.responses.get("std")]
    profiles = [[x if x is not None else math.nan for x in r.responses["std"]] for r in runs]
    if not profiles or len({len(p) for p in profiles}) != 1:
        return None
    if not ordered:
        profiles = [sorted(p, reverse=True) for p in profiles]
    points = {i + 1: [p[i] for p in profiles] for i in range(len(profiles[0]))}
    return _series(variant.label, variant, "layer response std", points)


def fig7(study: str, variants: list[Variant]) -> dict | None:
    used = [v for v in variants if v.usable]
    in_order = [s for v in used if (s := _responses_series(v, ordered=True))]
    if not in_order:
        return None
    by_size = [s for v in used if (s := _responses_series(v, ordered=False))]
    missing = [v.label for v in used if not _responses_series(v, ordered=True)]
    note = f" No layer_responses.json for: {', '.join(missing)}." if missing else ""
    yscale = "log" if _span(in_order) > LOG_AXIS_SPAN else "linear"
    if yscale == "log":
        note += " Log axis: the stds span more than two orders of magnitude."
    return {
        "id": f"fig7_{slug(study)}",
        "kind": "fig7",
        "title": f"Standard deviation of layer responses — {study}",
        "caption": f"Fig. 7 style ({study}): std of each 3×3 layer's output (after BN, before "
        "ReLU/addition), eval mode, on fixed validation images, at the end of training; left in "
        "layer order, right sorted by magnitude. Dashed = plain, solid = residual."
        + _seeds_note(used)
        + note
        + _left_out(variants),
        "yscale": yscale,
        "panels": [
            {"title": "layer index (original order)", "series": in_order},
            {"title": "layer index (sorted by magnitude)", "series": by_size},
        ],
    }


def _positive_means(series: list[dict]) -> list[float]:
    return [m for s in series for m in s["mean"] if m is not None and math.isfinite(m) and m > 0]


def _span(series: list[dict]) -> float:
    """Largest over smallest positive mean of the series (1 when there are none)."""
    means = _positive_means(series)
    return max(means) / min(means) if means else 1.0


FIGURES = (fig1, fig6, degradation, fig7)


def figure_data(studies: dict[str, list[Variant]]) -> list[dict]:
    """Every figure's data, study by study, in reading order."""
    found = []
    for study, variants in studies.items():
        for make in FIGURES:
            figure = make(study, variants)
            if figure is not None:
                found.append({**figure, "study": study})
    return found


# --- drawing -------------------------------------------------------------------------------


def depth_colours(runs: list[Run]) -> dict[int, Any]:
    depths = sorted({r.depth for r in runs if r.depth is not None})
    palette = plt.get_cmap("tab10").colors
    return {d: palette[i % len(palette)] for i, d in enumerate(depths)}


def _draw_series(ax, s: dict, colour, kind: str, floor: float | None = None) -> None:
    """One series; `floor`: on a log axis, where a ± std band's lower edge stops."""
    scale = 1.0 if s["metric"] == "layer response std" else 100.0  # errors in %
    x = s["x"]
    # a value too large to draw (an overflowed spread, a hand-edited file) is a gap, not a crash
    mean = [scale * m if m is not None and math.isfinite(m) else math.nan for m in s["mean"]]
    std = [scale * v if v is not None and math.isfinite(v) else 0.0 for v in s["std"]]
    if all(math.isnan(m) for m in mean):  # nothing to draw (no metrics.csv): no legend entry
        return
    if s["metric"] == "test/error":
        ax.errorbar(x, mean, yerr=std, fmt="x", color=colour, markersize=9, mew=2,
                    label=s["label"])  # fmt: skip
        return
    style = SKIP_STYLES.get(s["skip"], "-")
    if kind == "degradation":
        ax.errorbar(x, mean, yerr=std, fmt="o" + style, capsize=4, label=s["label"])
        return
    if kind in ("fig1", "fig6"):
        style = "--" if s["metric"] == "train/error" else "-"
    ax.plot(x, mean, style, color=colour, label=s["label"], linewidth=1.6)
    band = [v is not None for v in s["std"]]  # only where two or more runs share the x
    lower = [m - v if floor is None else max(m - v, floor) for m, v in zip(mean, std, strict=True)]
    upper = [m + v for m, v in zip(mean, std, strict=True)]
    ax.fill_between(x, lower, upper, where=band, color=colour, alpha=0.2, linewidth=0)


def _draw_runs(ax, variants: list[Variant]) -> None:
    """Single runs as dots on the degradation plot (so a mean never hides its seeds)."""
    for v in variants:
        ys = [100 * e for r in v.usable if (e := r.final("train_error")) is not None]
        ax.plot([v.depth] * len(ys), ys, ".", color="0.4", alpha=0.6)


AXIS_LABELS = {
    "fig1": ("iterations", "error (%)"),
    "fig6": ("iterations", "error (%)"),
    "degradation": ("depth (layers)", "final training error (%)"),
    "fig7": ("3×3 layer index", "std of response"),
}


def render(figure: dict, out_dir: Path, colours: dict[int, Any], variants: list[Variant]) -> Path:
    panels = figure["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    kind = figure["kind"]
    log = figure.get("yscale") == "log"
    # a band reaching zero or below stops at half the smallest mean, inside the log axis
    floor = 0.5 * min(_positive_means([s for p in panels for s in p["series"]])) if log else None
    for ax, panel in zip(axes[0], panels, strict=True):
        for series in panel["series"]:
            _draw_series(ax, series, colours.get(series["depth"], "k"), kind, floor)
        if log:
            ax.set_yscale("log")
        if kind == "degradation":
            _draw_runs(ax, variants)
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel(AXIS_LABELS[kind][0])
        ax.set_ylabel(AXIS_LABELS[kind][1])
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=LEGEND_FONTSIZE, loc="best")
        if kind in ("fig7", "degradation"):  # layer indices and depths are whole numbers
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if kind in ("fig1", "fig6"):  # panels side by side compare on one scale
        for get, put in (("get_xlim", "set_xlim"), ("get_ylim", "set_ylim")):
            lows, highs = zip(*(getattr(ax, get)() for ax in axes[0]), strict=True)
            pad = 0.03 * (max(highs) - min(lows))  # keeps end markers off the frame
            for ax in axes[0]:
                getattr(ax, put)(min(lows) - pad, max(highs) + pad)
    fig.suptitle(figure["title"], fontsize=11)
    literal_text(fig)  # before tight_layout measures it
    fig.tight_layout()
    return save_figure(fig, Path(out_dir) / f"{figure['id']}.png")  # and its SVG copy
