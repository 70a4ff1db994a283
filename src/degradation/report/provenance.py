"""Provenance: what produced the numbers — code version, commands, data, seeds, environment.

Run folders record the git commit (and whether the tree was dirty), the command line, the
config hash, the dataset checksum and the seed. The software and hardware a run used are
taken from `summary["environment"]` where a run recorded one; otherwise the report says so
and shows the environment of the machine that generated the report, labelled as such.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from degradation.environment import environment
from degradation.report.document import Block, Bullets, Heading, Paragraph, Table
from degradation.report.runs import Run


def provenance(runs: list[Run]) -> dict[str, Any]:
    def distinct(key_of) -> list[dict[str, Any]]:
        counts = Counter(key_of(r) for r in runs)
        return [{"value": k, "runs": n} for k, n in counts.items()]

    recorded = [r.summary["environment"] for r in runs if r.summary.get("environment")]
    return {
        "commits": distinct(lambda r: (r.summary.get("git_commit"), r.summary.get("git_dirty"))),
        "commands": distinct(lambda r: r.summary.get("command")),
        "datasets": distinct(
            lambda r: (r.dataset, r.summary.get("dataset_checksum"), r.summary.get("num_train"))
        ),
        "seeds": sorted({r.seed for r in runs if r.seed is not None}),
        "config_hashes": sorted({str(r.summary.get("config_hash")) for r in runs}),
        "world_sizes": sorted({r.summary.get("world_size") or 1 for r in runs}),
        "run_environments": list({json.dumps(e, sort_keys=True): e for e in recorded}.values()),
        "runs_without_environment": len(runs) - len(recorded),
        "report_environment": environment(),
    }


def _environment_text(env: dict[str, Any]) -> list[str]:
    packages = env.get("packages") or {}
    if isinstance(packages, dict):  # as environment() records it; other shapes shown as they are
        packages = ", ".join(f"{k} {v}" for k, v in packages.items())
    items = [str(packages)] if packages else []
    for key in ("platform", "machine", "cpu_count", "gpus"):
        if key in env:
            value = env[key]
            items.append(
                f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}"
            )
    return items


def blocks(prov: dict[str, Any]) -> list[Block]:
    out: list[Block] = [Heading("Provenance")]
    out.append(Heading("Code", 3))
    out.append(
        Bullets(
            [
                f"git commit {c['value'][0] or 'unknown (not a git checkout)'}"
                + (" with uncommitted changes (dirty)" if c["value"][1] else "")
                + f" — {c['runs']} run(s)"
                for c in prov["commits"]
            ]
        )
    )
    out.append(Heading("Commands", 3))
    out.append(Bullets([f"{c['value']}  — {c['runs']} run(s)" for c in prov["commands"]]))
    out.append(Heading("Data and seeds", 3))
    out.append(
        Table(
            ["Dataset", "Checksum", "Training images", "Runs"],
            [[str(x) for x in (*d["value"], d["runs"])] for d in prov["datasets"]],
        )
    )
    out.append(
        Paragraph(
            f"Seeds: {', '.join(map(str, prov['seeds'])) or '—'}. "
            f"Config hashes: {', '.join(prov['config_hashes'])}. "
            f"Processes per run (world size): {', '.join(map(str, prov['world_sizes']))}."
        )
    )
    out.append(Heading("Environment", 3))
    if prov["run_environments"]:
        out.append(Paragraph("Recorded by the runs:"))
        out += [Bullets(_environment_text(e)) for e in prov["run_environments"]]
    if prov["runs_without_environment"]:
        out.append(
            Paragraph(
                f"{prov['runs_without_environment']} run(s) did not record their software and "
                "hardware. The machine that generated this report (not necessarily the one "
                "that trained) has:"
            )
        )
        out.append(Bullets(_environment_text(prov["report_environment"])))
    return out
