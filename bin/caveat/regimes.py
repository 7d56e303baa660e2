"""The study's training regimes and their report order (shared vocabulary, no step imports another)."""

from __future__ import annotations

#: single-task (one model per cell type), multitask, multitask on peaks, multitask on non-ubiquitous peaks
REGIMES = ("single_task", "multitask", "multitask_peaks", "multitask_nonubiquitous")


def regime_order(regimes) -> list[str]:
    """The study's regimes in study order, then any other label (outside models, ``replicate``) sorted."""
    regimes = list(dict.fromkeys(map(str, regimes)))
    known = [r for r in REGIMES if r in regimes]
    return known + sorted(r for r in regimes if r not in REGIMES)


# ---------------------------------------------------------------- replicate models (issue 18.1)

#: seed offset between replicates: replicate k trains with ``seed + REPLICATE_SEED_STRIDE * (k - 1)``
REPLICATE_SEED_STRIDE = 1000
#: the ``replicate`` label of the mean-over-replicates model (predictions / scores averaged)
ENSEMBLE = "ensemble"
#: the ``replicate`` label of metrics.parquet's median-over-replicates rows (with ``replicate_sd``)
MEDIAN = "median"


def replicate_seed(seed: int, k: int) -> int:
    """The seed replicate ``k`` (1-based) trains with: ``seed + 1000 (k − 1)`` (replicate 1: the seed)."""
    if k < 1:
        raise ValueError(f"replicates count from 1, got {k}")
    return int(seed) + REPLICATE_SEED_STRIDE * (int(k) - 1)


def replicate_label(k: int) -> str:
    """``rep<k>``: the ``replicate`` value of a replicate's predictions, scores and metric rows."""
    return f"rep{int(k)}"


def replicate_number(label: str) -> int:
    """Inverse of :func:`replicate_label` (``rep2`` → 2)."""
    return int(str(label).removeprefix("rep"))


def model_path(regime: str, cell_type: str | None, k: int, n_replicates: int) -> str:
    """A model's folder under ``models/``: ``<regime>[/<cell type>]`` with one replicate (the
    layout without replicates), ``<regime>/rep<k>[/<cell type>]`` with several. The same string
    is the model's key in the train and score_variants summaries."""
    parts = [regime] + ([replicate_label(k)] if n_replicates > 1 else []) + ([cell_type] if cell_type else [])
    return "/".join(parts)


def model_units(regimes, cell_types, n_replicates: int) -> list[tuple[str, str | None, int]]:
    """(regime, cell type or None, replicate) of every model to train: one per regime and
    replicate, single_task one per cell type and replicate."""
    return [(r, ct, k) for r in regimes for k in range(1, int(n_replicates) + 1)
            for ct in (cell_types if r == "single_task" else [None])]
