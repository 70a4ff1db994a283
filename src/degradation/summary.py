"""summary.json's one schema: the `Summary` dataclass training fills and writes, and from which
the reader's checks are derived (rundir.read_summary: every field's type, the required ones).

A field is written once it is set: a run that fails before its model is built has no `params`,
only an interrupted one has `signal`, only a failed one `error` and `traceback` (docs/run-folder.md
lists them all). The required fields are those train() sets when a run starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


class _Unset:
    def __repr__(self) -> str:
        return "unset"


UNSET: Any = _Unset()


def _later() -> Any:
    return field(default=UNSET)


@dataclass
class Summary:
    # what ran: set when the run starts (the first six are required)
    name: str  # 'plain-56'
    dataset: str
    depth: int
    skip: str
    seed: int
    status: str  # failed until it ends: completed, diverged, interrupted
    shortcut: str = _later()  # 'not_applicable' for a plain net
    family: str = _later()
    block: str = _later()  # the block built (null until the model is)
    head_init: str = _later()
    pad_value: str = _later()
    command: str = _later()
    config_hash: str = _later()
    resumed_from_step: int = _later()
    git_commit: str = _later()
    git_dirty: bool = _later()
    environment: dict = _later()
    # the model, data and machine, once built
    params: int = _later()
    flops: float = _later()
    dataset_checksum: str = _later()
    num_train: int = _later()
    num_test: int = _later()
    speed: dict = _later()
    world_size: int = _later()
    per_device_batch_size: int = _later()
    # how it ended
    steps: int = _later()
    final: dict = _later()  # train/val/test error and loss of the final model
    best_val: dict = _later()  # best.ckpt's validation and test error (null: no validation)
    diverged_step: int = _later()
    warmup_end_step: int = _later()
    warmup_end_reason: str = _later()  # "error" (the paper's rule) or "cap"
    throughput_img_s: float = _later()
    signal: str = _later()  # interrupted: SIGINT or SIGTERM
    resume_step: int = _later()  # interrupted: the step of last.ckpt
    error: str = _later()  # failed: "Type: message"
    traceback: str = _later()
    wall_time_s: float = _later()

    def update(self, **values: Any) -> None:
        """Sets fields by name; a name that is no field is a bug, not a new key."""
        for key, value in values.items():
            if key not in _FIELD_NAMES:
                raise AttributeError(f"summary.json has no field {key!r}")
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        """The fields set, in the schema's order: summary.json's content."""
        return {k: v for k in _FIELD_NAMES if (v := getattr(self, k)) is not UNSET}


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Summary))
REQUIRED = tuple(f.name for f in dataclasses.fields(Summary) if f.default is dataclasses.MISSING)


def field_types() -> dict[str, type]:
    """{field: its JSON type as a Python type (str, int, float, bool, dict)}."""
    types = {"str": str, "int": int, "float": float, "bool": bool, "dict": dict}
    return {f.name: types[str(f.type)] for f in dataclasses.fields(Summary)}
