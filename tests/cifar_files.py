"""Write small CIFAR-10 / CIFAR-100 folders in the real on-disk format, for tests.

The original batch files are Python 2 pickles (protocol 2) of dicts whose keys and strings
are Python 2 `str`. Loaded in Python 3 with encoding="latin1" (as torchvision does) those
become `str` keys; with encoding="bytes" they become b"data", b"labels", ... A Python 3
`bytes` pickled at protocol 2 would instead load as bytes under both encodings and break
torchvision, so the writer emits Python 2 string opcodes itself (see `_Python2Pickler`).
The image array is pickled by numpy as usual, which both encodings load unchanged.

Only the MD5 sums differ from the real files, so read them with verify=False.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
CIFAR10_LABEL_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
IMAGE_BYTES = 3 * 32 * 32  # one image: R plane, then G plane, then B plane, each row-major


class _Python2String(bytes):
    """Bytes that pickle the way Python 2 pickled its `str`."""


class _Python2Pickler(pickle._Pickler):  # the pure-Python pickler lets us add a type
    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_string(self, text: _Python2String) -> None:
        if len(text) < 256:
            self.write(pickle.SHORT_BINSTRING + struct.pack("<B", len(text)) + bytes(text))
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(text)) + bytes(text))
        self.memoize(text)

    dispatch[_Python2String] = save_python2_string


def _py2(value):
    """Turn str / bytes (also inside dicts and lists) into Python 2 strings."""
    if isinstance(value, str):
        return _Python2String(value.encode("latin1"))
    if isinstance(value, bytes):
        return _Python2String(value)
    if isinstance(value, dict):
        return {_py2(key): _py2(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_py2(item) for item in value]
    return value


def _write_pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as file:
        _Python2Pickler(file, protocol=2).dump(_py2(content))


@dataclass(frozen=True)
class FakeCifar:
    """What a writer put on disk, in file order (train batches concatenated)."""

    folder: Path
    train_data: np.ndarray  # uint8 N×3072, exactly the b"data" rows written
    train_labels: np.ndarray  # int64 N (fine labels for CIFAR-100)
    test_data: np.ndarray
    test_labels: np.ndarray


def _random_batch(rng: np.random.Generator, count: int, num_classes: int):
    data = rng.integers(0, 256, size=(count, IMAGE_BYTES), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=count).astype(np.int64)
    return data, labels


def _filenames(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}_{index:06d}.png".encode() for index in range(count)]


def write_fake_cifar10(root, n_per_batch: int = 20, seed: int = 0) -> FakeCifar:
    """Write ROOT/cifar-10-batches-py with 5 train batches and a test batch of n_per_batch."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    train_parts = []
    for batch in range(1, 6):
        data, labels = _random_batch(rng, n_per_batch, 10)
        train_parts.append((data, labels))
        _write_pickle(
            folder / f"data_batch_{batch}",
            {
                "batch_label": f"training batch {batch} of 5",
                "labels": labels.tolist(),
                "data": data,
                "filenames": _filenames(f"train{batch}", n_per_batch),
            },
        )
    test_data, test_labels = _random_batch(rng, n_per_batch, 10)
    _write_pickle(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels.tolist(),
            "data": test_data,
            "filenames": _filenames("test", n_per_batch),
        },
    )
    _write_pickle(
        folder / "batches.meta",
        {
            "num_cases_per_batch": n_per_batch,
            "label_names": CIFAR10_LABEL_NAMES,
            "num_vis": IMAGE_BYTES,
        },
    )
    return FakeCifar(
        folder=folder,
        train_data=np.concatenate([data for data, _ in train_parts]),
        train_labels=np.concatenate([labels for _, labels in train_parts]),
        test_data=test_data,
        test_labels=test_labels,
    )


def write_fake_cifar100(root, n_train: int = 100, n_test: int = 40, seed: int = 0) -> FakeCifar:
    """Write ROOT/cifar-100-python with `train`, `test` and `meta`."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / CIFAR100_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, count in (("train", n_train), ("test", n_test)):
        data, fine_labels = _random_batch(rng, count, 100)
        coarse_labels = fine_labels // 5  # 20 superclasses of 5 classes each
        written[split] = (data, fine_labels)
        _write_pickle(
            folder / split,
            {
                "filenames": _filenames(split, count),
                "batch_label": f"{split}ing batch 1 of 1",
                "fine_labels": fine_labels.tolist(),
                "coarse_labels": coarse_labels.tolist(),
                "data": data,
            },
        )
    _write_pickle(
        folder / "meta",
        {
            "fine_label_names": [f"fine_class_{index:02d}" for index in range(100)],
            "coarse_label_names": [f"coarse_class_{index:02d}" for index in range(20)],
        },
    )
    return FakeCifar(folder, *written["train"], *written["test"])
