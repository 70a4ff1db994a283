"""What the program prints, and what it keeps other packages from printing.

    quiet_third_party()    # Lightning's advertising tips and checkpoint-path notes, a torch
                           # deprecation Lightning triggers
    interactive()          # stdout is a terminal (progress bars) or not (one line per window)
    duration(seconds)      # '45s', '3m 05s', '1h 02m'
    copy_console_to(file)  # every line printed meanwhile also goes to a file (run.log)

Each silenced line is matched at its source, by the logger or warning category that emits it
and its own text, so that nothing else from those packages is hidden.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

# Lightning 2.6 advertises its cloud services (litlogger, litmodels) through rank_zero_info
# when a Trainer is built; both lines start with this.
LIGHTNING_TIP = "💡 Tip:"
# ... and names every checkpoint it loads: at the end of each run (best.ckpt's test) and on a
# resume, which train.py announces itself ("[resume] ... resuming from last.ckpt at step N").
LIGHTNING_CHECKPOINT_NOTES = (
    "Restoring states from the checkpoint path at ",
    "Loaded model weights from the checkpoint at ",
)
# Lightning's package loggers, which print its notes to the console by themselves.
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
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


class _CopiedStream:
    """A text stream writing through to `stream` and copying each whole line to `log` as a
    terminal shows it in the end: the text after its last carriage return (a progress bar's
    last state), blank lines left out. A log that cannot be written (a full disk) stops being
    copied to: the console and the run go on."""

    def __init__(self, stream: IO[str], log: IO[str], lock: threading.Lock):
        self._stream, self._log, self._lock, self._partial = stream, log, lock, ""

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
            self._copy(lines)
        return written

    def end(self) -> None:
        """Copies an unfinished last line."""
        with self._lock:
            self._copy([self._partial])
            self._partial = ""

    def _copy(self, lines: list[str]) -> None:
        shown = [line.rsplit("\r", 1)[-1].rstrip() for line in lines]
        shown = [line for line in shown if line]
        if not shown or self._log is None:
            return
        try:
            self._log.write("".join(f"{line}\n" for line in shown))
            self._log.flush()
        except (OSError, ValueError):  # full disk, or a closed file
            self._log = None

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...: the console's own
        return getattr(self._stream, name)


@contextmanager
def copy_console_to(log: IO[str]) -> Iterator[None]:
    """While the block runs, every line printed to stdout or stderr (progress lines, warnings,
    notes) is also written to `log`, a text file open for appending, and so are Lightning's
    own notes ("GPU available: ...", "`Trainer.fit` stopped: ..."), as the console shows
    them; the console is as it was. Other logging records are not copied: their console
    handler holds the stream it was given (Hydra's job_logging), and a log file gets them
    from a handler of its own."""
    lock = threading.Lock()
    out, err = sys.stdout, sys.stderr
    copies = _CopiedStream(out, log, lock), _CopiedStream(err, log, lock)
    # Lightning imported before logging was configured keeps its own console handler and
    # does not propagate (lightning/{pytorch,fabric}/__init__.py): its notes need one here
    notes = logging.StreamHandler(log)
    own = [logging.getLogger(n) for n in LIGHTNING_LOGGERS if not logging.getLogger(n).propagate]
    sys.stdout, sys.stderr = copies
    for logger in own:
        logger.addHandler(notes)
    try:
        yield
    finally:
        for logger in own:
            logger.removeHandler(notes)
        sys.stdout, sys.stderr = out, err
        for copy in copies:
            copy.end()
