"""Why skips help, measured: gradient-flow records, loss landscapes, lesion study, their CLI.

One real smoke sweep (module fixture: plain-8 and resnet-8, 10 steps, gradient norms every 2
steps) provides trained runs; the analyses run once on it through the real CLI (fixture
`analysed`). Properties that need no trained weights are checked on freshly built models.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, summaries
from torch import nn

from degradation.analyze.__main__ import main as analyze_main
from degradation.analyze.landscape import (
    filter_normalized_direction,
    loss_landscape,
    training_subset,
)
from degradation.analyze.lesion import DeletedBlock, why_not_deletable
from degradation.analyze.plots import analysis_figures
from degradation.analyze.trained import load_run
from degradation.callbacks import GradientFlow
from degradation.models import build_model, gradient_norms
from degradation.rundir import GRAD_NORMS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRAD_EVERY = 2
STEPS = 10


def conv_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def analyze_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "degradation.analyze", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Sweep folder of plain-8 and resnet-8 (smoke budget, 10 steps)."""
    root = tmp_path_factory.mktemp("analyze")
    result = run_cli(
        "-m", "depth=8", "skip=none,add", "experiment=smoke", f"trainer.max_steps={STEPS}",
        f"grad_every={GRAD_EVERY}", f"output_root={root / 'outputs'}", cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "outputs" / "sweeps" / "smoke"


@pytest.fixture(scope="module")
def runs(sweep) -> dict[str, Path]:
    """skip -> run folder."""
    found = {s["skip"]: path for path, s in summaries(sweep).items()}
    assert set(found) == {"none", "add"}
    return found


@pytest.fixture(scope="module")
def analysed(sweep, runs) -> dict[str, subprocess.CompletedProcess]:
    """The landscape (3×3 grid, 64 images) and lesion CLIs, once, on the whole sweep."""
    grid = ["--steps", "3", "--subset", "64", "--seed", "1"]
    done = {
        "landscape": analyze_cli("landscape", str(sweep), *grid, "--no-progress", cwd=sweep),
        "lesion": analyze_cli("lesion", str(sweep), "--no-progress", cwd=sweep),
    }
    for name, result in done.items():
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
    return done


# --- gradient flow ---------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("skip", ["none", "add"])
def test_gradient_norms_are_recorded_for_every_conv_layer(runs, skip):
    run_dir = runs[skip]
    model = build_model(depth=8, skip=skip)
    rows = read_csv(run_dir / GRAD_NORMS)
    stages = ["stages.0", "stages.1", "stages.2"]
    assert list(rows[0]) == ["step", *conv_names(model), *stages, "first_last_ratio"]
    assert [int(r["step"]) for r in rows] == list(range(0, STEPS, GRAD_EVERY))
    for row in rows:
        values = {k: float(v) for k, v in row.items() if k != "step"}
        assert all(math.isfinite(v) and v > 0 for v in values.values()), row
        ratio = values["stem.conv"] / values["stages.2.0.branch.conv2"]
        assert values["first_last_ratio"] == pytest.approx(ratio, rel=1e-6)
        for i, stage in enumerate(stages):  # a stage holds its convs (and BN parameters)
            inside = [v for k, v in values.items() if k.startswith(f"stages.{i}.")]
            assert values[stage] ** 2 >= sum(v * v for v in inside) * (1 - 1e-6)
    # metrics.csv stays narrow: the stage norms and the ratio, no per-layer columns
    header = read_csv(run_dir / "metrics.csv")[0].keys()
    grad_columns = sorted(k for k in header if k.startswith("grad/"))
    assert grad_columns == ["grad/first_last_ratio", *(f"grad/{s}" for s in stages)]


def test_gradient_norms_match_a_direct_computation():
    torch.manual_seed(0)
    model = build_model(depth=8, skip="add", shortcut="projection")
    F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    norms = gradient_norms(model)
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert norms[name] == pytest.approx(m.weight.grad.norm().item(), rel=1e-5)
    assert "stages.1.0.merge.shortcut.conv" in norms  # projection convs are layers too
    stage1 = torch.cat([p.grad.flatten() for p in model.stages[1].parameters()])
    assert norms["stages.1"] == pytest.approx(stage1.norm().item(), rel=1e-5)
    last = model.stages[2][0].branch.conv2.weight.grad.norm()  # main path, not the shortcut
    ratio = model.stem.conv.weight.grad.norm() / last
    assert norms["first_last_ratio"] == pytest.approx(ratio.item(), rel=1e-5)


def test_a_resumed_run_drops_the_records_of_steps_it_trains_again(tmp_path):
    model = build_model(depth=8, skip="add")
    F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
    module = SimpleNamespace(model=model)
    callback = GradientFlow(tmp_path, every=2)
    for step in range(8):
        trainer = SimpleNamespace(global_step=step, is_global_zero=True, loggers=[])
        callback.on_before_optimizer_step(trainer, module, None)
    assert [int(r["step"]) for r in read_csv(tmp_path / GRAD_NORMS)] == [0, 2, 4, 6]
    resumed = GradientFlow(tmp_path, every=2)
    resumed.on_train_start(SimpleNamespace(global_step=5, is_global_zero=True), module)
    assert [int(r["step"]) for r in read_csv(tmp_path / GRAD_NORMS)] == [0, 2, 4]
    afresh = GradientFlow(tmp_path, every=2)  # resume=false: starts at step 0
    afresh.on_train_start(SimpleNamespace(global_step=0, is_global_zero=True), module)
    assert not (tmp_path / GRAD_NORMS).exists()


# --- loss landscape ------------------------------------------------------------------------


def test_filter_normalisation_gives_each_filter_its_weights_norm():
    torch.manual_seed(0)
    model = build_model(depth=8, skip="add", shortcut="projection")
    with torch.no_grad():  # filters of very different sizes, and non-trivial BN parameters
        for p in model.parameters():
            scale = torch.rand(p.shape[0]).mul(10).view(-1, *[1] * (p.dim() - 1))
            p.mul_(scale).add_(0.01 if p.dim() == 1 else 0.0)
    direction = filter_normalized_direction(model, torch.Generator().manual_seed(3))
    zeroed = 0
    for (name, w), d in zip(model.named_parameters(), direction, strict=True):
        assert d.shape == w.shape
        if w.dim() <= 1:  # BN weights and biases, the fc bias
            assert torch.count_nonzero(d) == 0, name
            zeroed += 1
            continue
        torch.testing.assert_close(d.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1))
        cosine = F.cosine_similarity(d.flatten(), w.flatten(), dim=0)
        assert abs(cosine) < 0.5, name  # random, not the weights themselves
    assert zeroed == 2 * 9 + 1  # 7 main BNs + 2 projection BNs (weight, bias), fc bias


