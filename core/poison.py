"""Poison sets as data: indices + perturbations + labels + the threat model, on disk as
``poison.safetensors`` (tensors) beside ``poison.json`` (everything else), never pickle.

Loading validates everything a tampered or mismatched file could break: the JSON fields and
their types, the tensor file's sha256, shapes, the index range, the eps bound, the budget and
the pixel range, and (given the dataset) that it was crafted on that very dataset.

The metadata is sealed (format 3): ``poison.json`` records a digest of every field it holds
(the threat model, eps, budget, dataset and its fingerprint, the attack and its config, the
seed, the timings and diagnostics, the tensors' sha256), so an edit of any field is refused
naming it, instead of being measured against (an edited target index would otherwise be
evaluated as if the attack had aimed there). Folders written before sealing (formats 1 and 2)
load only through :func:`migrate`, which says that it trusts their metadata as found.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from sapabench.core.atomic import file_sha256
from sapabench.core.datasets import ImageDataset
from sapabench.core.errors import ConfigError
from sapabench.core.files import read_json, regular_file
from sapabench.core.numerics import FP32, Numerics
from sapabench.core.threats import ThreatModel

# Format 3 seals the metadata; format 2 named seconds ``*_s`` (format 1: ``craft_seconds`` and
# ``extra.surrogate_train_seconds_excluded``). Formats 1 and 2 load only through :func:`migrate`.
FORMAT_VERSION = 3
UNSEALED_FORMATS = (1, 2)
SEAL = "seal"
UNSEALED = ("format_version", SEAL)
TENSORS_FILE = "poison.safetensors"
MAX_TENSOR_BYTES = 4 << 30
"""The largest poison tensors file read (a perturbation of all of CIFAR-10 in float32 is 0.6 GB)."""
POISON_TENSORS = frozenset({"indices", "delta", "labels", "trigger"})
"""The tensors a poison file may hold (indices and delta always; labels and trigger when used)."""
META_FILE = "poison.json"
CRAFT_NUMERICS = "craft_numerics"
EPS_TOLERANCE = 1e-6


@dataclass(frozen=True)
class PoisonSet:
    """One crafted poison set and where it came from.

    Attributes:
        attack: registered attack name, e.g. ``sapa-gradient-matching``.
        dataset, dataset_fingerprint, num_train, image_shape: the clean data it applies to.
        indices: int64 (P,) distinct indices into the clean training set.
        delta: float32 (P, C, H, W) perturbations, ``|delta| <= eps`` and ``x + delta`` in [0, 1].
        labels: int64 (P,) new labels, or None for clean-label attacks (all four here).
        eps: L_inf bound in [0, 1] pixel units. budget: the allowed fraction of the training set.
        threat: the :class:`ThreatModel`. trigger: (C, h, w) patch for backdoors, else None.
        config: the full attack config. seed: the crafting seed.
        surrogate: description of the surrogate(s) used. craft_s: wall time of crafting in seconds.
        extra: attack-specific diagnostics (final loss, SAPA v_hat norms, ...).
        numerics: the precision and memory format the attack crafted in (``craft_numerics`` in
            ``poison.json``; poisons written before it was recorded read as plain fp32, the only
            numerics there was).
    """

    attack: str
    dataset: str
    dataset_fingerprint: str
    num_train: int
    image_shape: tuple[int, int, int]
    indices: Tensor
    delta: Tensor
    labels: Tensor | None
    eps: float
    budget: float
    threat: ThreatModel
    trigger: Tensor | None
    config: dict[str, Any]
    seed: int
    surrogate: dict[str, Any]
    craft_s: float
    sapabench_version: str
    extra: dict[str, Any] = field(default_factory=dict)
    numerics: Numerics = FP32

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------------------------- checks
    def validate(self, dataset: ImageDataset | None = None) -> None:
        """Refuse a poison set that breaks its own bounds (or does not fit ``dataset``)."""
        if not (isinstance(self.eps, float) and 0.0 < self.eps <= 1.0):
            raise ConfigError(f"poison check failed: eps={self.eps!r} must be in (0, 1]")
        if not (isinstance(self.budget, float) and 0.0 < self.budget <= 1.0):
            raise ConfigError(f"poison check failed: budget={self.budget!r} must be in (0, 1]")
        idx, delta = self.indices, self.delta
        if idx.dtype != torch.int64 or idx.ndim != 1:
            raise ConfigError("poison check failed: indices must be a 1-D int64 tensor")
        if delta.dtype != torch.float32:
            raise ConfigError(f"poison check failed: delta is {delta.dtype}, not torch.float32")
        if tuple(delta.shape) != (len(idx), *self.image_shape):
            raise ConfigError(
                f"poison check failed: delta shape {tuple(delta.shape)} != {(len(idx), *self.image_shape)} "
                "(one perturbation per poisoned index, of the images' shape)"
            )
        if len(torch.unique(idx)) != len(idx):
            raise ConfigError("poison check failed: indices repeat")
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= self.num_train):
            raise ConfigError(f"poison check failed: indices outside [0, {self.num_train})")
        allowed = math.floor(self.budget * self.num_train + 1e-9)
        if len(idx) > allowed:
            raise ConfigError(
                f"poison check failed: {len(idx)} poisons exceed the budget {self.budget:g} x {self.num_train} = {allowed}"
            )
        if not torch.isfinite(delta).all():
            raise ConfigError("poison check failed: delta has NaN or infinite values")
        worst = float(delta.abs().max()) if len(idx) else 0.0
        if worst > self.eps + EPS_TOLERANCE:
            raise ConfigError(f"poison check failed: |delta| reaches {worst:.6f} > eps {self.eps:.6f}")
        if self.labels is not None and (self.labels.dtype != torch.int64 or self.labels.shape != idx.shape):
            raise ConfigError("poison check failed: labels must be int64 with one per index")
        if self.threat.kind == "backdoor":
            if self.trigger is None or self.trigger.ndim != 3 or self.trigger.shape[0] != self.image_shape[0]:
                raise ConfigError("poison check failed: a backdoor needs a (C, h, w) trigger patch")
            if self.trigger.dtype != torch.float32 or not torch.isfinite(self.trigger).all():
                raise ConfigError("poison check failed: the trigger must be float32 without NaN or infinite values")
            if float(self.trigger.min()) < 0 or float(self.trigger.max()) > 1:
                raise ConfigError("poison check failed: trigger pixels outside [0, 1]")
        if dataset is not None:
            self.check_dataset(dataset)

    def check_dataset(self, dataset: ImageDataset) -> None:
        """Refuse to apply this poison to another dataset than the one it was crafted on."""
        if dataset.name != self.dataset or dataset.fingerprint != self.dataset_fingerprint:
            raise ConfigError(
                f"this poison was crafted on dataset {self.dataset!r} (fingerprint {self.dataset_fingerprint}), "
                f"not on {dataset.name!r} (fingerprint {dataset.fingerprint}); evaluate it with --dataset {self.dataset} "
                "and the same dataset options"
            )
        x = dataset.train_x[self.indices.to(dataset.device)].cpu() + self.delta
        if float(x.min()) < -EPS_TOLERANCE or float(x.max()) > 1 + EPS_TOLERANCE:
            raise ConfigError("poison check failed: clean image + delta leaves the pixel range [0, 1]")

    @property
    def num_poisons(self) -> int:
        return int(self.indices.numel())

    # ----------------------------------------------------------------------------------- disk
    def _tensors(self) -> dict[str, Tensor]:
        out = {"indices": self.indices.contiguous(), "delta": self.delta.contiguous()}
        if self.labels is not None:
            out["labels"] = self.labels.contiguous()
        if self.trigger is not None:
            out["trigger"] = self.trigger.contiguous()
        return out

    def _meta(self, tensor_sha256: str) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "attack": self.attack,
            "dataset": self.dataset,
            "dataset_fingerprint": self.dataset_fingerprint,
            "num_train": self.num_train,
            "image_shape": list(self.image_shape),
            "num_poisons": self.num_poisons,
            "eps": self.eps,
            "budget": self.budget,
            "threat": asdict(self.threat),
            "config": self.config,
            "seed": self.seed,
            "surrogate": self.surrogate,
            "craft_s": self.craft_s,
            "sapabench_version": self.sapabench_version,
            "extra": self.extra,
            CRAFT_NUMERICS: {"precision": self.numerics.precision, "memory_format": self.numerics.memory_format},
            "tensors_sha256": tensor_sha256,
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write ``poison.safetensors`` + ``poison.json`` into ``out_dir``, so that an interrupt at
        any instant leaves the earlier poison or the new one, never neither, and never removes a
        file the harness did not write. A new folder is written beside it and renamed into place;
        an existing poison folder keeps every other file: the two new files are written as
        ``*.next``, flushed to disk, then renamed over the old ones, tensors first; the metadata,
        which seals the tensors' digest, is the commit point (:func:`recover` finishes or drops
        an interrupted save). A folder that holds files but no poison is refused."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out} is a file, not a folder; choose another --out")
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
            try:
                self._write(tmp / TENSORS_FILE, tmp / META_FILE)
                _fsync(tmp)
                os.replace(tmp, out)  # out did not exist: the rename is the whole commit
                _fsync(out.parent)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            return out
        check_poison_folder(out)
        recover(out)
        tensors_next, meta_next = out / (TENSORS_FILE + NEXT), out / (META_FILE + NEXT)
        try:
            self._write(tensors_next, meta_next)
        except BaseException:  # nothing renamed yet: the earlier poison is untouched
            for leftover in (tensors_next, meta_next):
                leftover.unlink(missing_ok=True)
            raise
        os.replace(tensors_next, out / TENSORS_FILE)
        os.replace(meta_next, out / META_FILE)  # the commit point
        _fsync(out)
        return out

    def _write(self, tensors: Path, meta: Path) -> None:
        """The two files, each flushed to disk before any rename makes it the poison."""
        try:
            save_file(self._tensors(), str(tensors), metadata={"format": "sapabench-poison"})
        except OSError:
            raise
        except Exception as err:  # safetensors reports a full or read-only disk as its own error
            raise ConfigError(
                f"{tensors.parent}: writing the poison failed ({' '.join(str(err).split())[:200]}): the disk may be "
                "full or read-only; free some space or choose another --out (an earlier poison there is kept)"
            ) from None
        _fsync(tensors)
        digest = file_sha256(tensors)
        with open(meta, "w", encoding="utf-8") as f:
            f.write(json.dumps(sealed(self._meta(digest)), indent=2, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    @classmethod
    def load(cls, folder: str | Path, dataset: ImageDataset | None = None, *, unsealed: bool = False) -> PoisonSet:
        """Read and validate a poison folder; any failed check raises a :class:`ConfigError`.
        ``unsealed=True`` (only :func:`migrate` passes it) also reads formats 1 and 2."""
        folder = Path(folder)
        with contextlib.suppress(OSError):  # a read-only folder is read as it is
            recover(folder)  # a save interrupted between its renames is finished (or dropped) first
        meta_path, tensor_path = folder / META_FILE, folder / TENSORS_FILE
        if not meta_path.exists() or not tensor_path.exists():
            raise ConfigError(
                f"{folder} is not a poison folder: it needs {META_FILE} and {TENSORS_FILE} (made by sapabench attack)"
            )
        try:
            meta = read_json(meta_path, "poison metadata")
            regular_file(tensor_path, "poison tensors", MAX_TENSOR_BYTES)  # its digest is checked below
        except ConfigError as err:
            raise ConfigError(f"poison check failed: {err}") from None
        if not isinstance(meta, dict):
            raise ConfigError(f"poison check failed: {meta_path} must hold a JSON object")
        version = meta.get("format_version")
        if version in UNSEALED_FORMATS and not unsealed:
            raise ConfigError(
                f"poison check failed: {meta_path} is format {version}, written before poison metadata was "
                f"sealed, so an edit of its threat model or eps could not be detected; if you trust this folder, "
                f"run: sapabench migrate-poison {folder}"
            )
        if version not in (*UNSEALED_FORMATS, FORMAT_VERSION):
            raise ConfigError(
                f"poison check failed: format_version {version!r}, expected {FORMAT_VERSION} "
                "(written by a newer sapabench? upgrade it)"
            )
        if version == FORMAT_VERSION:
            check_seal(meta, meta_path)
        meta = _upgraded(meta)
        spec = {
            "attack": str,
            "dataset": str,
            "dataset_fingerprint": str,
            "num_train": int,
            "image_shape": list,
            "num_poisons": int,
            "eps": (int, float),
            "budget": (int, float),
            "threat": dict,
            "config": dict,
            "seed": int,
            "surrogate": dict,
            "craft_s": (int, float),
            "sapabench_version": str,
            "extra": dict,
            "tensors_sha256": str,
        }
        for key, typ in spec.items():
            if key not in meta:
                raise ConfigError(f"poison check failed: {meta_path} lacks the field {key!r}")
            if not isinstance(meta[key], typ) or isinstance(meta[key], bool):
                raise ConfigError(f"poison check failed: field {key!r} has the wrong type in {meta_path}")
        if file_sha256(tensor_path) != meta["tensors_sha256"]:
            raise ConfigError(
                f"poison check failed: {tensor_path} does not match the sha256 recorded in {META_FILE} (tampered or corrupt)"
            )
        try:
            tensors = load_file(str(tensor_path))
        except Exception as err:  # safetensors raises its own error types
            raise ConfigError(f"poison check failed: cannot read {tensor_path} ({err})") from None
        for key in ("indices", "delta"):
            if key not in tensors:
                raise ConfigError(f"poison check failed: {tensor_path} lacks the tensor {key!r}")
        extra_tensors = sorted(set(tensors) - POISON_TENSORS)
        if extra_tensors:
            raise ConfigError(
                f"poison check failed: {tensor_path} holds tensors a poison does not have ({', '.join(extra_tensors)})"
            )
        if int(tensors["indices"].numel()) != meta["num_poisons"]:
            raise ConfigError("poison check failed: num_poisons does not match the stored indices")
        try:
            threat = ThreatModel(**meta["threat"])
        except TypeError as err:
            raise ConfigError(f"poison check failed: bad threat model ({err})") from None
        poison = cls(
            attack=meta["attack"],
            dataset=meta["dataset"],
            dataset_fingerprint=meta["dataset_fingerprint"],
            num_train=meta["num_train"],
            image_shape=tuple(meta["image_shape"]),  # type: ignore[arg-type]
            indices=tensors["indices"],
            delta=tensors["delta"],
            labels=tensors.get("labels"),
            eps=float(meta["eps"]),
            budget=float(meta["budget"]),
            threat=threat,
            trigger=tensors.get("trigger"),
            config=meta["config"],
            seed=meta["seed"],
            surrogate=meta["surrogate"],
            craft_s=float(meta["craft_s"]),
            sapabench_version=meta["sapabench_version"],
            extra=meta["extra"],
            numerics=_numerics(meta.get(CRAFT_NUMERICS), meta_path),
        )
        if dataset is not None:
            poison.check_dataset(dataset)
        return poison


def _numerics(recorded: Any, where: Path) -> Numerics:
    """The crafting numerics ``poison.json`` records (absent: plain fp32, written before they were)."""
    if recorded is None:
        return FP32
    if not isinstance(recorded, dict) or set(recorded) != {"precision", "memory_format"}:
        raise ConfigError(
            f"poison check failed: field {CRAFT_NUMERICS!r} in {where} must hold precision and memory_format"
        )
    try:
        return Numerics(recorded["precision"], recorded["memory_format"])
    except ConfigError as err:
        raise ConfigError(f"poison check failed: {CRAFT_NUMERICS} in {where}: {err}") from None


def _field_digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def sealed(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with its seal: a digest per field and one over them all."""
    fields_ = {k: _field_digest(v) for k, v in sorted(meta.items()) if k not in UNSEALED}
    return {**meta, SEAL: {"fields": fields_, "sha256": _field_digest(fields_)}}


