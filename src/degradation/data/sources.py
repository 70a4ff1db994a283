"""Dataset readers: turn a dataset name into in-memory uint8 image tensors.

No transforms and no DataLoaders here; this module only finds the files, checks them and
returns N×C×H×W uint8 images with int64 labels. torchvision and scikit-learn are imported
inside the functions that need them, so importing this module stays cheap.

Over 300 lines: one reader per dataset (CIFAR through torchvision, Fashion-MNIST's idx files,
scikit-learn's digits), each with the checks that turn a damaged file into one clear line.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import socket
import struct
import tarfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch

from degradation.errors import UserError

SOURCES = ("cifar10", "cifar100", "fashion_mnist", "digits")

DEFAULT_ROOT = "~/.cache/degradation/data"
# Where the Debian package `dataset-fashion-mnist` installs the four original idx files.
DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True, eq=False)  # eq=False: `==` on tensors is elementwise, not a bool
class ImageSet:
    """A dataset held in memory: uint8 N×C×H×W images and int64 labels for both splits."""

    name: str
    train_images: torch.Tensor = field(repr=False)
    train_labels: torch.Tensor = field(repr=False)
    test_images: torch.Tensor = field(repr=False)
    test_labels: torch.Tensor = field(repr=False)
    num_classes: int
    source: str
    checksum: str

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4 or not images.is_contiguous():
                raise ValueError(f"{split}_images must be contiguous uint8 N×C×H×W")
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise ValueError(f"{split}_labels must be int64 with one label per image")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """C, H, W of one image."""
        return tuple(self.train_images.shape[1:])

    def __repr__(self) -> str:
        return (
            f"ImageSet(name={self.name!r}, train={len(self.train_labels)}, "
            f"test={len(self.test_labels)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes}, source={self.source!r}, "
            f"checksum={self.checksum!r})"
        )


def load_source(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    verify: bool = True,
) -> ImageSet:
    """Load dataset `name` (one of SOURCES) into memory.

    root: folder holding the files (CIFAR default ~/.cache/degradation/data; Fashion-MNIST
        default /usr/share/datasets/fashion-mnist; ignored by digits). None or "" = default.
    download: CIFAR only; fetch through torchvision when the files are absent.
    verify: CIFAR only; False skips torchvision's per-file MD5 check (files must still exist).
    """
    if name == "cifar10" or name == "cifar100":
        return _load_cifar(name, root, download=download, verify=verify)
    if name == "fashion_mnist":
        return _load_fashion_mnist(root)
    if name == "digits":
        return _load_digits()
    raise UserError(f"data {name!r} is not known; choose one of: {', '.join(sorted(SOURCES))}")


def checksum_of(*tensors: torch.Tensor) -> str:
    """sha256 (first 16 hex chars) over the tensors' dtypes, shapes and bytes, in order.

    ImageSet.checksum is checksum_of(train_images, train_labels, test_images, test_labels).
    """
    digest = hashlib.sha256()
    for tensor in tensors:
        array = tensor.contiguous().numpy()
        # Little-endian bytes so the same data hashes the same on any machine.
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        # Shapes are hashed too so that moving the train/test boundary changes the checksum.
        digest.update(f"{array.dtype.str}{tuple(array.shape)}".encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()[:16]


def _make_image_set(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    source: str,
) -> ImageSet:
    train_images, train_labels = (tensor.contiguous() for tensor in train)
    test_images, test_labels = (tensor.contiguous() for tensor in test)
    return ImageSet(
        name=name,
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=num_classes,
        source=source,
        checksum=checksum_of(train_images, train_labels, test_images, test_labels),
    )


def _root_dir(root: str | os.PathLike[str] | None, default: str | Path) -> Path:
    folder = Path(root if root else default).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"data.root={folder} is a file, not a directory; point it at a folder")
    return folder


# ---------------------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarInfo:
    title: str
    num_classes: int
    torchvision_class: str


_CIFAR = {
    "cifar10": _CifarInfo("CIFAR-10", 10, "CIFAR10"),
    "cifar100": _CifarInfo("CIFAR-100", 100, "CIFAR100"),
}

# Errors a failed torchvision download can raise (URLError is an OSError; named for clarity).
_DOWNLOAD_ERRORS = (URLError, OSError, RuntimeError, tarfile.TarError)
# Errors reading batch files that exist but are damaged (only reachable with verify=False,
# or when torchvision's MD5 check fails, which it reports as RuntimeError).
_READ_ERRORS = (
    RuntimeError,
    pickle.UnpicklingError,
    EOFError,
    KeyError,
    ValueError,
    TypeError,
    IndexError,
    AttributeError,
)


def _cifar_dataset_class(name: str, verify: bool) -> type:
    """torchvision's dataset class, or a subclass that checks only that the files exist."""
    from torchvision import datasets

    checked_class = getattr(datasets, _CIFAR[name].torchvision_class)
    if verify:
        return checked_class

    class UnverifiedCifar(checked_class):
        # The metadata file is checked directly in _load_meta; md5=None means "exists only".
        meta = {**checked_class.meta, "md5": None}

        def _check_integrity(self) -> bool:
            folder = os.path.join(self.root, self.base_folder)
            return all(
                os.path.isfile(os.path.join(folder, filename))
                for filename, _md5 in self.train_list + self.test_list
            )

    UnverifiedCifar.__name__ = UnverifiedCifar.__qualname__ = f"Unverified{checked_class.__name__}"
    return UnverifiedCifar


