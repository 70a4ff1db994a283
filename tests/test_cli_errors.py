"""Bad input: one line naming the value and the choices, exit code 2, nothing written."""

from __future__ import annotations

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
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, expected):
    out = tmp_path / "outputs"
    result = run_cli(*args, f"output_root={out}", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not out.exists()
