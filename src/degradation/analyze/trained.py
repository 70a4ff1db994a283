"""A finished run, loaded back for analysis: its config, data and trained model.

    find_run_dirs(paths) -> [run folders]       a run folder, or any folder searched below
    load_run(run_dir, checkpoint="last", device="auto") -> TrainedRun

The model is rebuilt from `.hydra/config.yaml` with `build_model(**model_kwargs(...))` and
loaded from `checkpoints/{last,best}.ckpt` (the Lightning state_dict less its `model.` prefix);
the data module is the run's own, so images are normalised exactly as in training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from degradation.config import RunConfig, model_kwargs, variant_name
from degradation.data import ImageDataModule
from degradation.errors import UserError, first_line
from degradation.models import ResNet, build_model
from degradation.rundir import CHECKPOINTS, SUMMARY

CHECKPOINT_CHOICES = ("last", "best")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
ANALYSIS = "analysis"  # RUN_DIR/analysis/ holds what the analyses write
CONFIG = Path(".hydra") / "config.yaml"


@dataclass
class TrainedRun:
    run_dir: Path
    cfg: DictConfig
    model: ResNet  # on `device`, in eval mode
    data: ImageDataModule
    checkpoint: Path
    step: int | None  # the checkpoint's global step
    device: torch.device

    @property
    def name(self) -> str:
        """'plain-56 s0': the variant and its seed."""
        return f"{variant_name(self.cfg)} s{self.cfg.seed}"

    @property
    def out_dir(self) -> Path:
        return self.run_dir / ANALYSIS


def resolve_device(device: str) -> torch.device:
    if device not in DEVICE_CHOICES:
        raise UserError(f"--device {device!r} is not valid; choose one of: auto, cpu, cuda")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; choose auto or cpu")
    return torch.device(device)


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run folders (holding .hydra/config.yaml): each path itself, or every one below it."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"{path} does not exist; give a run folder or a sweep folder")
        if (path / CONFIG).is_file():
            found.append(path)
            continue
        below = sorted(p.parent.parent for p in path.rglob(str(CONFIG)))
        if not below:
            raise UserError(f"{path} holds no run folder (a folder with {CONFIG})")
        found += below
    return list(dict.fromkeys(found))  # in order, each once


def read_config(run_dir: Path) -> DictConfig:
    try:
        saved = OmegaConf.load(run_dir / CONFIG)
        return OmegaConf.merge(OmegaConf.structured(RunConfig), saved)
    except (OmegaConfBaseException, OSError, ValueError) as err:
        first = first_line(err)
        raise UserError(f"{run_dir / CONFIG} cannot be read: {first}") from None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else None


def load_run(run_dir: Path, checkpoint: str = "last", device: str = "auto") -> TrainedRun:
    """The run's config, data and model with the checkpoint's weights, in eval mode."""
    run_dir = Path(run_dir)
    if checkpoint not in CHECKPOINT_CHOICES:
        raise UserError(f"--checkpoint {checkpoint!r} is not valid; choose one of: last, best")
    if not (run_dir / CONFIG).is_file():
        raise UserError(f"{run_dir}: no {CONFIG}; is it a run folder?")
    ckpt_path = run_dir / CHECKPOINTS / f"{checkpoint}.ckpt"
    if not ckpt_path.is_file():
        raise UserError(
            f"{run_dir}: no {CHECKPOINTS}/{checkpoint}.ckpt (has the run trained? "
            f"choose --checkpoint one of: {', '.join(CHECKPOINT_CHOICES)})"
        )
    cfg = read_config(run_dir)
    dm = ImageDataModule(cfg.data)
    model = build_model(**model_kwargs(cfg, dm.num_classes, dm.input_shape[0]))
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
        model.load_state_dict(weights)
    except Exception as err:  # truncated file, another model's weights
        first = first_line(err)
        raise UserError(f"{ckpt_path} cannot be loaded into {variant_name(cfg)}: {first}") from None
    where = resolve_device(device)
    model.to(where).eval()
    return TrainedRun(run_dir, cfg, model, dm, ckpt_path, state.get("global_step"), where)


def normalized(dm: ImageDataModule, images: torch.Tensor) -> torch.Tensor:
    """uint8 images as the model saw them in training, without augmentation."""
    return dm.normalize(images.float())


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512
) -> tuple[float, float]:
    """(mean cross-entropy, error fraction) of the model as it is, over already-normalised
    images on the model's device; sums in float64 so chunking does not change the result."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    wrong = torch.zeros((), dtype=torch.int64, device=images.device)
    for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
        logits = model(x)
        loss_sum += torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum").double()
        wrong += (logits.argmax(dim=1) != y).sum()
    n = len(labels)
    return loss_sum.item() / n, wrong.item() / n
