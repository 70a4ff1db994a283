"""Assemble the report from a folder of runs and write it: report.html, report.md, the
figures (PNG and SVG), figures.json (the plotted arrays) and report.json (tables and verdict
as numbers).

A file of a run folder that cannot be read does not stop it: each one is listed with its
reason in the section "Runs that could not be read" and in report.json's `unreadable`, and the
report is built from the rest (docs/reports.md).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from degradation.preflight import check_writable_folder
from degradation.report import figures, html, markdown, provenance, tables
from degradation.report.document import Block, Bullets, Heading, Image, Paragraph
from degradation.report.figure_files import remove_figure
from degradation.report.runs import (
    Duplicate,
    Run,
    Unreadable,
    Variant,
    group_runs,
    read_runs,
    recipe_legend,
)
from degradation.report.verdict import check_setting, judge
from degradation.rundir import SUMMARY, atomic_write_text, find_run_dirs, strict_json

FIGURE_PREFIXES = ("fig1_", "fig6_", "degradation_", "fig7_")
UNREADABLE_TITLE = "Runs that could not be read"


def _studies(variants: list[Variant]) -> dict[str, list[Variant]]:
    studies: dict[str, list[Variant]] = {}
    for v in variants:
        title = v.dataset + (f" [{v.recipe}]" if v.recipe else "")
        studies.setdefault(title, []).append(v)
    return studies


def build_report(
    root: Path, out: Path | None = None, margin_pp: float | None = None
) -> dict[str, Any]:
    """Write the report for every run folder below root into out (default root/report).

    `margin_pp` (the CLI's --margin) overrides the margin of "removed" the runs record.
    Returns {"html", "markdown", "figures", "json"} paths plus "pngs" (every figure's PNG,
    each with an SVG copy beside it: figure_files.py), the verdicts and the
    files that could not be read ("unreadable", a list of runs.Unreadable). Raises UserError,
    before writing anything, when root is missing or holds no run folder, out cannot be
    written, or the verdict's settings are not valid or disagree within a study.
    """
    root = Path(root)
    run_dirs = find_run_dirs([root], marker=SUMMARY)
    given = out is not None
    out = Path(out) if given else root / "report"
    check_writable_folder(out, f"--out {out}" if given else f"--out (default {out})")
    if margin_pp is not None:
        check_setting("margin_pp", margin_pp, f"--margin {margin_pp:g}")
    runs, unreadable = read_runs(run_dirs)
    variants = group_runs(runs)
    studies = _studies(variants)
    verdicts = [judge(study, vs, margin_pp) for study, vs in studies.items()]
    out.mkdir(parents=True, exist_ok=True)

    numbers = [tables.variant_numbers(v) for v in variants]
    paper_rows = tables.paper_numbers(numbers)
    duplicates = [d for v in variants for d in v.duplicates]
    prov = provenance.provenance(runs)

    for stale in out.glob("*.png"):  # figures of an earlier report that may not exist now
        if stale.name.startswith(FIGURE_PREFIXES):
            remove_figure(stale)  # and its SVG copy
    colours = figures.depth_colours(runs)
    figure_list = figures.figure_data(studies)
    for figure in figure_list:
        figure["file"] = figures.render(figure, out, colours, studies[figure["study"]]).name
    analyses, unreadable_analyses = _analysis_images(runs, out)
    unreadable = sorted(unreadable + unreadable_analyses, key=lambda u: (str(u.run_dir), u.file))

    images = [Image(out / f["file"], f["title"], f["caption"]) for f in figure_list]
    blocks = _blocks(
        root, runs, duplicates, numbers, paper_rows, verdicts, images + analyses, prov, unreadable
    )
    title = f"Degradation report: {root.resolve().name}"
    paths = {
        "html": out / "report.html",
        "markdown": out / "report.md",
        "figures": out / "figures.json",
        "json": out / "report.json",
    }
    atomic_write_text(paths["markdown"], markdown.render(blocks))
    atomic_write_text(paths["html"], html.render(blocks, title))
    atomic_write_text(paths["figures"], strict_json({f["id"]: f for f in figure_list}, indent=1))
    report_data = {
        "root": str(root),
        "variants": numbers,
        "paper_comparison": paper_rows,
        "verdict": verdicts,
        "excluded": [
            {"run": tables.relative(r.path, root), "status": r.status, "reason": r.reason}
            for r in runs
            if not r.usable
        ]
        + [
            {
                "run": tables.relative(d.run.path, root),
                "status": "duplicate",
                "reason": tables.duplicate_reason(d, root),
            }
            for d in duplicates
        ],
        "duplicates": [
            {
                "run": tables.relative(d.run.path, root),
                "counted": tables.relative(d.counted.path, root),
                "same_run": d.same_run,
                "seed": d.run.seed,
                "config_hash": d.run.summary.get("config_hash"),
                "status": d.run.status,
            }
            for d in duplicates
        ],
        "unreadable": [
            {
                "run": tables.relative(u.run_dir, root),
                "file": u.file,
                "reason": u.reason,
                "left_out": u.left_out,
                "effect": u.effect,
            }
            for u in unreadable
        ],
        "provenance": prov,
    }
    atomic_write_text(paths["json"], strict_json(report_data, indent=1))
    return {
        **paths,
        "pngs": [image.path for image in images + analyses],  # every figure written
        "verdict": verdicts,
        "unreadable": unreadable,
    }


def _analysis_images(runs: list[Run], out: Path) -> tuple[list[Image], list[Unreadable]]:
    """Why skips help (degradation.analyze): gradient flow, loss landscapes, lesions, where
    recorded; and the analysis files that could not be read."""
    from degradation.analyze.figures import analysis_figures

    problems: list = []
    found = analysis_figures(runs, out, unreadable=problems)  # every seed, recipes apart
    images = [Image(png, title, caption) for title, png, caption in found]
    return images, [Unreadable.of(run_dir, err) for run_dir, err in problems]


def _unreadable_blocks(unreadable: list[Unreadable], root: Path) -> list[Block]:
    if not unreadable:
        return [Heading(UNREADABLE_TITLE), Paragraph("None: every file of every run was read.")]
    folders = len({u.run_dir for u in unreadable})
    left_out = len({u.run_dir for u in unreadable if u.left_out})
    kept = f", the other {folders - left_out} are in it without the file named" * bool(
        folders - left_out
    )
    return [
        Heading(UNREADABLE_TITLE),
        Paragraph(
            f"{len(unreadable)} file(s) of {folders} run folder(s) could not be read or are "
            "missing; "
            f"{left_out} run(s) are left out of everything above{kept}."
        ),
        tables.unreadable_table(unreadable, root),
    ]


def _duplicates_sentence(duplicates: list[Duplicate], root: Path) -> str:
    if not duplicates:
        return ""
    shown = "; ".join(
        f"{tables.relative(d.run.path, root)}: {tables.duplicate_reason(d, root)}"
        for d in duplicates
    )
    return f" {len(duplicates)} duplicate run folder(s) counted once: {shown}."


def _blocks(
    root, runs, duplicates, numbers, paper_rows, verdicts, images, prov, unreadable
) -> list[Block]:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks: list[Block] = [
        Heading(f"Degradation report: {root.resolve().name}", 1),
        Paragraph(
            f"{len(runs)} run folder(s) read below {root}"
            + (" (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")") * bool(counts)
            + f", {len(numbers)} variant(s). Generated {when} by python -m degradation.report."
            + _duplicates_sentence(duplicates, root)
            + (f" Some files could not be read: see '{UNREADABLE_TITLE}'." if unreadable else "")
        ),
        Heading("Verdict"),
    ]
    for v in verdicts:
        blocks += [Heading(v["study"], 3), Bullets(v["lines"])]
    comparisons = tables.comparisons_table(verdicts)
    if comparisons is not None:
        blocks.append(comparisons)
    blocks += [Heading("Results"), tables.variants_table(numbers)]
    legend = recipe_legend(runs)
    if legend:
        blocks.append(Bullets([f"{label}: {keys}" for label, keys in legend.items()]))
    paper = tables.paper_table(paper_rows)
    if paper is not None:
        blocks.append(paper)
    blocks.append(Heading("Figures"))
    blocks += images or [Paragraph("No figures: no completed runs.")]
    blocks.append(Heading("Runs not in the means"))
    excluded = tables.excluded_table(runs, duplicates, root)
    blocks.append(excluded or Paragraph(f"None: all {len(runs)} run(s) completed."))
    blocks += _unreadable_blocks(unreadable, root)
    blocks += provenance.blocks(prov)
    in_order = [
        r
        for v in group_runs(runs)
        for r in sorted([*v.runs, *(d.run for d in v.duplicates)], key=lambda r: str(r.seed))
    ]
    not_counted = {d.run.path for d in duplicates}
    blocks += [Heading("Run folders", 3), tables.runs_table(in_order, root, not_counted)]
    return blocks
