"""Why a post-activation ResNet-56 (option A) diverges at lr 0.1 on the demo data, and why
zero_init_residual=True fixes it.

Part 1 (init.json): at initialisation, in train mode (BN batch statistics, as in the first
step), one batch of 256 augmented, normalised training images. For each depth (20, 56, 110)
and net (plain; residual; residual with zero_init_residual) over 3 init seeds: the pooled
features f (the input of the final Linear, captured by a forward hook on `model.head.fc`):
||mean_batch f||^2 (the part shared by all images), the trace of f's covariance over the batch
(the per-image part), their ratio, and the initial cross-entropy. Repeated on Fashion-MNIST
(1x28x28) when /usr/share/datasets/fashion-mnist exists.

Part 2 (curves.json, curves.png): a plain PyTorch loop with the demo recipe (SGD lr 0.1 from
step 0, momentum, weight decay and nesterov from cfg.optim, batch 64, pad/crop/flip as in
training, the project's batch order and per-step augmentation seeds) for ResNet-56 with
zero_init_residual False and True, seeds 10-12. Every step: training loss, logit std,
||mean f||^2 and the fraction of last-stage output units (channel x position) that are 0 for
every image of the batch ("dead"). Over the last 20 steps a run "ends dead" when its mean loss
is within 0.01 of ln 10 and its dead fraction is 1.0 at every step, "ends stuck" when the loss
test holds and at least 95% of the units are dead on average (`verdict`).

Run from the repository root (about 3-5 minutes on 2 CPU cores):

    OMP_NUM_THREADS=1 python experiments/demo/instability/study.py
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module

from degradation.choices import value
from degradation.data import ImageDataModule
from degradation.data.augment import augment_and_normalize
from degradation.data.sampler import AUGMENT_STREAM, ResumableSampler, derive_seed
from degradation.models import build_model
from degradation.run import register

OUT = Path(__file__).parent
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

INIT_DEPTHS = (20, 56, 110)
INIT_SEEDS = (0, 1, 2)
INIT_BATCH = 256
INIT_DATA_SEED = 1234  # which images and augmentation the init batch gets
# (label, skip, zero_init_residual)
NETS = (("plain", "none", False), ("residual", "add", False), ("residual+zi", "add", True))

CURVE_DEPTH = 56
CURVE_SEEDS = (10, 11, 12)
CURVE_STEPS = 80
DEAD_WINDOW = 20  # last steps checked for the "dead" verdict
# the demo's images when this study was run (it now uses 16x16, pad 2): what was measured
MEASURED_ON = ("data.synthetic.image_size=24", "data.pad=3")
LN10 = math.log(10)


def demo_config(*extra: str):
    """The demo experiment's composed config (the sweep settings under `hydra:` are not
    composed without return_hydra_config, so MULTIRUN does not get in the way)."""
    register()  # the `schema` node and resolvers, as `python -m degradation.run` has them
    with initialize_config_module(config_module="degradation.conf", version_base="1.3"):
        return compose("config", overrides=["experiment=demo", *MEASURED_ON, *extra])


def training_batch(dm: ImageDataModule, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images idx of the dataset's training split, augmented and normalised as in training
    (draws from the global RNG)."""
    cfg = dm.cfg
    images = dm.images.train_images[idx].float()
    x = augment_and_normalize(images, dm.normalize, cfg.pad, cfg.flip, value(cfg.pad_value))
    return x, dm.images.train_labels[idx]


class Probe:
    """Forward hooks: the pooled features (input of head.fc) and the last stage's output."""

    def __init__(self, model: torch.nn.Module):
        self.features = self.last_stage = None
        model.head.fc.register_forward_hook(self._fc)
        model.stages[-1].register_forward_hook(self._stage)

    def _fc(self, module, inputs, output):
        self.features = inputs[0].detach()

    def _stage(self, module, inputs, output):
        self.last_stage = output.detach()

    def stats(self) -> dict[str, float]:
        f = self.features
        mean_sq = f.mean(0).pow(2).sum().item()
        var_sum = f.var(0, unbiased=False).sum().item()
        dead = (self.last_stage == 0).all(dim=0).float().mean().item()
        return {"mean_sq": mean_sq, "var_sum": var_sum, "dead": dead}


