"""The report's analysis figures, each over every seed of every variant, with their captions.

    analysis_figures(runs, out_dir, unreadable=None) -> [(title, png_path, caption)]

draws, into out_dir, from what the run folders hold (grad_norms.csv, analysis/landscape.npz,
analysis/lesion.json):

  analysis_gradient_flow.png     relative gradient ‖g‖/‖w‖ of each main-path 3×3 conv over
                                 training (layer × step), the geometric mean over seeds
  analysis_gradient_profile.png  each layer's median RMS and relative gradient by position
  analysis_landscape.png         loss increase over the central loss, along a direction and
                                 over a plane (Li et al. 2018)
  analysis_lesion.png            test error with each block deleted, and the headroom lost

and analysis.json: per variant the per-seed values the captions summarise, their mean and
sample std, the options each analysis was run with, and the tests between variants.

Runs are grouped as the report groups them (`report.runs.group_runs`: one dataset, recipe and
architecture; seeds differ), so one recipe's runs never stand in for another's. Only completed
runs count; a seed that appears twice in a variant counts once (the first folder by path) and
the caption says so. A caption gives mean ± sample std over the seeds and how many seeds had
the file; a file that cannot be read (rundir.RunFolderError) leaves its run out of that figure
only. Why each number is measured as it is: docs/analyses.md.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from degradation.analyze.plots import (
    plot_gradient_flow,
    plot_gradient_profile,
    plot_landscape_seeds,
    plot_lesion_seeds,
)
from degradation.analyze.summaries import (
    EARLY_SHARE,
    EXPLOSION_GROWTH,
    RADII,
    common_blocks,
    compare_curvature,
    early_explosion,
    gradient_summary,
    landscape_summary,
    lesion_summary,
    spread,
)
from degradation.errors import UserError
from degradation.models.measure import REL, RMS
from degradation.report.figure_files import remove_figure
from degradation.report.runs import Run, group_runs, read_runs
from degradation.rundir import (
    SUMMARY,
    RunFolderError,
    find_run_dirs,
    read_grad_norms,
    read_landscape,
    read_lesion,
    write_json,
)
from degradation.vocabulary import Skip, order

PREFIX = "analysis_"
RECORD = "analysis.json"
LI_DEPTH = 56  # Li et al. 2018, Fig. 5: from 56 layers on, their no-skip nets turn chaotic


# --- the variants and their seeds ------------------------------------------------------------


@dataclass
class Seeds:
    """One variant's completed runs, one per seed, in seed order."""

    label: str
    dataset: str
    recipe: str
    depth: int | None
    skip: str
    runs: list[Run]
    repeated: list[Run] = field(default_factory=list)  # a seed already in `runs`: left out

    @property
    def key(self) -> tuple[str, str, Any]:
        """The study and depth: plain and residual nets are compared within one such key."""
        return (self.dataset, self.recipe, self.depth)


def _seed_order(run: Run) -> tuple:
    return (0, run.seed, str(run.path)) if isinstance(run.seed, int) else (1, str(run.seed), "")


def variants_of(runs: Iterable[Run]) -> list[Seeds]:
    """The variants of the report (`group_runs`), each with its completed runs, one per seed."""
    runs = list(runs)
    datasets = {r.dataset for r in runs}
    found = []
    for variant in group_runs(runs):
        # group_runs counts each seed once (Variant.duplicates holds the other folders)
        kept = sorted(variant.usable, key=_seed_order)
        repeated = sorted((d.run for d in variant.duplicates), key=_seed_order)
        if not kept:
            continue
        label = variant.label + (f" ({variant.dataset})" if len(datasets) > 1 else "")
        found.append(Seeds(label, variant.dataset, variant.recipe, variant.depth, variant.skip,
                           kept, repeated))  # fmt: skip
    return found


def _or_none(problems: list, run_dir: Path, read: Callable, *args) -> Any:
    """read(*args), or None when a file of run_dir cannot be read ((run_dir, error) noted)."""
    try:
        return read(*args)
    except RunFolderError as err:
        problems.append((run_dir, err))
        return None


def _found(v: Seeds, read: Callable, problems: list) -> list[tuple[Run, Any]]:
    """(run, what `read` finds in its folder) for each seed of the variant that has it."""
    pairs = [(run, _or_none(problems, run.path, read, run.path)) for run in v.runs]
    return [(run, data) for run, data in pairs if data is not None]


