"""Datasets, held whole as tensors (no per-sample Python loading in the hot path).

Every dataset is an :class:`ImageDataset`: float32 images in [0, 1] shaped (N, C, H, W) and
int64 labels, for a train and a test split, plus the per-channel mean/std a victim normalises
with. A poison set is applied on top of the clean training tensors as indices + perturbations
(:meth:`ImageDataset.poisoned_train`), never by mutating the dataset.

Registered datasets:

- ``digits``: scikit-learn's bundled ``load_digits`` (real, offline), the embedded default.
- ``cifar10``, ``cifar100``, ``svhn``: torchvision's dataset classes reading a local
  ``data_root`` in their standard on-disk format (``download=True`` fetches it when online).
"""

from __future__ import annotations

import hashlib
import pickle  # only through _ArraysOnly, which refuses every class but numpy arrays
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.datasets as tvd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from sapabench.core.errors import ConfigError
from sapabench.core.names import EMBEDDED_DATASET
from sapabench.core.registry import Registry
from sapabench.core.threats import paste_fixed


class PoisonLike(Protocol):
    """What training needs from a poison set: which images change, and how.

    ``indices`` index the clean training set, ``delta`` holds one additive perturbation per
    index (same shape as the images), ``labels`` is None for clean-label attacks or the new
    label per index.
    """

    indices: Tensor
    delta: Tensor
    labels: Tensor | None


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image classification dataset held as tensors.

    Attributes:
        name: registry name, e.g. ``"digits"``.
        train_x, test_x: float32 images in [0, 1], shape (N, C, H, W).
        train_y, test_y: int64 labels in [0, num_classes).
        num_classes: number of classes.
        mean, std: per-channel statistics of ``train_x``; victims normalise with them.
        flip_invariant: whether horizontal flips are label-preserving (False for digits).
        default_epochs, default_batch_size: the training protocol for this dataset when the
            user does not give one (the paper's 160 x 128 for CIFAR/SVHN; a small-data preset
            for ``digits``).
        fingerprint: short content hash of the tensors, recorded as provenance.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip_invariant: bool
    default_epochs: int
    default_batch_size: int
    fingerprint: str = ""

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.ndim != 4 or x.dtype != torch.float32:
                raise ConfigError(f"dataset {self.name!r}: {split} images must be float32 (N, C, H, W)")
            if y.ndim != 1 or y.dtype != torch.int64 or len(y) != len(x):
                raise ConfigError(f"dataset {self.name!r}: {split} labels must be int64 (N,) matching images")
            if len(x) == 0:
                raise ConfigError(f"dataset {self.name!r}: the {split} split is empty")
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise ConfigError(f"dataset {self.name!r}: {split} labels outside [0, {self.num_classes})")
            if float(x.min()) < 0.0 or float(x.max()) > 1.0:
                raise ConfigError(f"dataset {self.name!r}: {split} pixels outside [0, 1]")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ConfigError(f"dataset {self.name!r}: train and test images differ in shape")
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", _fingerprint(self))

    @property
    def in_chans(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def img_size(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def num_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def to(self, device: torch.device | str) -> ImageDataset:
        """The same dataset with all tensors on ``device`` (no copy if already there)."""
        device = torch.device(device)
        if self.train_x.device == device:
            return self
        return replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )

    def poisoned_train(self, poison: PoisonLike | None) -> tuple[Tensor, Tensor]:
        """Training images and labels with ``poison`` applied (clean tensors when None).

        Images at ``poison.indices`` become ``clamp(x + delta, 0, 1)``, with the trigger pasted
        over them when the poison's threat model says it is ``stamped`` (a full-contrast
        clean-label backdoor); labels are replaced only when the poison carries labels. The
        clean tensors are never modified.
        """
        if poison is None:
            return self.train_x, self.train_y
        idx = torch.as_tensor(poison.indices, dtype=torch.int64, device=self.device)
        delta = torch.as_tensor(poison.delta, dtype=torch.float32, device=self.device)
        if idx.ndim != 1 or len(torch.unique(idx)) != len(idx):
            raise ConfigError("poison indices must be a 1-D tensor of distinct training indices")
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= self.num_train):
            raise ConfigError(
                f"poison indices must lie in [0, {self.num_train}) for dataset {self.name!r}; "
                "was the poison crafted on another dataset?"
            )
        if tuple(delta.shape) != (len(idx), *self.train_x.shape[1:]):
            raise ConfigError(
                f"poison delta has shape {tuple(delta.shape)}, expected "
                f"{(len(idx), *self.train_x.shape[1:])} for dataset {self.name!r}"
            )
        x = self.train_x.clone()
        x[idx] = (x[idx] + delta).clamp_(0.0, 1.0)
        threat, trigger = getattr(poison, "threat", None), getattr(poison, "trigger", None)
        if threat is not None and threat.stamped and trigger is not None:  # Turner's full-contrast trigger
            x[idx] = paste_fixed(x[idx], trigger.to(self.device), threat.trigger_placement)
        y = self.train_y
        if poison.labels is not None:
            labels = torch.as_tensor(poison.labels, dtype=torch.int64, device=self.device)
            if labels.shape != idx.shape:
                raise ConfigError("poison labels must have one label per poison index")
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ConfigError(f"poison labels must lie in [0, {self.num_classes})")
            y = y.clone()
            y[idx] = labels
        return x, y


