"""Figures measured over several rounds: each figure's median and spread.

scripts/benchmark.py takes every figure once per round, its parts interleaved, so
that a drift of a shared machine's speed touches them alike; a figure is then its
median over the rounds, with the lowest and highest value beside it.
"""

from __future__ import annotations

from statistics import median


def summarize(rounds: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each figure of `rounds` (one dict of figures per round, the same keys) as
    {"median", "min", "max"} over the rounds."""
    return {name: {"median": median(r[name] for r in rounds),
                   "min": min(r[name] for r in rounds),
                   "max": max(r[name] for r in rounds)} for name in rounds[0]}
