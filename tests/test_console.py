"""What a reader sees: plain lines in logs, a progress bar on a terminal, help that explains."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from types import SimpleNamespace

import pytest
from conftest import run_cli, summaries
from hydra.core.hydra_config import HydraConfig

from degradation.cli_help import SETTINGS, schema_keys
from degradation.console import duration
from hydra_plugins.degradation_sweeper import JobLines

SWEEP = ["-m", "experiment=smoke", "depth=8", "skip=none,add", "trainer.max_steps=8",
         "log_every=4", "trainer.enable_progress_bar=true"]  # fmt: skip
# what no run should print: Lightning's advertisements, third-party deprecations, Lightning's
# notes on every checkpoint it saves or loads
NOISE = (
    "💡",
    "litlogger",
    "litmodels",
    "Tip:",
    "deprecated",
    "FutureWarning",
    "weights_only",
    "Restoring states from the checkpoint",
    "Loaded model weights from the checkpoint",
)


@pytest.mark.parametrize(
    ("code", "status"), [(143, "interrupted"), (130, "interrupted"), (1, "failed")]
)
def test_a_job_that_exits_ends_its_line_with_why(monkeypatch, capsys, code, status):
    job = SimpleNamespace(job=SimpleNamespace(num=0), overrides=SimpleNamespace(task=["depth=8"]))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: job))

    def stopped(cfg):  # degradation.run on SIGTERM / SIGINT exits 128 + the signal
        raise SystemExit(code)

    lines = JobLines(stopped)
    lines.total = 2
    with pytest.raises(SystemExit):
        lines(None)
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.match(rf"\[sweep\] job 1/2 {status} in \d+s: depth=8; about ", last), last


@pytest.mark.slow
def test_a_piped_sweep_prints_plain_lines_one_start_and_end_per_job(tmp_path, out):
    proc = run_cli(*SWEEP, f"output_root={out}", cwd=tmp_path)  # stdout and stderr are pipes
    assert proc.returncode == 0, proc.stderr[-3000:]
    both = proc.stdout + proc.stderr
    assert "\r" not in both  # no progress bar redrawn in place
    for noise in NOISE:
        assert noise not in both, noise
    lines = proc.stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("[sweep] job ")
              and " started: " in line]  # fmt: skip
    ends = [i for i, line in enumerate(lines) if re.match(r"\[sweep\] job \d/2 \w+ in ", line)]
    assert [lines[i].split()[2] for i in starts] == ["1/2", "2/2"]
    assert [lines[i].split()[2] for i in ends] == ["1/2", "2/2"]
    assert starts[0] < ends[0] < starts[1] < ends[1]  # the basic launcher: one job at a time
    assert " completed in " in lines[ends[0]] and " left" in lines[ends[0]]
    assert "skip=none" in lines[starts[0]] and "skip=add" in lines[ends[1]]
    # one plain line per training window (8 steps of windows of 4) inside each job
    for start, end in zip(starts, ends, strict=True):
        progress = [line for line in lines[start:end] if line.startswith("[train] step ")]
        assert [line.split()[2] for line in progress] == ["4/8", "8/8"]
        assert "loss " in progress[0] and "error " in progress[0] and " left" in progress[0]


@pytest.mark.slow
def test_a_terminal_gets_lightnings_progress_bar_instead(tmp_path, out):
    """On a terminal (a pseudo-terminal here) the bar redraws in place; no plain lines."""
    primary, secondary = pty.openpty()
    # a terminal 100 columns wide (a new pseudo-terminal has none: tqdm would draw nothing)
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    args = ["experiment=smoke", "depth=8", "trainer.max_steps=4", "log_every=2",
            "trainer.enable_progress_bar=true", f"output_root={out}"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "degradation.run", *args], cwd=tmp_path,
        stdout=secondary, stderr=secondary, stdin=subprocess.DEVNULL, close_fds=True,
    )  # fmt: skip
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the run has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=300) == 0
    os.close(primary)
    shown = b"".join(chunks).decode(errors="replace")
    assert "\rEpoch 0: " in shown  # the bar, redrawn in place
    assert "[train] step" not in shown


def test_help_explains_every_setting_of_the_schema(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert set(SETTINGS) == set(schema_keys())  # every key has its line, and no stale one
    for key in schema_keys():
        line = next((x for x in text.splitlines() if re.match(rf"\s+{key}[=.]", x)), None)
        assert line is not None, f"--help does not mention {key}"
        assert SETTINGS[key] in line
    assert re.search(r"^\s+skip=add\s+\{none,add,concat\}", text, re.M)  # default, choices
    for group in ("data:", "experiment:", "logger: csv, tensorboard, wandb"):
        assert group in text
    assert len(re.findall(r"^\s+degradation-run .*# ", text, re.M)) == 3  # the examples
    assert "Hydra (https://hydra.cc)" not in text  # Hydra's generic help is not shown


@pytest.mark.parametrize("module", ["report", "analyze", "bench"])
def test_other_entry_points_show_examples_in_their_help(module, tmp_path):
    proc = subprocess.run([sys.executable, "-m", f"degradation.{module}", "--help"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    examples = proc.stdout.split("examples:\n", 1)[1].splitlines()
    assert sum(line.startswith(f"  python -m degradation.{module} ") for line in examples) >= 3


def test_durations_read_like_a_person_writes_them():
    assert [duration(s) for s in (0, 45.4, 185, 3720, 90061)] == [
        "0s", "45s", "3m 05s", "1h 02m", "25h 01m",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]], ids=["basic", "joblib"]
)
def test_run_log_holds_the_lines_the_console_shows_under_every_launcher(tmp_path, out, launcher):
    """run.log: the job's own lines, from the run folder's announcement at its start (before
    any training line) to the outcome line, whichever process the launcher runs it in."""
    proc = run_cli(*SWEEP, f"output_root={out}", *launcher, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = (proc.stdout + proc.stderr).splitlines()
    runs = summaries(out)
    assert sorted(s["name"] for s in runs.values()) == ["plain-8", "resnet-8"]
    for run_dir, summary in runs.items():
        variant = f"{summary['name']} s0"
        log = (run_dir / "run.log").read_text()
        assert "\r" not in log
        lines = log.splitlines()
        start = f"[run] {variant}: starting in {run_dir}"
        assert lines[0] == start
        assert lines[-1].startswith(f"{variant}: completed, train error ")
        assert lines[-1].endswith(f" -> {run_dir}")
        progress = [line for line in lines if line.startswith("[train] step ")]
        assert [line.split()[2] for line in progress] == ["4/8", "8/8"]
        assert any(line.startswith("[speed] precision ") for line in lines)
        # Lightning's own note, as the console shows it (plain, or a logging record in a worker)
        assert any(line.endswith("`Trainer.fit` stopped: `max_steps=8` reached.") for line in lines)
        for line in lines:  # what the console showed, nothing else
            assert line in shown, line
        # the console names the folder when the job starts, before its first training line
        assert shown.index(start) < shown.index(progress[0])


@pytest.mark.parametrize(
    ("line", "offered"),
    [("skip=", "skip=add"), ("shortcut=", "shortcut=zero_pad"), ("data.normalize=", None),
     ("compile=", "compile=auto"), ("family=keras shortcut=", "shortcut=all_projection")],
)  # fmt: skip
def test_tab_completion_offers_plain_values(tmp_path, line, offered):
    """Hydra's bash completion (docs/cli.md) shows a setting's value as str() writes it."""
    proc = run_cli("--shell-completion", "query=bash", cwd=tmp_path,
                   env={"COMP_LINE": f"degradation-run {line}"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split()
    assert len(words) == 1 and "." not in words[0].split("=", 1)[1], words
    if offered is not None:
        assert words == [offered]
