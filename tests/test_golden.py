"""Golden record of a CPU smoke sweep: what a run computes and records must not change by
accident (a refactoring, a moved callback, a renamed key).

`tests/golden/smoke_sweep.json` holds, for each job of
`python -m degradation.run -m depth=20,56 skip=none,add experiment=smoke`, its summary.json
and metrics.csv with the fields that depend on the clock, the machine or the checkout left out
(see `normalised`). The sweep recorded there was run before the package was restructured
(commit 43bee98); on the machine that made it, the restructured package reproduces it bit for
bit. Other CPUs may round differently in the last bits, so floats are compared to a relative
1e-3 and error fractions to 0.02 (3 images in a window of 160).

Regenerate after an intended change of behaviour, and say why in the commit:
    python tests/test_golden.py OUTPUT_ROOT/sweeps/smoke
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden" / "smoke_sweep.json"
SWEEP_ARGS = ("-m", "depth=20,56", "skip=none,add", "experiment=smoke")
# depend on the clock, the machine, the checkout or the command's paths: not compared
VOLATILE_SUMMARY = {"wall_time_s", "throughput_img_s", "environment", "command", "git_commit",
                    "git_dirty"}  # fmt: skip
VOLATILE_COLUMNS = {"throughput_img_s"}


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


def _close(expected, actual, key: str) -> bool:
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_close(expected[k], actual[k], k) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_close(e, a, key) for e, a in zip(expected, actual, strict=True))
        )
    as_float = _float(expected), _float(actual)
    if isinstance(expected, float | str) and None not in as_float and expected != actual:
        tolerance = 0.02 if "error" in key else 0.0
        return math.isclose(*as_float, rel_tol=1e-3, abs_tol=tolerance or 1e-9)
    return expected == actual


def _float(x) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _differences(expected: dict, actual: dict) -> list[str]:
    found = []
    for job in sorted(expected.keys() | actual.keys()):
        if job not in expected or job not in actual:
            found.append(f"{job}: only in {'golden' if job in expected else 'this run'}")
            continue
        for part in ("summary", "metrics"):
            if not _close(expected[job][part], actual[job][part], part):
                found.append(f"{job}: {part} differs")
    return found


def test_smoke_sweep_matches_the_golden_record(smoke_sweep):
    expected = json.loads(GOLDEN.read_text())
    actual = normalised(smoke_sweep)
    assert not _differences(expected, actual), _differences(expected, actual)


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(normalised(Path(sys.argv[1])), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
