"""The report's analysis figures speak for every seed of a variant, one recipe at a time.

Run folders are written here by hand (summary.json, .hydra/config.yaml and the analysis files
with known numbers: a landscape that is an exact parabola of curvature κ, lesion errors and
gradient norms chosen per block and layer), so each expected caption number is computed in the
test, in a fraction of a second, without training.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from degradation.analyze.figures import analysis_figures
from degradation.rundir import write_landscape, write_lesion

ALPHAS = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
OPTIONS = {"steps": 5, "span": 1.0, "subset": 64, "two_d": True, "seed": 0,
           "checkpoint": "last", "device": "cpu"}  # fmt: skip
LAYERS = ["stem", "stages.0.0.conv1", "stages.0.0.conv2"]


def fake_run(root: Path, name: str, seed: int, lr: float = 0.1, status="completed") -> Path:
    """A run folder as training leaves it, without weights: summary and config only."""
    depth = int(name.rsplit("-", 1)[1])
    skip = "none" if name.startswith("plain") else "add"
    run_dir = root / f"{name},lr={lr},seed={seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    config = {"depth": depth, "skip": skip, "seed": seed, "data": {"name": "synthetic"},
              "optim": {"lr": lr, "momentum": 0.9, "weight_decay": 0.0001}}  # fmt: skip
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"name": name, "dataset": "synthetic", "depth": depth, "skip": skip,
               "seed": seed, "status": status}  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def add_landscape(run_dir: Path, kappa: float, central: float = 0.5, **options) -> None:
    """An exact parabola L = L0 + κ/2 (a² + b²): its fitted curvature is κ."""
    a, b = np.meshgrid(ALPHAS, ALPHAS, indexing="ij")
    write_landscape(run_dir, {
        "alphas": ALPHAS, "betas": ALPHAS, "loss_1d": central + kappa / 2 * ALPHAS**2,
        "loss_2d": central + kappa / 2 * (a**2 + b**2), "span": np.array(1.0),
        "options": np.array(json.dumps({**OPTIONS, **options})),
    })  # fmt: skip


def add_lesion(run_dir: Path, baseline: float, errors: dict[str, float | None]) -> None:
    """errors: block -> test error with it deleted (None: the block cannot be deleted)."""
    blocks = [{"block": name, "deleted": e is not None, "test_error": e,
               "headroom_lost": None if e is None else (e - baseline) / (0.9 - baseline)}
              for name, e in errors.items()]  # fmt: skip
    write_lesion(run_dir, {"baseline": {"test_error": baseline}, "num_classes": 10,
                           "chance_error": 0.9, "num_images": 100, "checkpoint": "last.ckpt",
                           "options": {"checkpoint": "last", "limit": None},
                           "blocks": blocks})  # fmt: skip


def add_grad_norms(run_dir: Path, steps: list[int], rel: list[list[float]], weight) -> None:
    """grad_norms.csv with the relative gradient ‖g‖/‖w‖ given per step and layer, and the
    RMS gradient that makes each layer's RMS weight `weight[step][layer]`."""
    header = ["step", *(f"rms/{n}" for n in LAYERS), *(f"rel/{n}" for n in LAYERS)]
    with (run_dir / "grad_norms.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        for step, r, w in zip(steps, rel, weight, strict=True):
            out.writerow([step, *(x * y for x, y in zip(r, w, strict=True)), *r])


def captions(figures) -> dict[str, str]:
    return {title: caption for title, _, caption in figures}


def pm(values) -> str:
    """mean ± sample std as the captions print it (3 significant digits)."""
    return f"{np.mean(values):.3g} ± {np.std(values, ddof=1):.3g}"


# --- every seed, with spread; per-seed values recorded ---------------------------------------


def test_landscape_and_lesion_are_over_every_seed_with_per_seed_values_recorded(tmp_path):
    kappas = {"plain-20": [10.0, 14.0, 30.0], "resnet-20": [40.0, 44.0, 47.0]}
    for name, values in kappas.items():
        for seed, kappa in enumerate(values):
            run_dir = fake_run(tmp_path / "sweep", name, seed)
            add_landscape(run_dir, kappa, central=0.1 * (seed + 1))
            add_lesion(run_dir, 0.1 * (seed + 1), {"stages.0.0": 0.5, "stages.0.1": 0.7})
    figures = analysis_figures([tmp_path / "sweep"], tmp_path / "out")
    text = captions(figures)
    landscape = text["Loss landscape"]
    # the lowest seed alone would say κ 10 (plain) and 40 (resnet)
    assert f"plain-20 (3 seeds): L0 {pm([0.1, 0.2, 0.3])}" in landscape
    assert f"κ {pm(kappas['plain-20'])}" in landscape
    assert f"κ {pm(kappas['resnet-20'])}" in landscape
    lesion = text["Lesion study"]
    lost = [np.mean([(0.5 - b) / (0.9 - b), (0.7 - b) / (0.9 - b)]) for b in (0.1, 0.2, 0.3)]
    assert f"resnet-20 (3 seeds): intact {pm([10, 20, 30])} %" in lesion
    assert f"headroom lost mean {np.mean(lost):.2g} ± {np.std(lost, ddof=1):.2g}" in lesion
    record = json.loads((tmp_path / "out" / "analysis.json").read_text())
    by_name = {v["variant"]: v for v in record["landscape"]["variants"]}
    plain = by_name["plain-20"]
    assert [s["seed"] for s in plain["per_seed"]] == [0, 1, 2]
    assert [s["curvature"] for s in plain["per_seed"]] == pytest.approx(kappas["plain-20"])
    assert plain["curvature"]["mean"] == pytest.approx(np.mean(kappas["plain-20"]))
    assert plain["curvature"]["std"] == pytest.approx(np.std(kappas["plain-20"], ddof=1))
    assert [r["run"] for r in plain["runs"]] == [
        f"../sweep/plain-20,lr=0.1,seed={s}" for s in range(3)
    ]
    lesions = {v["variant"]: v for v in record["lesion"]["variants"]}
    assert [s["mean_lost"] for s in lesions["plain-20"]["per_seed"]] == pytest.approx(lost)


def test_captions_say_when_a_seed_lacks_the_analysis_or_is_repeated(tmp_path):
    for seed in (0, 1, 2):
        run_dir = fake_run(tmp_path, "resnet-20", seed)
        if seed != 1:
            add_landscape(run_dir, 40.0 + seed)
    twin = fake_run(tmp_path / "x", "resnet-20", 0)  # seed 0 again, in a later folder
    add_landscape(twin, 99.0)
    fake_run(tmp_path, "plain-20", 0, status="diverged")  # not completed: not counted
    (landscape,) = analysis_figures([tmp_path], tmp_path / "out")
    assert "resnet-20 (2 of 3 seeds (not s1); seed 0 repeated, counted once)" in landscape[2]
    assert "κ 41 ± 1.41" in landscape[2] and "plain-20" not in landscape[2]


# --- one recipe never stands in for another ------------------------------------------------


def test_two_recipes_of_one_variant_are_kept_apart(tmp_path):
    for lr, kappa in ((0.1, 10.0), (0.05, 50.0)):
        for seed in (0, 1):
            add_landscape(fake_run(tmp_path, "plain-20", seed, lr=lr), kappa + seed)
            add_lesion(fake_run(tmp_path, "resnet-20", seed, lr=lr), 0.1, {"stages.0.0": lr})
    text = captions(analysis_figures([tmp_path], tmp_path / "out"))
    assert "plain-20 [optim.lr=0.1] (2 seeds): L0 0.5 ± 0, +" in text["Loss landscape"]
    assert f"κ {pm([10, 11])}" in text["Loss landscape"]
    assert f"κ {pm([50, 51])}" in text["Loss landscape"]
    assert "plain-20 [optim.lr=0.05] (2 seeds)" in text["Loss landscape"]
    record = json.loads((tmp_path / "out" / "analysis.json").read_text())
    variants = {v["variant"]: v for v in record["lesion"]["variants"]}
    assert set(variants) == {"resnet-20 [optim.lr=0.05]", "resnet-20 [optim.lr=0.1]"}
    for lr in (0.05, 0.1):
        runs = variants[f"resnet-20 [optim.lr={lr}]"]["runs"]
        assert [r["run"] for r in runs] == [f"../resnet-20,lr={lr},seed={s}" for s in (0, 1)]


# --- the landscape's outcome: sharper, flatter, or no clear difference ---------------------


@pytest.mark.parametrize(
    "plain,residual,outcome",
    [
        ([10.0, 30.0, 20.0], [12.0, 28.0, 24.0], "no clear difference in sharpness"),
        ([10.0, 11.0, 12.0], [50.0, 52.0, 55.0], "the residual net is sharper"),
        ([50.0, 52.0, 55.0], [10.0, 11.0, 12.0], "the residual net is flatter"),
        ([10.0], [50.0], "no clear difference can be stated"),
    ],
)
def test_landscape_comparison_is_a_welch_test_over_seeds(tmp_path, plain, residual, outcome):
    for name, kappas in (("plain-56", plain), ("resnet-56", residual)):
        for seed, kappa in enumerate(kappas):
            add_landscape(fake_run(tmp_path, name, seed), kappa)
    (landscape,) = analysis_figures([tmp_path], tmp_path / "out")
    caption = landscape[2]
    assert f"At depth 56, resnet-56 against plain-56: {outcome}" in caption
    (comparison,) = json.loads((tmp_path / "out" / "analysis.json").read_text())["landscape"][
        "comparisons"
    ]
    if len(plain) > 1:
        p = stats.ttest_ind(residual, plain, equal_var=False).pvalue
        assert comparison["p"] == pytest.approx(p)
        assert f"Welch p = {p:.2g}" in caption
        assert (comparison["outcome"] == "no clear difference") == (p >= 0.05)
    else:
        assert comparison["outcome"] == "not tested" and comparison["p"] is None
    assert ("opposite of Li et al." in caption) == (outcome == "the residual net is sharper")


def test_nets_measured_with_different_options_are_not_compared(tmp_path):
    for seed in (0, 1):
        add_landscape(fake_run(tmp_path, "plain-56", seed), 10.0 + seed, subset=64)
        add_landscape(fake_run(tmp_path, "resnet-56", seed), 50.0 + seed, subset=512)
    (landscape,) = analysis_figures([tmp_path], tmp_path / "out")
    assert "Measured with different options: --steps 5 --span 1 --subset 64" in landscape[2]
    assert "resnet-56 against plain-56: not compared" in landscape[2]


# --- gradient flow: not the step; an early explosion is said ---------------------------------


def explosive(run_dir: Path, start: float) -> None:
    """plain-56 on the demo's data: ‖g‖/‖w‖ ≈ 20 in the first layers at step 0, their RMS
    weight 0.27 → 1.7 by the next recording, then a small relative gradient."""
    steps = [0, 50, 100, 150, 200]
    rel = [[start, 15.0, 0.05]] + [[0.002, 0.003, 0.05]] * 4
    weight = [[0.27, 0.2, 0.06]] + [[1.7, 0.9, 0.06]] * 4
    add_grad_norms(run_dir, steps, rel, weight)


def calm(run_dir: Path) -> None:
    """Weights that grow 2.5× over a long run, but slowly: no early explosion."""
    steps = list(range(0, 1001, 100))
    rel = [[0.3, 0.2, 0.05]] * len(steps)
    weight = [[0.27 * (1 + 1.5 * s / 1000), 0.2, 0.06] for s in steps]
    add_grad_norms(run_dir, steps, rel, weight)


def test_gradient_captions_detect_an_early_explosion_and_do_not_call_it_the_step(tmp_path):
    for seed, start in ((0, 19.0), (1, 21.0)):
        explosive(fake_run(tmp_path, "plain-56", seed), start)
        calm(fake_run(tmp_path, "resnet-56", seed))
    text = captions(analysis_figures([tmp_path], tmp_path / "out"))
    heat, profile = text["Gradient flow per layer"], text["Gradient flow over depth"]
    for caption in (heat, profile):
        assert "relative update" not in caption and "Times the learning rate" not in caption
    assert "not the step" in heat and "μ = 0.9, λ = 0.0001" in heat
    assert "in plain-56 after an early explosion (next figure)" in heat
    assert "plain-56 (2 seeds) and resnet-56" not in heat
    assert (
        "plain-56: in 2 of 2 seeds; at the first recording the first layer's (stem) "
        "‖∇W‖/‖W‖ is 20 ± 1.41 and its RMS weight grows 0.27 ± 0 → 1.7 ± 0 by step 50; 2 ± 0 "
        "of 3 layers' weights at least double"
    ) in profile
    assert "double; none in resnet-56. Those layers' later small" in profile
    record = json.loads((tmp_path / "out" / "analysis.json").read_text())
    variants = {v["variant"]: v for v in record["gradient_flow"]["variants"]}
    assert variants["plain-56"]["explosions"] == 2 and variants["resnet-56"]["explosions"] == 0
    seed0 = variants["plain-56"]["per_seed"][0]["early_explosion"]
    assert seed0["layers"] == ["stem", "stages.0.0.conv1"]
    assert seed0["first_weight_peak"] == pytest.approx(1.7)
    # the relative gradient of the first / last layer: medians over training, per seed
    assert [s["first_rel"] for s in variants["plain-56"]["per_seed"]] == [0.002, 0.002]


def test_without_an_explosion_the_caption_says_none(tmp_path):
    calm(fake_run(tmp_path, "resnet-56", 0))
    text = captions(analysis_figures([tmp_path], tmp_path / "out"))
    assert "from grad_norms.csv's first rows): none." in text["Gradient flow over depth"]
    assert "no early explosion here" in text["Gradient flow per layer"]


# --- lesion: the same blocks for both nets ---------------------------------------------------


def test_lesion_means_are_over_the_blocks_deletable_in_both_nets(tmp_path):
    for seed in (0, 1):
        add_lesion(fake_run(tmp_path, "plain-8", seed), 0.2,
                   {"stages.0.0": 0.5, "stages.1.0": None, "stages.2.0": None})  # fmt: skip
        add_lesion(fake_run(tmp_path, "resnet-8", seed), 0.1,
                   {"stages.0.0": 0.3, "stages.1.0": 0.9, "stages.2.0": 0.9})  # fmt: skip
    text = captions(analysis_figures([tmp_path], tmp_path / "out"))
    lesion = text["Lesion study"]
    assert "blocks deleted in every net of a depth: 1 block (not stages.1.0, stages.2.0:" in lesion
    # resnet-8 over stages.0.0 only: (0.3 − 0.1) / (0.9 − 0.1) = 0.25, not (0.25 + 1 + 1) / 3
    assert "resnet-8 (2 seeds): intact 10 ± 0 %, mean rise 20 ± 0 pp, headroom lost mean " in (
        lesion
    )
    assert "headroom lost mean 0.25 ± 0 / max 0.25 ± 0" in lesion
    record = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert record["lesion"]["blocks_compared"][0]["blocks"] == ["stages.0.0"]
    assert "all 100 test images" in lesion and "checkpoint last" in lesion


def test_nothing_to_show_leaves_no_record(tmp_path):
    fake_run(tmp_path, "plain-20", 0)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "analysis.json").write_text("{}")  # of an earlier report
    assert analysis_figures([tmp_path], tmp_path / "out") == []
    assert not (tmp_path / "out" / "analysis.json").exists()