def test_landscape_leaves_the_weights_and_modes_as_they_were():
    model = build_model(depth=8, skip="none").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    data = loss_landscape(model, images, labels, steps=3, span=0.5, progress=False)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert data["loss_2d"].shape == (3, 3) and list(data["alphas"]) == [-0.5, 0.0, 0.5]


def test_landscape_at_the_origin_equals_the_models_loss(runs, analysed):
    run_dir = runs["add"]
    with np.load(run_dir / "analysis" / "landscape.npz") as f:
        data = {k: f[k] for k in f.files}
    assert list(data["alphas"]) == [-1.0, 0.0, 1.0]
    assert int(data["num_images"]) == 64 and str(data["checkpoint"]) == "last.ckpt"
    # the model's loss on the same images, computed here in one batch
    run = load_run(run_dir, device="cpu")
    images, labels = training_subset(run, 64, seed=1)
    with torch.no_grad():
        loss = F.cross_entropy(run.model.eval()(images), labels).item()
    assert abs(data["loss_1d"][1] - loss) < 1e-5
    assert abs(data["loss_2d"][1, 1] - loss) < 1e-5
    assert data["loss_1d"][0] > loss and data["loss_1d"][2] > loss  # it is a basin here
    for name in ("landscape_1d.png", "landscape_2d.png"):
        assert (run_dir / "analysis" / name).read_bytes().startswith(PNG_MAGIC)
    out = analysed["landscape"].stdout
    assert f"loss at the trained weights {data['loss_1d'][1]:.4f}" in out


# --- lesion study --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shortcut,preact", [("zero_pad", False), ("projection", False), ("zero_pad", True)]
)
def test_deleting_a_zero_initialised_residual_block_leaves_the_output_unchanged(shortcut, preact):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    model = build_model(depth=8, skip="add", shortcut=shortcut, preact=preact,
                        zero_init_residual=True).eval()  # fmt: skip
    untouched = build_model(depth=8, skip="add", shortcut=shortcut, preact=preact).eval()
    with torch.no_grad():
        for net, unchanged in ((model, True), (untouched, False)):
            expected = net(x)
            for stage in net.stages:
                for j, block in enumerate(stage):
                    stage[j] = DeletedBlock(block)
                    same = torch.allclose(net(x), expected, rtol=0, atol=1e-6)
                    assert same == unchanged  # a working branch matters: output changes
                    stage[j] = block


