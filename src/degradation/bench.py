"""Throughput benchmark: the common recipe's training loop against the framework's step.

    python -m degradation.bench [--models 20,56,110] [--steps N] [--warmup N] [--batch 128]
        [--image-size 32] [--device auto|cpu|cuda] [--workers N[,N...]] [--pack K] [--fuse K]
        [--no-options] [--json PATH]

In one process, on the same in-memory synthetic CIFAR-shaped uint8 images (nothing
downloads), for each ResNet depth it times

(a) baseline: a plain PyTorch loop with the common CIFAR recipe: torchvision per-sample
    transforms on PIL images (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
    Normalize) in a Dataset served by DataLoader workers, fp32 eager, SGD;
(b) framework: the framework's training step through Lightning: `Classifier` on the run's data
    module and a `lightning.Trainer` with the device's default fast path (`speed.py`; on CUDA
    the GPU-resident data, bf16-mixed, channels_last, CUDA graphs), with a real run's metric
    windows and per-step lr logging (no checkpoints, no validation).

On a CPU it also times the framework's step under each speed option (`CPU_OPTIONS`: fp32
eager, channels_last, bf16 autocast, both, torch.compile), as ratios to fp32 eager in the same
process, with the CPU's bf16 flags and torch.compile's warm-up time (the break-even run length
that pays for it); `--no-options` skips them.

Each loop runs `warmup` steps (compilation, worker start-up, cuDNN autotuning), then times
`steps` steps, synchronising the GPU only at the two ends of the timed window. The ratio is
framework / the fastest baseline. On a GPU it also prints the projected wall time of the
paper's canonical sweep (depth 20/56/110 x plain/residual, 64k steps of 128 images; a plain net
steps as fast as its residual twin, so the residual net is measured). Two ways for several
runs to share one GPU are measured on request, with img/s summed over the runs:
`--pack K` runs K framework loops at once as K processes, released together after their
warm-up (what `jobs_per_gpu` does in a sweep); `--fuse K` steps K members fused into one
model (`models/packed.py`: plain and residual twins alternating, each on its own 128 images
of a K x 128 batch) through the same Lightning step.

Over 300 lines: the two loops, packing, fusing and the table in one file, read top to bottom.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from degradation.callbacks import CompileClock, MetricWindow
from degradation.data import ImageDataModule
from degradation.data.loaders import PerSampleImages, common_recipe_transform
from degradation.distributed import resolve_device
from degradation.errors import CommandLineParser, UserError
from degradation.models import build_model, pack_models
from degradation.module import Classifier
from degradation.preflight import spec_of_settings
from degradation.spec import RunSpec
from degradation.speed import native_bf16_flags, prepare_model

CANONICAL_STEPS, CANONICAL_BATCH = 64000, 128  # He et al. 2015, Sec. 4.2
CANONICAL_DEPTHS = (20, 56, 110)  # x plain/residual: 6 runs
BARRIER_TIMEOUT_S = 900


# The CPU's speed options, each timed through the framework's step (bench --device cpu)
CPU_OPTIONS = {
    "fp32 eager": {"trainer.precision": "32-true", "channels_last": False, "compile": "none"},
    "fp32 + channels_last": {"trainer.precision": "32-true", "channels_last": True,
                             "compile": "none"},
    "bf16 autocast": {"trainer.precision": "bf16-mixed", "channels_last": False,
                      "compile": "none"},
    "bf16 + channels_last": {"trainer.precision": "bf16-mixed", "channels_last": True,
                             "compile": "none"},
    "fp32 + torch.compile": {"trainer.precision": "32-true", "channels_last": False,
                             "compile": "default"},
}  # fmt: skip


def bench_spec(
    depth: int,
    batch: int,
    device: str,
    train_size: int,
    image_size: int = 32,
    options: dict[str, Any] | None = None,
    steps: int = 64000,
) -> RunSpec:
    """A run's spec (schema defaults) for the benchmark's model and synthetic data; `options`:
    more settings by their config keys (CPU_OPTIONS); `steps`: the run's length, as `auto`
    speed settings depend on it (torch.compile on a CPU)."""
    return spec_of_settings(
        {
            "depth": depth,
            "data.synthetic.image_size": image_size,
            "trainer.accelerator": device,
            "data.batch_size": batch,
            "data.val_size": 256,
            "data.synthetic.train_size": train_size + 256,
            "data.synthetic.test_size": 256,
            "trainer.max_steps": steps,
            **(options or {}),
        }
    )


def check_depth(depth: int) -> None:
    try:
        with torch.device("meta"):
            build_model(depth=depth, skip="add", shortcut="zero_pad", num_classes=10, in_channels=3)
    except ValueError as err:
        raise UserError(f"--models {depth}: {err}") from None


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# --- (a) the common recipe ----------------------------------------------------------------


def baseline_img_s(dm, depth: int, batch: int, device: str, workers: int, warmup: int, steps: int):
    """img/s of a plain PyTorch loop over the common recipe's per-sample DataLoader."""
    images = dm.images.train_images[dm.train_idx]
    labels = dm.images.train_labels[dm.train_idx]
    pixels = images.float() / 255
    mean, std = pixels.mean(dim=(0, 2, 3)).tolist(), pixels.std(dim=(0, 2, 3)).tolist()
    transform = common_recipe_transform(images.shape[-1], 4, mean, std)
    loader = DataLoader(
        PerSampleImages(images, labels, transform, pil=True),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device == "cuda",
        persistent_workers=workers > 0,
    )
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = device == "cuda"  # what the common recipe sets
    model = build_model(depth=depth, skip="add", shortcut="zero_pad", num_classes=10, in_channels=3)
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def batches():
        while True:
            yield from loader

    started = None
    for step, (x, y) in enumerate(batches()):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step + 1 == warmup:
            _sync(device)
            started = time.perf_counter()
        if step + 1 == warmup + steps:
            _sync(device)
            return steps * batch / (time.perf_counter() - started)
    raise AssertionError("unreachable: the batches never end")


