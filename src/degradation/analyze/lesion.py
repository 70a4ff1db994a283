"""Lesion study (Veit et al. 2016): delete one block at test time, measure the test error.

Every block computes `act(merge(x, branch(x)))`. Deleting a block removes its branch and keeps
its shortcut path:

  - residual (`add`): `act(shortcut(x) + 0)`, i.e. relu(shortcut(x)) for post-activation blocks
    (x itself where the shortcut is the identity, as x is already a ReLU output) and
    shortcut(x) for pre-activation ones; where shapes change the shortcut stays (zero padding
    or projection), so every block can be deleted;
  - `concat`: `act(merge(x, 0))`, the fuse conv seeing the shortcut next to a zero branch;
  - plain (`none`): there is no shortcut, so a deleted block passes its input on, `act(x)`.
    That is possible only where the block keeps the shape (same channels, stride 1); the
    first block of a stage that changes the shape cannot be deleted and is reported as such.

    python -m degradation.analyze lesion RUN_DIR... [--checkpoint last|best] [--limit N]

writes RUN_DIR/analysis/lesion.json ({"baseline": {...}, "num_classes", "chance_error",
"options": {"checkpoint", "limit", "device"}, "blocks": [{"block": "stages.1.0",
"deleted": true, "test_error": ..., "headroom_lost": ..., "note": ...}, ...]}) and lesion.png
for each run.

Nets are compared by each block's effect relative to their own baseline and to chance, not by
the raw rise in error: a net whose intact error is near chance (1 − 1/classes) has no room to
get worse. `headroom_lost` = (error with the block deleted − baseline) / (chance − baseline):
0 = the deletion changes nothing, 1 = the net falls to chance (summaries.headroom_lost; None
when the baseline is at or above chance). Chance assumes balanced test classes. Nets are
compared over the same blocks (summaries.common_blocks): a plain net's shape-changing blocks
cannot be deleted, so the residual twin's are left out of the comparison too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from degradation.analyze.plots import plot_lesion
from degradation.analyze.summaries import chance_error, headroom_lost
from degradation.analyze.trained import TrainedRun, evaluate
from degradation.models import Block, ResNet
from degradation.models.skips import AddSkip, ConcatSkip, NoSkip
from degradation.rundir import write_lesion


def keeps_shape(block: Block) -> bool:
    """Whether the block's output has its input's shape (no stride, same channels)."""
    convs = [m for m in block.branch.modules() if isinstance(m, nn.Conv2d)]
    stride = all(c.stride == (1, 1) for c in convs)
    return stride and convs[0].in_channels == convs[-1].out_channels


def why_not_deletable(block: nn.Module) -> str | None:
    """None if the block can be deleted, else the reason (one sentence)."""
    if not isinstance(block, Block):
        return f"not a residual-net block ({type(block).__name__})"
    if isinstance(block.merge, NoSkip) and not keeps_shape(block):
        return "plain block that changes the shape (stride 2, more channels): no path to keep"
    if not isinstance(block.merge, NoSkip | AddSkip | ConcatSkip):
        return f"unknown merge {type(block.merge).__name__}"
    return None


class DeletedBlock(nn.Module):
    """A block with its branch removed: only the path around it (see the module doc)."""

    def __init__(self, block: Block):
        super().__init__()
        reason = why_not_deletable(block)
        if reason is not None:
            raise ValueError(f"this block cannot be deleted: {reason}")
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        merge = self.block.merge
        if isinstance(merge, NoSkip):
            return self.block.act(x)
        kept = x if merge.shortcut is None else merge.shortcut(x)
        return self.block.act(merge(x, torch.zeros_like(kept)))


def blocks_of(model: ResNet) -> list[tuple[str, int, int]]:
    """(name, stage, index in stage) of every block, in forward order."""
    return [
        (f"stages.{i}.{j}", i, j) for i, stage in enumerate(model.stages) for j in range(len(stage))
    ]


@torch.no_grad()
def lesion_study(
    model: ResNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 512,
    progress: bool = True,
) -> dict[str, Any]:
    """Test loss and error of the whole model and with each block deleted in turn (eval mode);
    the model is left as it was."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        loss, error = evaluate(model, images, labels, batch_size)
        records = []
        for name, i, j in tqdm(blocks_of(model), desc="lesion", unit="block", disable=not progress):
            block = model.stages[i][j]
            record: dict[str, Any] = {"block": name, "stage": i, "index": j}
            reason = why_not_deletable(block)
            if reason is not None:
                record.update(deleted=False, test_loss=None, test_error=None, note=reason)
            else:
                model.stages[i][j] = DeletedBlock(block)
                try:
                    block_loss, block_error = evaluate(model, images, labels, batch_size)
                finally:
                    model.stages[i][j] = block
                record.update(deleted=True, test_loss=block_loss, test_error=block_error, note=None)
            records.append(record)
    finally:
        for module, training in modes.items():
            module.training = training
    return {"baseline": {"test_loss": loss, "test_error": error}, "blocks": records}


def held_out_images(run: TrainedRun, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test images (the first `limit`), normalised as in training, on its device."""
    images, labels = run.data.images.test_images, run.data.images.test_labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return run.data.normalized(images).to(run.device), labels.to(run.device)


def lesion_run(
    run: TrainedRun, limit: int | None = None, batch_size: int = 512, progress: bool = True
) -> dict[str, Any]:
    """Run the lesion study on one run, write lesion.json and lesion.png; returns the record
    (non-finite numbers as None)."""
    images, labels = held_out_images(run, limit)
    classes = run.data.num_classes
    study = lesion_study(run.model, images, labels, batch_size, progress)
    baseline = study["baseline"]["test_error"]
    for block in study["blocks"]:
        block["headroom_lost"] = headroom_lost(block["test_error"], baseline, classes)
    record = {
        "run": run.name,
        "skip": run.model.arch["skip"],
        "depth": run.model.arch["depth"],
        "checkpoint": run.checkpoint.name,
        "step": run.step,
        "num_images": len(labels),
        "num_classes": classes,
        "chance_error": chance_error(classes),
        "options": {"checkpoint": run.checkpoint.stem, "limit": limit, "device": run.device.type},
        **study,
    }
    write_lesion(run.run_dir, record)  # a diverged model's NaN: null
    plot_lesion([record], run.out_dir / "lesion.png")
    return record
