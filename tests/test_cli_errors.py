"""A mistake found once a run starts: one line naming the file, exit code 2, nothing written.

The table of bad command lines (run, report, analyze, bench) is tests/test_bad_inputs.py.
"""

from __future__ import annotations

from conftest import run_cli


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
