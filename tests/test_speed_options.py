"""Speed options: how `auto` resolves, that every option trains like eager fp32, and that the
GPU-resident and per-sample (torchvision) data paths draw the same batches and augmentation."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from conftest import run_cli, summaries
from omegaconf import OmegaConf

from degradation import speed as speed_module
from degradation.config import RunConfig
from degradation.data.augment import random_crop_flip
from degradation.data.loaders import (
    DeviceBatches,
    PerSampleImages,
    common_recipe_transform,
    framework_transform,
)
from degradation.data.sampler import ResumableSampler
from degradation.preflight import spec_of_settings
from degradation.spec import data_spec, speed_request
from degradation.speed import resolve_speed

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def config(**overrides):
    """The schema's defaults for a short run (1000 steps: `auto` keeps a CPU run eager, see
    test_auto_compiles_a_long_cpu_run_only), with overrides."""
    cfg = OmegaConf.structured(RunConfig)
    cfg.trainer.max_steps = 1000
    for key, v in overrides.items():
        OmegaConf.update(cfg, key, v)
    return cfg


# --- what `auto` means ------------------------------------------------------------------------


AMX_CPU = "fpu vme sse sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8"
AVX2_CPU = "fpu vme sse sse2 avx avx2 fma"  # e.g. an AMD EPYC before Zen 4


def fake_cpu(monkeypatch, tmp_path, flags: str | None) -> None:
    """Pretend the CPU reports `flags` in /proc/cpuinfo (None: no cpuinfo at all)."""
    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n")
    monkeypatch.setattr(speed_module, "CPUINFO", cpuinfo)
    monkeypatch.setattr(speed_module.sys, "platform", "linux")
    speed_module.cpu_flags.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(autouse=True)
def _fresh_cpu_flags():
    speed_module.cpu_flags.cache_clear()
    yield
    speed_module.cpu_flags.cache_clear()


def test_auto_is_fp32_eager_on_a_cpu_without_native_bf16(monkeypatch, tmp_path):
    for flags in (AVX2_CPU, "avx512f avx512bw", None):
        fake_cpu(monkeypatch, tmp_path, flags)
        speed = resolve_speed(speed_request(config(**{"trainer.accelerator": "cpu"})))
        assert (speed.precision, speed.compile, speed.channels_last) == ("32-true", "none", False)
        assert speed.benchmark is None and not speed.cuda and not speed.fused_sgd
        no_bf16 = "auto on CPU: the CPU has no native bf16 (no amx_bf16 or avx512_bf16)"
        assert speed.reason == no_bf16


def test_auto_compiles_a_long_cpu_run_only(monkeypatch, tmp_path):
    fake_cpu(monkeypatch, tmp_path, AVX2_CPU)
    monkeypatch.setattr(speed_module, "cpp_compiler", lambda: "g++")
    long_run = resolve_speed(speed_request(config(**{"trainer.max_steps": 5000})))
    assert (long_run.compile, long_run.precision) == ("default", "32-true")
    assert long_run.reason.endswith(
        "; torch.compile (auto on CPU: 5000 steps >= 5000, where compiling pays back)"
    )
    assert resolve_speed(speed_request(config(**{"trainer.max_steps": 4999}))).compile == "none"
    pinned = config(**{"trainer.max_steps": 64000, "compile": "none"})
    assert resolve_speed(speed_request(pinned)).compile == "none"
    monkeypatch.setattr(speed_module, "cpp_compiler", lambda: None)  # inductor could not build
    assert resolve_speed(speed_request(config(**{"trainer.max_steps": 64000}))).compile == "none"


def test_auto_is_bf16_channels_last_on_a_cpu_with_native_bf16(monkeypatch, tmp_path):
    fake_cpu(monkeypatch, tmp_path, AMX_CPU)
    speed = resolve_speed(speed_request(config()))  # accelerator auto, no GPU: the CPU
    assert (speed.precision, speed.channels_last, speed.compile) == ("bf16-mixed", True, "none")
    assert speed.reason == "auto on CPU: the CPU has native bf16 (amx_bf16, avx512_bf16)"
    assert not speed.fused_sgd and not speed.cuda
    fake_cpu(monkeypatch, tmp_path, "avx2 avx512f avx512_bf16")  # AMD Zen 4: no AMX
    assert resolve_speed(speed_request(config())).precision == "bf16-mixed"
    # an explicit setting wins, and says so
    pinned = resolve_speed(speed_request(config(**{"trainer.precision": "32-true"})))
    assert (pinned.precision, pinned.channels_last) == ("32-true", False)  # fp32: plain
    assert pinned.reason == "set: trainer.precision=32-true"


def test_paper_cifar10_pins_fp32_on_any_cpu(monkeypatch, tmp_path):
    from hydra import compose, initialize_config_module

    from degradation.run import register

    register()
    fake_cpu(monkeypatch, tmp_path, AMX_CPU)
    with initialize_config_module(config_module="degradation.conf", version_base="1.3"):
        paper = compose("config", overrides=["experiment=paper_cifar10"])
        demo = compose("config", overrides=["experiment=demo"])
    assert resolve_speed(speed_request(paper)).precision == "32-true"
    assert resolve_speed(speed_request(demo)).precision == "bf16-mixed"


def test_auto_is_the_fast_path_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    speed = resolve_speed(speed_request(config()))  # accelerator auto, a GPU visible
    assert (speed.precision, speed.compile) == ("bf16-mixed", "reduce-overhead")
    assert speed.channels_last and speed.benchmark and speed.cuda and speed.fused_sgd
    # no bf16 on the card: fp32, never fp16 (plain-56 diverges in fp16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_speed(speed_request(config())).precision == "32-true"
    # deterministic runs keep cuDNN's choice deterministic
    assert resolve_speed(speed_request(config(**{"trainer.deterministic": True}))).benchmark is None


def test_a_run_records_the_precision_its_cpu_chose_and_why(out):
    # a subprocess reads this machine's real /proc/cpuinfo: the record must match it
    result = run_cli(*STEPS, "trainer.max_steps=2", f"output_root={out}", cwd=out.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    ((_, summary),) = summaries(out).items()
    native = speed_module.native_bf16_flags()
    expected = "bf16-mixed" if native else "32-true"
    assert summary["speed"]["precision"] == expected
    assert summary["speed"]["reason"].startswith("auto on CPU: the CPU has")
    assert f"[speed] precision {expected} (auto on CPU" in result.stdout
    fp32 = run_cli(*STEPS, "trainer.max_steps=2", "trainer.precision=32-true",
                   f"output_root={out / 'fp32'}", cwd=out.parent)  # fmt: skip
    assert fp32.returncode == 0, fp32.stderr[-3000:]
    ((_, pinned),) = summaries(out / "fp32").items()
    assert pinned["speed"]["precision"] == "32-true"
    assert pinned["speed"]["reason"] == "set: trainer.precision=32-true"


def test_bf16_mixed_on_a_cpu_trains_and_lands_near_fp32(out):
    # bf16 autocast runs on any CPU (emulated where not native): the fast path's numerics
    base = [*STEPS, "trainer.max_steps=30", "log_every=5", "depth=14", "data.batch_size=32"]
    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        root = out / precision
        result = run_cli(*base, f"trainer.precision={precision}", f"output_root={root}",
                         cwd=out.parent)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        ((run_dir, summary),) = summaries(root).items()
        assert summary["status"] == "completed"
        assert summary["speed"]["precision"] == precision
        losses[precision] = step_losses(run_dir)
    fp32, bf16 = losses["32-true"], losses["bf16-mixed"]
    assert all(math.isfinite(x) for x in bf16)
    assert bf16[-1] < bf16[0]  # it trains
    # the first window is before training has amplified bf16's rounding; the last lands near
    assert bf16[0] == pytest.approx(fp32[0], rel=2e-2)
    assert bf16[-1] == pytest.approx(fp32[-1], abs=0.25)


def test_explicit_speed_settings_are_kept(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = config(**{"trainer.precision": "32-true", "compile": "none", "channels_last": False})
    cfg.trainer.benchmark, cfg.fused_sgd = False, False
    speed = resolve_speed(speed_request(cfg))
    kept = (speed.precision, speed.compile, speed.channels_last, speed.benchmark, speed.fused_sgd)
    assert kept == ("32-true", "none", False, False, False)
    chosen = {"compile": "default", "channels_last": True, "trainer.precision": "bf16-mixed"}
    cpu = resolve_speed(speed_request(config(**{"trainer.accelerator": "cpu", **chosen})))
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
    options = ("channels_last=true", "compile=default", "fused_sgd=true")
    fp32 = "trainer.precision=32-true"  # `auto` is bf16 on a CPU with native bf16
    for option in ("compile=none", *options):
        root = out / option.replace("=", "-")  # '=' would end Hydra's value
        result = run_cli(*STEPS, fp32, option, f"output_root={root}", cwd=out.parent)
        assert result.returncode == 0, result.stderr[-3000:]
        ((run_dir, summary),) = summaries(root).items()
        assert summary["status"] == "completed"
        runs[option] = (run_dir, summary, result.stdout)
    eager = step_losses(runs["compile=none"][0])
    assert len(eager) == 3 and all(math.isfinite(x) for x in eager)
    for option in options:
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
    assert runs["fused_sgd=true"][1]["speed"]["fused_sgd"] is True
    assert "torch.compile(mode=default): first step" in runs["compile=default"][2]
    assert "torch.compile" not in runs["compile=none"][2]


@needs_cuda
def test_cuda_fast_path_gives_the_losses_of_eager_fp32(out):
    # reduce-overhead = CUDA graphs; bf16 rounds, hence the looser tolerance
    fast = run_cli(
        *STEPS, "trainer.accelerator=cuda", f"output_root={out / 'fast'}", cwd=out.parent
    )
    plain = ["compile=none", "channels_last=false", "trainer.precision=32-true"]
    eager = run_cli(
        *STEPS, "trainer.accelerator=cuda", *plain, f"output_root={out / 'eager'}", cwd=out.parent
    )
    assert fast.returncode == 0 and eager.returncode == 0, (
        fast.stderr[-3000:] + eager.stderr[-3000:]
    )
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
        sampler = ResumableSampler(
            40, 4, seed=3, position=lambda: position, rank=rank, world_size=world
        )
        return sampler, list(DeviceBatches(images, labels, sampler, torch.device("cpu")))

    sampler, got = batches()
    order = torch.tensor(list(sampler))
    assert len(got) == len(DeviceBatches(images, labels, sampler, torch.device("cpu"))) == 10
    for i, (x, y) in enumerate(got):
        assert torch.equal(y, order[4 * i : 4 * i + 4]) and torch.equal(x, images[y])
    assert sorted(torch.cat([y for _, y in got]).tolist()) == list(range(40))
    assert [y.tolist() for _, y in batches(position=3)[1]] == [y.tolist() for _, y in got[3:]]
    rank0 = torch.cat([y for _, y in batches(0, 2)[1]])
    rank1 = torch.cat([y for _, y in batches(1, 2)[1]])
    assert len(rank0) == len(rank1) == 20 and not set(rank0.tolist()) & set(rank1.tolist())


@needs_cuda
def test_training_on_cuda_keeps_the_data_on_the_gpu():
    from types import SimpleNamespace

    from degradation.data import ImageDataModule

    cfg = config(**{"data.synthetic.train_size": 600, "data.val_size": 100})
    dm = ImageDataModule(data_spec(cfg))
    strategy = SimpleNamespace(root_device=torch.device("cuda", 0))
    dm.trainer = SimpleNamespace(strategy=strategy, world_size=1, global_rank=0, global_step=0)
    loader = dm.train_dataloader()
    assert isinstance(loader, DeviceBatches)
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda and x.dtype == torch.uint8 and len(y) == 128


SAMPLES, PAD, SIZE = 3000, 4, 32
CELLS = (2 * PAD + 1) ** 2


def window_matches(windows: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """B × 81: which of each image's windows (B×C×9×9×H×W) equals its crop (B×C×H×W)."""
    return (windows == crops[:, :, None, None]).all(-1).all(-1).all(1).flatten(1)


