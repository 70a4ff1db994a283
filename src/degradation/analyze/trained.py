"""A finished run, loaded back for analysis: its config, data and trained model.

    load_run(run_dir, checkpoint="last", device="auto") -> TrainedRun
    (public as `degradation.load_run`; a run's numbers on a split: degradation.evaluate)

The model is rebuilt from `.hydra/config.yaml` (spec.read_spec) with build_model and
loaded from `checkpoints/{last,best}.ckpt` (rundir reads both); the data module is the run's
own, so images are normalised exactly as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from degradation.data import ImageDataModule
from degradation.distributed import resolve_device
from degradation.errors import UserError, first_line
from degradation.models import ResNet, build_model
from degradation.rundir import (
    CHECKPOINTS,
    CONFIG,
    analysis_dir,
    model_weights,
    read_checkpoint,
)
from degradation.spec import RunSpec, read_spec

CHECKPOINT_CHOICES = ("last", "best")


@dataclass
class TrainedRun:
    run_dir: Path
    spec: RunSpec  # the run's config, parsed (spec.py)
    model: ResNet  # on `device`, in eval mode
    data: ImageDataModule
    checkpoint: Path
    step: int | None  # the checkpoint's global step
    device: torch.device

    @property
    def name(self) -> str:
        """'plain-56 s0': the variant and its seed."""
        return self.spec.label

    @property
    def out_dir(self) -> Path:
        return analysis_dir(self.run_dir)


def load_run(run_dir: Path, checkpoint: str = "last", device: str = "auto") -> TrainedRun:
    """The run's config, data and model with the checkpoint's weights, in eval mode."""
    run_dir = Path(run_dir)
    if checkpoint not in CHECKPOINT_CHOICES:
        raise UserError(f"--checkpoint {checkpoint!r} is not valid; choose one of: last, best")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such folder; give a run folder (it holds {CONFIG})")
    if not (run_dir / CONFIG).is_file():
        raise UserError(f"{run_dir}: no {CONFIG}; is it a run folder?")
    ckpt_path = run_dir / CHECKPOINTS / f"{checkpoint}.ckpt"
    if not ckpt_path.is_file():
        raise UserError(
            f"{run_dir}: no {CHECKPOINTS}/{checkpoint}.ckpt (has the run trained? "
            f"choose --checkpoint one of: {', '.join(CHECKPOINT_CHOICES)})"
        )
    where = resolve_device(device)
    spec = read_spec(run_dir)
    dm = ImageDataModule(spec.data)
    model = build_model(**spec.model.build_kwargs(dm.num_classes, dm.input_shape[0]))
    state = read_checkpoint(ckpt_path)
    try:
        model.load_state_dict(model_weights(state))
    except Exception as err:  # another model's weights
        first = first_line(err)
        raise UserError(f"{ckpt_path} cannot be loaded into {spec.model.name}: {first}") from None
    model.to(where).eval()
    return TrainedRun(run_dir, spec, model, dm, ckpt_path, state.get("global_step"), where)


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