def _cifar_to_tensors(dataset, folder: Path, info: _CifarInfo) -> tuple[torch.Tensor, ...]:
    data = np.asarray(dataset.data)
    labels = np.asarray(dataset.targets, dtype=np.int64)
    if data.dtype != np.uint8 or data.shape[1:] != (32, 32, 3) or len(data) != len(labels):
        raise UserError(
            f"{info.title} files in {folder} are corrupted or incomplete (images of shape "
            f"{data.shape}/{data.dtype}, {len(labels)} labels); delete that folder and extract "
            "the archive again"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= info.num_classes):
        raise UserError(
            f"{info.title} files in {folder} are corrupted (labels outside "
            f"0..{info.num_classes - 1}); delete that folder and extract the archive again"
        )
    # torchvision keeps N×H×W×C; models want N×C×H×W.
    images = torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))
    return images, torch.from_numpy(labels)


DOWNLOAD_TIMEOUT_S = 60.0


@contextmanager
def _socket_timeout(seconds: float):
    """torchvision's download opens URLs without a timeout; give every socket one meanwhile."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _load_cifar(name: str, root, *, download: bool, verify: bool) -> ImageSet:
    info = _CIFAR[name]
    root_dir = _root_dir(root, DEFAULT_ROOT)
    dataset_class = _cifar_dataset_class(name, verify)
    folder = root_dir / dataset_class.base_folder
    url = dataset_class.url
    expected_files = [filename for filename, _md5 in dataset_class.train_list]
    expected_files += [filename for filename, _md5 in dataset_class.test_list]
    expected_files.append(dataset_class.meta["filename"])
    missing = [filename for filename in expected_files if not (folder / filename).is_file()]

    if missing and not download:
        if folder.is_dir():
            raise UserError(
                f"{info.title} in {folder} is incomplete (missing {', '.join(missing)}); "
                f"download {url} and extract it into {root_dir}, "
                "or set data.download=true when online"
            )
        raise UserError(
            f"{info.title} not found in {root_dir} (expected {folder}); download {url} and "
            "extract it there, or set data.download=true when online"
        )

    try:
        if missing:
            try:
                with _socket_timeout(DOWNLOAD_TIMEOUT_S):  # a silent network fails, not hangs
                    train_set = dataset_class(str(root_dir), train=True, download=True)
            except _DOWNLOAD_ERRORS as error:
                reason = " ".join(str(error).split()) or type(error).__name__
                raise UserError(
                    f"downloading {info.title} into {root_dir} failed ({reason}); download "
                    f"{url} and extract it there by hand"
                ) from error
        else:
            train_set = dataset_class(str(root_dir), train=True)
        # Constructing the train set already checked every file (train and test lists), so
        # the test set skips a second MD5 pass over the same bytes.
        test_set = _cifar_dataset_class(name, verify=False)(str(root_dir), train=False)
    except UserError:
        raise
    except _READ_ERRORS as error:
        if isinstance(error, RuntimeError):  # torchvision's way of saying an MD5 is wrong
            reason = "MD5 check failed"
        else:
            reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(
            f"{info.title} files in {folder} are corrupted or incomplete ({reason}); delete "
            f"that folder and extract {url} there again, or set data.download=true when online"
        ) from error

    return _make_image_set(
        name,
        _cifar_to_tensors(train_set, folder, info),
        _cifar_to_tensors(test_set, folder, info),
        info.num_classes,
        str(folder),
    )


# ---------------------------------------------------------------------- Fashion-MNIST

_IDX_IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension
_FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find_fashion_mnist_files(root) -> tuple[Path, dict[str, Path]]:
    if root:
        root_dir = _root_dir(root, DEFAULT_FASHION_MNIST_DIR)
        candidates = [root_dir, root_dir / "FashionMNIST" / "raw"]  # the latter: torchvision
    else:
        candidates = [DEFAULT_FASHION_MNIST_DIR]
    for folder in candidates:
        found = {}
        for role, stem in _FASHION_MNIST_FILES.items():
            for filename in (f"{stem}.gz", stem):
                if (folder / filename).is_file():
                    found[role] = folder / filename
                    break
        if len(found) == len(_FASHION_MNIST_FILES):
            return folder, found
    names = ", ".join(f"{stem}.gz" for stem in _FASHION_MNIST_FILES.values())
    raise UserError(
        f"Fashion-MNIST not found in {' or '.join(str(folder) for folder in candidates)} "
        f"(need {names}, or the same names without .gz); run `apt-get install "
        f"dataset-fashion-mnist` (installs them in {DEFAULT_FASHION_MNIST_DIR}) or set "
        "data.root to a folder that holds them"
    )


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Parse one idx file (optionally gzipped) of unsigned bytes into a writable array."""
    advice = "replace it with the original file (or reinstall dataset-fashion-mnist)"
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(f"cannot read idx file {path} ({reason}); {advice}") from error

    if len(raw) < 4:
        raise UserError(f"idx file {path} is truncated ({len(raw)} bytes); {advice}")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        raise UserError(
            f"idx file {path} has magic number {magic}, expected {expected_magic}; the file is "
            f"corrupt or not the one its name says; {advice}"
        )
    num_dims = magic & 0xFF
    header_size = 4 + 4 * num_dims
    if len(raw) < header_size:
        raise UserError(f"idx file {path} is truncated inside its header; {advice}")
    dims = struct.unpack(f">{num_dims}I", raw[4:header_size])
    expected_size = int(np.prod(dims, dtype=np.int64))
    payload_size = len(raw) - header_size
    if payload_size != expected_size:
        raise UserError(
            f"idx file {path} holds {payload_size} data bytes but its header {dims} needs "
            f"{expected_size}; the file is truncated or corrupt; {advice}"
        )
    # bytearray makes the array writable, which torch.from_numpy wants.
    return np.frombuffer(bytearray(raw[header_size:]), dtype=np.uint8).reshape(dims)


