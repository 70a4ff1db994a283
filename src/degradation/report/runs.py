"""Find run folders below a path and load what each one left behind.

A run folder is any folder holding `summary.json`, at any depth: one sweep, several sweeps, or
single runs. Runs are grouped into *variants* (same dataset, same architecture, same training
recipe; seeds differ) and variants into *studies* (same dataset and recipe), the
units that tables, figures and the verdict compare.

A run's architecture is read from summary.json's fields (skip, depth, shortcut, family,
block) and the config's width and preact (`vocabulary.Architecture`), never parsed from its
name: a renamed run is still grouped with its twins. A variant is shown under the one name its
runs' summaries hold (what training called them), or, where they disagree or another variant
of its study holds that name too, the name its fields make (`_name_variants`).
A summary that lacks one of these fields (written by hand; train.py writes them all) is grouped
by its stored name.

The recipe is the part of `.hydra/config.yaml` that changes what a run measures (data,
optimiser, budget, precision as the run resolved it, ...): the config's defining keys
(`config.is_non_defining`) less the few that `NOT_RECIPE_KEYS` lists. Runs of one dataset
whose recipes differ are never averaged together: their labels name the differing keys, e.g.
`plain-20 [trainer.max_steps=10]`.

A variant counts each seed once. A run is identified by what it ran: its config hash, seed
and resolved precision (`Run.identity`); the same run reached twice (the same seed twice, or
through overrides that change nothing, in another folder) is counted once, and so is a seed
that a variant holds under two config hashes (they differ only in keys the report does not
compare, e.g. a plain net's shortcut): seeds are the independent samples, so n never exceeds
the number of seeds. The others are `Variant.duplicates`, listed by the report.

A run folder whose summary.json or .hydra/config.yaml cannot be read is left out and listed
(`read_runs`); one whose metrics.csv or layer_responses.json cannot be read stays in, without
that part, and is listed too (`Run.unreadable`), as is a completed run that lacks either.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from degradation.config import covers, is_non_defining
from degradation.rundir import (
    ANALYSIS,
    CONFIG,
    GRAD_NORMS,
    LANDSCAPE,
    LAYER_RESPONSES,
    LESION,
    METRICS,
    SUMMARY,
    RunFolderError,
    find_run_dirs,
    read_flat_config,
    read_layer_responses,
    read_metrics,
    read_summary,
)
from degradation.vocabulary import Architecture, Skip, order, skip_label

# What summary.json says of the net (train.py has written them all since its first version)
SUMMARY_FIELDS = ("skip", "depth", "shortcut", "family", "block")

# Defining keys (config.NON_DEFINING_KEYS leaves them in the config hash) that a recipe does
# not compare: the variant's own architecture (Run.architecture), the seed (a variant's
# samples), the experiment's folder name, and settings that change where a run runs, how often
# it is measured or when it is called diverged (its status says so), not the numbers compared.
ARCHITECTURE_KEYS = ("depth", "skip", "shortcut", "family", "block", "width", "preact")
NOT_RECIPE_KEYS = (
    *ARCHITECTURE_KEYS,
    "seed",
    "name",
    "diverge_loss",
    "data.verify",  # checks the files: the data checksum identifies them
    "data.eval_batch_size",  # BN in eval mode: the same errors in batches of any size
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.sync_batchnorm",
    "trainer.deterministic",
    "trainer.benchmark",
    "trainer.val_check_interval",
    "trainer.log_every_n_steps",
)
MAX_LABEL_KEYS = 3  # more differing keys than this: recipes are lettered instead
# What every completed run of this program leaves besides summary.json and .hydra/ (train.py)
COMPLETED_RUN_FILES = (METRICS, LAYER_RESPONSES)
# What the report does without a file it cannot read (by the file's path in the run folder)
EFFECTS = {
    SUMMARY: "run left out",
    str(CONFIG): "run left out (its recipe is unknown)",
    METRICS: "run kept, without its training curves",
    LAYER_RESPONSES: "run kept, without its layer responses (Fig. 7)",
    GRAD_NORMS: "run kept, without its gradient-flow figures",
    f"{ANALYSIS}/{LANDSCAPE}": "run kept, not in the loss-landscape figure",
    f"{ANALYSIS}/{LESION}": "run kept, not in the lesion figure",
}


@dataclass
class Unreadable:
    """A file of a run folder that could not be read: which, why, and what the report did."""

    run_dir: Path
    file: str  # its path inside the run folder
    reason: str

    @classmethod
    def of(cls, run_dir: Path, err: RunFolderError) -> Unreadable:
        try:
            file = str(err.path.relative_to(run_dir))
        except ValueError:
            file = str(err.path)
        return cls(Path(run_dir), file, err.reason)

    @property
    def left_out(self) -> bool:
        return self.file in (SUMMARY, str(CONFIG))

    @property
    def effect(self) -> str:
        return EFFECTS.get(self.file, "run kept, without this file")


@dataclass
class Run:
    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]  # flattened .hydra/config.yaml (unresolved); {} if missing
    metrics: dict[str, list[tuple[int, float]]]  # column -> [(step, value)], last per step
    responses: dict[str, Any] | None  # layer_responses.json
    recipe: str = ""  # set by group_runs: "" where a dataset has one recipe
    shown: str = ""  # set by group_runs: the name of the variant that holds this run
    unreadable: list[Unreadable] = field(default_factory=list)  # files left out of this run

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    @property
    def usable(self) -> bool:
        """Only completed runs enter means, curves and the verdict."""
        return self.status == "completed"

    @property
    def architecture(self) -> Architecture | None:
        """The net, from summary.json's fields and the config's width and preact (and its
        block, where a run failed before its net was built); None for a summary that lacks a
        field (written by hand: train.py writes them all): it is grouped by its stored name."""
        s, cfg = self.summary, self.config
        if any(key not in s for key in SUMMARY_FIELDS) or None in (s["skip"], s["depth"]):
            return None
        block = s["block"] or cfg.get("block")
        width, preact = cfg.get("width", 1), cfg.get("preact", False)
        return Architecture.of(
            s["skip"], s["depth"], s["family"], block, s["shortcut"], preact, width
        )

    @property
    def name(self) -> str:
        """The name the summary holds (or the folder's): only ever shown, never parsed."""
        return self.summary.get("name", self.path.name)

    @property
    def label(self) -> str:
        """The variant name made from the fields ('resnet-56 projection'); the stored name
        where the fields are missing."""
        arch = self.architecture
        return arch.label if arch else self.name

    @property
    def dataset(self) -> str:
        return self.summary.get("dataset", "unknown")

    @property
    def seed(self) -> Any:
        return self.summary.get("seed")

    @property
    def depth(self) -> int | None:
        return self.summary.get("depth")

    @property
    def skip(self) -> str:
        return self.summary.get("skip", "unknown")

    @property
    def series(self) -> str:
        """The name without its depth: 'plain', 'resnet projection', ... (depth series); the
        skip's label alone for a summary without the architecture's fields."""
        arch = self.architecture
        return arch.series if arch else skip_label(self.skip)

    @property
    def shared(self) -> str:
        """What plain and skip twins share: '', 'imagenet', 'bottleneck preact' ..."""
        arch = self.architecture
        return arch.shared if arch else ""

    @property
    def variant(self) -> str:
        name = self.shown or self.name
        return f"{name} [{self.recipe}]" if self.recipe else name

    @property
    def precision(self) -> str | None:
        """The precision the run resolved (summary.json speed.precision), where recorded."""
        return (self.summary.get("speed") or {}).get("precision")

    @property
    def identity(self) -> tuple[Any, Any, Any]:
        """What the run ran: (config hash, seed, resolved precision); a bf16 and an fp32 run of
        one config and seed are different runs."""
        return (self.summary.get("config_hash"), self.seed, self.precision)

    @property
    def reason(self) -> str:
        """Why a run is not in the means (empty for a completed run)."""
        if self.status == "diverged":
            return f"diverged at step {self.summary.get('diverged_step')}"
        if self.status == "failed":
            return (self.summary.get("error") or "no error recorded").splitlines()[0]
        if self.status != "completed":
            return f"status {self.status!r}"
        return ""

    def final(self, key: str) -> float | None:
        return _number((self.summary.get("final") or {}).get(key))

    def best_val(self, key: str) -> float | None:
        return _number((self.summary.get("best_val") or {}).get(key))


@dataclass
class Duplicate:
    """A run folder its variant does not count: `counted` holds the same seed."""

    run: Run
    counted: Run

    @property
    def same_run(self) -> bool:
        """The same config hash, seed and precision: one run reached twice."""
        return self.run.identity == self.counted.identity

    @property
    def why(self) -> str:
        """'the same run as FOLDER (config hash h, seed 0)' or 'seed 0 is counted from FOLDER
        (config hash h there, g here)'; FOLDER is the counted run's path."""
        hash_here, hash_there = (r.summary.get("config_hash") for r in (self.run, self.counted))
        if self.same_run and hash_here is not None:
            return f"config hash {hash_here}, seed {self.run.seed}"
        if hash_here == hash_there:
            return f"seed {self.run.seed}, no config hash recorded"
        return f"seed {self.run.seed}, config hash {hash_here} here, {hash_there} there"


# Which copy of a seed a variant counts: a completed run, else a diverged one (a result about
# the net), else the first by path
STATUS_ORDER = {"completed": 0, "diverged": 1}


@dataclass
class Variant:
    dataset: str
    recipe: str
    name: str
    runs: list[Run] = field(default_factory=list)  # one per seed (see the module docstring)
    duplicates: list[Duplicate] = field(default_factory=list)  # folders not counted

    @property
    def label(self) -> str:
        return f"{self.name} [{self.recipe}]" if self.recipe else self.name

    @property
    def usable(self) -> list[Run]:
        return [r for r in self.runs if r.usable]

    @property
    def depth(self) -> int | None:
        return self.runs[0].depth

    @property
    def skip(self) -> str:
        return self.runs[0].skip

    @property
    def series(self) -> str:
        return self.runs[0].series

    @property
    def shared(self) -> str:
        return self.runs[0].shared

    @property
    def study(self) -> tuple[str, str]:
        return (self.dataset, self.recipe)


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def find_runs(root: Path) -> list[Run]:
    """Every run folder below root (root itself included), sorted by path; UserError if none,
    RunFolderError for the first file that is there but cannot be read. A completed run's
    missing metrics or layer responses (`_missing`) do not stop it: the verdict and the
    comparison read summaries; the report lists them."""
    runs, unreadable = read_runs(find_run_dirs([Path(root)], marker=SUMMARY))
    broken = [u for u in unreadable if not u.reason.endswith(MISSING_NOTE)]
    if broken:
        first = broken[0]
        raise RunFolderError(first.run_dir / first.file, first.reason)
    return runs


def read_runs(run_dirs: list[Path]) -> tuple[list[Run], list[Unreadable]]:
    """The run folders, sorted by path, and every file of theirs that could not be read: a run
    without its summary or config is left out, one without another file kept without it."""
    runs, unreadable = [], []
    for path in sorted(run_dirs):
        try:
            runs.append(load_run(path))
        except RunFolderError as err:
            unreadable.append(Unreadable.of(path, err))
    unreadable += [u for r in runs for u in r.unreadable]
    return runs, sorted(unreadable, key=lambda u: (str(u.run_dir), u.file))


def load_run(path: Path) -> Run:
    """One run folder; RunFolderError if its summary or config cannot be read, its metrics
    and layer responses left out (and noted in `Run.unreadable`) if they cannot."""
    summary, config = read_summary(path), read_flat_config(path)
    if summary is None:  # gone since the folder was found
        raise RunFolderError(path / SUMMARY, "no such file")
    run = Run(path, summary, config, {}, None)
    try:
        run.metrics = read_metrics(path)
    except RunFolderError as err:
        run.unreadable.append(Unreadable.of(path, err))
    try:
        run.responses = read_layer_responses(path)
    except RunFolderError as err:
        run.unreadable.append(Unreadable.of(path, err))
    if run.usable:
        run.unreadable += _missing(run)
    return run


MISSING_NOTE = "a completed run writes it"


def _missing(run: Run) -> list[Unreadable]:
    """The files every completed run writes that this one lacks (deleted, or not copied
    with the folder): listed like unreadable ones, never taken for "every file was read"."""
    listed = {u.file for u in run.unreadable}
    found = {METRICS: run.metrics, LAYER_RESPONSES: run.responses}
    missing = []
    for name in COMPLETED_RUN_FILES:
        if name in listed or found[name]:
            continue
        exists = (run.path / name).is_file()
        reason = "holds no rows" if exists and name == METRICS else "no such file"
        missing.append(Unreadable(run.path, name, f"{reason}; {MISSING_NOTE}"))
    return missing


def recipe_of(run: Run) -> dict[str, Any]:
    keep = {}
    for key, val in run.config.items():
        if is_non_defining(key) or covers(NOT_RECIPE_KEYS, key):
            continue
        if key.startswith("data.synthetic.") and run.config.get("data.name") != "synthetic":
            continue
        keep[key] = val
    if run.precision is not None:  # "auto" resolves by machine: bf16 and fp32 are not averaged
        keep["trainer.precision"] = run.precision
    return keep


def group_runs(runs: list[Run]) -> list[Variant]:
    """Sets each run's recipe label and returns the variants, in a stable reading order."""
    by_dataset: dict[str, list[Run]] = {}
    for run in runs:
        by_dataset.setdefault(run.dataset, []).append(run)
    for dataset_runs in by_dataset.values():
        _label_recipes(dataset_runs)
    variants: dict[tuple, Variant] = {}
    for run in runs:  # by the fields; a summary without them by its stored name
        key = (run.dataset, run.recipe, run.architecture or run.name)
        variants.setdefault(key, Variant(run.dataset, run.recipe, "")).runs.append(run)
    _name_variants(list(variants.values()))
    for variant in variants.values():
        _count_each_seed_once(variant)
    return sorted(variants.values(), key=_variant_order)


def _name_variants(variants: list[Variant]) -> None:
    """Each variant's name: the one name its runs' summaries hold (what training called
    them), unless they disagree (a run renamed by hand) or another variant of its study holds
    it too (a summary edited to say another net); then the name its fields make."""
    for variant in variants:
        names = {r.name for r in variant.runs}
        variant.name = names.pop() if len(names) == 1 else variant.runs[0].label
    taken = Counter((v.study, v.name) for v in variants)
    for variant in variants:
        if taken[variant.study, variant.name] > 1:
            variant.name = variant.runs[0].label
        for run in variant.runs:
            run.shown = variant.name


def _count_each_seed_once(variant: Variant) -> None:
    by_seed: dict[Any, list[Run]] = {}
    for run in sorted(variant.runs, key=lambda r: str(r.path)):
        key = run.seed if run.seed is not None else id(run)  # no seed: nothing to match
        by_seed.setdefault(key, []).append(run)
    variant.runs, variant.duplicates = [], []
    for copies in by_seed.values():
        counted = min(copies, key=lambda r: STATUS_ORDER.get(r.status, 2))
        variant.runs.append(counted)
        variant.duplicates += [Duplicate(r, counted) for r in copies if r is not counted]


def _label_recipes(runs: list[Run]) -> None:
    recipes = [recipe_of(r) for r in runs]
    differing = _differing_keys(recipes)
    if not differing:
        return
    distinct: list[str] = []
    for run, rec in zip(runs, recipes, strict=True):
        text = ", ".join(f"{k}={rec.get(k, '?')}" for k in differing)
        if text not in distinct:
            distinct.append(text)
        if len(differing) <= MAX_LABEL_KEYS:
            run.recipe = text
        else:
            run.recipe = f"recipe {chr(ord('A') + distinct.index(text))}"


def _differing_keys(recipes: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for rec in recipes for k in rec})
    return [k for k in keys if len({repr(rec.get(k, "?")) for rec in recipes}) > 1]


def recipe_legend(runs: list[Run]) -> dict[str, str]:
    """Lettered recipe label -> its differing keys (for labels that do not say them)."""
    legend: dict[str, str] = {}
    by_dataset: dict[str, list[Run]] = {}
    for run in runs:
        by_dataset.setdefault(run.dataset, []).append(run)
    for dataset_runs in by_dataset.values():
        recipes = [recipe_of(r) for r in dataset_runs]
        differing = _differing_keys(recipes)
        for run, rec in zip(dataset_runs, recipes, strict=True):
            if run.recipe.startswith("recipe "):
                legend[f"{run.dataset} {run.recipe}"] = ", ".join(
                    f"{k}={rec.get(k, '?')}" for k in differing
                )
    return legend


def _variant_order(v: Variant) -> tuple:
    return (v.dataset, v.recipe, order(Skip, v.skip), v.series, v.depth or 0, v.name)