def offsets_and_flips(images: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Counts of each crop offset (dy * 9 + dx in the zero-padded image) over the outputs, and
    the fraction flipped: each output is matched against every window of its padded source."""
    padded = torch.nn.functional.pad(images, (PAD,) * 4)
    offsets, flipped = [], []
    for start in range(0, len(images), 250):
        windows = padded[start : start + 250].unfold(2, SIZE, 1).unfold(3, SIZE, 1)
        crops = out[start : start + 250]

        plain, mirrored = window_matches(windows, crops), window_matches(windows, crops.flip(-1))
        assert (plain.any(1) ^ mirrored.any(1)).all(), "an output is not one crop of its source"
        is_flipped = mirrored.any(1)
        offsets.append(torch.where(is_flipped, mirrored.int().argmax(1), plain.int().argmax(1)))
        flipped.append(is_flipped)
    counts = torch.bincount(torch.cat(offsets), minlength=CELLS)
    return counts, torch.cat(flipped).float().mean().item()


def test_batched_and_per_sample_augmentation_draw_the_same_distribution():
    g = torch.Generator().manual_seed(0)
    # pixels 1..255: the zero padding shows, so every crop has one offset
    images = torch.randint(1, 256, (SAMPLES, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
    labels = torch.zeros(SAMPLES, dtype=torch.long)
    torch.manual_seed(1)
    batched = random_crop_flip(images.float(), PAD, flip=True).round().to(torch.uint8)
    framework = PerSampleImages(images, labels, framework_transform((SIZE, SIZE), PAD, True, abs))
    torch.manual_seed(2)
    per_sample = torch.stack([framework[i][0] for i in range(SAMPLES)]).to(torch.uint8)
    # the benchmark's baseline: PIL images, ToTensor (0..1), Normalize(0, 1)
    to_unit = common_recipe_transform(SIZE, PAD, mean=[0.0] * 3, std=[1.0] * 3)
    recipe = PerSampleImages(images, labels, to_unit, pil=True)
    torch.manual_seed(3)
    common = torch.stack([recipe[i][0] for i in range(SAMPLES)]).mul(255).round().to(torch.uint8)

    tables = []
    for name, out in (("batched", batched), ("torchvision", per_sample), ("recipe", common)):
        counts, flip_rate = offsets_and_flips(images, out)
        tables.append(counts)
        assert counts.sum() == SAMPLES
        # uniform over the 9×9 offsets: every cell within 5 sigma of SAMPLES / 81
        expected = SAMPLES / CELLS
        sigma = math.sqrt(expected * (1 - 1 / CELLS))
        assert (counts - expected).abs().max() < 5 * sigma, (name, counts.tolist())
        assert abs(flip_rate - 0.5) < 5 * math.sqrt(0.25 / SAMPLES), (name, flip_rate)
    stats = pytest.importorskip("scipy.stats")
    for counts in tables:
        assert stats.chisquare(counts.numpy()).pvalue > 1e-3
    assert stats.chi2_contingency(torch.stack(tables).numpy()).pvalue > 1e-3


def test_a_resumed_run_uses_its_own_fused_sgd_setting_not_its_checkpoints(tmp_path):
    # the module's rule; a run folder refuses the switch itself where last.ckpt records
    # fused_sgd (tests/test_resume_edges.py), so this decides only for older checkpoints
    import lightning as L
    from lightning.pytorch.callbacks import Callback
    from torch.utils.data import DataLoader, TensorDataset

    from degradation.models import build_model
    from degradation.module import Classifier

    data = TensorDataset(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,)))
    seen = []

    class FusedAtStart(Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["fused"])

    def fit(fused: bool, steps: int, ckpt_path=None) -> L.Trainer:
        module = Classifier(build_model(depth=8), spec_of_settings({}).optim, fused_sgd=fused)
        trainer = L.Trainer(
            accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[FusedAtStart()],
            default_root_dir=tmp_path,
        )  # fmt: skip
        trainer.fit(module, DataLoader(data, batch_size=8), ckpt_path=ckpt_path)
        return trainer

    fit(False, 2).save_checkpoint(tmp_path / "last.ckpt")
    fit(True, 4, ckpt_path=tmp_path / "last.ckpt")
    assert seen == [None, None, True, True]  # torch's default, then fused after the resume
