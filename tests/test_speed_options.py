"""Speed options: how `auto` resolves, that every option trains like eager fp32, and that the
GPU-resident and per-sample (torchvision) data paths draw the same batches and augmentation."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import run_cli, summaries
from degradation.config import RunConfig
from degradation.data.augment import random_crop_flip
from degradation.data.loaders import (
    DeviceBatches,
    PerSampleImages,
    common_recipe_transform,
    framework_transform,
)
from degradation.resume import ResumableSampler
from degradation.speed import resolve_speed

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def config(**overrides):
    cfg = OmegaConf.structured(RunConfig)
    for key, v in overrides.items():
        OmegaConf.update(cfg, key, v)
    return cfg


# --- what `auto` means ------------------------------------------------------------------------


def test_auto_is_fp32_eager_on_the_cpu():
    speed = resolve_speed(config(**{"trainer.accelerator": "cpu"}))
    assert (speed.precision, speed.compile, speed.channels_last) == ("32-true", "none", False)
    assert speed.benchmark is None and not speed.cuda


def test_auto_is_the_fast_path_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    speed = resolve_speed(config())  # accelerator auto, a GPU visible
    assert (speed.precision, speed.compile) == ("bf16-mixed", "reduce-overhead")
    assert speed.channels_last and speed.benchmark and speed.cuda
    # no bf16 on the card: fp32, never fp16 (plain-56 diverges in fp16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_speed(config()).precision == "32-true"
    # deterministic runs keep cuDNN's choice deterministic
    assert resolve_speed(config(**{"trainer.deterministic": True})).benchmark is None


def test_explicit_speed_settings_are_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = config(**{"trainer.precision": "32-true", "compile": "none", "channels_last": False})
    cfg.trainer.benchmark = False
    speed = resolve_speed(cfg)
    assert (speed.precision, speed.compile, speed.channels_last, speed.benchmark) == (
        "32-true", "none", False, False,
    )  # fmt: skip
    cpu = resolve_speed(config(**{"trainer.accelerator": "cpu", "compile": "default",
                                  "channels_last": True, "trainer.precision": "bf16-mixed"}))  # fmt: skip
    assert (cpu.precision, cpu.compile, cpu.channels_last) == ("bf16-mixed", "default", True)


def test_unknown_compile_mode_is_a_one_line_error(tmp_path):
    result = run_cli("compile=fast", cwd=tmp_path)
    assert result.returncode == 2
    err = result.stderr.strip()
    assert err.startswith("error: compile=fast") and "reduce-overhead" in err
    assert "\n" not in err and not (tmp_path / "outputs").exists()


# --- every option trains like eager fp32 ----------------------------------------------------


STEPS = ["experiment=smoke", "depth=8", "data.batch_size=16", "trainer.max_steps=3", "log_every=1"]


def step_losses(run_dir) -> list[float]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [float(row["train/loss"]) for row in csv.DictReader(f) if row["train/loss"]]


@pytest.mark.slow
def test_channels_last_and_compile_give_the_losses_of_eager_fp32(out):
    runs = {}
    for option in ("compile=none", "channels_last=true", "compile=default"):
        result = run_cli(*STEPS, option, f"output_root={out / option}", cwd=out.parent)
        assert result.returncode == 0, result.stderr[-3000:]
        ((run_dir, summary),) = summaries(out / option).items()
        assert summary["status"] == "completed"
        runs[option] = (run_dir, summary, result.stdout)
    eager = step_losses(runs["compile=none"][0])
    assert len(eager) == 3 and all(math.isfinite(x) for x in eager)
    for option in ("channels_last=true", "compile=default"):
        run_dir, summary, stdout = runs[option]
        assert step_losses(run_dir) == pytest.approx(eager, rel=1e-3)
        assert summary["final"]["test_loss"] == pytest.approx(
            runs["compile=none"][1]["final"]["test_loss"], rel=1e-3
        )
        # Fig. 7's hooks still see the layers of a compiled model
        stds = json.loads((run_dir / "layer_responses.json").read_text())["std"]
        assert stds and all(s is not None and s > 0 for s in stds)
    assert runs["compile=default"][1]["speed"]["compile"] == "default"
    assert runs["channels_last=true"][1]["speed"]["channels_last"] is True
    assert "torch.compile(mode=default): first step" in runs["compile=default"][2]
    assert "torch.compile" not in runs["compile=none"][2]


@needs_cuda
def test_cuda_fast_path_gives_the_losses_of_eager_fp32(out):
    # reduce-overhead = CUDA graphs; bf16 rounds, hence the looser tolerance
    fast = run_cli(*STEPS, "trainer.accelerator=cuda", f"output_root={out / 'fast'}", cwd=out.parent)
    eager = run_cli(*STEPS, "trainer.accelerator=cuda", "compile=none", "channels_last=false",
                    "trainer.precision=32-true", f"output_root={out / 'eager'}", cwd=out.parent)  # fmt: skip
    assert fast.returncode == 0 and eager.returncode == 0, fast.stderr[-3000:] + eager.stderr[-3000:]
    ((fast_dir, fast_summary),) = summaries(out / "fast").items()
    ((eager_dir, _),) = summaries(out / "eager").items()
    assert fast_summary["speed"]["compile"] == "reduce-overhead"
    assert step_losses(fast_dir) == pytest.approx(step_losses(eager_dir), rel=3e-2)


def test_torchvision_loader_trains(out):
    result = run_cli(*STEPS, "data.loader=torchvision", f"output_root={out}", cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    ((run_dir, summary),) = summaries(out).items()
    assert summary["status"] == "completed" and summary["steps"] == 3
    assert all(math.isfinite(x) for x in step_losses(run_dir))


# --- the data paths ---------------------------------------------------------------------------


def test_device_batches_follow_the_resumable_order_and_shard_by_rank():
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 2, 2).clone()
    labels = torch.arange(40)

    def batches(rank=0, world=1, position=0):
        sampler = ResumableSampler(40, 4, seed=3, position=lambda: position, rank=rank,
                                   world_size=world)  # fmt: skip
        return sampler, list(DeviceBatches(images, labels, sampler, torch.device("cpu")))

    sampler, got = batches()
    order = torch.tensor(list(sampler))
    assert len(got) == len(DeviceBatches(images, labels, sampler, torch.device("cpu"))) == 10
    for i, (x, y) in enumerate(got):
        assert torch.equal(y, order[4 * i : 4 * i + 4]) and torch.equal(x, images[y])
    assert sorted(torch.cat([y for _, y in got]).tolist()) == list(range(40))
    assert [y.tolist() for _, y in batches(position=13)[1]] == [y.tolist() for _, y in got[3:]]
    rank0 = torch.cat([y for _, y in batches(0, 2)[1]])
    rank1 = torch.cat([y for _, y in batches(1, 2)[1]])
    assert len(rank0) == len(rank1) == 20 and not set(rank0.tolist()) & set(rank1.tolist())


@needs_cuda
def test_training_on_cuda_keeps_the_data_on_the_gpu():
    from types import SimpleNamespace

    from degradation.data import ImageDataModule

    cfg = config(**{"data.synthetic.train_size": 600, "data.val_size": 100})
    dm = ImageDataModule(cfg.data)
    strategy = SimpleNamespace(root_device=torch.device("cuda", 0))
    dm.trainer = SimpleNamespace(strategy=strategy, world_size=1, global_rank=0, global_step=0)
    loader = dm.train_dataloader()
    assert isinstance(loader, DeviceBatches)
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda and x.dtype == torch.uint8 and len(y) == 128


SAMPLES, PAD, SIZE = 3000, 4, 32


def crop_offsets_and_flips(images: torch.Tensor, out: torch.Tensor):
    """Each output's crop offset (dy*9+dx) in its zero-padded source, and whether it is flipped,
    found by matching it against every window of the padded image."""
    grid = 2 * PAD + 1
    padded = torch.nn.functional.pad(images, (PAD,) * 4)
    offsets, flips = [], []
    for start in range(0, len(images), 250):
        p, o = padded[start : start + 250], out[start : start + 250]
        windows = p.unfold(2, SIZE, 1).unfold(3, SIZE, 1)  # B×C×9×9×H×W
        for flipped, candidate in ((False, o), (True, o.flip(-1))):
            match = (windows == candidate[:, :, None, None]).all(-1).all(-1).all(1)  # B×9×9
            found = match.flatten(1).float().argmax(1)
            hit = match.flatten(1).any(1)
            offsets += [(i, int(f)) for i, (f, h) in enumerate(zip(found, hit)) if h]
            flips += [(i, flipped) for i, h in enumerate(hit) if h]
        assert len({i for i, _ in offsets[-len(o) :]}) <= len(o)
    assert len(offsets) == len(images) * 1 + len(images) * 0 or len(offsets) >= len(images)
    cells = torch.zeros(grid * grid)
    for _, f in offsets:
        cells[f] += 1
    flip_rate = sum(flipped for _, flipped in flips) / len(flips)
    return cells, flip_rate
