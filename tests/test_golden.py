"""Golden record of a CPU smoke sweep: what a run computes and records must not change by
accident (a refactoring, a moved callback, a renamed key), on whichever CPU the suite runs.

`tests/golden/smoke_sweep.json` holds, for each job of conftest's SMOKE_SWEEP (the README's
`-m depth=20,56 skip=none,add experiment=smoke`, pinned to eager fp32 on one thread), its
summary.json and metrics.csv less the fields that depend on the clock, the machine or the
checkout (see `normalised`).

How closely each part is compared follows from measuring how far the same sweep drifts when
only float rounding changes: on this record's machine (Intel Xeon, AVX-512) with 1 vs 2 threads,
and a run on two AMD EPYC machines against it (`python tests/test_golden.py --spread A B`
prints the table; A and B are sweep folders or records). Largest differences over the 4 jobs:

                                          1 vs 2 threads    AMD EPYC vs this record
    gradient columns, step 0              1.2e-7 relative   6.1e-3 relative (plain-56; the
                                                            others 6e-4 or less)
    gradient columns, step 1 / 3 / 5      2e-2 / 0.5 / 1.1 relative (grad_every=1)
    train loss, first window (steps 0-4)  4.0e-3 relative   1.1e-2 relative
    train error, first window             0.019             0.019 (3 of 160 images)
    train loss, later windows             0.19 relative; train error 0.075
    val and test loss                     up to a factor 14 (plain-56's are 1e4 to 1e13)
    val and test error                    0.07; the best checkpoint flips (best/test_loss 4666
                                          on one CPU, 2.30 on the other)

Across CPUs the step-0 gradients already differ: the two vendors' conv kernels sum in other
orders, and plain-56's backward (its step-0 gradient is ~300x plain-20's) magnifies that.
At lr 0.1 from the first step, one SGD step multiplies a rounding difference by 1e2 to 1e5, so
after the first window every trained number differs about as much as another seed would make it.
Hence:
  - exact: job names, every key, row counts and order, step, epoch and lr (the schedule is
    float64 Python arithmetic), and every summary field that is not a trained number
    (config_hash, dataset_checksum, params, flops, status, steps, speed, ...);
  - trained numbers recorded before training has amplified rounding, to a tolerance well above
    the measured cross-CPU spread: the step-0 gradient columns to 5e-2 relative (8x), the
    first window's train loss to 5e-2 relative (4.5x) and its train error to 0.1 (16 images,
    5x); a changed init, data path, model or loss moves them by far more;
  - later trained numbers only in what holds on any CPU: finite where the record is finite,
    and the summary's numbers equal to the metrics.csv cells they are read from.
So init, data, augmentation, model and loss are guarded to 5e-2 through the step-0 gradients,
the update rule through the first window, the schedule exactly; evaluation code only through
the summary's wiring (a change to the validation loss alone passes).

Regenerate after an intended change of behaviour or of the config hash, and say why in the
commit:
    python tests/test_golden.py            # runs SMOKE_SWEEP in a temporary folder
    python tests/test_golden.py SWEEP_DIR  # or records an existing OUTPUT_ROOT/sweeps/smoke
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from conftest import run_smoke_sweep

GOLDEN = Path(__file__).parent / "golden" / "smoke_sweep.json"
# depend on the clock, the machine, the checkout or the command's paths: not compared
VOLATILE_SUMMARY = {"wall_time_s", "throughput_img_s", "environment", "command", "git_commit",
                    "git_dirty"}  # fmt: skip
VOLATILE_COLUMNS = {"throughput_img_s"}
# metrics.csv columns that training does not produce: compared exactly
EXACT_COLUMNS = {"step", "epoch", "lr"}
# the summary's trained numbers, and the metrics.csv cells they are read from
SUMMARY_CELLS = {
    ("final", "train_error"): ("train/error", "last"),
    ("final", "train_loss"): ("train/loss", "last"),
    ("final", "val_error"): ("val/error", "last"),
    ("final", "val_loss"): ("val/loss", "last"),
    ("final", "test_error"): ("test/error", "last"),
    ("final", "test_loss"): ("test/loss", "last"),
    ("best_val", "val_error"): ("val/error", "min"),  # the best checkpoint's
    ("best_val", "test_error"): ("best/test_error", "last"),
}
FIRST_WINDOW_END = 4  # experiment=smoke logs train metrics every 5 steps


def tolerance(column: str, step: int) -> tuple[float, float] | None:
    """(relative, absolute) tolerance of a trained number, or None where rounding has grown
    to the size of the number's own spread (see the module docstring's measurements)."""
    if column.startswith("grad/") and step == 0:
        return 5e-2, 0.0
    if column == "train/loss" and step == FIRST_WINDOW_END:
        return 5e-2, 0.0
    if column == "train/error" and step == FIRST_WINDOW_END:
        return 0.0, 0.1
    return None


def normalised(sweep_dir: Path) -> dict:
    """{job folder name: {"summary": ..., "metrics": [rows]}} without the volatile fields."""
    record = {}
    for summary_path in sorted(Path(sweep_dir).glob("*/summary.json")):
        run_dir = summary_path.parent
        summary = json.loads(summary_path.read_text())
        summary = {k: v for k, v in summary.items() if k not in VOLATILE_SUMMARY}
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = [
                {k: v for k, v in row.items() if k not in VOLATILE_COLUMNS and v != ""}
                for row in csv.DictReader(f)
            ]
        record[run_dir.name] = {"summary": summary, "metrics": rows}
    return record


def _trained_number_differs(expected: str, actual: str, column: str, step: int) -> bool:
    want, got = float(expected), float(actual)
    if math.isfinite(want) != math.isfinite(got):
        return True
    limits = tolerance(column, step)
    if limits is None or not math.isfinite(want):
        return False
    rel, abs_ = limits
    return not math.isclose(want, got, rel_tol=rel, abs_tol=abs_)


def _metrics_differences(expected: list[dict], actual: list[dict]) -> list[str]:
    if len(expected) != len(actual):
        return [f"metrics.csv has {len(actual)} rows, the record {len(expected)}"]
    found = []
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        where = f"metrics.csv row {i} (step {want.get('step')})"
        if want.keys() != got.keys():
            found.append(f"{where}: columns {sorted(got)}, the record {sorted(want)}")
            continue
        for column in sorted(want):
            if column in EXACT_COLUMNS:
                differs = want[column] != got[column]
            else:
                differs = _trained_number_differs(
                    want[column], got[column], column, int(want["step"])
                )
            if differs:
                found.append(f"{where}: {column} {got[column]}, the record {want[column]}")
    return found


def _summary_differences(expected: dict, actual: dict, path: str = "") -> list[str]:
    if expected.keys() != actual.keys():
        return [f"summary{path} keys {sorted(actual)}, the record {sorted(expected)}"]
    found = []
    for key in sorted(expected):
        want, got = expected[key], actual[key]
        where = f"{path}.{key}"
        if isinstance(want, dict) and isinstance(got, dict):
            found += _summary_differences(want, got, where)
        elif tuple(where.strip(".").split(".")) in SUMMARY_CELLS:
            if (want is None) != (got is None):  # NaN is written as null
                found.append(f"summary{where} {got}, the record {want}")
        elif want != got:
            found.append(f"summary{where} {got!r}, the record {want!r}")
    return found


def _summary_cell_differences(summary: dict, rows: list[dict]) -> list[str]:
    """The summary's trained numbers must be the metrics.csv cells they are read from."""
    found = []
    for (part, key), (column, which) in SUMMARY_CELLS.items():
        if summary[part] is None:  # best_val without a validation: compared as a field
            continue
        cells = [float(row[column]) for row in rows if column in row]
        if not cells:
            found.append(f"metrics.csv has no {column} for summary.{part}.{key}")
            continue
        cell = min(cells) if which == "min" else cells[-1]
        if summary[part][key] != cell:
            found.append(f"summary.{part}.{key} {summary[part][key]}, {which} {column} {cell}")
    return found


