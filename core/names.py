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
"""

from __future__ import annotations

CLEAN = "clean"
NO_DEFENSE = "none"
PRESETS = ("paper", "embedded", "smoke")
EMBEDDED_DATASET = "digits"
NO_POISON = "-"
PRESET_SURROGATE = "preset"
SAPA_PREFIX = "sapa-"


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
