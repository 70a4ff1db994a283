"""Dataset readers: fake CIFAR files in the real format, real Fashion-MNIST, sklearn digits."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_files import CIFAR10_LABEL_NAMES, write_fake_cifar10, write_fake_cifar100

from degradation.data import sources
from degradation.data.sources import SOURCES, ImageSet, load_source
from degradation.errors import UserError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def raises_user_error(*fragments: str):
    """pytest.raises(UserError) whose one-line message contains every fragment verbatim."""
    pattern = "".join(f"(?=.*{re.escape(fragment)})" for fragment in fragments)
    return pytest.raises(UserError, match=pattern)


def assert_one_line(error_info) -> None:
    assert "\n" not in str(error_info.value)


def assert_well_formed(image_set: ImageSet, channels: int, size: int, num_classes: int) -> None:
    for images, labels in (
        (image_set.train_images, image_set.train_labels),
        (image_set.test_images, image_set.test_labels),
    ):
        assert images.dtype == torch.uint8 and images.is_contiguous()
        assert images.shape[1:] == (channels, size, size)
        assert labels.dtype == torch.int64 and labels.shape == images.shape[:1]
        assert 0 <= int(labels.min()) and int(labels.max()) < num_classes
    assert image_set.num_classes == num_classes
    assert re.fullmatch(r"[0-9a-f]{16}", image_set.checksum)


# ---------------------------------------------------------------------------- CIFAR-10


@pytest.fixture
def fake_cifar10(tmp_path):
    return write_fake_cifar10(tmp_path, n_per_batch=12, seed=0)


@pytest.fixture
def fake_cifar100(tmp_path):
    return write_fake_cifar100(tmp_path, n_train=60, n_test=25, seed=0)


def test_cifar10_files_keep_the_original_pickle_layout(fake_cifar10):
    # Real batches load with str keys under latin1 (torchvision) and bytes keys under "bytes".
    with open(fake_cifar10.folder / "data_batch_1", "rb") as file:
        as_bytes = pickle.load(file, encoding="bytes")
    assert set(as_bytes) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert as_bytes[b"data"].dtype == np.uint8 and as_bytes[b"data"].shape == (12, 3072)
    with open(fake_cifar10.folder / "batches.meta", "rb") as file:
        meta = pickle.load(file, encoding="latin1")
    assert meta == {"num_cases_per_batch": 12, "label_names": CIFAR10_LABEL_NAMES, "num_vis": 3072}


def test_cifar10_round_trips_pixels_and_labels(fake_cifar10, tmp_path):
    image_set = load_source("cifar10", tmp_path, verify=False)

    assert_well_formed(image_set, channels=3, size=32, num_classes=10)
    assert image_set.name == "cifar10"
    assert image_set.source == str(fake_cifar10.folder)
    assert len(image_set.train_labels) == 5 * 12 and len(image_set.test_labels) == 12
    # One pixel by hand: image i, channel c, row y, column x sits at byte c*1024 + y*32 + x.
    i, c, y, x = 7, 2, 5, 30
    assert image_set.train_images[i, c, y, x] == fake_cifar10.train_data[i, c * 1024 + y * 32 + x]
    # ...and every pixel: N×3×32×32 flattened row-major is exactly the rows that were written.
    np.testing.assert_array_equal(
        image_set.train_images.reshape(-1, 3072).numpy(), fake_cifar10.train_data
    )
    np.testing.assert_array_equal(
        image_set.test_images.reshape(-1, 3072).numpy(), fake_cifar10.test_data
    )
    np.testing.assert_array_equal(image_set.train_labels.numpy(), fake_cifar10.train_labels)
    np.testing.assert_array_equal(image_set.test_labels.numpy(), fake_cifar10.test_labels)


def test_cifar10_expands_user_in_root(fake_cifar10, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_source("cifar10", "~", verify=False).source == str(fake_cifar10.folder)


def test_cifar10_verified_rejects_files_with_wrong_md5(fake_cifar10, tmp_path):
    with raises_user_error(
        "corrupted or incomplete", "MD5 check failed", str(fake_cifar10.folder)
    ) as error:
        load_source("cifar10", tmp_path, verify=True)
    assert_one_line(error)


def test_cifar10_verified_accepts_files_whose_md5_matches(fake_cifar10, tmp_path, monkeypatch):
    # Pretend torchvision's published MD5s are those of the fake files: verify=True must then
    # pass through torchvision's own check and read the same data.
    from torchvision.datasets import CIFAR10

    def with_md5(entries):
        return [[name, hashlib.md5((fake_cifar10.folder / name).read_bytes()).hexdigest()]
                for name, _md5 in entries]  # fmt: skip

    meta_md5 = hashlib.md5((fake_cifar10.folder / "batches.meta").read_bytes()).hexdigest()
    monkeypatch.setattr(CIFAR10, "train_list", with_md5(CIFAR10.train_list))
    monkeypatch.setattr(CIFAR10, "test_list", with_md5(CIFAR10.test_list))
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": meta_md5})

    verified = load_source("cifar10", tmp_path, verify=True)
    assert verified.checksum == load_source("cifar10", tmp_path, verify=False).checksum


def test_cifar10_missing_folder_names_expected_path_and_url(tmp_path):
    expected = str(tmp_path / "cifar-10-batches-py")
    with raises_user_error("CIFAR-10 not found", expected, CIFAR10_URL, "data.download") as error:
        load_source("cifar10", tmp_path, verify=False)
    assert_one_line(error)


def test_cifar10_missing_one_batch_is_named(fake_cifar10, tmp_path):
    (fake_cifar10.folder / "data_batch_3").unlink()
    with raises_user_error("incomplete", "data_batch_3", CIFAR10_URL):
        load_source("cifar10", tmp_path, verify=False)


def test_cifar10_unreadable_batch_is_reported_not_crashing(fake_cifar10, tmp_path):
    (fake_cifar10.folder / "test_batch").write_bytes(b"not a pickle")
    with raises_user_error("corrupted or incomplete", str(fake_cifar10.folder)) as error:
        load_source("cifar10", tmp_path, verify=False)
    assert_one_line(error)


def test_cifar_root_that_is_a_file_is_rejected(tmp_path):
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("x")
    for name in ("cifar10", "cifar100"):
        with raises_user_error(f"data.root={not_a_folder} is a file, not a directory"):
            load_source(name, not_a_folder)


def test_cifar_download_failure_becomes_user_error(tmp_path, monkeypatch):
    # Stand-in for torchvision's download without any network: it fails like a dead link.
    from torchvision.datasets import CIFAR10

    def offline_download(self):
        raise OSError("Name or service not known")

    monkeypatch.setattr(CIFAR10, "download", offline_download)
    with raises_user_error("downloading CIFAR-10", str(tmp_path), CIFAR10_URL) as error:
        load_source("cifar10", tmp_path, download=True)
    assert_one_line(error)


# --------------------------------------------------------------------------- CIFAR-100


def test_cifar100_round_trips_fine_labels(fake_cifar100, tmp_path):
    image_set = load_source("cifar100", tmp_path, verify=False)

    assert_well_formed(image_set, channels=3, size=32, num_classes=100)
    assert (len(image_set.train_labels), len(image_set.test_labels)) == (60, 25)
    np.testing.assert_array_equal(
        image_set.train_images.reshape(-1, 3072).numpy(), fake_cifar100.train_data
    )
    np.testing.assert_array_equal(image_set.train_labels.numpy(), fake_cifar100.train_labels)
    np.testing.assert_array_equal(image_set.test_labels.numpy(), fake_cifar100.test_labels)
    i, c, y, x = 3, 1, 31, 0
    assert image_set.test_images[i, c, y, x] == fake_cifar100.test_data[i, c * 1024 + y * 32 + x]


def test_cifar100_verified_rejects_files_with_wrong_md5(fake_cifar100, tmp_path):
    with raises_user_error("CIFAR-100", "corrupted or incomplete", str(fake_cifar100.folder)):
        load_source("cifar100", tmp_path)


def test_cifar100_missing_folder_names_expected_path_and_url(tmp_path):
    expected = str(tmp_path / "cifar-100-python")
    with raises_user_error("CIFAR-100 not found", expected, CIFAR100_URL):
        load_source("cifar100", tmp_path)


# ------------------------------------------------------------------------ Fashion-MNIST


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = True) -> None:
    content = (
        struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    )
    path.write_bytes(gzip.compress(content) if compress else content)


def write_fake_fashion_mnist(folder: Path, n_train=30, n_test=10, compress=True) -> dict:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    arrays = {
        "train-images-idx3-ubyte": (rng.integers(0, 256, (n_train, 28, 28)), 2051),
        "train-labels-idx1-ubyte": (rng.integers(0, 10, n_train), 2049),
        "t10k-images-idx3-ubyte": (rng.integers(0, 256, (n_test, 28, 28)), 2051),
        "t10k-labels-idx1-ubyte": (rng.integers(0, 10, n_test), 2049),
    }
    for stem, (array, magic) in arrays.items():
        write_idx(folder / f"{stem}{suffix}", array, magic, compress)
    return {stem: array for stem, (array, _magic) in arrays.items()}


@pytest.fixture(scope="module")
def real_fashion_mnist():
    if not REAL_FASHION_MNIST.is_dir():
        pytest.skip(f"{REAL_FASHION_MNIST} absent (apt-get install dataset-fashion-mnist)")
    return load_source("fashion_mnist")


def test_fashion_mnist_real_files(real_fashion_mnist):
    assert_well_formed(real_fashion_mnist, channels=1, size=28, num_classes=10)
    assert real_fashion_mnist.train_images.shape == (60000, 1, 28, 28)
    assert real_fashion_mnist.test_images.shape == (10000, 1, 28, 28)
    assert torch.bincount(real_fashion_mnist.train_labels).tolist() == [6000] * 10
    assert torch.bincount(real_fashion_mnist.test_labels).tolist() == [1000] * 10
    assert real_fashion_mnist.source == str(REAL_FASHION_MNIST)


def test_fashion_mnist_from_root_round_trips(tmp_path):
    written = write_fake_fashion_mnist(tmp_path)
    image_set = load_source("fashion_mnist", tmp_path)
    assert_well_formed(image_set, channels=1, size=28, num_classes=10)
    np.testing.assert_array_equal(
        image_set.train_images[:, 0].numpy(), written["train-images-idx3-ubyte"]
    )
    np.testing.assert_array_equal(image_set.test_labels.numpy(), written["t10k-labels-idx1-ubyte"])


def test_fashion_mnist_torchvision_layout_uncompressed(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    written = write_fake_fashion_mnist(raw, compress=False)
    image_set = load_source("fashion_mnist", tmp_path)
    assert image_set.source == str(raw)
    np.testing.assert_array_equal(
        image_set.train_labels.numpy(), written["train-labels-idx1-ubyte"]
    )


def test_fashion_mnist_truncated_gz_names_the_file(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    damaged = tmp_path / "train-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with raises_user_error(str(damaged)) as error:
        load_source("fashion_mnist", tmp_path)
    assert_one_line(error)


def test_fashion_mnist_wrong_magic_names_the_file(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    swapped = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(swapped, np.zeros(10), magic=2051)  # an images magic on a labels file
    with raises_user_error(str(swapped), "magic number 2051, expected 2049"):
        load_source("fashion_mnist", tmp_path)


def test_fashion_mnist_payload_shorter_than_header_names_the_file(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    short = tmp_path / "t10k-images-idx3-ubyte.gz"
    content = struct.pack(">4I", 2051, 10, 28, 28) + bytes(28 * 28 * 9)  # one image short
    short.write_bytes(gzip.compress(content))
    with raises_user_error(str(short), "truncated or corrupt"):
        load_source("fashion_mnist", tmp_path)


def test_fashion_mnist_missing_names_folders_and_package(tmp_path):
    with raises_user_error(
        str(tmp_path),
        str(tmp_path / "FashionMNIST" / "raw"),
        "apt-get install dataset-fashion-mnist",
    ) as error:
        load_source("fashion_mnist", tmp_path)
    assert_one_line(error)


# ------------------------------------------------------------------------------ digits


def test_digits_split_shape_and_values():
    image_set = load_source("digits")
    assert_well_formed(image_set, channels=1, size=32, num_classes=10)
    assert (len(image_set.train_labels), len(image_set.test_labels)) == (1297, 500)
    assert image_set.source == "sklearn.datasets.load_digits"
    assert int(image_set.train_images.max()) == 255 and int(image_set.train_images.min()) == 0
    # Nearest-neighbour ×4: every 4×4 block is one constant value.
    corners = image_set.train_images[:, :, ::4, ::4]
    upsampled = corners.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    assert torch.equal(upsampled, image_set.train_images)
    # Stratified: each class gets 49 or 51 of the 500 test images (digits has 174..183 each).
    assert set(torch.bincount(image_set.test_labels).tolist()) <= set(range(48, 53))


def test_digits_is_deterministic():
    first, second = load_source("digits"), load_source("digits")
    assert first.checksum == second.checksum
    assert torch.equal(first.test_labels, second.test_labels)


# ------------------------------------------------------------------------------ general


def test_unknown_name_lists_choices():
    with raises_user_error(
        "data 'imagenet' is not known", "cifar10, cifar100, digits, fashion_mnist"
    ):
        load_source("imagenet")
    assert sorted(SOURCES) == ["cifar10", "cifar100", "digits", "fashion_mnist"]


def test_checksum_identifies_the_data(tmp_path):
    write_fake_cifar10(tmp_path / "a", n_per_batch=8, seed=0)
    write_fake_cifar10(tmp_path / "b", n_per_batch=8, seed=1)
    write_fake_cifar100(tmp_path / "c", n_train=40, n_test=8)
    cifar10 = load_source("cifar10", tmp_path / "a", verify=False)
    cifar10_again = load_source("cifar10", tmp_path / "a", verify=False)
    other_pixels = load_source("cifar10", tmp_path / "b", verify=False)
    cifar100 = load_source("cifar100", tmp_path / "c", verify=False)
    digits = load_source("digits")

    assert cifar10.checksum == cifar10_again.checksum
    checksums = [cifar10.checksum, other_pixels.checksum, cifar100.checksum, digits.checksum]
    assert len(set(checksums)) == len(checksums)
    assert cifar10.checksum == sources.checksum_of(
        cifar10.train_images, cifar10.train_labels, cifar10.test_images, cifar10.test_labels
    )


def test_checksum_sees_where_train_ends_and_test_begins():
    images, labels = torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.zeros(10, dtype=torch.int64)
    split_at_6 = sources.checksum_of(images[:6], labels[:6], images[6:], labels[6:])
    split_at_4 = sources.checksum_of(images[:4], labels[:4], images[4:], labels[4:])
    assert split_at_6 != split_at_4


def test_real_fashion_mnist_checksum_differs_from_digits(real_fashion_mnist):
    assert real_fashion_mnist.checksum != load_source("digits").checksum


def test_image_set_rejects_malformed_tensors():
    images, labels = torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)
    fields = dict(name="x", num_classes=2, source="test", checksum="0" * 16)
    with pytest.raises(ValueError, match="train_images"):
        ImageSet(
            train_images=images.float(), train_labels=labels, test_images=images,
            test_labels=labels, **fields,
        )  # fmt: skip
    with pytest.raises(ValueError, match="test_labels"):
        ImageSet(
            train_images=images, train_labels=labels, test_images=images,
            test_labels=labels[:3], **fields,
        )  # fmt: skip


def test_image_set_repr_is_short():
    text = repr(load_source("digits"))
    assert "train=1297" in text and "tensor" not in text


def test_importing_sources_does_not_import_torchvision_or_sklearn():
    # Load the file on its own: the degradation.data package imports Lightning, which pulls
    # in torchvision, and that must not hide an eager import here.
    path = Path(sources.__file__).resolve()
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('sources_alone', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['sources_alone'] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(sorted(m for m in ('torchvision', 'sklearn', 'lightning') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(path.parents[2])}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "[]"
