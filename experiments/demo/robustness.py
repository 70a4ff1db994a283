"""Does the demo's verdict survive changes that change nothing scientific?

Runs `experiment=demo` under each perturbation below, reports each sweep with the project's
own report, and prints one verdict per perturbation:

  published        the published sweep (--published FOLDER), as it is: not rerun; it ran
                   with one thread per job, two jobs at a time (PUBLISHED_AS)
  2 threads        `make demo` as it is: torch's default two threads, one job at a time:
                   other float rounding in every conv, the same seeds
  other precision  bf16-mixed where this CPU trains in fp32 by default, fp32 where bf16:
                   the CPU fast path (trainer.precision=auto) against eager fp32
  seeds 5-9        a disjoint set of seeds, run as the published sweep was
  --sweep NAME=DIR a sweep already run (e.g. seeds 0-4, the seeds that exposed the margin
                   problem described in conf/experiment/demo.yaml), reported as it is

Every sweep is judged at the demo's margin of "removed" (`verdict.margin_pp` of
experiment=demo), whatever margin its runs recorded, so that only the perturbation differs.

A verdict here is what a reader takes away: whether the plain nets degrade (and whether that
is established at the runs' alpha) and the skip's outcome per depth pair (removed / reduced /
not reduced, established or not). The script writes robustness.json and robustness.md next to
itself (or to --out) and exits 1 when the verdicts differ.

    python experiments/demo/robustness.py --published experiments/demo/runs/sweeps/demo
    python experiments/demo/robustness.py --only "seeds 5-9" --work /tmp/robust   # one of them
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from degradation.speed import native_bf16_flags

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


# how the published sweep ran: 1 thread per job, 2 jobs at once (the fastest on 2 cores)
PUBLISHED_AS = ({"OMP_NUM_THREADS": "1"}, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])


def perturbations() -> dict[str, tuple[dict[str, str], list[str]]]:
    """name -> (environment changes, overrides), for the sweeps this script runs."""
    env, launcher = PUBLISHED_AS
    other = "32-true" if native_bf16_flags() else "bf16-mixed"
    return {
        "2 threads": ({"OMP_NUM_THREADS": "2"}, []),
        "other precision": (env, [*launcher, f"trainer.precision={other}"]),
        "seeds 5-9": (env, [*launcher, "seed=5,6,7,8,9"]),
    }


def run_sweep(name: str, env: dict[str, str], overrides: list[str], work: Path) -> Path:
    root = work / name.replace(" ", "_")
    command = [PYTHON, "-m", "degradation.run", "experiment=demo", f"output_root={root}",
               *overrides]  # fmt: skip
    started = time.time()
    result = subprocess.run(command, env={**os.environ, **env}, cwd=work)
    if result.returncode != 0:
        sys.exit(f"error: the sweep '{name}' failed (exit {result.returncode}): {command}")
    print(f"[robustness] {name}: sweep took {time.time() - started:.0f} s", flush=True)
    return root / "sweeps" / "demo"


def demo_margin_pp() -> float:
    """The margin of "removed" that experiment=demo fixes (conf/experiment/demo.yaml)."""
    from hydra import compose, initialize_config_module

    from degradation.run import register

    register()
    with initialize_config_module(config_module="degradation.conf", version_base="1.3"):
        return float(compose("config", overrides=["experiment=demo"]).verdict.margin_pp)


def report(sweep: Path, out: Path, margin_pp: float) -> dict:
    command = [PYTHON, "-m", "degradation.report", str(sweep), "--out", str(out),
               "--margin", str(margin_pp)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: the report of {sweep} failed: {result.stderr.strip()[-2000:]}")
    (out / "report.html").unlink(missing_ok=True)
    return json.loads((out / "report.json").read_text())


def verdict_of(report_json: dict) -> dict:
    """The verdict in the words a reader takes away, and the numbers behind it."""
    (study,) = report_json["verdict"]  # the demo is one dataset, one recipe
    pairs, cases = [], []
    for series in study["series"]:
        for pair in series["pairs"]:
            pairs.append({"depths": pair["depths"], "degraded": pair["degraded"],
                          "reading": pair["reading"], "evidence": pair["evidence"]})  # fmt: skip
        for skip in series["skips"]:
            for case in skip["pairs"]:
                keep = ("series", "depths", "outcome", "evidence")
                cases.append({k: case[k] for k in keep})
    means = {v["variant"]: v["final_train_error"]["mean"] for v in report_json["variants"]}
    return {"degradation": pairs, "skips": cases, "means": means}


def words(verdict: dict) -> str:
    """What must agree: degraded or not and how well shown, each skip outcome and its label."""
    parts = []
    for p in verdict["degradation"]:
        shown = p["reading"] if p["degraded"] else "does not degrade"
        parts.append(f"plain {p['depths'][0]}->{p['depths'][1]} {shown} ({p['evidence']})")
    for c in verdict["skips"]:
        parts.append(f"{c['series']}: {c['outcome']} ({c['evidence']})")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", type=Path, help="the published demo sweep folder")
    parser.add_argument("--work", type=Path, default=Path("outputs/robustness"),
                        help="where the perturbed sweeps run")  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "robustness")
    parser.add_argument("--only", action="append", help="run only this perturbation")
    parser.add_argument("--no-runs", action="store_true",
                        help="report the --published and --sweep folders only")  # fmt: skip
    parser.add_argument("--sweep", action="append", default=[], metavar="NAME=DIR",
                        help="also report a sweep already run, under NAME")  # fmt: skip
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = perturbations()
    unknown = set(args.only or []) - set(chosen)
    if unknown:
        sys.exit(f"error: --only {sorted(unknown)} is not known; choose from: {', '.join(chosen)}")
    sweeps: dict[str, tuple[Path, list[str], dict[str, str]]] = {}
    if args.published:
        sweeps["published"] = (args.published.resolve(), PUBLISHED_AS[1], PUBLISHED_AS[0])
    for given in args.sweep:
        name, _, folder = given.partition("=")
        if not folder or not Path(folder).is_dir():
            sys.exit(f"error: --sweep {given}: expected NAME=DIR with an existing DIR")
        env, overrides = chosen.get(name, ({}, ["(already run)"]))
        sweeps[name] = (Path(folder).resolve(), overrides, env)
    for name, (env, overrides) in chosen.items():
        if not args.no_runs and (not args.only or name in args.only):
            sweeps[name] = (run_sweep(name, env, overrides, args.work.resolve()), overrides, env)
    margin = demo_margin_pp()
    results = {}
    for name, (sweep, overrides, env) in sweeps.items():
        out = args.work / "reports" / name.replace(" ", "_")
        verdict = verdict_of(report(sweep, out, margin))
        results[name] = {"overrides": overrides, "environment": env, **verdict,
                         "words": words(verdict)}  # fmt: skip
        print(f"{name:>16}: {results[name]['words']}")
    same = len({r["words"] for r in results.values()}) == 1
    (args.out / "robustness.json").write_text(json.dumps(
        {"same_verdict": same, "margin_pp": margin, "perturbations": results}, indent=1)
        + "\n")  # fmt: skip
    variants = sorted({v for r in results.values() for v in r["means"]})
    lines = ["# The demo's verdict under perturbations", "",
             f"Same verdict under every perturbation: **{'yes' if same else 'NO'}**.", "",
             "| perturbation | how | " + " | ".join(variants) + " | verdict |",
             "|---|---|" + "---|" * len(variants) + "---|"]  # fmt: skip
    for name, r in results.items():
        how = " ".join([*(f"{k}={v}" for k, v in r["environment"].items()), *r["overrides"]])
        cells = [f"{100 * r['means'][v]:.2f} %" if r["means"].get(v) is not None else "n/a"
                 for v in variants]  # fmt: skip
        lines.append(f"| {name} | `{how or 'as published'}` | " + " | ".join(cells)
                     + f" | {r['words']} |")  # fmt: skip
    lines += ["", f"Means are the final training error over each sweep's seeds; every sweep is "
              f"judged at the demo's margin of 'removed', {margin:g} pp.", ""]  # fmt: skip
    (args.out / "robustness.md").write_text("\n".join(lines))
    print(f"same verdict under every perturbation: {'yes' if same else 'NO'}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