# --- text ------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _pm(s: dict[str, Any], digits: int = 3, scale: float = 1.0) -> str:
    """'mean ± std' of a `spread`, 'value' for one seed, 'n/a' for none."""
    if s["mean"] is None:
        return "n/a"
    text = _fmt(scale * s["mean"], digits)
    if s["std"] is None:
        return text
    std = 0.0 if s["std"] <= 1e-9 * abs(s["mean"]) else s["std"]  # rounding noise of equal seeds
    return f"{text} ± {_fmt(scale * std, digits)}"


def _seeds_text(v: Seeds, found: list) -> str:
    """'3 seeds', '1 seed (s2)', '2 of 3 seeds (not s1)', plus any seed counted once."""
    have = [run.seed for run, _ in found]
    if len(have) == len(v.runs):
        text = f"{len(have)} seeds" if len(have) > 1 else f"1 seed (s{have[0]})"
    else:
        missing = ", ".join(f"s{r.seed}" for r in v.runs if r.seed not in have)
        text = f"{len(have)} of {len(v.runs)} seeds (not {missing})"
    if v.repeated:
        text += f"; seed {', '.join(str(r.seed) for r in v.repeated)} repeated, counted once"
    return text


def _runs_json(found: list, out: Path) -> list[dict[str, Any]]:
    """Seed and run folder (relative to the folder analysis.json is in) of each run used."""
    return [{"seed": run.seed, "run": os.path.relpath(run.path.resolve(), out.resolve())}
            for run, _ in found]  # fmt: skip


def _variant_json(v: Seeds) -> dict[str, Any]:
    return {"variant": v.label, "dataset": v.dataset, "recipe": v.recipe, "depth": v.depth,
            "skip": v.skip, "seeds_counted_once": [r.seed for r in v.repeated]}  # fmt: skip


def _config_number(runs: list[Run], key: str) -> str | None:
    """The one value of a numeric config key all runs share, as text; None otherwise."""
    values = {r.config.get(key) for r in runs} - {None}
    if len(values) != 1 or not isinstance(value := values.pop(), int | float):
        return None
    return _fmt(float(value), 2)


# --- gradient flow ---------------------------------------------------------------------------


@dataclass
class GradientRecord:
    label: str
    depth: int | None
    skip: str
    steps: np.ndarray  # recordings
    layers: list[str]  # main-path 3×3 conv layers, input to output
    rms: np.ndarray  # recordings × layers: RMS gradient per weight, ‖g‖ / sqrt(numel)
    rel: np.ndarray  # recordings × layers: relative gradient ‖g‖ / ‖w‖


def gradient_record(run_dir: Path) -> GradientRecord | None:
    """The run's grad_norms.csv as per-layer arrays; None without one, with fewer than two
    recordings, or for a file of the earlier raw-norm format (no `rel/` columns)."""
    found = read_grad_norms(run_dir)
    if found is None:
        return None
    steps, columns, rows = found
    index = {c: i for i, c in enumerate(columns)}
    layers = [c.removeprefix(f"{REL}/") for c in columns if c.startswith(f"{REL}/")]
    layers = [name for name in layers if not (name.startswith("stages.") and name.count(".") == 1)]
    if len(rows) < 2 or not layers or any(f"{RMS}/{name}" not in index for name in layers):
        return None
    values = np.array(rows, dtype=float)
    return GradientRecord("", None, "", np.array(steps), layers,
                          values[:, [index[f"{RMS}/{name}"] for name in layers]],
                          values[:, [index[f"{REL}/{name}"] for name in layers]])  # fmt: skip


