"""The table of bad inputs: every command answers a mistake with exit code 2 and exactly one
stderr line `error: ...` that names the bad value, no traceback, and no new (or changed) file
or folder anywhere.

`python -m degradation.run` runs as a user types it (a subprocess per case, cwd and output_root
inside tmp_path); report, report.compare, analyze and bench take argv, so their mains are
called in-process. `{tmp}` in a case is the test's tmp_path, which holds `empty/`, `a_file`,
`dangling` (a symbolic link to nothing), a folder of runs `runs/` (one summary.json), one whose
summary.json is torn (`broken/`), and three run folders for the analyses: `run/` (config, no
checkpoint), `torn/` (config, a corrupted last.ckpt) and `badcfg/` (a config that is not YAML,
an empty last.ckpt). /proc stands for a folder that cannot be written: the tests run as root,
for whom chmod forbids nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from degradation.analyze.__main__ import main as analyze_main
from degradation.bench import main as bench_main
from degradation.report.__main__ import main as report_main
from degradation.report.compare import main as compare_main

SMALL_SYNTHETIC = """\
depth: 8
skip: none
data:
  batch_size: 16
  val_size: 32
  synthetic: {train_size: 96, test_size: 32, image_size: 8}
"""

RUN = [  # (arguments of python -m degradation.run, texts the error line must hold)
    (["depth=21"], ["depth=21", "6n+2", "20, 32, 44, 56"]),
    (["skip=sum"], ["skip=sum", "none", "add", "concat"]),
    (["shortcut=B"], ["shortcut=B", "zero_pad", "projection"]),
    (["block=foo"], ["block=foo", "basic", "bottleneck"]),
    (["family=keras", "depth=56"], ["depth=56 is not valid for a keras net; choose depth=50"]),
    (
        ["family=keras", "depth=50", "shortcut=zero_pad"],
        ["shortcut='zero_pad' is not valid for a keras net", "choose shortcut='all_projection'"],
    ),
    (
        ["family=keras", "depth=50", "head_init=he_normal"],
        ["head_init='he_normal' is not valid for a keras net", "choose head_init='pytorch'"],
    ),
    (["-m", "depth=20,56", "--cfg", "job"], ["--cfg and --multirun cannot be combined"]),
    (["head_init=xavier"], ["head_init=xavier", "pytorch", "he_normal"]),
    (["data.pad_value=edge"], ["data.pad_value=edge", "zero", "mean"]),
    (["data=nonexistent"], ["data=nonexistent", "fashion_mnist", "synthetic"]),
    (["experiment=nope"], ["experiment=nope", "smoke"]),
    (["dpth=3"], ["dpth=3", "unknown key", "depth"]),
    (["trainer.bogus=1"], ["trainer.bogus=1", "unknown key 'bogus'", "max_steps"]),
    (["+foo=1"], ["+foo", "unknown key 'foo'", "depth"]),
    (["~depth"], ["~depth", "cannot be removed"]),
    # types
    (["depth=abc"], ["depth=abc", "abc"]),
    (["depth=2.5"], ["depth=2.5", "Integer"]),
    (["trainer.max_steps=ten"], ["trainer.max_steps=ten", "Integer"]),
    (["resume=maybe"], ["resume=maybe", "true or false"]),
    (["optim.milestones=[3,2]"], ["optim.milestones=[3, 2]", "increasing"]),
    # values
    (["data.batch_size=0"], ["data.batch_size=0", "positive"]),
    (["optim.lr=-0.1"], ["optim.lr=-0.1", "positive"]),
    (["trainer.max_steps=0"], ["trainer.max_steps=0", "positive"]),
    (["checkpoint_every=0"], ["checkpoint_every=0", "positive"]),
    (["diverge_loss=-1"], ["diverge_loss=-1", "positive"]),
    (["data.val_size=0"], ["data.val_size=0", "positive"]),
    (["name=../x"], ["name=../x", "one folder name"]),
    # NaN and infinities, out-of-range seeds
    (["optim.lr=nan"], ["optim.lr=nan", "finite"]),
    (["optim.momentum=inf"], ["optim.momentum=inf", "finite"]),
    (["optim.weight_decay=1e400"], ["optim.weight_decay=inf", "finite"]),
    (["seed=-1"], ["seed=-1", "0 .. 4294967295"]),
    (["seed=4294967296"], ["seed=4294967296", "0 .. 4294967295"]),
    # impossible synthetic data
    (["data.synthetic.train_size=100"], ["data.val_size=1000", "100 images"]),
    (["data.synthetic.num_classes=1"], ["data.synthetic.num_classes=1", ">= 2"]),
    # interpolations
    (["depth=${nonexistent}"], ["depth", "'nonexistent' not found"]),
    (["optim.lr=${oops:1}"], ["optim.lr", "oops"]),
    # Lightning's trainer arguments
    (["trainer.devices=0"], ["trainer.devices=0"]),
    (["trainer.precision=17"], ["trainer.precision=17", "bf16-mixed"]),
    (["trainer.accelerator=foo"], ["trainer.accelerator=foo", "cpu"]),
    (["trainer.strategy=foo"], ["trainer.strategy=foo", "ddp"]),
    (["trainer.devices=-2"], ["trainer.devices=-2"]),
    (["trainer.deterministic=maybe"], ["trainer.deterministic=maybe", "true, false or warn"]),
    # Hydra's own settings
    (["hydra/launcher=foo"], ["hydra/launcher=foo", "joblib"]),
    # sweeps: one job's value is bad, so nothing starts
    (["-m", "depth=20,21"], ["depth=21", "6n+2"]),
    (["-m", "seed=0,-1"], ["seed=-1", "0 .. 4294967295"]),
    (["-m", "trainer.precision=32,17"], ["trainer.precision=17"]),
    (["-m", "jobs_per_gpu=2,many"], ["jobs_per_gpu=many", "choose auto or a positive integer"]),
    # files and folders
    (
        ["data=fashion_mnist", "data.root={tmp}/empty"],
        ["{tmp}/empty", "train-images-idx3-ubyte", "data.root"],
    ),
    (
        ["data=cifar10", "data.download=false", "data.root={tmp}/empty"],
        ["{tmp}/empty/cifar-10-batches-py", "data.download=true"],
    ),
    (["data=fashion_mnist", "data.root={tmp}/a_file"], ["data.root={tmp}/a_file", "is a file"]),
    (["output_root=/proc/x"], ["output_root=/proc/x", "choose a folder you can write to"]),
    (["output_root={tmp}/a_file/out"], ["{tmp}/a_file is a file", "choose a folder"]),
    (
        ["output_root={tmp}/dangling"],
        [
            "output_root={tmp}/dangling: {tmp}/dangling is a symbolic link to {tmp}/nowhere, "
            "which does not exist; create that folder, or remove the link"
        ],
    ),  # fmt: skip
    (["output_root={tmp}/dangling/sweeps"], ["{tmp}/dangling is a symbolic link"]),
]

REPORT = [
    (["{tmp}/missing"], ["{tmp}/missing: no such folder"]),
    (["{tmp}/a_file"], ["{tmp}/a_file is not a folder"]),
    (["{tmp}/empty"], ["{tmp}/empty: no run folders found"]),
    (["{tmp}/runs", "--out", "{tmp}/a_file"], ["--out {tmp}/a_file", "is a file"]),
    (["{tmp}/runs", "--out", "/proc/report"], ["--out /proc/report", "cannot create files"]),
    (["{tmp}/runs", "--out", "{tmp}/dangling"], ["--out {tmp}/dangling: {tmp}/dangling is a sym"]),
    (["{tmp}/runs", "--dry-run"], ["--dry-run", "--wandb ENTITY/PROJECT"]),
    (["{tmp}/runs", "--wandb", "just-a-project"], ["'just-a-project'", "ENTITY/PROJECT"]),
    (["{tmp}/runs", "--wandb", "a/b", "--dry-run", "{tmp}/a_file/w.json"], ["{tmp}/a_file is"]),
    (["{tmp}/runs", "--bogus"], ["unrecognized arguments: --bogus"]),
]

ANALYZE = [
    (["landscape", "{tmp}/missing"], ["{tmp}/missing: no such folder"]),
    (["lesion", "{tmp}/empty"], ["{tmp}/empty: no run folders found"]),
    (["responses", "{tmp}/run"], ["{tmp}/run: no checkpoints/last.ckpt"]),
    (["lesion", "{tmp}/run", "--checkpoint", "best"], ["no checkpoints/best.ckpt"]),
    (["responses", "{tmp}/torn"], ["{tmp}/torn/checkpoints/last.ckpt is corrupted"]),
    (["lesion", "{tmp}/badcfg"], ["{tmp}/badcfg/.hydra/config.yaml", "line 2"]),
    (["landscape", "{tmp}/run", "--steps", "4"], ["--steps 4", "odd"]),
    (["landscape", "{tmp}/run", "--steps", "abc"], ["--steps", "'abc'"]),
    (["landscape", "{tmp}/run", "--span", "nan"], ["--span nan", "> 0"]),
    (["landscape", "{tmp}/run", "--span", "inf"], ["--span inf", "> 0"]),
    (["landscape", "{tmp}/run", "--subset", "0"], ["--subset 0", ">= 1"]),
    (["lesion", "{tmp}/run", "--limit", "0"], ["--limit 0", ">= 1"]),
    (["responses", "{tmp}/run", "--batch-size", "0"], ["--batch-size 0", ">= 1"]),
    (["lesion", "{tmp}/run", "--checkpoint", "first"], ["invalid choice: 'first'"]),
    (["landscape", "{tmp}/run", "--device", "tpu"], ["invalid choice: 'tpu'"]),
    (["bogus", "{tmp}/run"], ["invalid choice: 'bogus'", "landscape"]),
    (["lesion", "{tmp}/run", "--out", "{tmp}/a_file"], ["--out {tmp}/a_file", "is a file"]),
    (["landscape", "{tmp}/run", "--out", "/proc/x"], ["--out /proc/x", "cannot create files"]),
]

BENCH = [
    (["--json", "{tmp}/a_file/bench.json"], ["--json {tmp}/a_file/bench.json", "is a file"]),
    (["--json", "/proc/x/bench.json"], ["--json /proc/x/bench.json", "cannot create files"]),
    (["--json", "{tmp}/empty"], ["--json {tmp}/empty", "is a folder"]),
    (["--models", "21"], ["--models 21", "6n+2"]),
    (["--models", "20,x"], ["--models 20,x", "integers"]),
    (["--steps", "0"], ["--steps 0", ">= 1"]),
    (["--steps", "abc"], ["--steps", "'abc'"]),
    (["--workers", "-1"], ["--workers -1", ">= 0"]),
    (["--train-size", "10"], ["--train-size 10", "--batch 128"]),
    (["--device", "tpu"], ["invalid choice: 'tpu'"]),
]

COMPARE = [  # python -m degradation.report.compare A B
    (["{tmp}/runs", "{tmp}/missing"], ["{tmp}/missing: no such folder"]),
    (["{tmp}/broken", "{tmp}/runs"], ["{tmp}/broken/r/summary.json: not valid JSON"]),
    (["{tmp}/runs", "{tmp}/runs", "--json", "{tmp}/a_file/c.json"], ["{tmp}/a_file is a file"]),
]

MAINS = {"report": report_main, "analyze": analyze_main, "bench": bench_main}
MAINS["compare"] = compare_main
IN_PROCESS = [("report", *c) for c in REPORT] + [("analyze", *c) for c in ANALYZE]
IN_PROCESS += [("bench", *c) for c in BENCH] + [("compare", *c) for c in COMPARE]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder below root: folders by name, files with size and mtime."""
    found = {}
    for path in root.rglob("*"):
        stat = path.lstat()
        found[str(path.relative_to(root))] = (
            "folder" if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
        )
    return found


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp_path with the files and folders the cases name (see the module doc)."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    summary = {"name": "plain-8", "dataset": "synthetic", "depth": 8, "skip": "none"}
    summary.update(seed=0, status="completed", final={"train_error": 0.5})
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "broken" / "r").mkdir(parents=True)
    (tmp_path / "broken" / "r" / "summary.json").write_text('{"name": ')
    for name, config, checkpoint in (
        ("run", SMALL_SYNTHETIC, None),
        ("torn", SMALL_SYNTHETIC, b"PK\x03\x04 torn by a crash"),
        ("badcfg", "depth: [8\n", b""),
    ):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "config.yaml").write_text(config)
        if checkpoint is not None:
            (tmp_path / name / "checkpoints").mkdir()
            (tmp_path / name / "checkpoints" / "last.ckpt").write_bytes(checkpoint)
    return tmp_path


