"""A W&B run's local files: one folder per start of the run, and the history each one holds.

    segments(wandb_dir, run_id)   # the run's folders, oldest first
    written(folder)               # whether a folder's .wandb file holds any record
    history(path)                 # a .wandb file's history rows: [{"_step": 0, "lr": 0.1, ...}]
    last_step(folders)            # the highest history step they hold, or None

Each start of a W&B run (the first, and each resume of its run folder) writes its own folder
below the wandb directory, `offline-run-<time>-<id>` (`run-<time>-<id>` online), holding the
transaction log `run-<id>.wandb` that `wandb sync` uploads. `wandb sync` of several folders of
one run id (wandb >= 0.28.1) uploads them into that one run, in order of start time.

wandb ships no Python reader of the transaction log (0.31: its reader is in the Go core), so
`records` reads it as wandb's core/pkg/leveldb/record.go writes it: a 7-byte header (":W&B", a
2-byte magic, a version byte), then LevelDB's log format, 32 KiB blocks of chunks, each with a
7-byte header (CRC-32 of type and payload, little-endian length, type: 1 full, 2 first, 3 middle,
4 last record piece); each record is a `wandb.proto.wandb_internal_pb2.Record`. The file of a
killed run may end in a torn chunk: reading stops there.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

HEADER = b":W&B"
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def segments(wandb_dir: Path, run_id: str) -> list[Path]:
    """The folders of run `run_id` below wandb_dir (offline and online), oldest first: the
    folder name's `<time>` is the start (YYYYMMDD_HHMMSS, which sorts as text)."""
    found = [p.parent for p in Path(wandb_dir).glob(f"*run-*-{run_id}/run-{run_id}.wandb")]
    return sorted(found, key=lambda p: (p.name.rsplit("-", 2)[-2], p.name))


def written(folder: Path) -> bool:
    """Whether the folder's .wandb file holds a record: a start killed together with wandb's
    service (which buffers its writes) may leave the file header alone."""
    return any(True for path in Path(folder).glob("*.wandb") for _ in records(path))


def records(path: Path) -> Iterator[Any]:
    """The protobuf records of a .wandb file, in order, up to a torn or corrupt chunk."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != HEADER:
        return
    pos, pieces = CHUNK_HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # the rest of a block too short for a chunk is zero padding
            pos += left
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        if (checksum, length, kind) == (0, 0, 0):  # a zeroed block, as wandb's reader: skip it
            pos += left
            continue
        payload = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        if len(payload) < length or zlib.crc32(bytes([kind]) + payload) != checksum:
            return  # a torn or corrupt chunk: nothing after it can be trusted
        pos += CHUNK_HEADER + length
        pieces = payload if kind in (FULL, FIRST) else pieces + payload
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pieces)
            yield record


def history(path: Path) -> list[dict[str, Any]]:
    """The history rows of a .wandb file, in order: {"_step": n, "train/loss": ..., ...}."""
    rows = []
    for record in records(path):
        if record.WhichOneof("record_type") != "history":
            continue
        items = record.history.item
        row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items}
        row["_step"] = record.history.step.num
        rows.append(row)
    return rows


def last_step(folders: Iterable[Path]) -> int | None:
    """The highest history step the folders' .wandb files hold, or None if none holds a row."""
    files = [path for folder in folders for path in Path(folder).glob("*.wandb")]
    return max((row["_step"] for path in files for row in history(path)), default=None)
