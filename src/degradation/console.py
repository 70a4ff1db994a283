"""What the program prints, and what it keeps other packages from printing.

    quiet_third_party()    # Lightning's advertising tips and checkpoint-path notes, a torch
                           # deprecation Lightning triggers
    interactive()          # stdout is a terminal (progress bars) or not (one line per window)
    duration(seconds)      # '45s', '3m 05s', '1h 02m'

Each silenced line is matched at its source, by the logger or warning category that emits it
and its own text, so that nothing else from those packages is hidden.
"""

from __future__ import annotations

import logging
import sys
import warnings

# Lightning 2.6 advertises its cloud services (litlogger, litmodels) through rank_zero_info
# when a Trainer is built; both lines start with this.
LIGHTNING_TIP = "💡 Tip:"
# ... and names every checkpoint it loads: at the end of each run (best.ckpt's test) and on a
# resume, which train.py announces itself ("[resume] ... resuming from last.ckpt at step N").
LIGHTNING_CHECKPOINT_NOTES = (
    "Restoring states from the checkpoint path at ",
    "Loaded model weights from the checkpoint at ",
)
# The loggers rank_zero_info writes through (lightning.{fabric,pytorch}.utilities.rank_zero).
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


class _DropLightningTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith((LIGHTNING_TIP, *LIGHTNING_CHECKPOINT_NOTES))


def quiet_third_party() -> None:
    """Silence, narrowly, what a user can do nothing about; idempotent."""
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())
    # torch (2.14, as pinned in requirements/constraints.txt) deprecates `LeafSpec`, which
    # Lightning 2.6's own pytree helper still builds (lightning/pytorch/utilities/_pytree.py).
    warnings.filterwarnings(
        "ignore",
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.pytorch\.utilities\._pytree",
    )


def interactive() -> bool:
    """Whether stdout is a terminal: then progress bars redraw in place; elsewhere (a SLURM
    log, CI, `| tee`) their carriage returns would pile up, and plain lines are printed."""
    return sys.stdout.isatty()


def duration(seconds: float) -> str:
    """A short human duration: '45s', '3m 05s', '1h 02m'."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