def build(depth: int, skip: str, zero_init: bool, in_channels: int, seed: int):
    torch.manual_seed(seed)
    return build_model(
        depth,
        skip,
        "zero_pad",
        num_classes=10,
        in_channels=in_channels,
        zero_init_residual=zero_init,
    )


def init_table(dm: ImageDataModule) -> list[dict]:
    """Part 1: pooled-feature statistics and loss at init, mean over INIT_SEEDS."""
    torch.manual_seed(INIT_DATA_SEED)
    idx = dm.train_idx[torch.randperm(len(dm.train_idx))[:INIT_BATCH]]
    x, y = training_batch(dm, idx)
    rows = []
    for depth in INIT_DEPTHS:
        for label, skip, zero_init in NETS:
            per_seed = []
            for seed in INIT_SEEDS:
                model = build(depth, skip, zero_init, x.shape[1], seed).train()
                probe = Probe(model)
                with torch.no_grad():
                    loss = F.cross_entropy(model(x), y).item()
                s = probe.stats()
                per_seed.append({**s, "ratio": s["mean_sq"] / s["var_sum"], "loss": loss})
            keys = ("mean_sq", "var_sum", "ratio", "loss")
            mean = {k: sum(r[k] for r in per_seed) / len(per_seed) for k in keys}
            rows.append({"depth": depth, "net": label, **mean, "per_seed": per_seed})
    return rows


def train_curve(dm: ImageDataModule, optim, zero_init: bool, seed: int) -> dict:
    """Part 2: one run of CURVE_STEPS steps, statistics of every step's batch."""
    model = build(CURVE_DEPTH, "add", zero_init, dm.input_shape[0], seed).train()
    probe = Probe(model)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=optim.lr,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
        nesterov=optim.nesterov,
    )
    batch = dm.cfg.batch_size
    sampler = ResumableSampler(len(dm.train_idx), batch, seed, position=lambda: 0)
    per_epoch = sampler.batches_per_epoch
    rec = {k: [] for k in ("loss", "logit_std", "mean_sq", "dead")}
    for step in range(CURVE_STEPS):
        epoch, b = divmod(step, per_epoch)
        order = sampler.epoch_order(epoch)[b * batch : (b + 1) * batch]
        torch.manual_seed(derive_seed(AUGMENT_STREAM, seed, step, 0))  # as on_before_batch_..
        x, y = training_batch(dm, dm.train_idx[order])
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        s = probe.stats()
        rec["loss"].append(loss.item())
        rec["logit_std"].append(logits.detach().std().item())
        rec["mean_sq"].append(s["mean_sq"])
        rec["dead"].append(s["dead"])
    return {"zero_init_residual": zero_init, "seed": seed, **verdict(rec), **rec}