# --- (b) the framework's step -------------------------------------------------------------


class StepClock(Callback):
    """Times steps warmup+1 .. warmup+steps (each one's data, augmentation and update), with
    the device synchronised at the two ends only; `barrier` (a folder) releases `parties`
    processes together at the start of the window."""

    def __init__(self, warmup: int, steps: int, device: str, barrier=None, parties: int = 1):
        self.warmup, self.steps, self.device = warmup, steps, device
        self.barrier, self.parties = barrier, parties
        self.img_s: float | None = None
        self.warmup_s: float | None = None  # the warm-up steps, compilation included
        self._started = 0.0
        self._first: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self._first is None:
            self._first = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.warmup:
            _sync(self.device)
            self.warmup_s = time.perf_counter() - self._first
            if self.barrier is not None:
                wait_for_parties(Path(self.barrier), self.parties)
            self._started = time.perf_counter()
        elif trainer.global_step == self.warmup + self.steps:
            _sync(self.device)
            images = self.steps * len(batch[1])
            self.img_s = images / (time.perf_counter() - self._started)


def wait_for_parties(folder: Path, parties: int) -> None:
    """A file barrier: mark this process ready, wait until `parties` processes are."""
    (folder / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(list(folder.glob("ready-*"))) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"--pack: only some of {parties} processes got ready")
        time.sleep(0.005)


def framework_img_s(
    spec: RunSpec, dm, warmup: int, steps: int, barrier=None, parties=1, members: int = 1
):
    """img/s of the framework's training step (Classifier + lightning.Trainer), the speed
    settings it ran with and the seconds of its warm-up steps (compilation included); with
    `members` > 1 a fused model (dm's batches hold every member's images) and the img/s
    summed over its members."""
    device = "cuda" if spec.trainer.arguments["accelerator"] == "cuda" else "cpu"
    speed = spec.speed
    nets = []
    for seed in range(members):
        L.seed_everything(seed, verbose=False)
        skip = "add" if members == 1 or seed % 2 else "none"  # fused: plain/residual twins
        nets.append(
            build_model(
                depth=spec.model.depth,
                skip=skip,
                shortcut="zero_pad",
                num_classes=10,
                in_channels=dm.input_shape[0],
            )
        )
    model = nets[0] if members == 1 else pack_models(nets)
    prepare_model(model, speed)
    module = Classifier(model, spec.optim, fused_sgd=speed.fused_sgd)
    clock = StepClock(warmup, steps, device, barrier, parties)
    with tempfile.TemporaryDirectory(prefix="degradation-bench-") as logs:
        trainer = L.Trainer(
            accelerator=device,
            devices=1,
            precision=speed.precision,
            benchmark=speed.benchmark,
            max_steps=warmup + steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=CSVLogger(logs, name="", version=""),
            log_every_n_steps=1,
            callbacks=[clock, MetricWindow(spec.records.log_every), CompileClock(speed)],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,  # the run's sampler shards by rank itself
            default_root_dir=logs,
        )
        trainer.fit(module, datamodule=dm)
    return clock.img_s, speed, clock.warmup_s


