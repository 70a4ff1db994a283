"""`python -m degradation.evaluate RUN_DIR [--split test|val|train] [--checkpoint best|last]`:
a trained run's checkpoint, evaluated on one of its data splits.

Prints one line and records it in RUN_DIR/evaluation/<checkpoint>-<split>.json (replaced in
one rename): the mean cross-entropy and the error (a fraction) over the whole split, the model
in eval mode (BatchNorm's running statistics), the images normalised as in training and not
augmented. `train` is the training split less the validation images (as trained on), `val`
the fixed validation split, `test` the test set: so `--checkpoint last --split test` gives
summary.json's final.test_error again, `--checkpoint best` its best_val.test_error.

Exit code: 0 done; 2 a mistake (no such folder, not a run folder, no such checkpoint, a split
or option that does not exist, a folder that cannot be written), one line `error: ...` on
stderr, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from degradation.errors import CommandLineParser, UserError

SPLITS = ("test", "val", "train")
CHUNK = 8192  # images normalised at a time: a whole training split as float32 can be GBs

EXAMPLES = """examples:
  python -m degradation.evaluate outputs/runs/default/default                  # best.ckpt, test
  python -m degradation.evaluate outputs/sweeps/demo/depth=56,skip=none --split train
  python -m degradation.evaluate RUN_DIR --checkpoint last --split val --device cpu
"""


def _parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(
        prog="python -m degradation.evaluate",
        description="Evaluate a trained run's checkpoint on a data split: prints the loss and "
        "error and records them in RUN_DIR/evaluation/<checkpoint>-<split>.json.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")
    parser.add_argument("--split", default="test", choices=SPLITS,
                        help="test (default), val (validation) or train")  # fmt: skip
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"),
                        help="checkpoints/best.ckpt (lowest validation error, the default) "
                        "or last.ckpt (the final weights)")  # fmt: skip
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: the GPU when there is one")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=512, help="images per forward pass")
    return parser


def split_images(data, split: str):
    """(uint8 images, labels) of one of a run's splits (data: its ImageDataModule)."""
    images = data.images
    if split == "test":
        return images.test_images, images.test_labels
    idx = data.val_idx if split == "val" else data.train_idx
    return images.train_images[idx], images.train_labels[idx]


def evaluate_run(run, split: str, batch_size: int = 512) -> dict[str, Any]:
    """{"loss", "error", "images"} of a loaded run (analyze.trained.load_run) on a split."""
    from degradation.analyze.trained import evaluate

    images, labels = split_images(run.data, split)
    if len(labels) == 0:
        raise UserError(
            f"{run.run_dir}: its {split} split is empty (data.val_size=0?); choose another "
            f"--split: {', '.join(s for s in SPLITS if s != split)}"
        )
    loss_sum, wrong = 0.0, 0
    for start in range(0, len(labels), CHUNK):
        x = run.data.normalized(images[start : start + CHUNK]).to(run.device)
        y = labels[start : start + CHUNK].to(run.device)
        loss, error = evaluate(run.model, x, y, batch_size)
        loss_sum, wrong = loss_sum + loss * len(y), wrong + round(error * len(y))
    n = len(labels)
    return {"loss": loss_sum / n, "error": wrong / n, "images": n}


def main(argv: list[str] | None = None) -> None:
    try:
        args = _parser().parse_args(argv)
        if args.batch_size < 1:
            raise UserError(f"--batch-size {args.batch_size} is not valid: it must be >= 1")
        from degradation.analyze.trained import load_run
        from degradation.preflight import check_writable_folder
        from degradation.rundir import CHECKPOINTS, EVALUATION, write_evaluation

        run_dir = args.run_dir
        run = load_run(run_dir, args.checkpoint, args.device)
        check_writable_folder(run_dir / EVALUATION, f"run folder {run_dir}")
        result = evaluate_run(run, args.split, args.batch_size)
        record = {
            "run": run.name,
            "checkpoint": f"{CHECKPOINTS}/{args.checkpoint}.ckpt",
            "step": run.step,
            "split": args.split,
            **result,
            "device": str(run.device),
        }
        path = write_evaluation(run_dir, args.checkpoint, args.split, record)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{run.name}: {args.checkpoint}.ckpt (step {run.step}) on {args.split} "
        f"({result['images']} images): loss {result['loss']:.4f}, error {result['error']:.4f}"
        f" -> {path}"
    )


if __name__ == "__main__":
    main()
