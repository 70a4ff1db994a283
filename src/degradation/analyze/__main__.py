"""`python -m degradation.analyze {landscape,lesion,responses} PATH... [options]`.

PATH is a run folder or any folder below which run folders are found (a sweep). Each run gets
its results in RUN_DIR/analysis/; with several runs, the combined figure (plain and residual
side by side) goes to OUT/analysis/ (OUT: --out, default the runs' common parent folder).

Exit code (docs/reports.md): 0 every run analysed; 1 some runs of a sweep could not be loaded
(no checkpoint, an unreadable config or checkpoint, a folder that cannot be written): each is
named on stderr and skipped, the others analysed; 2 a mistake (missing PATH, unknown subcommand
or option, an --out that cannot be written, a single run that cannot be loaded, or not one run
that can), one line `error: ...` on stderr, before anything is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from degradation.errors import CommandLineParser, UserError

DESCRIPTION = (
    "Why skips help, measured: loss landscapes and lesion studies of trained runs, and the "
    "layer responses (Fig. 7) of runs that predate their measurement."
)

EXAMPLES = """examples:
  python -m degradation.analyze landscape outputs/sweeps/demo      # every run of the sweep
  python -m degradation.analyze lesion outputs/sweeps/demo --checkpoint best --limit 1000
  python -m degradation.analyze responses outputs/runs/default     # Fig. 7 of older runs
  python -m degradation.analyze landscape --help                   # a subcommand's options
