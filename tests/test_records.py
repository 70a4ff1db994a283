"""A run folder a careful researcher can trust (docs/run-folder.md): opening one runs no code,
it is resumed or skipped only for the same config and data, a rerun leaves a finished one
byte for byte, one process writes it at a time, and SIGINT/SIGTERM/a full disk end a run
cleanly."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, summaries
from test_resume import FINAL_KEYS, RUN, metrics_rows, only_run
from test_sources import write_fake_fashion_mnist, write_idx

from degradation.callbacks import AtomicCheckpointIO
from degradation.errors import UserError
from degradation.rundir import append_csv_row, read_checkpoint, run_dir_name

# --- opening a folder never runs code -------------------------------------------------------


class _Payload:
    """Unpickling this creates `marker`: the code a crafted checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def write_crafted_checkpoint(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "global_step": 3, "resume": _Payload(marker)}, path)


def test_the_crafted_checkpoint_of_these_tests_does_run_code_when_trusted(tmp_path):
    """The control: the payload used below is live, so its absence there means something."""
    marker = tmp_path / "marker"
    write_crafted_checkpoint(tmp_path / "last.ckpt", marker)
    torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert marker.exists()


def test_a_crafted_last_ckpt_is_refused_on_resume_and_its_code_never_runs(tmp_path, out):
    marker = tmp_path / "marker"
    last = out / "runs" / "smoke" / "depth=8" / "checkpoints" / "last.ckpt"
    write_crafted_checkpoint(last, marker)
    result = run_cli("experiment=smoke", "depth=8", f"output_root={out}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"error: checkpoint {last} was not loaded: it holds a reference to io.open, which a "
        "checkpoint of this program never holds, and loading it could run code; delete it, or "
        "rerun with resume=false to start this run afresh"
    )
    assert not marker.exists()
    assert not (last.parent.parent / "summary.json").exists()


@pytest.mark.parametrize("command", ["lesion", "responses"])
@pytest.mark.parametrize("checkpoint", ["last", "best"])
def test_a_crafted_checkpoint_is_refused_by_the_analyses(tmp_path, capsys, command, checkpoint):
    from degradation.analyze.__main__ import main

    run_dir, marker = tmp_path / "run", tmp_path / "marker"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(
        "depth: 8\ndata:\n  val_size: 32\n  synthetic: {train_size: 128, test_size: 32}\n"
    )
    path = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    write_crafted_checkpoint(path, marker)
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(run_dir), "--checkpoint", checkpoint, "--device", "cpu"])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: checkpoint {path} was not loaded: it holds a reference to ")
    assert not marker.exists()
    assert not (run_dir / "layer_responses.json").exists()


def test_lightnings_own_checkpoint_loads_are_refused_too(tmp_path):
    """trainer.fit(ckpt_path=last) and trainer.test(ckpt_path=best) load through the plugin."""
    marker = tmp_path / "marker"
    write_crafted_checkpoint(tmp_path / "best.ckpt", marker)
    with pytest.raises(UserError, match="best.ckpt was not loaded: .* could run code"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "best.ckpt", weights_only=False)
    assert not marker.exists()


# --- a folder knows what it holds -----------------------------------------------------------


