"""Why skips help, measured: gradient-flow records, loss landscapes, lesion study, their CLI.

One real smoke sweep (module fixture: plain-8 and resnet-8, seeds 0 and 1, 10 steps, gradient
norms every 2 steps) provides trained runs; the analyses run once on it through the real CLI
(fixture `analysed`). Properties that need no trained weights are checked on freshly built models.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import shutil
import subprocess
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, run_tool, summaries
from torch import nn

from degradation.analyze.__main__ import main as analyze_main
from degradation.analyze.figures import analysis_figures
from degradation.analyze.landscape import (
    filter_normalized_direction,
    loss_landscape,
    training_subset,
)
from degradation.analyze.lesion import DeletedBlock, lesion_study, why_not_deletable
from degradation.analyze.summaries import headroom_lost, landscape_summary, lesion_summary
from degradation.analyze.trained import load_run
from degradation.callbacks import GradientFlow
from degradation.models import build_model, gradient_norms
from degradation.models.shortcuts import ZeroPadShortcut
from degradation.rundir import GRAD_NORMS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRAD_EVERY = 2
STEPS = 10


def conv_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


analyze_cli = partial(run_tool, "analyze")  # python -m degradation.analyze


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Sweep folder of plain-8 and resnet-8, seeds 0 and 1 (smoke budget, 10 steps)."""
    root = tmp_path_factory.mktemp("analyze")
    result = run_cli(
        "-m", "depth=8", "skip=none,add", "seed=0,1", "experiment=smoke",
        f"trainer.max_steps={STEPS}",
        f"grad_every={GRAD_EVERY}", f"output_root={root / 'outputs'}", cwd=root,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "outputs" / "sweeps" / "smoke"


@pytest.fixture(scope="module")
def seeds(sweep) -> dict[tuple[str, int], Path]:
    """(skip, seed) -> run folder."""
    found = {(s["skip"], s["seed"]): path for path, s in summaries(sweep).items()}
    assert set(found) == {(skip, seed) for skip in ("none", "add") for seed in (0, 1)}
    return found


@pytest.fixture(scope="module")
def runs(seeds) -> dict[str, Path]:
    """skip -> run folder of seed 0."""
    return {skip: path for (skip, seed), path in seeds.items() if seed == 0}


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


def conv3x3_names(model: nn.Module) -> list[str]:
    """The main-path 3×3 convs, found here independently of the code under test."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)
            and m.kernel_size == (3, 3) and ".shortcut." not in name]  # fmt: skip


@pytest.mark.parametrize("skip", ["none", "add"])
def test_gradient_flow_is_recorded_for_every_3x3_layer_and_stage(runs, skip):
    run_dir = runs[skip]
    model = build_model(depth=8, skip=skip)
    rows = read_csv(run_dir / GRAD_NORMS)
    layers, stages = conv3x3_names(model), ["stages.0", "stages.1", "stages.2"]
    assert list(rows[0]) == [
        "step", *(f"rms/{n}" for n in layers), *(f"rel/{n}" for n in layers),
        *(f"rms/{s}" for s in stages), *(f"rel/{s}" for s in stages),
    ]  # fmt: skip
    assert [int(r["step"]) for r in rows] == list(range(0, STEPS, GRAD_EVERY))
    sizes = {name: m.weight.numel() for name, m in model.named_modules() if name in layers}
    for row in rows:
        values = {k: float(v) for k, v in row.items() if k != "step"}
        assert all(math.isfinite(v) and v > 0 for v in values.values()), row
        for i, stage in enumerate(stages):  # a stage pools its layers' squared gradients
            inside = [n for n in layers if n.startswith(f"stages.{i}.")]
            grad_sq = sum(values[f"rms/{n}"] ** 2 * sizes[n] for n in inside)
            total = sum(sizes[n] for n in inside)
            assert values[f"rms/{stage}"] == pytest.approx(math.sqrt(grad_sq / total), rel=1e-5)
    # metrics.csv stays narrow: the stages' numbers only, no per-layer columns
    header = read_csv(run_dir / "metrics.csv")[0].keys()
    grad_columns = sorted(k for k in header if k.startswith("grad/"))
    assert grad_columns == sorted(f"grad/{kind}/{s}" for kind in ("rms", "rel") for s in stages)


@pytest.mark.parametrize("skip,shortcut", [("none", None), ("add", "projection"),
                                           ("concat", "projection")])  # fmt: skip
def test_gradient_flow_matches_a_direct_computation_on_the_same_layers(skip, shortcut):
    torch.manual_seed(0)
    model = build_model(depth=8, skip=skip, shortcut=shortcut or "zero_pad")
    F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    flow = gradient_norms(model)
    layers = conv3x3_names(model)
    # the same 7 layers whatever the skip: no projection, no concat fuse conv
    assert layers == conv3x3_names(build_model(depth=8, skip="none"))
    assert [k.removeprefix("rel/") for k in flow if k.startswith("rel/stem") or
            k.startswith("rel/stages.") and k.count(".") > 1] == layers  # fmt: skip
    for name, m in model.named_modules():
        if name in layers:
            g, w = m.weight.grad, m.weight.detach()
            assert flow[f"rms/{name}"] == pytest.approx((g.norm() / g.numel() ** 0.5).item(),
                                                        rel=1e-5)  # fmt: skip
            assert flow[f"rel/{name}"] == pytest.approx((g.norm() / w.norm()).item(), rel=1e-5)
    stage1 = [m.weight for name, m in model.named_modules() if name in layers
              and name.startswith("stages.1.")]  # fmt: skip
    grad_norm = torch.cat([w.grad.flatten() for w in stage1]).norm()
    weight_norm = torch.cat([w.detach().flatten() for w in stage1]).norm()
    assert flow["rel/stages.1"] == pytest.approx((grad_norm / weight_norm).item(), rel=1e-5)


def test_rms_gradient_does_not_depend_on_layer_size_and_relative_update_is_g_over_w():
    # a stem-sized conv (3 -> 16: 432 weights) and a last-layer-sized one (64 -> 64: 36,864)
    small, large = nn.Conv2d(3, 16, 3, bias=False), nn.Conv2d(64, 64, 3, bias=False)
    model = nn.Sequential(small, large)
    with torch.no_grad():
        small.weight.fill_(0.5)
        large.weight.fill_(0.25)
    for conv in (small, large):  # the same gradient per weight
        conv.weight.grad = torch.full_like(conv.weight, 0.01)
    flow = gradient_norms(model)
    # equal up to float32 summation over 36,864 squares
    assert flow["rms/0"] == pytest.approx(0.01, rel=1e-4)
    assert flow["rms/1"] == pytest.approx(flow["rms/0"], rel=1e-4)
    # raw norms differ by sqrt(36864 / 432) = 9.24: the size the RMS takes out
    assert large.weight.grad.norm() / small.weight.grad.norm() == pytest.approx(9.2376, rel=1e-4)
    # ‖g‖/‖w‖ = (0.01·√n)/(c·√n) = 0.01 / c
    assert flow["rel/0"] == pytest.approx(0.02, rel=1e-4)
    assert flow["rel/1"] == pytest.approx(0.04, rel=1e-4)


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
    # the options it was measured with, as the command line gave them
    assert json.loads(str(data["options"])) == {"steps": 3, "span": 1.0, "subset": 64,
        "two_d": True, "seed": 1, "checkpoint": "last", "device": "cpu"}  # fmt: skip
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


def test_landscape_summary_matches_losses_computed_by_hand():
    torch.manual_seed(0)
    model = build_model(depth=8, skip="add").eval()
    images, labels = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    data = loss_landscape(model, images, labels, steps=5, span=1.0, seed=7, progress=False)
    generator = torch.Generator().manual_seed(7)  # the same two directions, in the same order
    d1 = filter_normalized_direction(model, generator)
    d2 = filter_normalized_direction(model, generator)

    def loss_at(a: float, b: float) -> float:
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for p, x, y in zip(moved.parameters(), d1, d2, strict=True):
                p.add_(a * x + b * y)
            return F.cross_entropy(moved(images), labels).item()

    centre = loss_at(0, 0)
    half = [loss_at(0.5, 0), loss_at(-0.5, 0), loss_at(0, 0.5), loss_at(0, -0.5)]
    one = [loss_at(1, 0), loss_at(-1, 0), loss_at(0, 1), loss_at(0, -1)]
    summary = landscape_summary(data)
    assert summary["central_loss"] == pytest.approx(centre, rel=1e-5)
    increase = summary["increase"]
    assert increase[0.5] == pytest.approx(np.mean(half) - centre, rel=1e-4, abs=1e-5)
    assert increase[1.0] == pytest.approx(np.mean(one) - centre, rel=1e-4, abs=1e-5)
    # 0.25 lies halfway between the grid points 0 and ±0.5: linear interpolation
    assert increase[0.25] == pytest.approx((np.mean(half) - centre) / 2, rel=1e-4, abs=1e-5)
    # within ±0.5 each direction has three points: the quadratic through them has
    # second derivative (L(h) + L(-h) - 2 L(0)) / h²
    kappas = [(half[0] + half[1] - 2 * centre) / 0.25, (half[2] + half[3] - 2 * centre) / 0.25]
    assert summary["curvature"] == pytest.approx(np.mean(kappas), rel=1e-4, abs=1e-5)
    # a ratio would differ between nets with different central losses; the increase does not
    shifted = {**data, "loss_1d": data["loss_1d"] + 3.0, "loss_2d": data["loss_2d"] + 3.0}
    assert landscape_summary(shifted)["curvature"] == pytest.approx(summary["curvature"])
    assert landscape_summary(shifted)["increase"][1.0] == pytest.approx(increase[1.0])


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
                    # option A's zero-filled channels keep a live branch (blocks.zero_init_last)
                    padded = isinstance(block.merge.shortcut, ZeroPadShortcut)
                    assert same == (unchanged and not padded)  # a working branch matters
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


def test_lesion_cli_records_test_error_per_deleted_block(sweep, seeds, analysed):
    for (skip, _), run_dir in seeds.items():  # every seed of every variant
        record = json.loads((run_dir / "analysis" / "lesion.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        # intact: the final weights on the whole test set, as training measured them
        assert record["baseline"]["test_error"] == pytest.approx(summary["final"]["test_error"])
        assert record["num_images"] == 128 and record["skip"] == skip
        assert (record["num_classes"], record["chance_error"]) == (10, pytest.approx(0.9))
        assert record["options"] == {"checkpoint": "last", "limit": None, "device": "cpu"}
        base = record["baseline"]["test_error"]
        blocks = {b["block"]: b for b in record["blocks"]}
        assert list(blocks) == ["stages.0.0", "stages.1.0", "stages.2.0"]
        shape_changes = {"stages.1.0", "stages.2.0"} if skip == "none" else set()
        for name, block in blocks.items():
            assert block["deleted"] == (name not in shape_changes)
            if block["deleted"]:
                assert 0 <= block["test_error"] <= 1 and block["note"] is None
                lost = (block["test_error"] - base) / (0.9 - base) if base < 0.9 else None
                assert block["headroom_lost"] == pytest.approx(lost)
            else:
                assert block["test_error"] is None and "changes the shape" in block["note"]
                assert block["headroom_lost"] is None
        assert (run_dir / "analysis" / "lesion.png").read_bytes().startswith(PNG_MAGIC)
    assert "not deletable (plain block that changes the shape): stages.1.0, stages.2.0" in (
        analysed["lesion"].stdout
    )
    combined = json.loads((sweep / "analysis" / "lesion.json").read_text())
    assert sorted(r["run"] for r in combined["runs"]) == sorted(
        f"{'plain' if skip == 'none' else 'resnet'}-8 s{seed}" for skip, seed in seeds
    )
    assert (sweep / "analysis" / "lesion.png").read_bytes().startswith(PNG_MAGIC)


def test_lesion_summary_matches_errors_computed_by_hand():
    torch.manual_seed(0)
    model = build_model(depth=8, skip="add").eval()
    images = torch.randn(40, 3, 32, 32)
    with torch.no_grad():
        labels = model(images).argmax(dim=1)
    labels[:10] = (labels[:10] + 1) % 10  # the intact net is wrong on exactly 10 of 40
    record = {**lesion_study(model, images, labels, progress=False), "num_classes": 10}
    assert record["baseline"]["test_error"] == 0.25

    def error_without(block) -> float:
        """The block's output replaced by relu(shortcut(x)), by a forward hook."""
        merge = block.merge

        def bypass(module, inputs, output):
            x = inputs[0]
            return torch.relu(x if merge.shortcut is None else merge.shortcut(x))

        handle = block.register_forward_hook(bypass)
        with torch.no_grad():
            error = (model(images).argmax(dim=1) != labels).float().mean().item()
        handle.remove()
        return error

    errors = [error_without(block) for stage in model.stages for block in stage]
    assert [b["test_error"] for b in record["blocks"]] == pytest.approx(errors)
    lost = [(e - 0.25) / (0.9 - 0.25) for e in errors]  # chance for 10 classes: 0.9
    summary = lesion_summary(record)
    assert summary["chance_error"] == pytest.approx(0.9)
    assert summary["mean_lost"] == pytest.approx(np.mean(lost))
    assert summary["max_lost"] == pytest.approx(max(lost))
    assert summary["mean_rise"] == pytest.approx(np.mean(errors) - 0.25)
    assert headroom_lost(0.95, 0.92, 10) is None  # at chance already: no headroom to lose


# --- figures for the report ----------------------------------------------------------------


def test_analysis_figures_show_every_analysis_over_every_seed(sweep, seeds, analysed, tmp_path):
    figures = analysis_figures([sweep], tmp_path)
    titles = [title for title, _, _ in figures]
    assert titles == ["Gradient flow per layer", "Gradient flow over depth",
                      "Loss landscape", "Lesion study"]  # fmt: skip
    for title, png, caption in figures:
        assert png.parent == tmp_path and png.read_bytes().startswith(PNG_MAGIC)
        if title != "Gradient flow per layer":  # the numbers, variant by variant
            assert "plain-8 (2 seeds)" in caption and "resnet-8 (2 seeds)" in caption
    assert f"every {GRAD_EVERY} steps" in figures[0][2]
    captions = dict((title, caption) for title, _, caption in figures)
    record = json.loads((tmp_path / "analysis.json").read_text())
    landscapes = {v["skip"]: v for v in record["landscape"]["variants"]}
    lesions = {v["skip"]: v for v in record["lesion"]["variants"]}
    # the numbers come from every seed's recorded data: mean ± sample std, per-seed kept
    for skip, label in (("none", "plain-8"), ("add", "resnet-8")):
        kappas, errors = [], []
        for seed in (0, 1):
            with np.load(seeds[skip, seed] / "analysis" / "landscape.npz") as f:
                kappas.append(landscape_summary({k: f[k] for k in f.files})["curvature"])
            lesion = json.loads((seeds[skip, seed] / "analysis" / "lesion.json").read_text())
            errors.append(100 * lesion_summary(lesion)["baseline_error"])
        assert [s["curvature"] for s in landscapes[skip]["per_seed"]] == pytest.approx(kappas)
        assert [s["seed"] for s in lesions[skip]["per_seed"]] == [0, 1]
        spread = f"{np.mean(kappas):.3g} ± {np.std(kappas, ddof=1):.3g}"
        assert f"κ {spread}" in captions["Loss landscape"]
        intact = f"{np.mean(errors):.3g} ± {np.std(errors, ddof=1):.3g}"
        assert f"{label} (2 seeds): intact {intact} %" in captions["Lesion study"]
    # one residual and one plain net of depth 8, two seeds each: a Welch test of κ
    assert "At depth 8, resnet-8 against plain-8:" in captions["Loss landscape"]
    assert "Welch p = " in captions["Loss landscape"]
    # the options the analyses ran with are stated and recorded
    assert (
        "Measured with --steps 3 --span 1 --subset 64 --seed 1 --checkpoint last (every run)"
        in (captions["Loss landscape"])
    )
    assert "Measured on checkpoint last, all 128 test images." in captions["Lesion study"]
    assert record["landscape"]["variants"][0]["per_seed"][0]["options"]["subset"] == 64
    assert analysis_figures([tmp_path], tmp_path / "empty") == []  # nothing recorded


def test_report_shows_the_analysis_figures(sweep, analysed, tmp_path):
    from degradation.report import build_report

    build_report(sweep, tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    for name in ("gradient_flow", "gradient_profile", "landscape", "lesion"):
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


def test_piped_analyses_print_plain_lines_without_noise(runs, tmp_path):
    """Into a pipe (no terminal): no progress bar redrawn with carriage returns, none of the
    third-party lines the console rules filter (console.py), numbers formatted."""
    run = runs["add"]
    landscape = ["landscape", str(run), "--steps", "3", "--subset", "64", "--no-two-d"]
    for command in (["lesion", str(run)], landscape):
        result = analyze_cli(*command, cwd=tmp_path)  # progress bars asked for, not shown
        assert result.returncode == 0, result.stderr[-3000:]
        both = result.stdout + result.stderr
        assert "\r" not in both, command[0]
        for noise in ("💡", "litlogger", "Tip:", "FutureWarning", "LeafSpec", "it/s]"):
            assert noise not in both, (command[0], noise)
        assert "{" not in both and "}" not in both  # no raw dict