"""


def _parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="python -m degradation.analyze",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", metavar="{landscape,lesion,responses}", required=True
    )

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("paths", nargs="+", type=Path, metavar="RUN_DIR",
                         help="run folder(s), or folder(s) searched below (a sweep)")  # fmt: skip
        sub.add_argument("--checkpoint", default="last", choices=("last", "best"),
                         help="checkpoints/last.ckpt (final weights) or best.ckpt")  # fmt: skip
        sub.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                         help="auto: the GPU when there is one")  # fmt: skip
        sub.add_argument("--batch-size", type=int, default=512, help="images per forward pass")
        sub.add_argument("--out", type=Path, help="where the combined figure of several runs "
                         "goes (OUT/analysis/; default: the runs' common parent)")  # fmt: skip
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")

    landscape = commands.add_parser(
        "landscape", help="training loss around the trained weights (Li et al. 2018)"
    )
    common(landscape)
    landscape.add_argument("--steps", type=int, default=21, help="grid points per axis (odd)")
    landscape.add_argument("--span", type=float, default=1.0, help="grid from -span to span")
    landscape.add_argument("--subset", type=int, default=512, help="training images used")
    landscape.add_argument("--two-d", action=argparse.BooleanOptionalAction, default=True,
                           help="also the 2-D grid (steps² points)")  # fmt: skip
    landscape.add_argument("--seed", type=int, default=0, help="directions and subset")

    lesion = commands.add_parser("lesion", help="test error with each block deleted (Veit et al.)")
    common(lesion)
    lesion.add_argument("--limit", type=int, help="use only the first N test images")

    responses = commands.add_parser(
        "responses", help="std of each 3x3 layer's response from a checkpoint (Fig. 7)"
    )
    common(responses)
    return parser


def _progress(args: argparse.Namespace) -> bool:
    """A progress bar on a terminal only: piped or in a file its redraws would pile up."""
    from degradation.console import interactive

    return not args.no_progress and interactive()


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _combined_dir(run_dirs: list[Path], out: Path | None) -> Path:
    base = out if out is not None else Path(os.path.commonpath([p.resolve() for p in run_dirs]))
    return base / "analysis"


def _each_run(run_dirs: list[Path], analyse, writes_to) -> tuple[list, int]:
    """(analyse(run_dir) for each run folder whose `writes_to(run_dir)` folder can be written,
    how many were skipped). A run that cannot be analysed (UserError) is named on stderr and
    skipped, unless it is the only one: then its error is the command's. UserError when not
    one run could be analysed."""
    from degradation.preflight import check_writable_folder

    results, skipped = [], []
    for run_dir in run_dirs:
        try:
            check_writable_folder(writes_to(run_dir), f"run folder {run_dir}")
            results.append(analyse(run_dir))
        except UserError as err:
            if len(run_dirs) == 1:
                raise
            print(f"skipped: {err}", file=sys.stderr)
            skipped.append(run_dir)
    if not results:
        raise UserError(f"none of the {len(run_dirs)} run folders could be analysed (see above)")
    if skipped:
        print(f"note: {len(skipped)} of {len(run_dirs)} run folders skipped", file=sys.stderr)
    return results, len(skipped)


def _landscape(args, run_dirs: list[Path]) -> int:
    from degradation.analyze.landscape import landscape_run
    from degradation.analyze.plots import plot_landscape_1d, plot_landscape_2d
    from degradation.analyze.trained import load_run
    from degradation.rundir import analysis_dir, read_landscape

    def analyse(run_dir: Path) -> dict:
        run = load_run(run_dir, args.checkpoint, args.device)
        print(f"landscape: {run.name} ({run_dir}) on {run.device}, {args.steps} points per axis")
        path = landscape_run(run, args.steps, args.span, args.subset, args.two_d, args.seed,
                             args.batch_size, progress=_progress(args))  # fmt: skip
        data = {**read_landscape(run_dir), "label": run.name}
        mid = len(data["loss_1d"]) // 2
        print(f"  loss at the trained weights {data['loss_1d'][mid]:.4f}, at -/+{args.span}: "
              f"{data['loss_1d'][0]:.4f} / {data['loss_1d'][-1]:.4f} -> {path}")  # fmt: skip
        return data

    datas, skipped = _each_run(run_dirs, analyse, analysis_dir)
    if len(datas) > 1:
        where = _combined_dir(run_dirs, args.out)
        plot_landscape_1d(datas, where / "landscape_1d.png")
        if args.two_d:
            plot_landscape_2d(datas, where / "landscape_2d.png")
        print(f"combined: {where}/landscape_1d.png" + (", landscape_2d.png" if args.two_d else ""))
    return skipped


def _lesion(args, run_dirs: list[Path]) -> int:
    from degradation.analyze.lesion import lesion_run
    from degradation.analyze.plots import plot_lesion
    from degradation.analyze.trained import load_run
    from degradation.rundir import LESION, analysis_dir, write_json

    def analyse(run_dir: Path) -> dict:
        run = load_run(run_dir, args.checkpoint, args.device)
        record = lesion_run(run, args.limit, args.batch_size, progress=_progress(args))
        kept = [b["block"] for b in record["blocks"] if not b["deleted"]]
        errors = [b["test_error"] for b in record["blocks"] if b["deleted"]]
        worst = max((e for e in errors if e is not None), default=None)
        print(f"lesion: {run.name}: test error {_fmt(record['baseline']['test_error'])} intact, "
              f"worst {_fmt(worst)} with one of {len(errors)} blocks deleted -> "
              f"{run.out_dir / LESION}")  # fmt: skip
        if kept:
            print(f"  not deletable (plain block that changes the shape): {', '.join(kept)}")
        return {**record, "run_dir": str(run_dir)}

    records, skipped = _each_run(run_dirs, analyse, analysis_dir)
    if len(records) > 1:
        where = _combined_dir(run_dirs, args.out)
        plot_lesion(records, where / "lesion.png")
        write_json(where / LESION, {"runs": records})
        print(f"combined: {where / 'lesion.png'}, {where / LESION}")
    return skipped


def _responses(args, run_dirs: list[Path]) -> int:
    from degradation.analyze.responses import measure_run

    def analyse(run_dir: Path) -> None:
        print(f"{measure_run(run_dir, args.checkpoint, args.device)} <- {run_dir}")

    return _each_run(run_dirs, analyse, Path)[1]


def _check_options(args: argparse.Namespace) -> None:
    """Every option of the subcommand, before any run is loaded."""
    from degradation.analyze.landscape import check_options

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} is not valid: it must be >= 1")
    if args.command == "landscape":
        check_options(args.steps, args.span, args.subset)
    if args.command == "lesion" and args.limit is not None and args.limit < 1:
        raise UserError(f"--limit {args.limit} is not valid: it must be >= 1")


def main(argv: list[str] | None = None) -> None:
    from degradation.console import quiet_third_party

    quiet_third_party()  # Lightning's tips, a torch deprecation inside Lightning (console.py)
    try:
        args = _parser().parse_args(argv)
        from degradation.preflight import check_writable_folder
        from degradation.rundir import CONFIG, find_run_dirs

        _check_options(args)
        run_dirs = find_run_dirs(args.paths, marker=CONFIG)
        if args.out is not None or (len(run_dirs) > 1 and args.command != "responses"):
            where = _combined_dir(run_dirs, args.out)
            given = f"--out {args.out}" if args.out is not None else f"--out (default {where})"
            check_writable_folder(where, given)
        commands = {"landscape": _landscape, "lesion": _lesion, "responses": _responses}
        skipped = commands[args.command](args, run_dirs)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    if skipped:
        sys.exit(1)


if __name__ == "__main__":
    main()
