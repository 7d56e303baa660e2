"""The study's training regimes and their report order (shared vocabulary, no step imports another)."""

from __future__ import annotations

#: single-task (one model per cell type), multitask, multitask on peaks, multitask on non-ubiquitous peaks
REGIMES = ("single_task", "multitask", "multitask_peaks", "multitask_nonubiquitous")


def regime_order(regimes) -> list[str]:
    """The study's regimes in study order, then any other label (outside models, ``replicate``) sorted."""
    regimes = list(dict.fromkeys(map(str, regimes)))
    known = [r for r in REGIMES if r in regimes]
    return known + sorted(r for r in regimes if r not in REGIMES)