def _fingerprint(ds: ImageDataset) -> str:
    h = hashlib.sha256()
    for t in (ds.train_x, ds.train_y, ds.test_x, ds.test_y):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def _from_uint8_nhwc(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).float().div_(255.0)


DATASETS: Registry[ImageDataset] = Registry("dataset")


def load_dataset(name: str, **kwargs: Any) -> ImageDataset:
    """Build the registered dataset ``name`` (see ``sapabench list datasets``)."""
    return DATASETS.create(name, **kwargs)


@DATASETS.register(
    EMBEDDED_DATASET,
    description="scikit-learn load_digits: 1797 real 8x8 grey digits, 10 classes, offline "
    "(embedded default; upsampled to 16x16, 1437 train / 360 test)",
)
def digits(size: int = 16, channels: int = 1, test_fraction: float = 0.2, split_seed: int = 0) -> ImageDataset:
    """scikit-learn's bundled handwritten digits, the embedded default dataset.

    Args:
        size: image side after bilinear upsampling from 8x8. 16 lets every architecture in
            the zoo (including VGG11's pooling stack and ViT's 4x4 patches) run; 8 is allowed
            for the small convnet.
        channels: 1 (grey) or 3 (grey replicated to RGB).
        test_fraction: held-out fraction, stratified by class.
        split_seed: seed of the fixed stratified split.
    """
    if not isinstance(size, int) or not 8 <= size <= 64:
        raise ConfigError(f"digits size={size!r} must be an integer in [8, 64] (e.g. size=16)")
    if channels not in (1, 3):
        raise ConfigError(f"digits channels={channels!r} must be 1 (grey) or 3 (RGB copy)")
    if not 0.05 <= test_fraction <= 0.5:
        raise ConfigError(f"digits test_fraction={test_fraction!r} must be in [0.05, 0.5]")
    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, stratify=labels, random_state=split_seed
    )

    def prepare(idx: np.ndarray) -> tuple[Tensor, Tensor]:
        x = torch.from_numpy(images[np.sort(idx)]).unsqueeze(1)
        if size != 8:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = x.clamp_(0.0, 1.0).repeat(1, channels, 1, 1).contiguous()
        return x, torch.from_numpy(labels[np.sort(idx)])

    train_x, train_y = prepare(train_idx)
    test_x, test_y = prepare(test_idx)
    mean, std = _channel_stats(train_x)
    return ImageDataset(
        name=EMBEDDED_DATASET,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=10,
        mean=mean,
        std=std,
        flip_invariant=False,
        default_epochs=20,
        default_batch_size=64,
    )


# ---------------------------------------------------------------------------------------------
# torchvision on-disk datasets


@dataclass(frozen=True)
class _DiskLayout:
    folder: str
    files: Sequence[str]
    num_classes: int
    flip_invariant: bool


ON_DISK = {
    "cifar10": _DiskLayout(
        "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
        10,
        True,
    ),
    "cifar100": _DiskLayout("cifar-100-python", ("train", "test", "meta"), 100, True),
    "svhn": _DiskLayout(".", ("train_32x32.mat", "test_32x32.mat"), 10, False),
}


_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}
"""What CIFAR's pickled batches may reference: numpy arrays and their dtypes, nothing else."""


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds dicts, lists, strings, bytes and numpy arrays only: a file that
    names anything else (code to run) is refused instead of executed."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"the file references {module}.{name}, which a CIFAR batch never does")
        return super().find_class(module, name)


class _SafePickle:
    """Stands in for the ``pickle`` module inside torchvision's CIFAR reader."""

    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return _ArraysOnly(file, **kwargs).load()


def _torchvision_split(
    name: str, root: Path, train: bool, download: bool, verify: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Read one split through torchvision's dataset class; returns (uint8 NHWC images, labels)."""
    base = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "svhn": tvd.SVHN}[name]

    class Local(base):  # type: ignore[misc, valid-type]
        # torchvision checks each file's md5 against the official release. Tests (and users
        # with their own re-encoded copies) switch that off; the files then only need to exist.
        def _check_integrity(self) -> bool:
            if verify:
                return super()._check_integrity()
            layout = ON_DISK[name]
            return all((root / layout.folder / f).is_file() for f in layout.files)

        def _load_meta(self) -> None:  # CIFAR: the class-name file is md5-checked on its own
            if verify:
                super()._load_meta()

    if name == "svhn":
        ds = Local(str(root), split="train" if train else "test", download=download)
        return ds.data.transpose(0, 2, 3, 1), np.asarray(ds.labels)
    # torchvision unpickles CIFAR's files; with checksums off they may be anyone's, so they are
    # read by an unpickler that can build arrays and nothing else
    with mock.patch.object(tvd.cifar, "pickle", _SafePickle):
        ds = Local(str(root), train=train, download=download)
    return ds.data, np.asarray(ds.targets)


