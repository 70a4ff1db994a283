"""Layer responses (He et al. 2015, Fig. 7) of a run that predates their measurement.

Training writes `layer_responses.json` at the end of every run (`models.layer_responses` on the
first 512 images of the fixed validation split). For an older run,

    python -m degradation.analyze responses RUN_DIR... [--checkpoint last|best]

measures the weights of a checkpoint the same way and writes the same file, recording which
checkpoint and step it measured.
"""

from __future__ import annotations

from pathlib import Path

from degradation.analyze.trained import load_run
from degradation.models import layer_responses
from degradation.rundir import CHECKPOINTS, write_layer_responses


def measure_run(run_dir: Path, checkpoint: str = "last", device: str = "cpu") -> Path:
    """Backfill RUN_DIR/layer_responses.json from one of the run's checkpoints."""
    run = load_run(run_dir, checkpoint, device)
    record = layer_responses(run.model, run.data.validation_images())
    source = f"{CHECKPOINTS}/{checkpoint}.ckpt"
    return write_layer_responses(run.run_dir, {**record, "step": run.step, "source": source})
