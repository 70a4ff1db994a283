"""W&B logging and the W&B report, with no API key and no network (issue 5).

Offline runs are checked in the files W&B would upload: each start's `.wandb` transaction log,
read with wandb's own protobuf records (degradation.wandb_files: wandb ships no Python reader).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
from conftest import run_cli, summaries
from killed_runs import kill_after_checkpoint
from omegaconf import OmegaConf

from degradation import loggers
from degradation.loggers import resolve_mode, run_name, variant_group
from degradation.preflight import parse
from degradation.report.wandb import build_report
from degradation.rundir import WANDB_RUN_ID, read_metrics
from degradation.wandb_files import history, records, segments, written

# wandb and wandb-workspaces are the optional extra `degradation[wandb]`
needs_wandb = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("wandb", "wandb_workspaces")),
    reason="needs the optional extra degradation[wandb]",
)
SWEEP = ["-m", "depth=8", "skip=none,add", "experiment=smoke", "trainer.max_steps=6"]
WANDB_ENV = (
    "WANDB_API_KEY",
    "WANDB_MODE",
    "WANDB_DIR",
    "WANDB_PROJECT",
    "WANDB_ENTITY",
    "WANDB_BASE_URL",
    "WANDB_IDENTITY_TOKEN_FILE",
    "NETRC",
    "WANDB_SILENT",
    "WANDB_SERVICE",  # set by wandb for child processes: they would share this one's service
)


def no_wandb_login(mp: pytest.MonkeyPatch, home: Path) -> None:
    """No API key, no netrc login, nothing of the developer's W&B setup."""
    for key in WANDB_ENV:
        mp.delenv(key, raising=False)
    home.mkdir(parents=True, exist_ok=True)
    mp.setenv("HOME", str(home))


def offline_run(run_dir: Path) -> dict:
    """What an offline run holds: its run record, config, summary and exit code."""
    (log,) = run_dir.glob("run-*.wandb")
    found: dict = {"summary": {}}
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            found.update(
                id=run.run_id,
                name=run.display_name,
                group=run.run_group,
                job_type=run.job_type,
                tags=list(run.tags),
                project=run.project,
            )
            found["config"] = {i.key: json.loads(i.value_json) for i in run.config.update}
        elif kind == "summary":
            found["summary"].update(
                {i.key: json.loads(i.value_json) for i in record.summary.update if i.key}
            )
        elif kind == "exit":
            found["exit_code"] = record.exit.exit_code
    return found


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory):
    """The issue's sweep with logger=wandb, no API key and no network; run once."""
    root = tmp_path_factory.mktemp("wandb_sweep")
    with pytest.MonkeyPatch.context() as mp:
        no_wandb_login(mp, root / "home")
        mp.setenv("WANDB_DIR", str(root / "wandb_dir"))
        started = time.monotonic()
        proc = run_cli(*SWEEP, "logger=wandb", f"output_root={root / 'out'}", cwd=root)
        wall = time.monotonic() - started
    return {"proc": proc, "wall": wall, "root": root, "sweep": root / "out" / "sweeps" / "smoke"}


