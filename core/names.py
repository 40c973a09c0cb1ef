"""The harness's shared names, each defined once.

- ``CLEAN``: the attack name of clean-data cells and entries (the reference victims).
- ``NO_DEFENSE``: the defense name of undefended cells and entries.
- ``PRESETS``: the scales every attack has a preset for; :func:`default_preset` picks one by
  dataset.
- The SAPA twin naming: the SAPA version of a baseline attack ``X`` is registered as
  ``sapa-X`` (:func:`sapa_name`, :func:`base_name`, :func:`is_sapa`).
- ``NO_POISON`` and ``PRESET_SURROGATE``: how results rows and leaderboard entries write "no
  poison at all" (the preset and surrogate of clean-data entries) and "the surrogate of the
  attack's preset".
- The command line's vocabulary (``AUTO``, ``PRECISIONS``, ``MEMORY_FORMATS``, ``STEPS``,
  ``SCRATCH``, ``NESTED``/``SHARED``/``VICTIM_SEEDINGS``, ``CELL_CAP``): defined here, in a module
  without torch, so ``sapabench --help`` answers before torch is imported; the modules that use
  them (``core.numerics``, ``victims.protocols``, ``benchmark.suite``, ``benchmark.runner``)
  re-export them.
- :func:`file_name`: the only way a name from a user, an entry, a database or a plugin becomes
  part of a file name (names are data, never paths).
"""

from __future__ import annotations

import hashlib
import re

CLEAN = "clean"
NO_DEFENSE = "none"
PRESETS = ("paper", "embedded", "smoke")
EMBEDDED_DATASET = "digits"
NO_POISON = "-"
PRESET_SURROGATE = "preset"
SAPA_PREFIX = "sapa-"

ORACLE_FILTER = "oracle-filter"
"""The control that removes exactly the poisoned images (``defenses.controls``)."""
RANDOM_LIKE = "random-like-"
"""``random-like-F``: the control that removes as many random images per class as filter ``F``."""

AUTO = "auto"
PRECISIONS = ("fp32", "bf16")
MEMORY_FORMATS = ("contiguous", "channels_last")
STEPS = ("eager", "graph")
"""How a victim's training step runs: ``eager`` (op by op, on any device) or ``graph`` (captured
once as a CUDA graph and replayed, :mod:`sapabench.victims._graph`; CUDA only). Both run the same step on
the same draws; ``auto`` resolves with :func:`sapabench.victims.train.resolve_step`."""
SCRATCH = "scratch"
"""The victim protocol that trains from a random initialisation (``victims.protocols``)."""
NESTED = "nested"
SHARED = "shared"
VICTIM_SEEDINGS = (NESTED, SHARED)
"""How victims are seeded (:func:`sapabench.benchmark.suite.victim_seed`)."""
MAX_VERIFY_ENTRIES = 200
"""The most entries one ``sapabench verify`` re-runs without ``--max-entries`` (a standard
submission has 4 to 12; thousands re-train for days)."""
CELL_CAP = 5_000
"""The most cells a run starts without ``--yes`` (the largest built-in suite, table1, has 3,060)."""


def default_preset(dataset: str) -> str:
    """``embedded`` for the built-in digits, ``paper`` (the paper's CIFAR defaults) otherwise."""
    return "embedded" if dataset == EMBEDDED_DATASET else "paper"


def sapa_name(base: str) -> str:
    """The name of the SAPA version of baseline attack ``base``."""
    return SAPA_PREFIX + base


def is_sapa(attack: str) -> bool:
    return attack.startswith(SAPA_PREFIX)


def base_name(attack: str) -> str:
    """The baseline of a SAPA attack (the name itself for any other attack)."""
    return attack.removeprefix(SAPA_PREFIX)


def twin_name(attack: str) -> str:
    """The other member of the (baseline, SAPA version) pair ``attack`` would belong to."""
    return base_name(attack) if is_sapa(attack) else sapa_name(attack)


UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
MAX_FILE_NAME = 160
"""Characters of a file name :func:`file_name` keeps (well below every file system's 255 bytes)."""


def file_name(*parts: object, suffix: str = "") -> str:
    """A file name for ``parts`` (names and numbers) joined by ``--``, safe to create inside the
    harness's own folder whatever the names hold: every character outside ``A-Z a-z 0-9 . _ + -``
    becomes ``_`` (so ``/``, ``\\``, a NUL or a newline can never reach the file system), a
    leading dot is dropped (no hidden files, no ``..``), and a name that had to change or was too
    long gets 8 hex digits of the raw name's SHA-256, so two names never share a file. Names that
    are already safe (every built-in one) are kept as they are."""
    raw = "--".join(str(p) for p in parts)
    safe = UNSAFE.sub("_", raw).lstrip(".")
    if safe != raw or len(safe) > MAX_FILE_NAME or not safe:
        safe = f"{safe[:MAX_FILE_NAME]}-{hashlib.sha256(raw.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return safe + suffix