def cpu_options(
    spec_with: Callable[[dict[str, Any]], RunSpec], dm, warmup: int, steps: int
) -> dict[str, dict[str, Any]]:
    """Each of CPU_OPTIONS timed through the framework's step: img/s, its ratio to fp32 eager
    (timed in this process), and for torch.compile the warm-up's extra seconds and the run
    length in steps from which compiling pays back. `spec_with(options)`: the benchmark's spec
    with an option's settings."""
    results: dict[str, dict[str, Any]] = {}
    for label, overrides in CPU_OPTIONS.items():
        img_s, _, warmup_s = framework_img_s(spec_with(overrides), dm, warmup, steps)
        results[label] = {"img_s": img_s, "warmup_s": warmup_s, **overrides}
    eager = results["fp32 eager"]
    for r in results.values():
        r["vs_fp32_eager"] = r["img_s"] / eager["img_s"]
    compiled = results["fp32 + torch.compile"]
    batch = spec_with({}).data.batch_size
    saved_per_step = batch / eager["img_s"] - batch / compiled["img_s"]
    extra_s = compiled["warmup_s"] - eager["warmup_s"]
    compiled["compile_extra_s"] = extra_s
    compiled["break_even_steps"] = extra_s / saved_per_step if saved_per_step > 0 else None
    return results


def packed_img_s(args, depth: int, device: str) -> list[float]:
    """img/s of each of `args.pack` framework loops run at once, as processes."""
    with tempfile.TemporaryDirectory(prefix="degradation-pack-") as folder:
        outs = [Path(folder) / f"run{i}.json" for i in range(args.pack)]
        command = [
            sys.executable,
            "-m",
            "degradation.bench",
            "--framework-only",
            "--device",
            device,
            "--models",
            str(depth),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--batch",
            str(args.batch),
            "--train-size",
            str(args.train_size),
            "--barrier",
            folder,
            "--parties",
            str(args.pack),
        ]
        procs = [subprocess.Popen([*command, "--json", str(out)]) for out in outs]
        codes = [p.wait() for p in procs]
        if any(codes):
            raise RuntimeError(f"--pack {args.pack}: a packed process failed (exit codes {codes})")
        return [json.loads(out.read_text())[0]["framework_img_s"] for out in outs]


def fused_img_s(args, depth: int, device: str) -> float:
    """img/s summed over `args.fuse` members stepped together as one fused model."""
    spec = bench_spec(
        depth, args.batch * args.fuse, device, args.train_size * args.fuse,
        steps=args.warmup + args.steps,
    )  # fmt: skip
    dm = ImageDataModule(spec.data, seed=0)
    return framework_img_s(spec, dm, args.warmup, args.steps, members=args.fuse)[0]


# --- the report ---------------------------------------------------------------------------


def run_minutes(img_s: float | None) -> float | None:
    """Minutes of one canonical run (64k steps x 128 images) at img_s."""
    return CANONICAL_STEPS * CANONICAL_BATCH / img_s / 60 if img_s else None


def sweep_minutes(img_s_by_depth: dict[int, float | None]) -> float | None:
    """Minutes of the canonical sweep, 2 runs (plain, residual) per canonical depth, one after
    another; None unless every canonical depth was measured."""
    minutes = [run_minutes(img_s_by_depth.get(d)) for d in CANONICAL_DEPTHS]
    return 2 * sum(minutes) if all(minutes) else None


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torchvision

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
        "command": " ".join(["python -m degradation.bench", *sys.argv[1:]]),
    }