def test_plain_blocks_that_change_shape_cannot_be_deleted():
    model = build_model(depth=8, skip="none").eval()
    assert why_not_deletable(model.stages[0][0]) is None
    for i in (1, 2):
        assert "changes the shape" in why_not_deletable(model.stages[i][0])
        with pytest.raises(ValueError, match="cannot be deleted"):
            DeletedBlock(model.stages[i][0])
    x = torch.relu(torch.randn(2, 16, 32, 32))  # a block's input is a ReLU output
    assert torch.equal(DeletedBlock(model.stages[0][0])(x), x)  # a deleted block passes x on


def test_lesion_cli_records_test_error_per_deleted_block(sweep, runs, analysed):
    for skip, run_dir in runs.items():
        record = json.loads((run_dir / "analysis" / "lesion.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        # intact: the final weights on the whole test set, as training measured them
        assert record["baseline"]["test_error"] == pytest.approx(summary["final"]["test_error"])
        assert record["num_images"] == 128 and record["skip"] == skip
        blocks = {b["block"]: b for b in record["blocks"]}
        assert list(blocks) == ["stages.0.0", "stages.1.0", "stages.2.0"]
        shape_changes = {"stages.1.0", "stages.2.0"} if skip == "none" else set()
        for name, block in blocks.items():
            assert block["deleted"] == (name not in shape_changes)
            if block["deleted"]:
                assert 0 <= block["test_error"] <= 1 and block["note"] is None
            else:
                assert block["test_error"] is None and "changes the shape" in block["note"]
        assert (run_dir / "analysis" / "lesion.png").read_bytes().startswith(PNG_MAGIC)
    assert "not deletable (plain block that changes the shape): stages.1.0, stages.2.0" in (
        analysed["lesion"].stdout
    )
    combined = json.loads((sweep / "analysis" / "lesion.json").read_text())
    assert {r["skip"] for r in combined["runs"]} == {"none", "add"}
    assert (sweep / "analysis" / "lesion.png").read_bytes().startswith(PNG_MAGIC)


# --- figures for the report ----------------------------------------------------------------


def test_analysis_figures_show_every_analysis_with_numbers(runs, analysed, tmp_path):
    figures = analysis_figures(list(runs.values()), tmp_path)
    titles = [title for title, _, _ in figures]
    assert titles == ["Gradient flow per layer", "Gradient ratio first / last layer",
                      "Loss landscape", "Lesion study"]  # fmt: skip
    for title, png, caption in figures:
        assert png.parent == tmp_path and png.read_bytes().startswith(PNG_MAGIC)
        if title != "Gradient flow per layer":  # the numbers, run by run
            assert "plain-8" in caption and "resnet-8" in caption
    assert f"every {GRAD_EVERY} steps" in figures[0][2]
    assert analysis_figures([tmp_path], tmp_path / "empty") == []  # nothing recorded


def test_report_shows_the_analysis_figures(sweep, analysed, tmp_path):
    from degradation.report import build_report

    build_report(sweep, tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    for name in ("gradient_flow", "gradient_ratio", "landscape", "lesion"):
        assert f"](analysis_{name}.png)" in markdown


# --- command-line mistakes -----------------------------------------------------------------


def test_unknown_subcommand_is_one_line_exit_2(tmp_path):
    result = analyze_cli("bogus", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "'bogus'" in line and "landscape" in line


@pytest.mark.parametrize(
    "args,message",
    [
        (["landscape", "{missing}"], "no such folder"),
        (["lesion", "{empty}"], "no run folders found"),
        (["lesion", "{no_ckpt}"], "no checkpoints/last.ckpt"),
        (["landscape", "{run}", "--steps", "4"], "--steps 4 is not valid"),
        (["lesion", "{run}", "--checkpoint", "first"], "invalid choice: 'first'"),
        (["landscape"], "required: RUN_DIR"),
    ],
)
def test_mistakes_are_one_line_exit_2(runs, tmp_path, capsys, args, message):
    no_ckpt = tmp_path / "no_ckpt"
    shutil.copytree(runs["add"] / ".hydra", no_ckpt / ".hydra")
    (tmp_path / "empty").mkdir()
    places = dict(missing=tmp_path / "nope", empty=tmp_path / "empty", no_ckpt=no_ckpt,
                  run=runs["add"])  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        analyze_main([a.format(**places) for a in args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and message in line