def assert_one_error_line(code, stderr: str, expected: list[str], tmp: Path) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text.replace("{tmp}", str(tmp)) in lines[0]


@pytest.mark.parametrize(("args", "expected"), RUN, ids=[" ".join(c[0]) for c in RUN])
def test_run_mistake_is_one_line_exit_2_and_writes_nothing(tree, args, expected):
    args = [a.replace("{tmp}", str(tree)) for a in args]
    if not any(a.startswith("output_root=") for a in args):
        args.append(f"output_root={tree / 'outputs'}")
    before = snapshot(tree)
    result = run_cli(*args, cwd=tree, timeout=120)
    assert_one_error_line(result.returncode, result.stderr, expected, tree)
    assert "Traceback" not in result.stdout
    assert snapshot(tree) == before


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    IN_PROCESS,
    ids=[f"{c} {' '.join(a)}".replace("{tmp}/", "") for c, a, _ in IN_PROCESS],
)
def test_cli_mistake_is_one_line_exit_2_and_writes_nothing(
    tree, monkeypatch, capsys, command, args, expected
):
    monkeypatch.chdir(tree)
    before = snapshot(tree)
    try:
        code = MAINS[command]([a.replace("{tmp}", str(tree)) for a in args])
    except SystemExit as exit_:
        code = exit_.code
    assert_one_error_line(code, capsys.readouterr().err, expected, tree)
    assert snapshot(tree) == before