def differences(expected: dict, actual: dict) -> list[str]:
    """What in `actual` (a normalised sweep) differs from `expected` beyond rounding."""
    found = []
    for job in sorted(expected.keys() | actual.keys()):
        if job not in expected or job not in actual:
            found.append(f"{job}: only in {'the record' if job in expected else 'this run'}")
            continue
        want, got = expected[job], actual[job]
        problems = _summary_differences(want["summary"], got["summary"])
        problems += _metrics_differences(want["metrics"], got["metrics"])
        if not problems:  # the cells' check needs the record's structure
            problems = _summary_cell_differences(got["summary"], got["metrics"])
        found += [f"{job}: {problem}" for problem in problems]
    return found


def test_smoke_sweep_matches_the_golden_record(smoke_sweep):
    found = differences(json.loads(GOLDEN.read_text()), normalised(smoke_sweep))
    assert not found, "\n".join(found)


def spread(a: dict, b: dict) -> dict[str, dict[int, float]]:
    """{column: {step: largest difference}} of the trained numbers of two records of the same
    sweep, jobs paired in name order (error fractions: absolute; others: relative)."""
    table: dict[str, dict[int, float]] = defaultdict(dict)
    for job_a, job_b in zip(sorted(a), sorted(b), strict=True):
        for row_a, row_b in zip(a[job_a]["metrics"], b[job_b]["metrics"], strict=True):
            step = int(row_a["step"])
            for column in row_a.keys() - EXACT_COLUMNS:
                x, y = float(row_a[column]), float(row_b[column])
                diff = abs(y - x) if "error" in column else abs(y - x) / (abs(x) or math.inf)
                group = "grad/" + column.split("/")[1] if column.startswith("grad/") else column
                table[group][step] = max(table[group].get(step, 0.0), diff)
    return dict(sorted(table.items()))


def _record(path: str) -> dict:
    return json.loads(Path(path).read_text()) if path.endswith(".json") else normalised(path)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", nargs="?", help="record this sweep folder instead of running")
    parser.add_argument(
        "--spread", nargs=2, metavar=("A", "B"),
        help="print the largest difference per column and step of two sweeps or records",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.spread:
        for column, steps in spread(*map(_record, args.spread)).items():
            print(f"{column:16s} " + "  ".join(f"{s}:{d:.1e}" for s, d in steps.items()))
        return
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(args.sweep) if args.sweep else run_smoke_sweep(Path(tmp) / "outputs")
        record = normalised(sweep)
        if not record:
            sys.exit(f"error: {sweep} holds no job folder with a summary.json")
        GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")


if __name__ == "__main__":
    main(sys.argv[1:])