def test_a_data_root_with_other_files_is_refused_on_skip_and_on_resume(tmp_path, out):
    data_a, data_b, copy_of_a = tmp_path / "a", tmp_path / "b", tmp_path / "a_copy"
    for folder in (data_a, data_b, copy_of_a):  # the same bytes three times...
        write_fake_fashion_mnist(folder, n_train=200, n_test=40)
    other_images = np.random.default_rng(2).integers(0, 256, (200, 28, 28))
    write_idx(data_b / "train-images-idx3-ubyte.gz", other_images, 2051)  # ...but for b's
    run = ["experiment=smoke", "data=fashion_mnist", "depth=8", "trainer.max_steps=2"]
    run += ["data.val_size=40", f"output_root={out}"]
    first = run_cli(*run, f"data.root={data_a}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = only_run(out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["num_train"], summary["num_test"]) == (160, 40)

    skipped = run_cli(*run, f"data.root={data_b}", cwd=tmp_path)  # the same folder, other data
    assert skipped.returncode == 2
    (line,) = skipped.stderr.strip().splitlines()
    ours = f"fashion_mnist, checksum {summary['dataset_checksum']}, 160 training / 40 test images"
    assert line.startswith(f"error: {run_dir / 'summary.json'} holds a run on other data ({ours}")
    assert "this run's data: fashion_mnist, checksum " in line
    assert line.endswith("output_root= or name=, or rerun with resume=false to replace that run")
    assert json.loads((run_dir / "summary.json").read_text()) == summary

    (run_dir / "summary.json").unlink()  # now unfinished: last.ckpt would be continued
    resumed = run_cli(*run, f"data.root={data_b}", cwd=tmp_path)
    assert resumed.returncode == 2
    (line,) = resumed.stderr.strip().splitlines()
    last = run_dir / "checkpoints" / "last.ckpt"
    assert line.startswith(f"error: {last} holds a run on other data ({ours}")
    recorded = read_checkpoint(last)["resume"]["data"]
    assert recorded == {key: summary[key] for key in recorded}  # the summary's identity

    # data.root does not define a run: the same bytes elsewhere resume and finish it
    same = run_cli(*run, f"data.root={copy_of_a}", cwd=tmp_path)
    assert same.returncode == 0, same.stderr[-3000:]
    assert "resuming from last.ckpt at step 2" in same.stdout
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_a_folder_from_before_data_identities_were_recorded_still_resumes(tmp_path, out):
    run = ["experiment=smoke", "depth=8", "trainer.max_steps=2", f"output_root={out}"]
    assert run_cli(*run, cwd=tmp_path).returncode == 0
    run_dir = only_run(out)
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    del checkpoint["resume"]["data"]  # as written before this change
    torch.save(checkpoint, last)
    (run_dir / "summary.json").unlink()
    again = run_cli(*run, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from last.ckpt at step 2" in again.stdout


# --- a rerun leaves a finished folder byte for byte ---------------------------------------------

# 15 defining overrides: the folder's name (> 255 bytes) is shortened to a prefix and a hash
LONG_JOB = [
    "experiment=smoke", "depth=8", "trainer.max_steps=3", "trainer.val_check_interval=2",
    "log_every=2",
    "optim.lr=0.05", "optim.momentum=0.85", "optim.weight_decay=0.0002", "optim.gamma=0.2",
    "optim.nesterov=true", "data.val_size=100", "data.split_seed=3", "data.batch_size=16",
    "data.eval_batch_size=64", "data.synthetic.train_size=300", "data.synthetic.test_size=100",
]  # fmt: skip


def file_digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_15_override_job_is_found_again_and_its_folder_left_byte_for_byte(tmp_path, out):
    assert len(",".join(LONG_JOB[1:]).encode()) > 255
    first = run_cli(*LONG_JOB, f"output_root={out}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = only_run(out)
    assert run_dir.name == run_dir_name(LONG_JOB) and len(run_dir.name.encode()) <= 255
    before = file_digests(run_dir)
    assert {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "run.log",
            "run.lock", "summary.json", "checkpoints/last.ckpt"} <= before.keys()  # fmt: skip
    for name in ("last.ckpt", "best.ckpt"):  # nothing the safe loader refuses
        path = run_dir / "checkpoints" / name
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []

    # the same job, asked with other keys that do not define a run, from another folder
    (tmp_path / "elsewhere").mkdir()
    again = run_cli(*reversed(LONG_JOB), "checkpoint_every=2", "data.num_workers=0",
                    f"output_root={out}", cwd=tmp_path / "elsewhere")  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"[resume] {run_dir}: already completed, skipping" in again.stdout
    assert file_digests(run_dir) == before
    assert summaries(out).keys() == {run_dir}


def test_best_val_is_null_when_no_validation_ran_and_the_report_shows_a_dash(tmp_path, out):
    from degradation.report.runs import find_runs
    from degradation.report.tables import runs_table

    run = ["experiment=smoke", "depth=8", "trainer.max_steps=3", "trainer.val_check_interval=50"]
    result = run_cli(*run, f"output_root={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((only_run(out) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["best_val"] is None
    assert summary["final"]["test_error"] is not None
    table = runs_table(find_runs(out), out)
    (row,) = table.rows
    assert row[table.columns.index("Best-on-val test %")] == "—"


# --- one writer per run folder ----------------------------------------------------------------


def finished(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_two_identical_commands_at_once_train_once_and_the_second_is_told_why(tmp_path, out):
    sweep = ["-m", "experiment=smoke", "depth=8", "trainer.max_steps=120", f"output_root={out}"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    log = (tmp_path / "first.log").open("w")
    first = subprocess.Popen(
        [sys.executable, "-m", "degradation.run", *sweep], cwd=tmp_path, env=env,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    job = out / "sweeps" / "smoke" / "depth=8,trainer.max_steps=120"
    deadline = time.monotonic() + 300
    while not (job / "metrics.csv").is_file() and time.monotonic() < deadline:
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(0.1)
    holder = json.loads((job / "run.lock").read_text())
    assert holder["pid"] == first.pid and "trainer.max_steps=120" in holder["command"]

    quoted = "'" + str(job) + "'"  # read verbatim: the folder's name holds ',' and '='
    others = [  # the same sweep again, and a single run in the same folder
        subprocess.Popen([sys.executable, "-m", "degradation.run", *args], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in (sweep, [*sweep[1:], f"hydra.run.dir={quoted}"])
    ]  # fmt: skip
    second, single = (finished(p) for p in others)
    assert first.poll() is None, "the first command ended before the others asked"
    assert second.returncode == 1, second.stderr[-3000:]
    table = second.stdout[second.stdout.index("job ") :]
    assert f"busy  (pid {first.pid} on " in table and "sweep: 1 busy" in table
    assert "error: 1 of 1 jobs busy: another process is training them" in second.stderr
    assert single.returncode == 2
    (line,) = single.stderr.strip().splitlines()
    assert line.startswith(f"error: {job} is in use by another process (pid {first.pid} on ")

    assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    log.close()
    steps = [r["step"] for r in metrics_rows(job) if r["lr"]]
    assert steps == [str(s) for s in range(120)]  # each step once: one writer
    assert json.loads((job / "summary.json").read_text())["resumed_from_step"] is None


def test_a_folder_named_run_lock_is_one_line_naming_it(tmp_path, out):
    job = out / "runs" / "smoke" / "depth=8"
    (job / "run.lock").mkdir(parents=True)
    result = run_cli("experiment=smoke", "depth=8", f"output_root={out}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"error: {job / 'run.lock'} is a folder, but this run keeps its lock file there: move "
        f"that folder out of {job} (or delete it), then rerun the same command"
    )
    assert sorted(p.name for p in job.iterdir()) == ["run.lock"]  # nothing else written


# --- interruptions ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The run folder of RUN (30 steps) trained without interruption."""
    root = tmp_path_factory.mktemp("uninterrupted")
    result = run_cli(*RUN, f"output_root={root / 'out'}", cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run(root / "out")


def trained_steps(run_dir: Path) -> int:
    try:
        return sum(1 for r in metrics_rows(run_dir) if r["lr"])
    except (OSError, KeyError):
        return 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_the_run_as_interrupted_and_a_rerun_resumes_exactly(
    tmp_path, uninterrupted, signum
):
    out = tmp_path / "out"
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    run = subprocess.Popen(
        [sys.executable, "-m", "degradation.run", *RUN, f"output_root={out}"], cwd=tmp_path,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_dir = out / "runs" / "smoke" / uninterrupted.name
    deadline = time.monotonic() + 300
    while trained_steps(run_dir) < 5 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 128 + signum, stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    name = signal.Signals(signum).name
    assert (summary["status"], summary["signal"]) == ("interrupted", name)
    stopped = summary["resume_step"]
    assert 5 <= stopped == summary["steps"] < 30, "the run was not cut short"
    last = run_dir / "checkpoints" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == stopped
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted by {name}: {run_dir} is left as status interrupted; a rerun of the same "
        f"command resumes from {last} (step {stopped})"
    )

    resumed = run_cli(*RUN, f"output_root={out}", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from last.ckpt at step {stopped}" in resumed.stdout
    a = json.loads((uninterrupted / "summary.json").read_text())
    b = json.loads((run_dir / "summary.json").read_text())
    assert b["status"] == "completed" and b["steps"] == 30 and b["resumed_from_step"] == stopped
    for key in FINAL_KEYS:
        assert b["final"][key] == pytest.approx(a["final"][key], abs=1e-6), key
    assert b["best_val"] == a["best_val"]
    assert metrics_rows(run_dir) == metrics_rows(uninterrupted)  # every row, step for step


@pytest.mark.slow  # three jobs' processes start on 2 cores (about 80 s)
def test_ctrl_c_in_a_joblib_sweep_records_each_running_job_as_interrupted(tmp_path):
    """Ctrl-C as a terminal sends it (SIGINT to the whole process group) while two jobs train
    in joblib's workers and a third waits: one line per job and one for the sweep, no
    traceback, exit 130; both running jobs end as interrupted at a checkpoint, the third
    never starts (its folder is never made)."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    out = tmp_path / "out"
    sweep = [
        "-m", "seed=0,1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "experiment=smoke", "depth=8", "trainer.max_steps=400", f"output_root={out}",
    ]  # fmt: skip
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    run = subprocess.Popen(
        [sys.executable, "-m", "degradation.run", *sweep], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    folders = [out / "sweeps" / "smoke" / f"depth=8,seed={s},trainer.max_steps=400" for s in "012"]
    deadline = time.monotonic() + 300
    while run.poll() is None and time.monotonic() < deadline:
        if all(trained_steps(folder) >= 3 for folder in folders[:2]):
            break
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-3000:]
    for folder in folders[:2]:
        summary = json.loads((folder / "summary.json").read_text())
        assert (summary["status"], summary["signal"]) == ("interrupted", "SIGINT")
        assert 3 <= summary["resume_step"] == summary["steps"] < 400
        last = folder / "checkpoints" / "last.ckpt"
        assert read_checkpoint(last)["global_step"] == summary["steps"]
        assert (
            f"interrupted by SIGINT: {folder} is left as status interrupted; a rerun of the same "
            f"command resumes from {last} (step {summary['steps']})"
        ) in stderr.splitlines()
    assert not folders[2].exists()
    assert stderr.strip().splitlines()[-1] == (
        "interrupted by SIGINT: the sweep stopped; 2 running job(s) left as status interrupted, "
        "0 ended before, 1 not started; a rerun of the same command skips the finished jobs and "
        "resumes the others"
    )


# --- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def root_logging():
    """Hydra run in this process points the root logger at this test's captured stdout: put
    back what the other tests log through."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


class _FullDisk(io.RawIOBase):
    """A file on a full disk: every write() fails with ENOSPC."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("raised", ["OSError", "RuntimeError"])
def test_a_full_disk_is_one_line_naming_the_file_and_the_last_good_checkpoint(
    tmp_path, out, monkeypatch, capsys, root_logging, raised
):
    """Whatever the writer raises: torch.save itself, on a buffered file of a full disk,
    raises a RuntimeError ("unexpected pos ...") whose context is the OSError, as on a real
    full tmpfs (test_a_real_full_disk_is_one_line)."""
    from degradation import run as cli

    save = torch.save
    seen = []

    def disk_full_at_step_20(checkpoint, f, *args, **kwargs):
        if checkpoint.get("global_step") != 20:
            return save(checkpoint, f, *args, **kwargs)
        f.write(b"half a checkpoint")
        if raised == "OSError":
            raise OSError(errno.ENOSPC, "No space left on device")
        try:
            save(checkpoint, io.BufferedWriter(_FullDisk()), *args, **kwargs)
        except Exception as err:
            seen.append(err)
            raise

    monkeypatch.setattr(torch, "save", disk_full_at_step_20)
    monkeypatch.chdir(tmp_path)
    args = ["experiment=smoke", "depth=8", f"output_root={out}"]  # 20 steps, last.ckpt at 10
    monkeypatch.setattr(sys, "argv", ["degradation/run.py", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    run_dir = out / "runs" / "smoke" / "depth=8"
    last = run_dir / "checkpoints" / "last.ckpt"
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"error: no space left on device while writing {last.parent}/")
    assert line.endswith(
        f"; the last good checkpoint is {last} (step 10): free some space, then rerun the "
        "same command to resume from it"
    )
    assert read_checkpoint(last)["global_step"] == 10  # the good one, whole
    assert not list(run_dir.rglob("*.tmp"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left on device" in summary["error"]
    if raised == "RuntimeError":  # the control: torch's own exception, not an OSError
        assert [type(e) for e in seen] == [RuntimeError] and "unexpected pos" in str(seen[0])


@pytest.mark.parametrize("file", ["run.lock", ".hydra/config.yaml"])
def test_a_full_disk_at_the_start_of_a_job_is_one_line(
    tmp_path, out, monkeypatch, capsys, root_logging, file
):
    """The first writes of a job: the lock's holder record, then the job's config."""
    from degradation import run as cli

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite" if file == "run.lock" else "fsync", full)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["degradation/run.py", "experiment=smoke", "depth=8",
                                      f"output_root={out}"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    monkeypatch.undo()
    assert exit_info.value.code == 2
    run_dir = out / "runs" / "smoke" / "depth=8"
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"error: no space left on device while writing {run_dir / file}; no checkpoint was "
        "written yet: free some space, then rerun the same command"
    )
    assert not (run_dir / "summary.json").exists() and not list(run_dir.rglob("*.tmp"))


@pytest.fixture
def tiny_disk(tmp_path) -> Path:
    """A 1.6 MB tmpfs (needs the right to mount: root, outside most containers)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill the file system but `leave` bytes (whole pages)."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    os.truncate(disk / "filler", (disk / "filler").stat().st_size - leave)


@pytest.mark.parametrize("left", [None, 4096, 0], ids=["checkpoint", "config", "lock"])
def test_a_real_full_disk_is_one_line(tmp_path, tiny_disk, left):
    """The smoke run's checkpoints (630 kB each) fill 1.6 MB at step 20; with one page left the
    lock takes it and .hydra/config.yaml finds none; with none, the lock finds none."""
    if left is not None:
        fill(tiny_disk, left)
    out = tiny_disk / "out"
    result = run_cli("experiment=smoke", "depth=8", f"output_root={out}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    run_dir = out / "runs" / "smoke" / "depth=8"
    last = run_dir / "checkpoints" / "last.ckpt"
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "Traceback" not in result.stderr
    file = {None: last.parent, 4096: run_dir / ".hydra" / "config.yaml", 0: run_dir / "run.lock"}
    assert line.startswith(f"error: no space left on device while writing {file[left]}")
    if left is None:
        assert line.endswith(f"the last good checkpoint is {last} (step 10): free some space, "
                             "then rerun the same command to resume from it")  # fmt: skip
        assert read_checkpoint(last)["global_step"] == 10
    else:
        assert line.endswith("no checkpoint was written yet: free some space, then rerun the "
                             "same command")  # fmt: skip


def test_a_csv_row_that_meets_a_full_disk_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "grad_norms.csv"
    append_csv_row(path, ["step", "x"], ["0", "1.5"])
    before = path.read_bytes()
    write = os.write

    def half_then_full(fd, data):
        if len(data) > 4:
            return write(fd, bytes(data[:4]))  # a partial write, as a filling disk does
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError) as error_info:
        append_csv_row(path, ["step", "x"], ["1", "2.5"])
    assert error_info.value.errno == errno.ENOSPC and error_info.value.filename == str(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