def check_seal(meta: dict[str, Any], where: Path) -> None:
    """Refuse ``meta`` unless every field is the one its seal recorded (naming the edited ones)."""
    seal = meta.get(SEAL)
    if not (isinstance(seal, dict) and isinstance(seal.get("fields"), dict) and isinstance(seal.get("sha256"), str)):
        raise ConfigError(f"poison check failed: {where} has no valid seal (tampered or corrupt)")
    recorded = seal["fields"]
    if _field_digest(recorded) != seal["sha256"]:
        raise ConfigError(f"poison check failed: the seal in {where} was edited (tampered or corrupt)")
    now = {k: v for k, v in meta.items() if k not in UNSEALED}
    edited = sorted(k for k in set(now) | set(recorded) if k not in now or recorded.get(k) != _field_digest(now[k]))
    if edited:
        raise ConfigError(
            f"poison check failed: {', '.join(edited)} in {where} differ from what was sealed when the poison was "
            "saved (edited metadata; re-craft it with sapabench attack)"
        )


NEXT = ".next"
"""The suffix of a poison file written but not yet renamed into place (:meth:`PoisonSet.save`)."""


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's entry to disk (a folder fsync makes its renames durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that cannot fsync a folder
        pass
    finally:
        os.close(fd)


def check_poison_folder(folder: str | Path) -> None:
    """Refuse, before any work, an output folder that is a file or holds files but no poison
    (the poison would be written among a user's files, which the harness never replaces)."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder; choose another --out")
    if out.is_dir() and not (out / META_FILE).exists() and any(not p.name.endswith(NEXT) for p in out.iterdir()):
        raise ConfigError(
            f"{out} holds files but no poison ({META_FILE}); sapabench writes a poison only into a new folder or an "
            "earlier poison folder: choose another --out"
        )


def recover(folder: str | Path) -> None:
    """Finish or drop a save that was interrupted: where the new metadata is waiting and the
    tensors it seals are already in place, commit it; otherwise drop the ``*.next`` files (the
    harness's own), leaving the earlier poison as it was."""
    out = Path(folder)
    meta_next, tensors_next = out / (META_FILE + NEXT), out / (TENSORS_FILE + NEXT)
    if not meta_next.exists() and not tensors_next.exists():
        return
    if meta_next.exists() and not tensors_next.exists() and (out / TENSORS_FILE).exists():
        try:
            expected = json.loads(meta_next.read_text()).get("tensors_sha256")
        except (OSError, ValueError, AttributeError):
            expected = None
        if expected is not None and file_sha256(out / TENSORS_FILE) == expected:
            os.replace(meta_next, out / META_FILE)
            _fsync(out)
            return
    for leftover in (meta_next, tensors_next):
        if leftover.exists():
            leftover.unlink()


def migrate(folder: str | Path) -> bool:
    """Re-save a poison folder of format 1 or 2 (unsealed) as a sealed format-3 folder, in place,
    trusting its metadata as found (with a warning: nothing can tell whether it was edited).
    A folder that is sealed already is checked (seal and tensors) and left as it is: False."""
    meta = read_json(Path(folder) / META_FILE, "poison metadata")
    if isinstance(meta, dict) and meta.get("format_version") == FORMAT_VERSION:
        PoisonSet.load(folder)  # its seal and tensors are checked; a folder edited after sealing is refused
        return False
    poison = PoisonSet.load(folder, unsealed=True)
    warnings.warn(
        f"{folder}: sealing metadata that was never sealed; its threat model and eps are trusted as found",
        stacklevel=2,
    )
    poison.save(folder)
    return True


def _upgraded(meta: dict[str, Any]) -> dict[str, Any]:
    """A format-1 ``poison.json`` with its seconds fields renamed as in format 2."""
    if meta.get("format_version") != 1:
        return meta
    meta = {("craft_s" if k == "craft_seconds" else k): v for k, v in meta.items()}
    renamed = (
        ("extra", "surrogate_train_seconds_excluded", "surrogate_train_s_excluded"),
        ("surrogate", "train_seconds", "train_s"),
    )
    for key, old, new in renamed:
        if isinstance(meta.get(key), dict) and old in meta[key]:
            meta[key] = {(new if k == old else k): v for k, v in meta[key].items()}
    return meta


def recorded_sha256(folder: str | Path) -> str:
    """The sha256 of a saved poison's tensors, as :meth:`PoisonSet.save` recorded it (no re-hashing;
    load the folder first for the checks)."""
    return read_json(Path(folder) / META_FILE, "poison metadata")["tensors_sha256"]
