"""The report's tables: per variant (seeds aggregated), the verdict's comparisons, against the
published CIFAR-10 numbers, the runs left out of the means, and every run folder.

Each table comes twice: as raw numbers (fractions, for report.json and tests) and as a
`document.Table` (errors in %, mean ± sample std).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from degradation.report.document import Table
from degradation.report.paper import PAPER, PAPER_DATASET, SOURCES
from degradation.report.runs import Duplicate, Run, Unreadable, Variant
from degradation.report.stats import Stat, describe, p_text, percent

ERROR_COLUMNS = {
    "final_test_error": ("Final test error %", lambda r: r.final("test_error")),
    "best_val_test_error": ("Best-on-val test error %", lambda r: r.best_val("test_error")),
    "final_train_error": ("Final training error %", lambda r: r.final("train_error")),
}


def variant_numbers(v: Variant) -> dict[str, Any]:
    """Raw numbers of one variant: errors as fractions, each a {mean, std, n} over seeds."""
    used = v.usable
    first = next((r.summary for r in v.runs if r.summary.get("params") is not None), {})
    numbers: dict[str, Any] = {
        "variant": v.label,
        "name": v.name,
        "dataset": v.dataset,
        "recipe": v.recipe,
        "depth": v.depth,
        "skip": v.skip,
        "runs": len(v.runs),
        "duplicates": len(v.duplicates),  # folders of a seed already counted: not in `runs`
        "n": len(used),
        "seeds": sorted(r.seed for r in used),
        "excluded": dict(Counter(r.status for r in v.runs if not r.usable)),
        "params": first.get("params"),
        "flops": first.get("flops"),
    }
    for key, (_, get) in ERROR_COLUMNS.items():
        numbers[key] = describe(get(r) for r in used).as_dict()
    for key in ("steps", "wall_time_s", "throughput_img_s"):
        numbers[key] = describe(r.summary.get(key) for r in used).as_dict()
    return numbers


def _stat(d: dict) -> Stat:
    return Stat(d["mean"], d["std"], d["n"])


def _count(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _millions(x: int | None) -> str:
    return "—" if x is None else f"{x / 1e6:.1f}M"


def variants_table(numbers: list[dict]) -> Table:
    rows = []
    for v in numbers:
        seeds = ", ".join(str(s) for s in v["seeds"]) or "—"
        left_out = ", ".join(f"{n} {status}" for status, n in sorted(v["excluded"].items()))
        rows.append(
            [
                v["variant"],
                v["dataset"],
                str(v["n"]),
                seeds,
                *(percent(_stat(v[key])) for key in ERROR_COLUMNS),
                _count(v["params"]),
                _millions(v["flops"]),
                _count(_stat(v["steps"]).mean),
                _count(_stat(v["wall_time_s"]).mean, 1),
                _count(_stat(v["throughput_img_s"]).mean),
                left_out or "—",
            ]
        )
    notes = [
        "Errors in %: mean ± sample standard deviation (n − 1) over the n completed runs "
        "(seeds); a single run shows its value alone.",
        "Final training error = running error of the last logging window (augmented images, "
        "BN in training mode), as in the paper's curves. Best-on-val = test error of the "
        "checkpoint with the lowest validation error (the test set never chooses anything).",
        "FLOPs: forward, per image. Steps, wall time and throughput: means over completed runs.",
        "Diverged and failed runs are not in the means: see 'Runs not in the means'.",
    ]
    repeated = [f"{v['variant']} ({v['duplicates']})" for v in numbers if v["duplicates"]]
    if repeated:
        notes.append(
            "Each seed counted once; duplicate run folders left out (see 'Runs not in the "
            "means'): " + "; ".join(repeated) + "."
        )
    columns = ["Variant", "Dataset", "n", "Seeds", *(c for c, _ in ERROR_COLUMNS.values())]
    columns += ["Params", "FLOPs", "Steps", "Wall time (s)", "Throughput (img/s)"]
    columns += ["Not in means"]
    return Table(columns, rows, caption="Results per variant", notes=notes)


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.2f}"


def _bound(c: dict) -> str:
    if c["bound_pp"] is None:
        return "—"
    return f"{'≥' if c['alternative'] == 'greater' else '≤'} {c['bound_pp']:+.2f}"


def comparisons_table(verdicts: list[dict]) -> Table | None:
    """One row per test the verdict makes (in report.json: verdict[].comparisons)."""
    rows = []
    for verdict in verdicts:
        for c in verdict["comparisons"]:
            lost = "; ".join(f"{r['variant']}: {r['losses']}" for r in c["runs"] if r["losses"])
            rows.append(
                [
                    verdict["study"],
                    c["claim"],
                    _signed(c["difference_pp"]),
                    _bound(c),
                    p_text(c["p_one_sided"]),
                    p_text(c["p_holm"]),
                    ", ".join(map(str, c["n"])),
                    c["evidence"],
                    lost or "—",
                ]
            )
    if not rows:
        return None
    alpha = verdicts[0]["alpha"]
    level = f"{100 * (1 - alpha):.0f} %"
    notes = [
        "Claims on the mean final training error over each variant's seeds that trained. "
        "Difference = first − second variant of the claim, in percentage points; bound: its "
        f"one-sided {level} confidence bound, on the side the test claims. p: one-sided Welch "
        f"t-test (Welch 1947; scipy.stats.ttest_ind, equal_var=False); alpha = {alpha:g}.",
        "'A − B below m pp': non-inferiority, the test of 'removed' (m: the margin). "
        "'(P2 − P1) − (S2 − S1) above 0': the difference in differences, the test of "
        "'reduced' (Welch's test of a four-mean contrast, Satterthwaite 1946 df).",
        "Holm p: adjusted over the family of every test of the study (Holm 1979).",
        "Evidence: established = p < alpha; underpowered = too few seeds for any exact "
        "permutation test to reach alpha; single seed = one run on a side (no test); "
        "qualitative = a side failed to train (every seed diverged), so no test.",
        "Diverged and failed runs are not in the test; the last column lists them. Where the "
        "claimed-lower side lost seeds to divergence, the test saw only survivors and is not "
        "counted.",
    ]
    columns = ["Study", "Claim", "Difference (pp)", f"One-sided {level} bound (pp)"]
    columns += ["One-sided p", "Holm p", "n", "Evidence", "Runs not in the test"]
    return Table(columns, rows, caption="Comparisons", notes=notes)


def paper_numbers(numbers: list[dict]) -> list[dict]:
    """Our CIFAR-10 variants that have a published number, with the differences (pp)."""
    rows = []
    for v in numbers:
        if v["dataset"] != PAPER_DATASET or v["n"] == 0:
            continue
        published = {s.name: s.errors[v["name"]] for s in SOURCES if v["name"] in s.errors}
        if not published:
            continue
        ours = _stat(v["final_test_error"])
        rows.append(
            {
                "variant": v["variant"],
                "name": v["name"],
                "ours": v["final_test_error"],
                "published": {k: p.mean for k, p in published.items()},
                "difference": {k: 100 * ours.mean - p.mean for k, p in published.items()},
                "notes": {k: p.note for k, p in published.items() if p.note},
            }
        )
    return rows


def paper_table(rows: list[dict]) -> Table | None:
    if not rows:
        return None
    columns = ["Variant", "Ours: final test error %", "n"]
    for source in SOURCES:
        columns += [source.name + ("*" if source.caveat and source is not PAPER else ""), "Δ"]
    body = []
    for row in rows:
        cells = [row["variant"], percent(_stat(row["ours"])), str(row["ours"]["n"])]
        for source in SOURCES:
            p = source.errors.get(row["name"])
            if p is None:
                cells += ["—", "—"]
            else:
                cells += [p.text(), f"{row['difference'][source.name]:+.2f}"]
        body.append(cells)
    notes = [
        "Δ = ours − published, in percentage points (negative: ours is lower). Ours is the final "
        "model's test error, mean ± sample std over seeds.",
        PAPER.caveat,
        *(f"{PAPER.name}, {name}: {p.note}." for name, p in PAPER.errors.items() if p.note),
        *(f"*{s.name}: {s.caveat}" for s in SOURCES if s.caveat and s is not PAPER),
        "Sources: " + "; ".join(f"{s.name} <{s.url}>" for s in SOURCES) + ".",
    ]
    return Table(columns, body, caption="CIFAR-10 against the paper and reproductions", notes=notes)


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def duplicate_reason(d: Duplicate, root: Path) -> str:
    """'the same run as FOLDER (config hash h, seed 0)' or 'seed 0 counted from FOLDER (...)'."""
    counted = relative(d.counted.path, root)
    what = f"the same run as {counted}" if d.same_run else f"its seed counted from {counted}"
    return f"{what} ({d.why})"


def excluded_table(runs: list[Run], duplicates: list[Duplicate], root: Path) -> Table | None:
    """Runs left out of the means: not completed, or a duplicate of a counted seed."""
    left = [r for r in runs if not r.usable]
    if not left and not duplicates:
        return None
    rows = [[relative(r.path, root), r.variant, str(r.seed), r.status, r.reason] for r in left]
    for d in duplicates:
        rows.append([relative(d.run.path, root), d.run.variant, str(d.run.seed), "duplicate",
                     duplicate_reason(d, root)])  # fmt: skip
    return Table(
        ["Run folder", "Variant", "Seed", "Status", "Reason"],
        rows,
        caption="Runs not in the means (listed, never dropped)",
    )


def unreadable_table(unreadable: list[Unreadable], root: Path) -> Table:
    rows = [[relative(u.run_dir, root), u.file, u.reason, u.effect] for u in unreadable]
    return Table(
        ["Run folder", "File", "Why it could not be read", "In this report"],
        rows,
        caption="Files of run folders that could not be read",
    )


def runs_table(runs: list[Run], root: Path, duplicates: set[Path] = frozenset()) -> Table:
    """Every run folder; a duplicate's status says it is not counted."""
    rows = []
    for r in runs:
        rows.append(
            [
                relative(r.path, root),
                r.variant,
                str(r.seed),
                r.status + (" (duplicate, not counted)" if r.path in duplicates else ""),
                _count(r.summary.get("steps")),
                percent(describe([r.final("train_error")])),
                percent(describe([r.final("test_error")])),
                percent(describe([r.best_val("test_error")])),
                str(r.summary.get("config_hash", "—")),
                (r.summary.get("git_commit") or "—")[:12]
                + (" (dirty)" if r.summary.get("git_dirty") else ""),
            ]
        )
    columns = ["Run folder", "Variant", "Seed", "Status", "Steps", "Final train %"]
    columns += ["Final test %", "Best-on-val test %", "Config hash", "Git commit"]
    return Table(columns, rows, caption="Every run folder")
