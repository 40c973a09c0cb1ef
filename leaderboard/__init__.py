"""Leaderboard entries, schema validation and rendering.

Arrives with the runner and leaderboard issue.
"""