def _load_torchvision(name: str, data_root: str | None, download: bool, verify_checksums: bool) -> ImageDataset:
    layout = ON_DISK[name]
    expected = ", ".join(layout.files)
    where = "" if layout.folder == "." else f"{layout.folder}/"
    if data_root is None:
        raise ConfigError(
            f"{name} needs --data-root DIR: a folder holding {where}{{{expected}}} "
            "in torchvision's format (or add --download when online)"
        )
    root = Path(data_root).expanduser()
    folder = root / layout.folder
    missing = [f for f in layout.files if not (folder / f).is_file()]
    if missing and not download:
        what = f"folder {folder}" if not folder.is_dir() else ", ".join(str(folder / f) for f in missing)
        raise ConfigError(
            f"{name}: missing {what}; "
            f"--data-root must hold {where}{{{expected}}} in torchvision's format "
            "(or add --download when online)"
        )
    try:
        train_x, train_y = _torchvision_split(name, root, True, download, verify_checksums)
        test_x, test_y = _torchvision_split(name, root, False, False, verify_checksums)
    except ConfigError:
        raise
    except Exception as err:  # corrupt pickle / .mat, failed checksum, failed download
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"{name}: could not read {root / layout.folder} ({type(err).__name__}: {first}); "
            f"it must hold {where}{{{expected}}} as released by the dataset's authors "
            "(re-download with --download, or pass --no-verify-checksums for a trusted re-encoded copy)"
        ) from None
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8 or len(y) != len(x):
            raise ConfigError(
                f"{name}: the {split} split under {root} is malformed (images {x.shape} {x.dtype}, "
                f"{len(y)} labels); expected uint8 N x 32 x 32 x 3 with one label each"
            )
    train_t = _from_uint8_nhwc(train_x)
    mean, std = _channel_stats(train_t)
    # SVHN's .mat files label the digit 0 as 10; torchvision already maps it to 0.
    return ImageDataset(
        name=name,
        train_x=train_t,
        train_y=torch.as_tensor(train_y, dtype=torch.int64),
        test_x=_from_uint8_nhwc(test_x),
        test_y=torch.as_tensor(test_y, dtype=torch.int64),
        num_classes=layout.num_classes,
        mean=mean,
        std=std,
        flip_invariant=layout.flip_invariant,
        default_epochs=160,
        default_batch_size=128,
    )


@dataclass(frozen=True)
class DataSource:
    """Where a dataset comes from: its registered name and, for the on-disk datasets
    (``ON_DISK``), the folder and how to read it. Picklable, so worker processes load the
    dataset themselves instead of receiving its tensors."""

    name: str
    data_root: str | None = None
    download: bool = False
    verify_checksums: bool = True

    def options(self) -> dict[str, Any]:
        """The dataset factory's keyword arguments (none for the built-in datasets)."""
        if self.name in ON_DISK:
            return dict(data_root=self.data_root, download=self.download, verify_checksums=self.verify_checksums)
        return {}

    def check_disk_options(self) -> None:
        """Refuse a folder or a download for a built-in dataset (a user mistake, not a no-op)."""
        if self.name not in ON_DISK and (self.data_root is not None or self.download):
            raise ConfigError(f"--data-root/--download are for {', '.join(ON_DISK)}; {self.name!r} is built in")

    def load(self) -> ImageDataset:
        return load_dataset(self.name, **self.options())


@DATASETS.register("cifar10", description="CIFAR-10 from --data-root (torchvision format), 32x32 RGB, 10 classes")
def cifar10(data_root: str | None = None, download: bool = False, verify_checksums: bool = True) -> ImageDataset:
    """CIFAR-10 read by torchvision from ``data_root/cifar-10-batches-py``."""
    return _load_torchvision("cifar10", data_root, download, verify_checksums)


@DATASETS.register("cifar100", description="CIFAR-100 from --data-root (torchvision format), 32x32 RGB, 100 classes")
def cifar100(data_root: str | None = None, download: bool = False, verify_checksums: bool = True) -> ImageDataset:
    """CIFAR-100 read by torchvision from ``data_root/cifar-100-python``."""
    return _load_torchvision("cifar100", data_root, download, verify_checksums)


@DATASETS.register("svhn", description="SVHN from --data-root (torchvision format: train_32x32.mat, test_32x32.mat)")
def svhn(data_root: str | None = None, download: bool = False, verify_checksums: bool = True) -> ImageDataset:
    """SVHN (cropped digits) read by torchvision from ``data_root/{train,test}_32x32.mat``."""
    return _load_torchvision("svhn", data_root, download, verify_checksums)
