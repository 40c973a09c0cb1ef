"""Leaderboard entries (one validated JSON document per result) and their renderings."""

from leaderboard.build import build_entries, write_leaderboard
from leaderboard.render import render, sapa_pairs
from leaderboard.schema import SCHEMA_VERSION, EntryError, load_entries, load_entry, validate

__all__ = [
    "SCHEMA_VERSION", "EntryError", "build_entries", "load_entries", "load_entry", "render", "sapa_pairs",
    "validate", "write_leaderboard",
]  # fmt: skip
