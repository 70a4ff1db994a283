"""Bad input: one line naming the value and the choices, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

CASES = [
    (["depth=21"], ["depth=21", "6n+2", "20, 32, 44, 56"]),
    (["skip=sum"], ["skip=sum", "none", "add", "concat"]),
    (["shortcut=B"], ["shortcut=B", "zero_pad", "projection"]),
    (["-m", "depth=20,21"], ["depth=21", "6n+2"]),
    (["data=nonexistent"], ["data=nonexistent", "fashion_mnist", "synthetic"]),
    (["dpth=3"], ["dpth=3", "unknown key", "depth"]),
    (["depth=abc"], ["depth=abc", "abc"]),
    (["data.batch_size=0"], ["data.batch_size=0", "positive"]),
    (["optim.lr=-0.1"], ["optim.lr=-0.1", "positive"]),
    (["trainer.max_steps=0"], ["trainer.max_steps=0", "positive"]),
    # issue 8: every kind of mistake, {tmp} being an empty folder holding `empty/` and `a_file`
    (["block=foo"], ["block=foo", "basic", "bottleneck"]),
    (["family=keras", "depth=56"], ["depth=56 is not valid for a keras net; choose depth=50"]),
    (
        ["family=keras", "depth=50", "shortcut=zero_pad"],
        ["shortcut='zero_pad' is not valid for a keras net", "choose shortcut='all_projection'"],
    ),
    (["trainer.bogus=1"], ["trainer.bogus=1", "unknown key 'bogus'", "max_steps"]),
    (["resume=maybe"], ["resume=maybe", "true or false"]),
    (["trainer.max_steps=ten"], ["trainer.max_steps=ten", "Integer"]),
    (["checkpoint_every=0"], ["checkpoint_every=0", "positive"]),
    (["diverge_loss=-1"], ["diverge_loss=-1", "positive"]),
    (["-m", "jobs_per_gpu=2,many"], ["jobs_per_gpu=many", "choose auto or a positive integer"]),
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
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, expected):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("not a folder")
    args = [a.format(tmp=tmp_path) for a in args]
    out = next((a.split("=", 1)[1] for a in args if a.startswith("output_root=")), None)
    out = Path(out) if out else tmp_path / "outputs"
    result = run_cli(*args, f"output_root={out}", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text.format(tmp=tmp_path) in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "empty"]  # nothing else


def test_corrupted_checkpoint_is_reported_with_its_path_and_not_overwritten(tmp_path):
    run = ["experiment=smoke", "depth=8", f"output_root={tmp_path / 'outputs'}"]
    last = tmp_path / "outputs" / "runs" / "smoke" / "depth=8" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 torn by a crash")
    result = run_cli(*run, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: checkpoint {last} is corrupted")
    assert line.endswith("rerun with resume=false to start this run afresh")
    assert "Traceback" not in result.stderr + result.stdout
    assert last.read_bytes() == b"PK\x03\x04 torn by a crash"  # the run started nothing
    assert not (last.parent.parent / "summary.json").exists()
