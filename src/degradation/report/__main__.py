"""`python -m degradation.report PATH [--out DIR] [--margin PP] [--wandb ENTITY/PROJECT
[--dry-run [JSON]]]`.

Writes report.html (self-contained), report.md, the figures as PNG, figures.json and
report.json into DIR (default PATH/report).

Exit code (docs/reports.md): 0 every file of every run folder was read; 1 the report was
written, but some files could not be read (listed on stderr and in the report's section "Runs
that could not be read"); 2 a mistake (a bad PATH or option, an output location that cannot be
written), one line `error: ...` on stderr, before anything is written.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from degradation.errors import CommandLineParser, UserError

WANDB_MODULE = "degradation.report.wandb"
EXAMPLES = """examples:
  python -m degradation.report outputs/sweeps/demo        # -> outputs/sweeps/demo/report/
  python -m degradation.report outputs --out my_report     # every run below outputs/
  python -m degradation.report outputs/sweeps/demo --wandb my-team/degradation --dry-run
      # also the W&B report, its spec written to OUT/wandb_report.json (no --dry-run: to W&B)
"""


def _parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="python -m degradation.report",
        description="Figures, tables, verdict and provenance from run folders below PATH.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", type=Path, help="a run, sweep or output folder (searched below)")
    parser.add_argument("--out", type=Path, help="where to write the report (default PATH/report)")
    parser.add_argument(
        "--margin",
        type=float,
        metavar="PP",
        help="the margin of 'removed' in percentage points, in place of the verdict.margin_pp "
        "the runs recorded (the report says it overrode them)",
    )
    parser.add_argument(
        "--wandb", metavar="ENTITY/PROJECT", help="also build a W&B report of these runs"
    )
    parser.add_argument(
        "--dry-run",
        nargs="?",
        const="",
        metavar="JSON_PATH",
        help="with --wandb: write the W&B report's spec to JSON_PATH instead of saving it "
        "(default OUT/wandb_report.json)",
    )
    return parser


def _wandb_builder(entity_project: str):
    """The W&B report builder, imported only when asked for (it needs the wandb extras)."""
    entity, _, project = entity_project.partition("/")
    if not entity or not project or "/" in project:
        raise UserError(f"--wandb {entity_project!r} is not valid: give it as ENTITY/PROJECT")
    try:
        return importlib.import_module(WANDB_MODULE).build_report
    except ModuleNotFoundError as err:
        if err.name == WANDB_MODULE:
            raise UserError(f"--wandb: W&B reports are not available ({WANDB_MODULE} is not "
                            "in this installation)") from None  # fmt: skip
        raise UserError(
            f"--wandb needs the optional package {err.name!r}: pip install 'degradation[wandb]'"
        ) from None


def _print_summary(result: dict) -> None:
    for verdict in result["verdict"]:
        print(f"{verdict['study']}: degradation {verdict['degradation']}; "
              f"skips: {verdict['skips']}")  # fmt: skip
    figures = len(result["pngs"])
    print(f"report: {result['html']}\n        {result['markdown']} "
          f"({figures} figure{'s' * (figures != 1)}, each as PNG and SVG)")  # fmt: skip


def _dry_run_path(args: argparse.Namespace) -> Path | None:
    """Where --dry-run writes the W&B report's spec (default OUT/wandb_report.json)."""
    if args.dry_run is None:
        return None
    if args.dry_run:
        return Path(args.dry_run)
    return (args.out if args.out is not None else args.path / "report") / "wandb_report.json"


def _print_unreadable(unreadable: list) -> None:
    print(f"note: {len(unreadable)} file(s) of run folders could not be read (see 'Runs that "
          "could not be read' in the report):", file=sys.stderr)  # fmt: skip
    for u in unreadable:
        print(f"  {u.run_dir / u.file}: {u.reason} ({u.effect})", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    from degradation.preflight import check_writable_file
    from degradation.report.build import build_report

    try:
        args = _parser().parse_args(argv)
        if args.dry_run is not None and not args.wandb:
            raise UserError("--dry-run only applies to a W&B report: add --wandb ENTITY/PROJECT")
        dry_run = _dry_run_path(args)
        if dry_run is not None:
            check_writable_file(dry_run, f"--dry-run {dry_run}")
        wandb_build = _wandb_builder(args.wandb) if args.wandb else None
        result = build_report(args.path, args.out, args.margin)
        _print_summary(result)
        if wandb_build is not None:  # after the local report, which needs no network
            spec = wandb_build(runs_root=args.path, entity_project=args.wandb, dry_run_path=dry_run)
            url = spec.get("url") if isinstance(spec, dict) else None
            print(f"W&B report: {url}" if url else f"W&B report specification: {dry_run}")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if result["unreadable"]:
        _print_unreadable(result["unreadable"])
        sys.exit(1)


if __name__ == "__main__":
    main()