def verdict(rec: dict[str, list[float]]) -> dict:
    """Summary of a run's last DEAD_WINDOW steps. ends_dead (the strict test): mean loss within
    0.01 of ln 10 and every last-stage unit dead at every one of those steps. ends_stuck: the
    same loss test with at least 95% of the units dead on average (a batch's loss moves around
    ln 10 by a few 0.01 even for a constant prediction: its label mix changes)."""
    loss, dead = rec["loss"][-DEAD_WINDOW:], rec["dead"][-DEAD_WINDOW:]
    final_loss = sum(loss) / len(loss)
    at_chance = abs(final_loss - LN10) < 0.01
    return {
        "max_loss": max(rec["loss"]),
        "argmax_loss": rec["loss"].index(max(rec["loss"])),
        "final_loss": final_loss,
        "final_dead": sum(dead) / len(dead),
        "ends_dead": at_chance and min(dead) == 1.0,
        "ends_stuck": at_chance and sum(dead) / len(dead) >= 0.95,
    }


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("loss", "training loss (batch)", "linear"),
        ("mean_sq", "||mean_batch f||^2 (floored at 1e-6)", "log"),
        ("dead", "dead fraction of last-stage units", "linear"),
        ("logit_std", "logit std", "log"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, (key, title, scale) in zip(axes.flat, panels, strict=True):
        for run in runs:
            color = "tab:blue" if run["zero_init_residual"] else "tab:red"
            values = run[key]
            if scale == "log":
                values = [max(v, 1e-6) for v in values]
            ax.plot(values, color=color, alpha=0.8, lw=1.2)
        if key == "loss":
            ax.axhline(LN10, color="gray", ls=":", lw=1)
        ax.set_yscale(scale)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("step")
    handles = [
        plt.Line2D([], [], color="tab:red", label="zero_init_residual=False"),
        plt.Line2D([], [], color="tab:blue", label="zero_init_residual=True"),
    ]
    axes[0, 0].legend(handles=handles, loc="upper right", fontsize=9)
    fig.suptitle(
        f"ResNet-{CURVE_DEPTH} (post-act, option A), demo data, lr 0.1, seeds "
        f"{', '.join(map(str, CURVE_SEEDS))}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def print_init(name: str, rows: list[dict]) -> None:
    print(f"\n{name}: pooled features at init (mean of {len(INIT_SEEDS)} seeds)")
    print(f"{'depth':>5} {'net':<12} {'|mean f|^2':>11} {'tr cov f':>9} {'ratio':>7} {'loss':>6}")
    for r in rows:
        print(
            f"{r['depth']:>5} {r['net']:<12} {r['mean_sq']:>11.1f} {r['var_sum']:>9.2f} "
            f"{r['ratio']:>7.1f} {r['loss']:>6.2f}"
        )


def main() -> None:
    torch.set_num_threads(1)
    start = time.time()
    cfg = demo_config()
    dm = ImageDataModule(cfg.data, seed=0)
    dm.setup("fit")

    init = {"synthetic (demo)": init_table(dm)}
    if FASHION_DIR.is_dir():
        fcfg = demo_config("data=fashion_mnist", f"data.root={FASHION_DIR}")
        fdm = ImageDataModule(fcfg.data, seed=0)
        fdm.setup("fit")
        init["fashion_mnist"] = init_table(fdm)
    else:
        print(f"{FASHION_DIR} not found: Fashion-MNIST skipped")
    init_s = time.time() - start
    (OUT / "init.json").write_text(
        json.dumps(
            {
                "batch": INIT_BATCH,
                "seeds": INIT_SEEDS,
                "mode": "train (BN batch statistics)",
                "datasets": init,
            },
            indent=1,
        )
    )
    for name, rows in init.items():
        print_init(name, rows)
    print(f"(init part: {init_s:.0f} s)")

    runs = []
    for zero_init in (False, True):
        for seed in CURVE_SEEDS:
            t = time.time()
            run = train_curve(dm, cfg.optim, zero_init, seed)
            run["seconds"] = round(time.time() - t, 1)
            runs.append(run)
            print(
                f"zero_init={zero_init!s:<5} seed {seed}: loss max {run['max_loss']:.2f} at step "
                f"{run['argmax_loss']}; last {DEAD_WINDOW} steps: loss {run['final_loss']:.3f}, "
                f"dead {run['final_dead']:.3f}; dead {run['ends_dead']}, stuck {run['ends_stuck']} "
                f"({run['seconds']} s)"
            )
    counts = {
        key: {
            f"zero_init_residual={zi}": sum(r[key] for r in runs if r["zero_init_residual"] == zi)
            for zi in (False, True)
        }
        for key in ("ends_dead", "ends_stuck")
    }
    print(f"runs (of {len(CURVE_SEEDS)} each): {counts}")
    optim = {k: getattr(cfg.optim, k) for k in ("lr", "momentum", "weight_decay", "nesterov")}
    meta = {
        "depth": CURVE_DEPTH,
        "steps": CURVE_STEPS,
        "batch": cfg.data.batch_size,
        "optim": optim,
        "dead_window": DEAD_WINDOW,
        "counts": counts,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "seconds_total": round(time.time() - start, 1),
    }
    (OUT / "curves.json").write_text(json.dumps({**meta, "runs": runs}, indent=1))
    plot(runs, OUT / "curves.png")
    print(f"total {time.time() - start:.0f} s; wrote init.json, curves.json, curves.png")


if __name__ == "__main__":
    main()
