from dataclasses import dataclass

import pytest
import torch

from sapabench.core.datasets import load_dataset
from sapabench.core.errors import ConfigError
from tests._fakedata import write_cifar10, write_cifar100, write_svhn


def test_digits_is_real_stratified_and_fixed(digits):
    assert digits.train_x.shape == (1437, 1, 16, 16) and digits.test_x.shape == (360, 1, 16, 16)
    assert digits.train_x.dtype == torch.float32 and digits.train_y.dtype == torch.int64
    assert float(digits.train_x.min()) >= 0.0 and float(digits.train_x.max()) <= 1.0
    counts = torch.bincount(digits.test_y, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37  # stratified: 36 +/- 1 per class
    again = load_dataset("digits")
    assert torch.equal(again.train_x, digits.train_x) and again.fingerprint == digits.fingerprint


def test_digits_options(digits):
    small = load_dataset("digits", size=8, channels=3)
    assert small.train_x.shape == (1437, 3, 8, 8)
    assert torch.equal(small.train_x[:, 0], small.train_x[:, 2])
    assert small.fingerprint != digits.fingerprint
    with pytest.raises(ConfigError, match="size"):
        load_dataset("digits", size=4)
    with pytest.raises(ConfigError, match="channels"):
        load_dataset("digits", channels=2)


@pytest.mark.parametrize(
    ("name", "writer", "n_train", "n_test", "classes"),
    [("cifar10", write_cifar10, 30, 8, 10), ("cifar100", write_cifar100, 20, 10, 100), ("svhn", write_svhn, 12, 6, 10)],
)
def test_torchvision_loaders_read_the_on_disk_format(tmp_path, name, writer, n_train, n_test, classes):
    writer(tmp_path)
    ds = load_dataset(name, data_root=str(tmp_path), verify_checksums=False)
    assert ds.train_x.shape == (n_train, 3, 32, 32) and ds.test_x.shape == (n_test, 3, 32, 32)
    assert ds.num_classes == classes and ds.default_epochs == 160 and ds.default_batch_size == 128
    assert int(ds.train_y.min()) >= 0 and int(ds.train_y.max()) < classes
    assert ds.flip_invariant == (name != "svhn")


def test_svhn_label_ten_means_zero(tmp_path):
    from scipy.io import loadmat

    write_svhn(tmp_path)
    raw = loadmat(tmp_path / "train_32x32.mat")["y"].squeeze().astype(int)
    ds = load_dataset("svhn", data_root=str(tmp_path), verify_checksums=False)
    assert ds.train_y.tolist() == [0 if v == 10 else v for v in raw]
    # pixel layout: X[h, w, c, n] on disk
    assert torch.allclose(
        ds.train_x[0, 1, 2, 3], torch.tensor(float(loadmat(tmp_path / "train_32x32.mat")["X"][2, 3, 1, 0]) / 255)
    )


def test_tiny_files_fail_the_official_checksums(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(ConfigError, match=r"cifar10: could not read .*cifar-10-batches-py.*--no-verify-checksums"):
        load_dataset("cifar10", data_root=str(tmp_path))


def test_missing_root_names_the_expected_layout(tmp_path):
    with pytest.raises(ConfigError, match=r"needs --data-root"):
        load_dataset("cifar10")
    with pytest.raises(ConfigError, match=r"missing folder .*cifar-10-batches-py.*data_batch_1"):
        load_dataset("cifar10", data_root=str(tmp_path / "nowhere"))
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(ConfigError, match=r"missing .*test_batch"):
        load_dataset("cifar10", data_root=str(tmp_path), verify_checksums=False)


def test_corrupt_file_is_reported(tmp_path):
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "train").write_bytes(b"not a pickle at all")
    with pytest.raises(ConfigError, match=r"cifar100: could not read"):
        load_dataset("cifar100", data_root=str(tmp_path), verify_checksums=False)
    write_svhn(tmp_path / "s")
    (tmp_path / "s" / "test_32x32.mat").write_bytes(b"\x00" * 100)
    with pytest.raises(ConfigError, match=r"svhn: could not read"):
        load_dataset("svhn", data_root=str(tmp_path / "s"), verify_checksums=False)


@dataclass
class _Poison:
    indices: torch.Tensor
    delta: torch.Tensor
    labels: torch.Tensor | None = None


def test_poison_is_applied_on_top_of_clean_tensors(tiny_digits):
    idx = torch.tensor([0, 5, 7])
    delta = torch.full((3, 1, 16, 16), 0.5)
    clean = tiny_digits.train_x.clone()
    x, y = tiny_digits.poisoned_train(_Poison(idx, delta))
    assert torch.equal(tiny_digits.train_x, clean)  # never mutated
    assert torch.equal(x[idx], (clean[idx] + 0.5).clamp(0, 1))
    rest = torch.ones(len(x), dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(x[rest], clean[rest]) and y is tiny_digits.train_y
    _, y2 = tiny_digits.poisoned_train(_Poison(idx, torch.zeros_like(delta), torch.tensor([1, 2, 3])))
    assert y2[idx].tolist() == [1, 2, 3] and torch.equal(y2[rest], tiny_digits.train_y[rest])


def test_bad_poison_is_refused(tiny_digits):
    z = torch.zeros((1, 1, 16, 16))
    with pytest.raises(ConfigError, match="another dataset"):
        tiny_digits.poisoned_train(_Poison(torch.tensor([10_000]), z))
    with pytest.raises(ConfigError, match="delta has shape"):
        tiny_digits.poisoned_train(_Poison(torch.tensor([1]), torch.zeros((1, 3, 16, 16))))
    with pytest.raises(ConfigError, match="distinct"):
        tiny_digits.poisoned_train(_Poison(torch.tensor([1, 1]), torch.zeros((2, 1, 16, 16))))
    with pytest.raises(ConfigError, match="labels"):
        tiny_digits.poisoned_train(_Poison(torch.tensor([1]), z, torch.tensor([99])))