def _read_fashion_mnist_split(images_path: Path, labels_path: Path):
    images = _read_idx(images_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(labels_path, _IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise UserError(
            f"idx file {images_path} holds {images.shape[1]}×{images.shape[2]} images, "
            "Fashion-MNIST images are 28×28; replace it with the original file"
        )
    if len(images) != len(labels):
        raise UserError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; replace them with the original files"
        )
    if len(labels) and labels.max() >= 10:
        raise UserError(
            f"idx file {labels_path} has label {labels.max()}, Fashion-MNIST has labels 0..9; "
            "replace it with the original file"
        )
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _load_fashion_mnist(root) -> ImageSet:
    folder, paths = _find_fashion_mnist_files(root)
    train = _read_fashion_mnist_split(paths["train_images"], paths["train_labels"])
    test = _read_fashion_mnist_split(paths["test_images"], paths["test_labels"])
    return _make_image_set("fashion_mnist", train, test, 10, str(folder))


# ----------------------------------------------------------------------------- digits

_DIGITS_TEST_SIZE = 500
_DIGITS_SPLIT_SEED = 0  # fixed on purpose: the split is part of the dataset, not of a run
_DIGITS_UPSAMPLE = 4  # 8×8 → 32×32, the CIFAR resolution the models expect


def _load_digits() -> ImageSet:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are the integers 0..16; stretch them to the full uint8 range.
    pixels = (digits.images.astype(np.int64) * 255 // 16).astype(np.uint8)
    pixels = pixels.repeat(_DIGITS_UPSAMPLE, axis=1).repeat(_DIGITS_UPSAMPLE, axis=2)
    images = torch.from_numpy(np.ascontiguousarray(pixels[:, None]))
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_index, test_index = train_test_split(
        np.arange(len(labels)),
        test_size=_DIGITS_TEST_SIZE,
        random_state=_DIGITS_SPLIT_SEED,
        stratify=digits.target,
    )
    train_index, test_index = torch.from_numpy(train_index), torch.from_numpy(test_index)
    return _make_image_set(
        "digits",
        (images[train_index], labels[train_index]),
        (images[test_index], labels[test_index]),
        10,
        "sklearn.datasets.load_digits",
    )