def _fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def print_table(records: list[dict[str, Any]], device: str) -> None:
    print(f"\n{'model':<12}{'baseline img/s':>16}{'framework img/s':>17}{'b/a':>7}", end="")
    packed = any(r["pack"] > 1 for r in records)
    fused = any(r["fuse"] > 1 for r in records)
    print(f"{'packed sum img/s':>18}" if packed else "", end="")
    print(f"{'fused sum img/s':>17}" if fused else "")
    for r in records:
        line = f"{r['model']:<12}{_fmt(r['baseline_img_s']):>16}{_fmt(r['framework_img_s']):>17}"
        line += f"{_fmt(r['ratio'], 2):>7}"
        line += f"{_fmt(r['packed_img_s']):>18}" if packed else ""
        print(line + (f"{_fmt(r['fused_img_s']):>17}" if fused else ""))
    if device == "cuda":
        for label, key in (
            ("baseline", "baseline_img_s"),
            ("framework", "framework_img_s"),
            ("framework packed (every slot kept busy)", "packed_img_s"),
            ("framework fused (every slot kept busy)", "fused_img_s"),
        ):
            minutes = sweep_minutes({r["depth"]: r[key] for r in records})
            if minutes is not None:
                print(f"canonical sweep (6 runs x 64k steps x 128), {label}: {minutes:.1f} min")


def print_options(records: list[dict[str, Any]]) -> None:
    """The CPU options table: img/s and the ratio to fp32 eager, one column per model."""
    measured = [r for r in records if r.get("options")]
    if not measured:
        return
    flags = measured[0]["cpu_bf16_flags"]
    print(f"\nCPU speed options (framework step; native bf16: {', '.join(flags) or 'none'}; "
          f"torch CPU capability {measured[0]['cpu_capability']})")  # fmt: skip
    print(f"{'option':<24}" + "".join(f"{r['model'] + ' img/s':>18}{'vs fp32':>9}"
                                      for r in measured))  # fmt: skip
    for label in CPU_OPTIONS:
        line = f"{label:<24}"
        for r in measured:
            o = r["options"][label]
            line += f"{_fmt(o['img_s'], 1):>18}{_fmt(o['vs_fp32_eager'], 2):>9}"
        print(line)
    for r in measured:
        c = r["options"]["fp32 + torch.compile"]
        even = c["break_even_steps"]
        pays = f"pays back after {even:,.0f} steps" if even else "never pays back"
        print(f"{r['model']}: torch.compile's warm-up takes {c['compile_extra_s']:.0f} s more "
              f"than eager's; {pays}")  # fmt: skip
    line = f"{'common recipe':<24}"
    for r in measured:
        base = r["baseline_img_s"]
        ratio = base / r["options"]["fp32 eager"]["img_s"] if base else None
        line += f"{_fmt(base, 1):>18}{_fmt(ratio, 2):>9}"
    print(line + "   (per-sample torchvision transforms, fp32 eager)")


