"""A W&B Report for one sweep: the degradation curves, a run table and the sweep's command.

    build_report("outputs/sweeps/demo", "my-team/degradation")              # saves it (network)
    build_report("outputs/sweeps/demo", "my-team/degradation", "spec.json")  # writes the spec only

Runs are found by their summary.json below `runs_root`; each one's W&B group is recomputed from
its .hydra/config.yaml by `loggers.variant_group`, the function that named it at training time.
Panels (He et al. 2015, Fig. 1 and Fig. 6): for each kind of net (plain, residual,
concatenation: vocabulary.SKIP_TITLES) one panel grid with training error and validation error
against the iteration, one line per variant (W&B group) with the mean ± std over its seeds.
W&B styles lines per run id only, so the paper's dashed training / bold test curves become two
panels side by side. The test set is never a
curve: its error (final model and best-validation checkpoint) is in the run table. A run whose
summary.json or config cannot be read is left out with a note on stderr; text from run folders
is escaped in the report's Markdown (report/markdown.py).
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from degradation.errors import UserError, first_line
from degradation.loggers import STEP_METRIC, variant_group
from degradation.report.markdown import code_block, code_span
from degradation.rundir import (
    CONFIG,
    SUMMARY,
    RunFolderError,
    find_run_dirs,
    read_summary,
    write_json,
)
from degradation.spec import read_spec
from degradation.vocabulary import Skip, order, skip_title

PAPER_FIGURES = {Skip.none: " (Fig. 1, Fig. 6 left)", Skip.add: " (Fig. 6 middle)"}
CURVES = (("train/error", "training error"), ("val/error", "validation error"))
TABLE_COLUMNS = [
    "run:group",
    "run:state",
    "config:depth.value",
    "config:skip.value",
    "config:shortcut.value",
    "config:seed.value",
    "summary:final/train_error",
    "summary:final/val_error",
    "summary:final/test_error",
    "summary:best_val/test_error",
    "summary:params",
    "summary:status",
]


@dataclass
class SweepRun:
    run_dir: Path
    summary: dict[str, Any]
    group: str
    skip: str


def collect_runs(runs_root: Path) -> list[SweepRun]:
    """Every run below runs_root that was logged to W&B: plain, residual, concat; by depth."""
    runs, not_logged = [], 0
    for run_dir in find_run_dirs([runs_root], marker=SUMMARY):
        if not (run_dir / CONFIG).is_file():
            continue  # not a run folder of ours
        try:
            spec = read_spec(run_dir)
            if "wandb" not in spec.records.loggers or spec.records.wandb.mode == "disabled":
                not_logged += 1
                continue
            summary = read_summary(run_dir)
        except RunFolderError as err:
            print(f"note: left out of the W&B report: {err}", file=sys.stderr)
            continue
        group, skip = variant_group(spec), spec.model.skip
        runs.append(SweepRun(run_dir=run_dir, summary=summary, group=group, skip=skip))
    if not_logged:
        print(
            f"note: {not_logged} run(s) below {runs_root} not logged to W&B: left out",
            file=sys.stderr,
        )
    runs.sort(key=lambda r: (order(Skip, r.skip), r.summary["depth"], r.group))
    if not runs:
        raise UserError(
            f"{runs_root}: no run logged to W&B below it (train with logger=wandb first)"
        )
    return runs


def _split_entity_project(entity_project: str) -> tuple[str, str]:
    entity, _, project = entity_project.partition("/")
    if not entity or not project or "/" in project:
        raise UserError(
            f"--wandb {entity_project}: expected ENTITY/PROJECT, e.g. my-team/degradation"
        )
    return entity, project


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    pct = [100 * v for v in values]
    spread = f" ± {statistics.stdev(pct):.2f}" if len(pct) > 1 else ""
    return f"{statistics.mean(pct):.2f}{spread}"


def _final(run: SweepRun, section: str, key: str) -> float | None:
    return (run.summary.get(section) or {}).get(key)


def variant_table(runs: list[SweepRun]) -> str:
    """Markdown: one row per variant (W&B group), errors in % as mean ± std over seeds."""
    rows = [
        "| variant (W&B group) | runs | train error % | val error % | test error % "
        "| test error % at best val |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[str, list[SweepRun]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    for group, members in groups.items():

        def stat(section: str, key: str, members=members) -> str:
            found = [_final(r, section, key) for r in members]
            return _mean_std([v for v in found if v is not None])

        rows.append(
            f"| {code_span(group, in_table=True)} | {len(members)} "
            f"| {stat('final', 'train_error')} "
            f"| {stat('final', 'val_error')} | {stat('final', 'test_error')} "
            f"| {stat('best_val', 'test_error')} |"
        )
    return "\n".join(rows)


def _group_filter(groups: list[str]) -> str:
    return f"Metric('Group') in {sorted(set(groups))!r}"


def _blocks(wr: Any, runs: list[SweepRun], runs_root: Path, scope: dict[str, str]) -> list:
    intro = (
        f"Sweep {code_span(runs_root)}: {len(runs)} runs. The degradation problem "
        "(He et al. 2015): a deeper *plain* net trains to a **higher training error**; with "
        "skip connections it does not. Each line is one variant (a W&B group), mean ± std "
        "over its seeds. Training error is the running error over `log_every` steps "
        "(augmented, BN in training mode), validation error is on the held-out split; the "
        "test set only appears in the tables.\n\n" + variant_table(runs)
    )
    blocks: list = [wr.MarkdownBlock(text=intro)]
    for skip in Skip:  # one section per kind of net: its title is the runset's name
        groups = [r.group for r in runs if r.skip == skip]
        if not groups:
            continue
        runset_name = skip_title(skip)
        title = f"{runset_name.capitalize()} nets{PAPER_FIGURES.get(skip, '')}"
        panels = [
            wr.LinePlot(
                title=f"{runset_name} nets: {label}",
                x=STEP_METRIC,
                y=[metric],
                title_x="iteration",
                title_y="error",
                groupby="Group",
                groupby_aggfunc="mean",
                groupby_rangefunc="stddev",
                smoothing_factor=0.0,
                layout=wr.Layout(x=12 * i, y=0, w=12, h=8),
            )
            for i, (metric, label) in enumerate(CURVES)
        ]
        runset = wr.Runset(
            name=runset_name, filters=_group_filter(groups), groupby=["group"], **scope
        )
        blocks += [wr.H2(text=title), wr.PanelGrid(runsets=[runset], panels=panels)]
    table = wr.Runset(
        name="runs",
        filters=_group_filter([r.group for r in runs]),
        pinned_columns=["run:displayName"],
        visible_columns=TABLE_COLUMNS,
        **scope,
    )
    lr_panel = wr.LinePlot(
        title="learning rate (check the schedule and any warm-up)",
        x=STEP_METRIC,
        y=["lr"],
        layout=wr.Layout(x=0, y=0, w=24, h=6),
    )
    commands = list(dict.fromkeys(r.summary.get("command", "") for r in runs if r.summary))
    blocks += [
        wr.H2(text="Runs"),
        wr.PanelGrid(runsets=[table], panels=[lr_panel]),
        wr.H2(text="Command"),
        wr.MarkdownBlock(text=code_block([c for c in commands if c], "bash")),
    ]
    return blocks


def _spec(report: Any) -> dict[str, Any]:
    return report._to_model().model_dump(mode="json", by_alias=True, exclude_none=True)


def _import_reports() -> Any:
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError as err:
        raise UserError(
            f"--wandb needs the wandb-workspaces package ({err}); pip install wandb-workspaces"
        ) from None
    return wr


def build_report(
    runs_root: str | Path, entity_project: str, dry_run_path: str | Path | None = None
) -> dict[str, Any]:
    """Build the sweep's W&B Report; save it, or with dry_run_path write its spec as JSON.

    Returns the report's specification (W&B's own JSON model of the report); after a save it
    also holds the report's "url". Raises UserError for a bad argument or a failed save.
    """
    entity, project = _split_entity_project(entity_project)
    runs_root = Path(runs_root)
    runs = collect_runs(runs_root)
    wr = _import_reports()
    # A runset naming its project is resolved to the project's id over the network when the
    # report is serialised, so the offline spec leaves it out and names the project after.
    scope = {} if dry_run_path else {"entity": entity, "project": project}
    report = wr.Report(
        entity=entity,
        project=project,
        title=f"Degradation: {runs_root.resolve().name}"[:128],
        description=f"{len(runs)} runs, {len({r.group for r in runs})} variants",
        blocks=_blocks(wr, runs, runs_root, scope),
        width="fluid",
    )
    if dry_run_path:
        spec = _spec(report)
        for block in spec["spec"]["blocks"]:
            for runset in block.get("metadata", {}).get("runSets", []):
                runset["project"] = {"name": project, "entityName": entity}
        write_json(Path(dry_run_path), spec)
        return spec
    try:
        report.save()
    except Exception as err:
        reason = first_line(err)
        raise UserError(
            f"--wandb {entity_project}: the report could not be saved ({reason}); "
            "log in with `wandb login`, or write it offline with --dry-run FILE"
        ) from None
    spec = _spec(report)  # after save: runsets carry their project ids
    spec["url"] = report.url
    return spec
