"""Assemble the report from a folder of runs and write it: report.html, report.md, the PNG
figures, figures.json (the plotted arrays) and report.json (tables and verdict as numbers)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from degradation.report import figures, html, markdown, provenance, tables
from degradation.report.document import Block, Bullets, Heading, Image, Paragraph
from degradation.report.runs import Variant, find_runs, group_runs, recipe_legend
from degradation.report.verdict import judge
from degradation.rundir import atomic_write_text, strict_json

FIGURE_PREFIXES = ("fig1_", "fig6_", "degradation_", "fig7_")


def _studies(variants: list[Variant]) -> dict[str, list[Variant]]:
    studies: dict[str, list[Variant]] = {}
    for v in variants:
        title = v.dataset + (f" [{v.recipe}]" if v.recipe else "")
        studies.setdefault(title, []).append(v)
    return studies


def build_report(root: Path, out: Path | None = None) -> dict[str, Any]:
    """Write the report for every run folder below root into out (default root/report).

    Returns {"html", "markdown", "figures", "json"} paths plus the verdicts; raises UserError
    when root is missing or holds no run folders.
    """
    root = Path(root)
    runs = find_runs(root)
    out = Path(out) if out is not None else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    variants = group_runs(runs)
    studies = _studies(variants)

    numbers = [tables.variant_numbers(v) for v in variants]
    paper_rows = tables.paper_numbers(numbers)
    verdicts = [judge(study, vs) for study, vs in studies.items()]
    prov = provenance.provenance(runs)

    for stale in out.glob("*.png"):  # figures of an earlier report that may not exist now
        if stale.name.startswith(FIGURE_PREFIXES):
            stale.unlink()
    colours = figures.depth_colours(runs)
    figure_list = figures.figure_data(studies)
    for figure in figure_list:
        figure["file"] = figures.render(figure, out, colours, studies[figure["study"]]).name

    blocks = _blocks(root, runs, numbers, paper_rows, verdicts, figure_list, prov, out)
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
        ],
        "provenance": prov,
    }
    atomic_write_text(paths["json"], strict_json(report_data, indent=1))
    return {**paths, "pngs": [out / f["file"] for f in figure_list], "verdict": verdicts}


def _blocks(root, runs, numbers, paper_rows, verdicts, figure_list, prov, out) -> list[Block]:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    blocks: list[Block] = [
        Heading(f"Degradation report: {root.resolve().name}", 1),
        Paragraph(
            f"{len(runs)} run folder(s) below {root} ("
            + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
            + f"), {len(numbers)} variant(s). Generated {when} by python -m degradation.report."
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
    if not figure_list:
        blocks.append(Paragraph("No figures: no completed runs."))
    for f in figure_list:
        blocks.append(Image(out / f["file"], f["title"], f["caption"]))
    # Why skips help (degradation.analyze): gradient flow, loss landscapes, lesions, if recorded
    from degradation.analyze.plots import analysis_figures

    for title, png, caption in analysis_figures([r.path for r in runs if r.usable], out):
        blocks.append(Image(png, title, caption))
    blocks.append(Heading("Runs not in the means"))
    excluded = tables.excluded_table(runs, root)
    blocks.append(excluded or Paragraph(f"None: all {len(runs)} run(s) completed."))
    blocks += provenance.blocks(prov)
    in_order = [r for v in group_runs(runs) for r in sorted(v.runs, key=lambda r: str(r.seed))]
    blocks += [Heading("Run folders", 3), tables.runs_table(in_order, root)]
    return blocks