EXAMPLES = """examples:
  python -m degradation.bench --models 20 --steps 20 --workers 0   # a quick look on the CPU
  python -m degradation.bench --json outputs/bench.json            # the full table, saved
  python -m degradation.bench --device cuda --models 56 --pack 4   # 4 runs sharing one GPU
  python -m degradation.bench --device cpu --models 20,56 --steps 10 --warmup 3
      # the CPU's speed options (bf16, channels_last, torch.compile) against fp32 eager
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CommandLineParser(
        prog="python -m degradation.bench",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", default="20,56,110", help="ResNet depths, comma-separated")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before them")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32, help="synthetic images' side")
    parser.add_argument("--no-options", action="store_true",
                        help="on a CPU, skip timing each speed option")  # fmt: skip
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--workers",
        default=str(min(8, os.cpu_count() or 1)),
        help="baseline DataLoader workers; a list (0,2) times each",
    )
    parser.add_argument("--pack", type=int, default=1, help="framework loops sharing the device")
    parser.add_argument("--fuse", type=int, default=1, help="members fused into one model")
    parser.add_argument("--train-size", type=int, default=10000, help="synthetic images")
    parser.add_argument("--json", type=Path, help="write the records here")
    parser.add_argument("--framework-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", help=argparse.SUPPRESS)  # --pack's start barrier
    parser.add_argument("--parties", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _ints(text: str, option: str, minimum: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < minimum:
        raise UserError(f"{option} {text}: expected comma-separated integers >= {minimum}")
    return values


def benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    depths = _ints(args.models, "--models", 1)
    workers = _ints(args.workers, "--workers", 0)
    for option, minimum in (("steps", 1), ("warmup", 1), ("batch", 1), ("pack", 1), ("fuse", 1),
                            ("image_size", 8)):  # fmt: skip
        if getattr(args, option) < minimum:
            flag = option.replace("_", "-")
            raise UserError(f"--{flag} {getattr(args, option)}: must be >= {minimum}")
    if args.train_size < args.batch:
        raise UserError(f"--train-size {args.train_size}: smaller than --batch {args.batch}")
    for depth in depths:
        check_depth(depth)
    device = resolve_device(args.device).type
    meta = machine()
    records = []
    for depth in depths:
        shape = (depth, args.batch, device, args.train_size, args.image_size)
        steps = args.warmup + args.steps
        spec = bench_spec(*shape, steps=steps)
        dm = ImageDataModule(spec.data, seed=0)
        baselines = {}
        if not args.framework_only:
            for n in workers:
                baselines[n] = baseline_img_s(
                    dm, depth, args.batch, device, n, args.warmup, args.steps
                )
        framework, speed, _ = framework_img_s(
            spec, dm, args.warmup, args.steps, args.barrier, args.parties
        )
        packed = packed_img_s(args, depth, device) if args.pack > 1 else None
        fused = fused_img_s(args, depth, device) if args.fuse > 1 else None
        best = max(baselines.values()) if baselines else None
        options = None
        if device == "cpu" and not args.no_options and not args.framework_only:
            options = cpu_options(
                lambda o, shape=shape: bench_spec(
                    *shape, options=o, steps=args.warmup + args.steps
                ),
                dm,
                args.warmup,
                args.steps,
            )
        records.append(
            {
                "model": f"resnet-{depth}",
                "depth": depth,
                "device": device,
                "batch": args.batch,
                "image_size": args.image_size,
                "steps": args.steps,
                "warmup": args.warmup,
                "baseline_img_s": best,
                "baseline_workers": max(baselines, key=baselines.get) if baselines else None,
                "baseline_img_s_by_workers": {str(n): v for n, v in baselines.items()},
                "framework_img_s": framework,
                "ratio": framework / best if best else None,
                "precision": speed.precision,
                "compile": speed.compile,
                "channels_last": speed.channels_last,
                "speed_reason": speed.reason,
                "options": options,
                "cpu_bf16_flags": native_bf16_flags(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "data_path": "gpu-resident" if device == "cuda" else "in-memory tensors",
                "pack": args.pack,
                "packed_img_s": sum(packed) if packed else None,
                "packed_img_s_each": packed,
                "fuse": args.fuse,
                "fused_img_s": fused,
                "run_64k_min": run_minutes(framework),
                "baseline_run_64k_min": run_minutes(best),
                **meta,
            }
        )
        shown = ", ".join(f"{v:.1f} img/s ({n} workers)" for n, v in baselines.items())
        print(f"[bench] resnet-{depth}: baseline {shown or 'not run'}, "
              f"framework {framework:.1f} img/s")  # fmt: skip
    return records


def main(argv: list[str] | None = None) -> int:
    """0 when the benchmark ran; 2 for a mistake (an option, a --json location that cannot be
    written), one line `error: ...` on stderr before anything runs."""
    from degradation.console import quiet_third_party
    from degradation.preflight import check_writable_file

    quiet_third_party()  # Lightning's tips, a torch deprecation inside Lightning (console.py)
    try:
        args = parse_args(argv)
        if args.json is not None:
            check_writable_file(args.json, f"--json {args.json}")
        records = benchmark(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.framework_only:
        meta = records[0]
        print(
            f"\n{meta['device']}: {meta['gpu'] or meta['cpu']} ({meta['cpus']} CPUs), "
            f"torch {meta['torch']}, lightning {meta['lightning']}, batch {args.batch}, "
            f"{args.image_size}x{args.image_size} images, "
            f"{args.steps} timed steps after {args.warmup}"
        )
        print_table(records, records[0]["device"])
        print_options(records)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
