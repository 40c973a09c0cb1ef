"""Leaderboard entries (one validated JSON document per result) and their renderings.

This package reads entry files only; ``benchmark.entries`` writes them from a run's results.
"""

from sapabench.leaderboard.pairs import sapa_pairs
from sapabench.leaderboard.render import render
from sapabench.leaderboard.schema import SCHEMA_VERSION, EntryError, load_entries, load_entry, seal, validate

__all__ = ["SCHEMA_VERSION", "EntryError", "load_entries", "load_entry", "render", "sapa_pairs", "seal", "validate"]
