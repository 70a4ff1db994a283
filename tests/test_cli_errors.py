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


def test_a_slurm_launcher_without_slurm_is_one_line(tmp_path):
    """Where there is no sbatch (an empty PATH here), before any folder is made."""
    (tmp_path / "bin").mkdir()
    for launcher in ("slurm", "submitit_slurm"):
        result = run_cli("-m", "experiment=smoke", "depth=8", f"hydra/launcher={launcher}",
                         f"output_root={tmp_path / 'out'}", cwd=tmp_path,
                         env={"PATH": str(tmp_path / "bin")})  # fmt: skip
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr == (
            f"error: hydra/launcher={launcher} needs SLURM, and this machine has none (no "
            "sbatch command on the PATH); run it where SLURM is (a cluster's login node), or "
            "choose hydra/launcher=submitit_local (the same path on this machine) or joblib\n"
        )
        assert not (tmp_path / "out").exists()
