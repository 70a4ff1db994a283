"""The paper's CIFAR recipe (experiment=paper_cifar10) and the sweeps and datasets around it.

CIFAR cannot be downloaded here, so the CIFAR tests read small files written in the real
`cifar-10-batches-py` / `cifar-100-python` format (tests/cifar_files.py) through the same
torchvision code path; only the MD5 check is skipped (data.verify=false).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml
from cifar_files import write_fake_cifar10, write_fake_cifar100
from conftest import run_cli, summaries
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from degradation.data import ImageDataModule, split_train_val
from degradation.data.augment import random_crop_flip
from degradation.data.sources import DEFAULT_FASHION_MNIST_DIR, load_source
from degradation.models import build_model, count_parameters
from degradation.run import register as register_configs
from degradation.spec import data_spec
from hydra_plugins.degradation_sweeper import DegradationSweeper

register_configs()

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# A proxy on a closed local port: any download attempt fails at once, and nothing is fetched
# even on a machine that is online.
NO_NETWORK = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
              "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "no_proxy": "", "NO_PROXY": ""}  # fmt: skip


def composed(*overrides: str, hydra: bool = False):
    with initialize_config_module(config_module="degradation.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def sweep_jobs(experiment: str) -> list[dict[str, str]]:
    """The jobs `python -m degradation.run experiment=EXPERIMENT` launches, as key → value."""
    cfg = composed(f"experiment={experiment}", hydra=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    params = [f"{key}={values}" for key, values in cfg.hydra.sweeper.params.items()]
    parsed = OverridesParser.create().parse_overrides(params)
    (jobs,) = DegradationSweeper.split_arguments(parsed, max_batch_size=None)
    return [dict(override.split("=", 1) for override in job) for job in jobs]


def lr_per_step(run_dir: Path) -> dict[int, float]:
    rows = csv.DictReader((run_dir / "metrics.csv").open())
    return {int(row["step"]): float(row["lr"]) for row in rows if row["lr"]}


# ------------------------------------------------------------------ the demo (make demo)


def test_the_demo_sweeps_five_seeds_of_four_variants_at_the_papers_lr():
    jobs = sweep_jobs("demo")
    assert len(jobs) == 20
    variants = {(j["depth"], j["skip"]) for j in jobs}
    assert variants == {(d, s) for d in ("20", "56") for s in ("none", "add")}
    for variant in variants:  # at least 5 seeds: 3 v 3 can never reach p < 0.05 exactly
        seeds = {j["seed"] for j in jobs if (j["depth"], j["skip"]) == variant}
        assert len(seeds) == 5
    cfg = composed("experiment=demo")
    # the paper's lr from step 0, no warm-up; residual branches start at zero (the cause of
    # ResNet-56's divergence at lr 0.1 on this data: experiments/demo/instability/)
    assert (cfg.optim.lr, cfg.optim.warmup_lr, cfg.zero_init_residual) == (0.1, None, True)
    assert list(cfg.optim.milestones) == [125, 190] and cfg.trainer.max_steps == 250
    assert cfg.verdict.margin_pp == 5.0 and cfg.data.synthetic.tint == 0.3


# ------------------------------------------------------------------ the recipe itself


def test_paper_cifar10_prints_the_papers_numbers(tmp_path):
    # --cfg must not need the CIFAR files: HOME points at an empty folder
    result = run_cli("experiment=paper_cifar10", "--cfg", "job", cwd=tmp_path,
                     env={"HOME": str(tmp_path), **NO_NETWORK})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = yaml.safe_load(result.stdout)
    assert cfg["trainer"]["max_steps"] == 64000
    assert cfg["optim"]["milestones"] == [32000, 48000]
    assert cfg["data"]["batch_size"] == 128
    assert (cfg["optim"]["lr"], cfg["optim"]["momentum"]) == (0.1, 0.9)
    assert cfg["optim"]["weight_decay"] == 0.0001
    assert cfg["optim"]["gamma"] == 0.1
    assert cfg["data"]["name"] == "cifar10"
    assert (cfg["data"]["val_size"], cfg["data"]["normalize"]) == (5000, "per_pixel_mean")
    assert (cfg["data"]["augment"], cfg["data"]["pad"], cfg["data"]["flip"]) == (True, 4, True)
    assert cfg["trainer"]["val_check_interval"] == 2000
    assert cfg["trainer"]["precision"] == "32-true"
    assert not (tmp_path / ".cache" / "degradation").exists()  # nothing downloaded or created


@pytest.mark.parametrize(
    ("depth", "warmup_lr"), [(20, None), (56, None), (110, 0.01), (1202, 0.01)]
)
def test_paper_cifar10_warms_up_only_the_110_and_1202_layer_nets(depth, warmup_lr):
    cfg = composed("experiment=paper_cifar10", f"depth={depth}")
    assert cfg.optim.warmup_lr == warmup_lr
    assert (cfg.optim.warmup_until_error, cfg.optim.warmup_max_steps) == (0.8, 4000)  # a cap only
    # still a plain value to override by hand
    assert (
        composed("experiment=paper_cifar10", "depth=110", "optim.warmup_lr=null").optim.warmup_lr
        is None
    )


def test_paper_cifar10_trains_on_cifar_files_and_logs_lr_every_step(tmp_path, out):
    fake = write_fake_cifar10(tmp_path / "data", n_per_batch=60, seed=1)  # 300 train, 60 test
    result = run_cli(
        "experiment=paper_cifar10", f"data.root={tmp_path / 'data'}", "data.verify=false",
        "data.download=false", "data.val_size=100", "depth=8", "trainer.max_steps=4",
        "log_every=1", "optim.warmup_lr=0.01", "optim.warmup_max_steps=2",
        "optim.warmup_until_error=0.0", "trainer.enable_progress_bar=false",
        "trainer.val_check_interval=2", f"output_root={out}", cwd=tmp_path, env=NO_NETWORK,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warm-up ended at step 2 (cap): lr 0.01 -> 0.1" in result.stdout
    ((run_dir, summary),) = summaries(out).items()
    assert summary["status"] == "completed"
    assert (summary["dataset"], summary["num_train"], summary["steps"]) == ("cifar10", 200, 4)
    assert summary["warmup_end_step"] == 2
    assert lr_per_step(run_dir) == {0: 0.01, 1: 0.01, 2: 0.1, 3: 0.1}
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert (saved.name, saved.data.normalize) == ("paper_cifar10", "per_pixel_mean")
    assert summary["params"] == count_parameters(build_model(8, "add", "zero_pad", 10, 3))
    assert 0 <= summary["final"]["test_error"] <= 1 and 0 <= summary["best_val"]["test_error"] <= 1
    assert summary["best_val"]["checkpoint"] == "best.ckpt"
    files = load_source("cifar10", tmp_path / "data", verify=False)
    assert summary["dataset_checksum"] == files.checksum
    assert torch.equal(files.train_images.flatten(1), torch.from_numpy(fake.train_data))


def test_per_pixel_mean_is_computed_on_the_training_split_only(tmp_path):
    fake = write_fake_cifar10(tmp_path, n_per_batch=40, seed=2)
    cfg = composed("experiment=paper_cifar10", f"data.root={tmp_path}", "data.verify=false",
                   "data.download=false", "data.val_size=50")  # fmt: skip
    dm = ImageDataModule(data_spec(cfg))
    images = torch.from_numpy(fake.train_data).view(-1, 3, 32, 32)
    assert dm.normalize.mean.shape == (3, 32, 32)  # one mean per pixel, not per channel
    assert torch.allclose(dm.normalize.mean, images[dm.train_idx].float().mean(dim=0))
    assert not torch.allclose(dm.normalize.mean, images.float().mean(dim=0))  # val left out
    normalized = dm.normalize(images[dm.train_idx].float())
    assert torch.allclose(normalized.mean(dim=0), torch.zeros(3, 32, 32), atol=1e-4)


def test_45k_5k_split_is_disjoint_seeded_and_the_same_on_every_run(tmp_path):
    train, val = split_train_val(50_000, 5000, split_seed=0)
    assert (len(train), len(val)) == (45_000, 5000)
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(50_000))
    other_train, other_val = split_train_val(50_000, 5000, split_seed=1)
    assert not torch.equal(val, other_val)

    # Through the data module on CIFAR files: the run's seed (global RNG) does not move it.
    write_fake_cifar10(tmp_path, n_per_batch=40, seed=3)  # 200 training images
    cfg = composed("experiment=paper_cifar10", f"data.root={tmp_path}", "data.verify=false",
                   "data.download=false", "data.val_size=40")  # fmt: skip
    splits = []
    for run_seed in (0, 1):
        torch.manual_seed(run_seed)
        dm = ImageDataModule(data_spec(cfg))
        splits.append((dm.train_idx, dm.val_idx))
    (train_a, val_a), (train_b, val_b) = splits
    assert (len(train_a), len(val_a)) == (160, 40)
    assert not set(train_a.tolist()) & set(val_a.tolist())
    assert torch.equal(train_a, train_b) and torch.equal(val_a, val_b)
    cfg.data.split_seed = 5
    assert not torch.equal(ImageDataModule(data_spec(cfg)).val_idx, val_a)


def test_missing_cifar_offline_is_one_line_naming_folder_and_url(tmp_path, out):
    # data.root defaults to ~/.cache/degradation/data; `~` must reach the message expanded
    root = tmp_path / ".cache" / "degradation" / "data"
    for extra, expected in [
        ([], f"error: downloading CIFAR-10 into {root} failed"),
        (["data.download=false"], f"error: CIFAR-10 not found in {root}"),
    ]:
        result = run_cli("experiment=paper_cifar10", *extra, f"output_root={out}",
                         cwd=tmp_path, env={"HOME": str(tmp_path), **NO_NETWORK})  # fmt: skip
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stderr.startswith(expected), result.stderr
        assert CIFAR10_URL in result.stderr and "extract it there" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()


def test_cifar100_trains_with_100_outputs(tmp_path, out):
    write_fake_cifar100(tmp_path / "data", n_train=200, n_test=40, seed=4)
    result = run_cli(
        "experiment=paper_cifar10", "data=cifar100", f"data.root={tmp_path / 'data'}",
        "data.verify=false", "data.download=false", "data.val_size=40", "depth=8",
        "trainer.max_steps=2", "trainer.enable_progress_bar=false", f"output_root={out}",
        cwd=tmp_path, env=NO_NETWORK,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ((_, summary),) = summaries(out).items()
    assert (summary["dataset"], summary["num_train"], summary["steps"]) == ("cifar100", 160, 2)
    assert summary["params"] == count_parameters(build_model(8, "add", "zero_pad", 100, 3))
    assert summary["params"] - count_parameters(build_model(8, "add", "zero_pad", 10, 3)) == 90 * 65


# ----------------------------------------------------------------------------- sweeps


def test_paper_fig6_sweeps_plain_and_residual_20_to_56_plus_110():
    jobs = sweep_jobs("paper_fig6")
    pairs = {(int(job["depth"]), job["skip"]) for job in jobs}
    assert pairs == {(d, s) for d in (20, 32, 44, 56, 110) for s in ("none", "add")}
    assert len(jobs) == 10
    for job in jobs:
        cfg = composed("experiment=paper_fig6", *(f"{k}={v}" for k, v in job.items()))
        assert (cfg.name, cfg.trainer.max_steps, cfg.data.name) == ("paper_fig6", 64000, "cifar10")
        assert cfg.optim.warmup_lr == (0.01 if cfg.depth == 110 else None)


def test_paper_table6_trains_six_resnets_and_five_seeds_of_110():
    table = sweep_jobs("paper_table6")
    assert [(int(j["depth"]), int(j["seed"])) for j in table] == [
        (d, 0) for d in (20, 32, 44, 56, 110, 1202)
    ]
    seeds = sweep_jobs("paper_table6_seeds")
    assert [(int(j["depth"]), int(j["seed"])) for j in seeds] == [(110, s) for s in (1, 2, 3, 4)]
    for experiment in ("paper_table6", "paper_table6_seeds"):
        cfg = composed(f"experiment={experiment}")
        # one folder for both, so the 110 seeds 0-4 end up side by side
        assert (cfg.name, cfg.skip.value, cfg.shortcut.value) == ("paper_table6", "add", "zero_pad")
        assert (cfg.trainer.max_steps, list(cfg.optim.milestones)) == (64000, [32000, 48000])


def test_paper_fig6_cli_shows_a_multirun_of_ten(tmp_path):
    result = run_cli("experiment=paper_fig6", "--cfg", "hydra", cwd=tmp_path,
                     env={"HOME": str(tmp_path)})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    hydra_cfg = yaml.safe_load(result.stdout)["hydra"]
    assert hydra_cfg["mode"] == "MULTIRUN"
    assert hydra_cfg["sweeper"]["params"] == {"depth": "20,32,44,56,110", "skip": "none,add"}


# --------------------------------------------------------------- the two small datasets


def test_digits_trains_end_to_end(tmp_path, out):
    result = run_cli(
        "data=digits", "depth=8", "trainer.max_steps=3", "log_every=1",
        "trainer.enable_progress_bar=false", f"output_root={out}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ((run_dir, summary),) = summaries(out).items()
    assert (summary["dataset"], summary["num_train"], summary["steps"]) == ("digits", 1000, 3)
    assert summary["params"] == count_parameters(build_model(8, "add", "zero_pad", 10, 1))
    assert sorted(lr_per_step(run_dir)) == [0, 1, 2]
    assert 0 <= summary["final"]["test_error"] <= 1


def test_crop_and_flip_keep_28x28_images_and_pad_with_zeros():
    torch.manual_seed(0)
    images = torch.full((64, 1, 28, 28), 255.0)
    out = random_crop_flip(images, pad=4, flip=True)
    assert out.shape == (64, 1, 28, 28)
    assert (out == 0).any() and (out == 255).any()  # some crops reach into the zero padding


@pytest.mark.slow  # reads and normalises all 70k images, then tests on 10k twice
@pytest.mark.skipif(
    not DEFAULT_FASHION_MNIST_DIR.is_dir(),
    reason=f"{DEFAULT_FASHION_MNIST_DIR} absent (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_fig6_trains_a_few_steps(tmp_path, out):
    result = run_cli(
        "experiment=fashion_mnist_fig6", "hydra.sweeper.params.depth=8",
        "hydra.sweeper.params.skip=none", "hydra.sweeper.params.seed=0", "trainer.max_steps=3",
        "log_every=1", "data.val_size=500", "trainer.enable_progress_bar=false",
        f"output_root={out}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ((run_dir, summary),) = summaries(out).items()
    assert run_dir.parent == out / "sweeps" / "fashion_mnist_fig6"
    assert (summary["dataset"], summary["num_train"], summary["steps"]) == (
        "fashion_mnist",
        59500,
        3,
    )
    assert summary["name"] == "plain-8"
    assert summary["params"] == count_parameters(build_model(8, "none", "zero_pad", 10, 1))
    lrs = lr_per_step(run_dir)
    assert sorted(lrs) == [0, 1, 2] and lrs[0] == 0.01  # the warm-up lr first
