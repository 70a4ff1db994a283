"""A trained run back as a model: `Classifier.load_from_checkpoint`, `degradation.load_run`
and `python -m degradation.evaluate`, on one real smoke run (module fixture)."""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import run_cli, run_tool, summaries

STEPS = 20  # the smoke budget: validated at steps 10 and 20, so best.ckpt exists


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaluate")
    result = run_cli(
        "experiment=smoke", "depth=8", "skip=none", "optim.lr=0.05", "trainer.precision=32-true",
        "compile=none", f"output_root={root / 'outputs'}", cwd=root,
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (found,) = summaries(root / "outputs")
    return found


evaluate_cli = partial(run_tool, "evaluate")  # python -m degradation.evaluate


def test_load_from_checkpoint_rebuilds_the_net_without_unsafe_globals(run_dir):
    from degradation.module import Classifier

    path = run_dir / "checkpoints" / "best.ckpt"
    # what makes weights_only loading possible: plain values only
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    module = Classifier.load_from_checkpoint(path)
    assert module.model.arch["depth"] == 8 and module.model.arch["skip"] == "none"
    assert module.hparams["optim"]["lr"] == 0.05 and module.optim.lr == 0.05
    state = torch.load(path, weights_only=True)["state_dict"]
    for key, tensor in module.state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_load_from_checkpoint_refuses_a_crafted_file(tmp_path):
    from degradation.module import Classifier

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"model": Payload()}}, crafted)
    with pytest.raises(Exception, match="Weights only load failed"):
        Classifier.load_from_checkpoint(crafted)
    assert not (Path.cwd() / "pwned").exists()


def test_load_run_is_public_and_gives_model_config_and_data(run_dir):
    from degradation import load_run

    run = load_run(run_dir, checkpoint="last", device="cpu")
    assert run.spec.model.depth == 8 and run.name == "plain-8 s0"
    assert run.data.num_classes == 10 and not run.model.training
    assert run.step == STEPS


def test_evaluate_prints_and_records_the_summarys_test_error(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    for checkpoint, expected in (
        ("last", summary["final"]["test_error"]),
        ("best", summary["best_val"]["test_error"]),
    ):
        result = evaluate_cli(str(run_dir), "--checkpoint", checkpoint, "--device", "cpu",
                              cwd=run_dir)  # fmt: skip
        assert result.returncode == 0, result.stderr
        record_path = run_dir / "evaluation" / f"{checkpoint}-test.json"
        record = json.loads(record_path.read_text())
        assert record["split"] == "test" and record["images"] == 128
        assert record["checkpoint"] == f"checkpoints/{checkpoint}.ckpt"
        assert record["error"] == pytest.approx(expected, abs=1e-6)
        line = result.stdout.strip()
        assert line.count("\n") == 0 and f"error {record['error']:.4f}" in line
        assert f"loss {record['loss']:.4f}" in line and str(record_path) in line
    assert not list((run_dir / "evaluation").glob(".*.tmp"))  # written in one rename


@pytest.mark.parametrize(("split", "images"), [("val", 128), ("train", 512 - 128)])
def test_evaluate_other_splits(run_dir, split, images):
    result = evaluate_cli(str(run_dir), "--split", split, "--device", "cpu", cwd=run_dir)
    assert result.returncode == 0, result.stderr
    record = json.loads((run_dir / "evaluation" / f"best-{split}.json").read_text())
    assert record["images"] == images and 0 <= record["error"] <= 1
    if split == "val":  # best.ckpt is the one with the lowest validation error
        summary = json.loads((run_dir / "summary.json").read_text())
        assert record["error"] == pytest.approx(summary["best_val"]["val_error"], abs=1e-6)


def test_evaluate_mistakes_are_one_line_and_exit_2(run_dir, tmp_path):
    no_ckpt = tmp_path / "untrained"
    (no_ckpt / ".hydra").mkdir(parents=True)
    (no_ckpt / ".hydra" / "config.yaml").write_text((run_dir / ".hydra/config.yaml").read_text())
    cases = [
        ([str(tmp_path / "missing")], "no such folder"),
        ([str(tmp_path)], "is it a run folder?"),
        ([str(no_ckpt)], "no checkpoints/best.ckpt"),
        ([str(run_dir), "--split", "tset"], "invalid choice: 'tset'"),
        ([str(run_dir), "--checkpoint", "first"], "invalid choice: 'first'"),
    ]
    for args, expected in cases:
        result = evaluate_cli(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, args
        assert expected in result.stderr, (args, result.stderr)
        assert result.stdout == ""
    assert not (no_ckpt / "evaluation").exists()