def _geometric_mean(arrays: list[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        logs = np.log(np.where(np.asarray(arrays) > 0, arrays, np.nan))
        return np.exp(np.nanmean(logs, axis=0))


def _over_seeds_heat_map(v: Seeds, records: list[GradientRecord], seeds: str) -> GradientRecord:
    """One panel for the variant: the geometric mean over seeds of ‖g‖/‖w‖ at the steps every
    seed recorded (the first seed alone if they share fewer than two)."""
    common = sorted(set.intersection(*(set(r.steps.tolist()) for r in records)))
    if len(common) < 2:
        records, seeds = records[:1], f"s{v.runs[0].seed} only: recordings differ"
        common = records[0].steps.tolist()
    rows = [[list(r.steps).index(s) for s in common] for r in records]
    rel = _geometric_mean([r.rel[i] for r, i in zip(records, rows, strict=True)])
    return GradientRecord(f"{v.label} ({seeds})", v.depth, v.skip, np.array(common),
                          records[0].layers, rel, rel)  # fmt: skip


def _explosion_text(v: Seeds, explosions: list[dict[str, Any]]) -> str:
    hit = [e for e in explosions if e["exploded"]]
    first = hit[0]["first_layer"] if hit else ""
    rel0 = spread([e["first_rel_at_start"] for e in hit])
    start, peak = (
        spread([e["first_weight_start"] for e in hit]),
        spread([e["first_weight_peak"] for e in hit]),
    )
    count = spread([len(e["layers"]) for e in hit])
    by = max(e["first_peak_step"] for e in hit)
    return (
        f"{v.label}: in {len(hit)} of {len(explosions)} seeds; at the first recording "
        f"the first layer's ({first}) ‖∇W‖/‖W‖ is {_pm(rel0)} and its RMS weight grows "
        f"{_pm(start)} → {_pm(peak)} by step {by}; {_pm(count, 2)} of "
        f"{hit[0]['num_layers']} layers' weights at least double"
    )


def _gradient_figures(variants: list[Seeds], out: Path, problems: list) -> tuple:
    groups = [(v, found) for v in variants if (found := _found(v, gradient_record, problems))]
    if not groups:
        return [], None
    heat, profiles, parts, record = [], [], [], []
    exploded, exploded_labels, calm = [], [], []
    for v, found in groups:
        seeds = _seeds_text(v, found)
        records = [r for _, r in found]
        heat.append(_over_seeds_heat_map(v, records, seeds))
        summaries = [gradient_summary(r.rms, r.rel) for r in records]
        profiles.append({"label": f"{v.label} ({seeds})", "depth": v.depth, "skip": v.skip,
                         "rms": [s["rms"] for s in summaries],
                         "rel": [s["rel"] for s in summaries]})  # fmt: skip
        explosions = [early_explosion(r.steps, r.layers, r.rms, r.rel) for r in records]
        quotients = [s["first_rel"] / s["last_rel"] if s["first_rel"] and s["last_rel"] else None
                     for s in summaries]  # fmt: skip
        first, last = (
            spread([s["first_rel"] for s in summaries]),
            spread([s["last_rel"] for s in summaries]),
        )
        quotient = spread(quotients)
        parts.append(f"{v.label} ({seeds}) {_pm(first)} / {_pm(last)} (×{_pm(quotient, 2)})")
        if any(e["exploded"] for e in explosions):
            exploded.append(_explosion_text(v, explosions))
            exploded_labels.append(v.label)
        else:
            calm.append(v.label)
        per_seed = [
            {"seed": run.seed, "first_rel": s["first_rel"], "last_rel": s["last_rel"],
             "quotient": q, "early_explosion": e, "every": int(r.steps[1] - r.steps[0])}
            for (run, r), s, q, e in zip(found, summaries, quotients, explosions, strict=True)
        ]  # fmt: skip
        record.append({**_variant_json(v), "runs": _runs_json(found, out), "per_seed": per_seed,
                       "first_rel": first, "last_rel": last, "quotient": quotient,
                       "explosions": sum(e["exploded"] for e in explosions)})  # fmt: skip
    every = sorted({int(r.steps[1] - r.steps[0]) for _, found in groups for _, r in found})
    runs = [run for v, _ in groups for run in v.runs]
    momentum = _config_number(runs, "optim.momentum")
    decay = _config_number(runs, "optim.weight_decay")
    sgd = f" (here μ = {momentum}, λ = {decay})" if momentum and decay else ""
    not_the_step = (
        "‖∇W‖/‖W‖ is the gradient relative to the weights, not the step: SGD with momentum μ "
        "and weight decay λ moves the weights by lr·v with v ← μ·v + ∇W + λ·W" + sgd + ", up to "
        "1/(1 − μ) times lr·‖∇W‖ while successive gradients agree and less when they do not. "
    )
    found = "none."
    if exploded:
        found = (
            "; ".join(exploded)
            + (f"; none in {', '.join(calm)}" if calm else "")
            + (
                ". Those layers' later small ‖∇W‖/‖W‖ is the explosion's aftermath (the gradient "
                "of a layer followed by BN shrinks as 1/‖W‖), not a vanishing gradient."
            )
        )
    explosion = (
        f"Early explosion (a layer's RMS weight ‖W‖/√n grows at least {EXPLOSION_GROWTH:g}× "
        f"within the first {EARLY_SHARE:.0%} of the recorded steps, from grad_norms.csv's first "
        f"rows): {found}"
    )
    heat_png = plot_gradient_flow(heat, out / f"{PREFIX}gradient_flow.png")
    profile_png = plot_gradient_profile(profiles, out / f"{PREFIX}gradient_profile.png")
    recorded = "/".join(str(e) for e in every)
    figures = [
        (
            "Gradient flow per layer",
            heat_png,
            "Gradient relative to the weights ‖∇W‖/‖W‖ of every 3×3 conv on the main path "
            "(log10; bottom = stem, top = last block's second conv; the same layers for every "
            f"skip type), recorded every {recorded} steps during training (grad_norms.csv); "
            "each panel is the geometric mean over the variant's seeds, at the steps they all "
            f"recorded. {not_the_step}Dark bands low in a panel mean the early layers' "
            "gradients are small relative to their weights; "
            + (
                f"in {', '.join(exploded_labels)} after an early explosion "
                "(next figure), because those weights grew."
                if exploded
                else "no early explosion here (next figure)."
            ),
        ),
        (
            "Gradient flow over depth",
            profile_png,
            "Median over training of each 3×3 conv's RMS gradient per weight (left; it still "
            "scales as 1/‖W‖ for a layer followed by BN) and of its ‖∇W‖/‖W‖ (right); the line "
            "is the geometric mean over seeds, the shading their range. Median ‖∇W‖/‖W‖ of the "
            "first / last 3×3 layer (first ÷ last), mean ± sample std over seeds: "
            + "; ".join(parts)
            + ". A quotient well below 1 means the early layers' gradients are small relative "
            "to their weights. " + explosion,
        ),
    ]
    return figures, {"recorded_every": every, "variants": record}


# --- loss landscape --------------------------------------------------------------------------

LANDSCAPE_OPTIONS = ("steps", "span", "subset", "two_d", "seed", "checkpoint")


def landscape_options(data: dict[str, Any]) -> dict[str, Any]:
    """The options a landscape.npz was measured with: its `options` record, or for a file
    written before they were recorded, what its arrays and fields say (subset: the images
    used). The device is kept out: it does not change what is measured."""
    recorded = data.get("options")
    if isinstance(recorded, str):
        try:
            found = json.loads(recorded)
        except ValueError:
            found = {}
        if isinstance(found, dict):
            return {k: found.get(k) for k in LANDSCAPE_OPTIONS}
    return {"steps": len(data["alphas"]), "span": _scalar(data.get("span")),
            "subset": _scalar(data.get("num_images")), "two_d": "loss_2d" in data,
            "seed": _scalar(data.get("seed")),
            "checkpoint": str(data.get("checkpoint", "?")).removesuffix(".ckpt")}  # fmt: skip


def _scalar(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def _options_text(options: dict[str, Any]) -> str:
    span = options["span"]
    return (
        f"--steps {options['steps']} --span {_fmt(span) if span is not None else '?'} "
        f"--subset {options['subset']} --seed {options['seed']} --checkpoint "
        f"{options['checkpoint']}" + ("" if options["two_d"] else " --no-two-d")
    )


def _landscape_figures(variants: list[Seeds], out: Path, problems: list) -> tuple:
    groups = [(v, found) for v in variants if (found := _found(v, read_landscape, problems))]
    if not groups:
        return [], None
    drawn, parts, record, kappas, option_sets = [], [], {}, {}, {}
    for v, found in groups:
        seeds = _seeds_text(v, found)
        summaries = [landscape_summary(d) for _, d in found]
        options = [landscape_options(d) for _, d in found]
        for (run, _), o in zip(found, options, strict=True):
            option_sets.setdefault(_options_text(o), []).append(f"{v.label} s{run.seed}")
        alphas = np.asarray(found[0][1]["alphas"], dtype=float)
        alike = [d for _, d in found if np.array_equal(np.asarray(d["alphas"], float), alphas)]
        with np.errstate(invalid="ignore"):  # a blown-up loss (inf − inf): NaN, a gap
            rises = [np.asarray(d["loss_1d"], float) - _centre(d["loss_1d"], alphas) for d in alike]
        planes = [_rise_2d(d) for d in alike if "loss_2d" in d]
        drawn.append({"label": f"{v.label} ({seeds})", "depth": v.depth, "skip": v.skip,
                      "alphas": alphas, "rises": rises,
                      "rise_2d": _nanmean(planes) if planes else None})  # fmt: skip
        central = spread([s["central_loss"] for s in summaries])
        increase = {r: spread([s["increase"][r] for s in summaries]) for r in RADII}
        kappa = spread([s["curvature"] for s in summaries])
        kappas[v.label] = (v, kappa, {_options_text(o) for o in options})
        rises_text = "/".join(_pm(increase[r]) for r in RADII)
        parts.append(f"{v.label} ({seeds}): L0 {_pm(central)}, +{rises_text}, κ {_pm(kappa)}")
        per_seed = [{"seed": run.seed, **s, "increase": {str(r): x for r, x in
                     s["increase"].items()}, "options": o}
                    for (run, _), s, o in zip(found, summaries, options, strict=True)]  # fmt: skip
        record[v.label] = {**_variant_json(v), "runs": _runs_json(found, out),
                           "per_seed": per_seed, "central_loss": central, "curvature": kappa,
                           "increase": {str(r): increase[r] for r in RADII}}  # fmt: skip
    comparisons = _compare_landscapes(kappas)
    path = plot_landscape_seeds(drawn, out / f"{PREFIX}landscape.png")
    if len(option_sets) == 1:
        options_text = f"Measured with {next(iter(option_sets))} (every run)."
    else:
        options_text = "Measured with different options: " + "; ".join(
            f"{text} ({', '.join(runs)})" for text, runs in option_sets.items()
        ) + "; nets measured differently are not compared."  # fmt: skip
    radii = "/".join(f"{r:g}" for r in RADII)
    caption = (
        "Training loss (eval-mode BN, fixed subset of training images) around the trained "
        "weights along random filter-normalised directions (BN and bias directions zeroed), "
        "drawn as the increase over each net's own loss at the trained weights L0: each seed "
        "thin, the mean over seeds bold; the plane is the mean increase over seeds. "
        f"{options_text} Per variant, mean ± sample std over seeds: L0, the mean increase at "
        f"distance {radii} along the directions (n/a beyond the grid), and the curvature κ "
        "(second derivative of a quadratic fitted within ±0.5; larger = sharper): "
        + "; ".join(parts) + ". " + " ".join(c["sentence"] for c in comparisons)
    )  # fmt: skip
    data = {
        "options": [{"options": t, "runs": r} for t, r in option_sets.items()],
        "variants": list(record.values()),
        "comparisons": [{k: c[k] for k in c if k != "sentence"} for c in comparisons],
    }
    return [("Loss landscape", path, caption.strip())], data


def _centre(values: Any, positions: Any) -> float:
    """The value at the grid point 0 (the trained weights)."""
    return float(np.asarray(values, dtype=float).flat[int(np.argmin(np.abs(positions)))])


def _rise_2d(data: dict[str, Any]) -> np.ndarray:
    loss = np.asarray(data["loss_2d"], dtype=float)
    centre = int(np.argmin(np.abs(np.asarray(data["alphas"], dtype=float))))
    with np.errstate(invalid="ignore"):  # a blown-up loss (inf − inf): NaN, drawn as such
        rise = loss - loss[centre, centre]
    rise[~np.isfinite(rise)] = np.nan
    return rise


def _nanmean(arrays: list[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():  # a point no seed measured finitely: NaN (blown up)
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(arrays), axis=0)


def _compare_landscapes(kappas: dict[str, tuple]) -> list[dict[str, Any]]:
    """For every study and depth with a plain and a residual variant: which is sharper, by
    Welch's test of κ over their seeds (summaries.compare_curvature), said against Li et al.
    2018 (ResNet-20 with and without skips look alike; from 56 layers on the no-skip net's
    landscape turns chaotic and the residual one stays smooth, their Fig. 5)."""
    by_key: dict[tuple, list[tuple]] = {}
    for v, kappa, options in kappas.values():
        by_key.setdefault(v.key, []).append((v, kappa, options))
    pairs = [
        (p, r)
        for key in sorted(by_key, key=str)
        for p in by_key[key]
        if p[0].skip == "none"
        for r in by_key[key]
        if r[0].skip == "add"
    ]
    found = []
    for (plain, kp, op), (residual, kr, orr) in pairs:
        depth = plain.depth
        head = f"At depth {depth}, {residual.label} against {plain.label}"
        numbers = f"κ {_pm(kr)} vs {_pm(kp)}, n = {kr['n']} v {kp['n']}"
        entry = {"residual": residual.label, "plain": plain.label, "depth": depth}
        if len(op | orr) > 1:
            found.append({**entry, "outcome": "not compared (measured with different options)",
                          "sentence": f"{head}: not compared, measured with different "
                          "options."})  # fmt: skip
            continue
        test = compare_curvature(kp["values"], kr["values"])
        outcome = test["outcome"]
        if outcome == "not tested":
            said = (f"{head}: no clear difference can be stated ({numbers}; a test needs two "
                    "seeds or more a side, with some spread).")  # fmt: skip
        elif outcome == "no clear difference":
            said = (f"{head}: no clear difference in sharpness ({numbers}; Welch p = "
                    f"{_fmt(test['p'], 2)}).")  # fmt: skip
        else:
            deep = isinstance(depth, int | np.integer) and depth >= LI_DEPTH
            if deep and outcome == "sharper":
                li = "the opposite of Li et al. 2018, whose plain nets of 56+ layers are sharper"
            elif deep:
                li = "as Li et al. 2018 find for nets of 56+ layers"
            else:
                li = "Li et al. 2018 see little difference below 56 layers"
            said = (f"{head}: the residual net is {outcome} ({numbers}; Welch p = "
                    f"{_fmt(test['p'], 2)}; {li}).")  # fmt: skip
        found.append({**entry, **test, "sentence": said})
    return found


# --- lesion study ----------------------------------------------------------------------------


def _lesion_options_text(records: list[dict[str, Any]]) -> str:
    texts = set()
    for r in records:
        options = r.get("options") or {}
        checkpoint = options.get("checkpoint") or str(r.get("checkpoint", "?")).removesuffix(
            ".ckpt"
        )
        limit = options.get("limit")
        images = f"the first {limit} test images (--limit {limit})" if limit else (
            f"all {r.get('num_images', '?')} test images")  # fmt: skip
        texts.add(f"checkpoint {checkpoint}, {images}")
    return "; ".join(sorted(texts))


def _lesion_figures(variants: list[Seeds], out: Path, problems: list) -> tuple:
    groups = [(v, found) for v in variants if (found := _found(v, read_lesion, problems))]
    if not groups:
        return [], None
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for v, found in groups:
        by_key.setdefault(v.key, []).extend(record for _, record in found)
    shared = {key: common_blocks(records) for key, records in by_key.items()}
    drawn, parts, record, scopes = [], [], [], {}
    for v, found in groups:
        seeds = _seeds_text(v, found)
        blocks = shared[v.key]
        records = [r for _, r in found]
        summaries = [lesion_summary(r, blocks) for r in records]
        names = [b["block"] for b in records[0]["blocks"]]
        alike = [r for r in records if [b["block"] for b in r["blocks"]] == names]
        errors = [[math.nan if b["test_error"] is None else b["test_error"] for b in r["blocks"]]
                  for r in alike]  # fmt: skip
        lost = [[math.nan if b.get("headroom_lost") is None else b["headroom_lost"]
                 for b in r["blocks"]] for r in alike]  # fmt: skip
        drawn.append({"label": f"{v.label} ({seeds})", "depth": v.depth, "skip": v.skip,
                      "errors": errors, "lost": lost,
                      "baselines": [r["baseline"]["test_error"] for r in alike],
                      "chance": records[0].get("chance_error")})  # fmt: skip
        numbers = {k: spread([s[k] for s in summaries])
                   for k in ("baseline_error", "mean_rise", "mean_lost", "max_lost")}  # fmt: skip
        chance = summaries[0]["chance_error"]
        parts.append(
            f"{v.label} ({seeds}): intact {_pm(numbers['baseline_error'], scale=100)} %, mean "
            f"rise {_pm(numbers['mean_rise'], scale=100)} pp, headroom lost mean "
            f"{_pm(numbers['mean_lost'], 2)} / max {_pm(numbers['max_lost'], 2)}"
        )
        left_out = [n for n in names if n not in blocks]
        scopes[_scope_text(v.key, len(by_key) > 1)] = (len(blocks), left_out, chance)
        per_seed = [{"seed": run.seed, **s, "options": r.get("options")}
                    for (run, r), s in zip(found, summaries, strict=True)]  # fmt: skip
        record.append({**_variant_json(v), "runs": _runs_json(found, out), "blocks": blocks,
                       "per_seed": per_seed, **numbers})  # fmt: skip
    path = plot_lesion_seeds(drawn, out / f"{PREFIX}lesion.png")
    scope = "; ".join(
        f"{where}{n} block{'s' * (n != 1)}"
        + (f" (not {', '.join(left)}: not deleted in every net; a plain block that changes "
           "the shape cannot be)" if left else "")
        for where, (n, left, _) in scopes.items()
    )  # fmt: skip
    chances = {_fmt(100 * c) for _, _, c in scopes.values() if c is not None}
    caption = (
        "Test error with one block deleted at a time (its branch removed, its shortcut kept; "
        "Veit et al. 2016); the line is the mean over seeds, the shading their range. Nets "
        "whose intact errors differ are compared by the fraction of their headroom each "
        "deletion loses, (error − intact) / (chance − intact) with chance = 1 − 1/classes "
        f"({'/'.join(sorted(chances)) or 'n/a'} %): 0 = no effect, 1 = down to chance (n/a "
        "for a net already at chance). Measured on "
        + _lesion_options_text([r for _, found in groups for _, r in found])
        + ". So that plain and residual nets compare like for like, the means are over the "
        "blocks deleted in every net of a depth: "
        + scope
        + ". Per variant, mean ± sample std over seeds: "
        + "; ".join(parts)
        + "."
    )
    return [("Lesion study", path, caption)], {
        "blocks_compared": [
            {"dataset": k[0], "recipe": k[1], "depth": k[2], "blocks": b} for k, b in shared.items()
        ],
        "variants": record,
    }


def _scope_text(key: tuple, several: bool) -> str:
    dataset, recipe, depth = key
    if not several:
        return ""
    where = f"{dataset}" + (f" [{recipe}]" if recipe else "")
    return f"depth {depth} ({where}): "


# --- the report's entry point ----------------------------------------------------------------


def _as_runs(items: Iterable[Run | Path], problems: list) -> list[Run]:
    """Run objects as given; run folders, or the run folders below a folder, read (a folder
    whose summary or config cannot be read is noted in `problems` and left out)."""
    runs, folders = [], []
    for item in items:
        if isinstance(item, Run):
            runs.append(item)
            continue
        try:
            folders += find_run_dirs([Path(item)], marker=SUMMARY)
        except UserError:  # no run folder there: nothing to show
            continue
    if folders:
        read, unreadable = read_runs(list(dict.fromkeys(folders)))
        runs += read
        problems += [(u.run_dir, RunFolderError(u.run_dir / u.file, u.reason))
                     for u in unreadable if u.left_out]  # fmt: skip
    return runs


def analysis_figures(
    runs: Iterable[Run | Path], out_dir: Path, unreadable: list | None = None
) -> list[tuple[str, Path, str]]:
    """The analyses' figures for these runs (report.runs.Run objects, or run folders or
    folders below which run folders are found), drawn
    into out_dir with analysis.json: a list of (title, png path, caption); empty (and no
    analysis.json) when no run has anything to show. A file that cannot be read is left out,
    and (run_dir, RunFolderError) appended to `unreadable` if given."""
    problems = [] if unreadable is None else unreadable
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{PREFIX}*.png"):  # of an earlier call, with its SVG copy
        remove_figure(stale)
    (out / RECORD).unlink(missing_ok=True)
    variants = variants_of(_as_runs(runs, problems))
    variants.sort(key=lambda v: (v.dataset, v.recipe, v.depth or 0, order(Skip, v.skip),
                                 v.label))  # fmt: skip
    if not variants:
        return []
    figures, record = [], {}
    for name, make in (("gradient_flow", _gradient_figures), ("landscape", _landscape_figures),
                       ("lesion", _lesion_figures)):  # fmt: skip
        made, data = make(variants, out, problems)
        figures += made
        if data is not None:
            record[name] = data
    if record:
        write_json(out / RECORD, record)
    return figures