@needs_wandb
@pytest.mark.slow
def test_sweep_logs_each_job_to_its_own_offline_run(wandb_sweep):
    proc = wandb_sweep["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert wandb_sweep["wall"] < 120  # offline: no login prompt, no 90 s network wait
    runs = sorted((wandb_sweep["root"] / "wandb_dir" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    found = {r.name: offline_run(r) for r in runs}
    by_skip = {f["config"]["skip"]: f for f in found.values()}
    assert set(by_skip) == {"none", "add"}
    assert len({f["id"] for f in found.values()}) == 2  # each job its own W&B run
    for skip, run in by_skip.items():
        assert run["config"]["depth"] == 8 and run["config"]["seed"] == 0
        assert run["job_type"] == "train" and run["project"] == "degradation"
        assert f"skip={skip}" in run["tags"] and "depth=8" in run["tags"]
        assert run["exit_code"] == 0
    assert by_skip["none"]["name"] == "plain-8 s0"
    assert by_skip["add"]["name"] == "resnet-8 zero_pad s0"
    assert by_skip["none"]["group"].startswith("smoke/plain-8 #")
    assert by_skip["add"]["group"].startswith("smoke/resnet-8 #")
    # summary.json's figures land in the W&B run summary, per job
    for run_dir, summary in summaries(wandb_sweep["sweep"]).items():
        run = by_skip[summary["skip"]]
        assert run["summary"]["final/test_error"] == summary["final"]["test_error"]
        assert run["summary"]["params"] == summary["params"]
        assert run["config"]["git_commit"] == summary["git_commit"]
        assert (run_dir / "metrics.csv").is_file()  # CSV is written with W&B too
        assert "logger" not in run_dir.name  # the logger does not rename the run folder
    # every job prints the exact upload command for its own run
    synced = [
        line.split("wandb sync ", 1)[1]
        for line in proc.stdout.splitlines()
        if "wandb sync " in line
    ]
    assert sorted(Path(p) for p in synced) == runs


@needs_wandb
@pytest.mark.slow
def test_dry_run_report_names_both_variants_and_the_panels(wandb_sweep, tmp_path):
    assert wandb_sweep["proc"].returncode == 0
    offline_groups = {
        offline_run(r)["config"]["skip"]: offline_run(r)["group"]
        for r in (wandb_sweep["root"] / "wandb_dir" / "wandb").glob("offline-run-*")
    }
    out = tmp_path / "report.json"
    returned = build_report(wandb_sweep["sweep"], "my-team/degradation", dry_run_path=out)
    spec = json.loads(out.read_text())
    assert spec == returned
    assert spec["project"] == {"name": "degradation", "entityName": "my-team"}
    grids = [b for b in spec["spec"]["blocks"] if b["type"] == "panel-grid"]
    runsets = {rs["name"]: rs for g in grids for rs in g["metadata"]["runSets"]}
    assert set(runsets) == {"plain", "residual", "runs"}
    # the runsets select exactly the groups the training runs were logged under
    assert runsets["plain"]["filters"]["filters"][0]["value"] == [offline_groups["none"]]
    assert runsets["residual"]["filters"]["filters"][0]["value"] == [offline_groups["add"]]
    assert sorted(runsets["runs"]["filters"]["filters"][0]["value"]) == sorted(
        offline_groups.values()
    )
    for rs in runsets.values():
        assert rs["project"] == {"name": "degradation", "entityName": "my-team"}
    assert runsets["plain"]["grouping"] == [{"section": "run", "name": "group"}]
    curves = {}
    for grid in grids:
        for panel in grid["metadata"]["panelBankSectionConfig"]["panels"]:
            config = panel["config"]
            curves[config["chartTitle"]] = config
    for kind in ("plain", "residual"):
        for metric, label in (("train/error", "training error"), ("val/error", "validation error")):
            panel = curves[f"{kind} nets: {label}"]
            assert panel["metrics"] == [metric]
            assert panel["xAxis"] == "trainer/global_step"
            assert (panel["groupBy"], panel["groupAgg"], panel["groupArea"]) == (
                "group",
                "mean",
                "stddev",
            )
    assert "summary:final/test_error" in runsets["runs"]["runFeed"]["columnOrder"]
    markdown = "\n".join(b["content"] for b in spec["spec"]["blocks"] if "content" in b)
    command = next(iter(summaries(wandb_sweep["sweep"]).values()))["command"]
    assert "skip=none,add" in command and f"```bash\n{command}\n```" in markdown
    for group in offline_groups.values():
        assert f"`{group}`" in markdown  # the variant table


@needs_wandb
def test_report_rejects_bad_arguments(tmp_path):
    from degradation.errors import UserError

    with pytest.raises(UserError, match="expected ENTITY/PROJECT"):
        build_report(tmp_path, "no-slash", dry_run_path=tmp_path / "r.json")
    with pytest.raises(UserError, match="no such folder"):
        build_report(tmp_path / "missing", "a/b", dry_run_path=tmp_path / "r.json")
    csv_only = tmp_path / "csv_sweep"
    (csv_only / "job" / ".hydra").mkdir(parents=True)
    (csv_only / "job" / "summary.json").write_text("{}")
    (csv_only / "job" / ".hydra" / "config.yaml").write_text("logger: {kind: csv}\n")
    with pytest.raises(UserError, match="logger=wandb"):
        build_report(csv_only, "a/b", dry_run_path=tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_mode_auto_is_online_only_with_a_key_or_login(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    bare = {"HOME": str(home)}
    assert resolve_mode("auto", bare) == "offline"
    assert resolve_mode("auto", {**bare, "WANDB_API_KEY": "0" * 40}) == "online"
    assert resolve_mode("auto", {**bare, "WANDB_MODE": "disabled", "WANDB_API_KEY": "x"}) == (
        "disabled"
    )
    assert resolve_mode("offline", {**bare, "WANDB_API_KEY": "0" * 40}) == "offline"
    (home / ".netrc").write_text("machine example.com login user password secret\n")
    assert resolve_mode("auto", bare) == "offline"  # a login for another host does not count
    (home / ".netrc").write_text("machine api.wandb.ai login user password " + "1" * 40 + "\n")
    assert resolve_mode("auto", bare) == "online"  # what `wandb login` writes
    assert resolve_mode("auto", {**bare, "WANDB_BASE_URL": "https://wandb.example.org"}) == (
        "offline"  # a private server needs its own login
    )


def test_names_and_groups(compose_spec):
    assert run_name(compose_spec("skip=none", "seed=3")) == "plain-8 s3"
    assert run_name(compose_spec("skip=add", "shortcut=projection")) == "resnet-8 projection s0"
    # seeds share a group; anything else that changes the run does not
    group = variant_group(compose_spec("skip=none", "seed=0"))
    assert variant_group(compose_spec("skip=none", "seed=1")) == group
    assert variant_group(compose_spec("skip=none", "logger=wandb", "output_root=/x")) == group
    assert variant_group(compose_spec("skip=none", "optim.lr=0.05")) != group
    assert variant_group(compose_spec("skip=none", "logger.wandb.group=paper")).startswith(
        "paper/plain-8 #"
    )
    # the report recomputes the group from the saved config: the same string
    saved = parse(OmegaConf.create(compose_spec("skip=none", "seed=2").config_yaml))
    assert variant_group(saved) == group


@needs_wandb
def test_jobs_in_one_process_are_separate_runs_and_restore_the_environment(
    compose_spec, tmp_path, monkeypatch
):
    """Hydra multirun runs jobs in one process: nothing of job 1 may reach job 2."""
    import wandb

    from degradation.loggers import MetricsCSVLogger as CSVLogger  # metrics.csv's writer
    from degradation.loggers import WandbRunLogger

    no_wandb_login(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("WANDB_MODE", "offline")  # as a user might; must survive unchanged
    cfg = compose_spec("logger=wandb", "logger.wandb.mode=offline")
    ids = []
    for job in ("a", "b"):
        built = loggers.build_loggers(cfg, tmp_path / job)
        assert [type(x) for x in built] == [CSVLogger, WandbRunLogger]
        ids.append(wandb.run.id)
        assert Path(wandb.run.settings.sync_dir).parent == tmp_path / job / "wandb"
        os.environ["WANDB_MODE"] = "dryrun"  # what Lightning's WandbLogger(offline=True) does
        loggers.finish_wandb({"status": "completed", "final": {"test_error": 0.25}})
        assert wandb.run is None
        assert os.environ["WANDB_MODE"] == "offline"
    assert ids[0] != ids[1]


@needs_wandb
def test_online_start_that_fails_falls_back_to_offline_quickly(
    compose_spec, tmp_path, monkeypatch, capsys
):
    """A key but no reachable server: offline after init_timeout, never W&B's 90 s wait."""
    no_wandb_login(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    cfg = compose_spec("logger=wandb", "logger.wandb.init_timeout=2")
    started = time.monotonic()
    loggers.build_loggers(cfg, tmp_path / "run")
    assert time.monotonic() - started < 30
    assert loggers._session.mode == "offline"
    loggers.finish_wandb({"status": "failed"})
    out = capsys.readouterr().out
    assert "online start failed" in out and "logging offline" in out
    assert "wandb sync " + str(tmp_path / "run" / "wandb" / "offline-run-") in out


def test_only_global_rank_zero_makes_a_wandb_run(compose_spec, tmp_path, monkeypatch):
    from degradation.loggers import MetricsCSVLogger as CSVLogger  # metrics.csv's writer

    no_wandb_login(monkeypatch, tmp_path / "home")
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP child process
    built = loggers.build_loggers(compose_spec("logger=wandb"), tmp_path / "run")
    assert [type(x) for x in built] == [CSVLogger]
    assert loggers._session is None and not (tmp_path / "run" / "wandb").exists()


def test_logger_wandb_without_wandb_installed_is_a_one_line_error(out, tmp_path):
    hide = tmp_path / "hide_wandb"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None\n")
    env = {"PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli("experiment=smoke", "logger=wandb", f"output_root={out}", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: logger=wandb")
    assert "pip install wandb" in lines[0] and "logger=csv" in lines[0]
    assert not out.exists()


# 30 steps; smoke checkpoints every 10: a kill after the checkpoint at step 10 or 20
RESUMED = ["experiment=smoke", "depth=8", "trainer.max_steps=30", "log_every=4", "logger=wandb"]


@needs_wandb
@pytest.mark.slow
def test_a_killed_run_continues_its_wandb_run_with_every_step_once(tmp_path, monkeypatch):
    """Killed as a scheduler kills a job, the run leaves W&B what wandb's service had written,
    from nothing to steps past the checkpoint (it buffers); the resumed run logs the steps
    W&B lacks before its checkpoint from metrics.csv and no step W&B holds again (that case,
    exactly: test_resumed_wandb_logs_no_step_twice)."""
    no_wandb_login(monkeypatch, tmp_path / "home")
    args = [*RESUMED, f"output_root={tmp_path / 'out'}"]
    run_dir = tmp_path / "out" / "runs" / "smoke" / "depth=8,log_every=4,trainer.max_steps=30"
    last = run_dir / "checkpoints" / "last.ckpt"
    env = dict(os.environ)
    killed_at = kill_after_checkpoint(args, last, 10, tmp_path, env)
    assert 10 <= killed_at < 30 and not (run_dir / "summary.json").exists(), "not cut short"
    run_id = (run_dir / WANDB_RUN_ID).read_text().strip()

    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    starts = segments(run_dir / "wandb", run_id)
    assert [p.name.startswith("offline-run-") for p in starts] == [True, True]
    logs = [start / f"run-{run_id}.wandb" for start in starts]
    first, second = (history(log) for log in logs)
    # one W&B run, under the folder's name and group, whose history holds every step of
    # metrics.csv once, in order across the starts, with the same numbers
    runs = [offline_run(start) for start in starts if history(start / f"run-{run_id}.wandb")]
    assert {(r["id"], r["name"]) for r in runs} == {(run_id, "resnet-8 zero_pad s0")}
    assert len({r["group"] for r in runs}) == 1 and runs[-1]["exit_code"] == 0
    rows = first + second
    csv = read_metrics(run_dir)
    assert [row["_step"] for row in rows] == sorted({s for col in csv.values() for s, _ in col})
    assert rows[-1]["_step"] == 30  # the final validation and tests
    by_step = {row["_step"]: row for row in rows}
    for column in ("lr", "train/loss", "train/error", "val/error", "test/error"):
        for step, number in csv[column]:
            assert by_step[step][column] == pytest.approx(number, rel=1e-6), (column, step)
            assert by_step[step]["trainer/global_step"] == step
    # one command uploads the whole run (a start that wrote nothing is left out)
    uploaded = [str(start) for start in starts if written(start)]
    assert f"wandb sync {' '.join(uploaded)}\n" in resumed.stdout  # tmp paths need no quotes

    again = run_cli(*args, cwd=tmp_path)  # finished: skipped, W&B untouched
    assert again.returncode == 0 and "already completed, skipping" in again.stdout
    assert segments(run_dir / "wandb", run_id) == starts
    assert "[wandb]" not in again.stdout


@needs_wandb
def test_resumed_wandb_logs_no_step_twice(compose_spec, tmp_path, monkeypatch):
    """A start that logged past the checkpoint (steps 0-14, checkpoint at 10): the resumed
    start logs 10-20 again, and the W&B run keeps 0-14 from the first and 15-20 from it."""
    no_wandb_login(monkeypatch, tmp_path / "home")
    cfg = compose_spec("logger=wandb", "logger.wandb.mode=offline")
    run_dir = tmp_path / "run"
    for steps, resume_step in ((range(15), None), (range(10, 21), 10)):
        (wandb_logger,) = loggers.build_loggers(cfg, run_dir, 0, resume_step)[1:]
        for step in steps:
            wandb_logger.log_metrics({"lr": 0.1, "train/loss": 2.0 - step / 100}, step=step)
        loggers.finish_wandb({"status": "completed"})
        time.sleep(1.1)  # wandb names a start's folder by the second: a resume takes longer
    run_id = (run_dir / WANDB_RUN_ID).read_text().strip()
    first, second = (
        history(p / f"run-{run_id}.wandb") for p in segments(run_dir / "wandb", run_id)
    )
    assert [r["_step"] for r in first] == list(range(15))
    assert [r["_step"] for r in second] == list(range(15, 21))
    assert [r["train/loss"] for r in first + second] == [2.0 - s / 100 for s in range(21)]
