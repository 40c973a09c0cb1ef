"""Defenses against data poisoning (data-level filters and training-level defenses).

Arrives with the defenses issue; the base class and registry will live here.
"""
