"""Peak strata per cell type: the study's own-cluster definition, shared by every step.

Kathail et al. compare, for each cell type, the peaks of **the cluster(s)
specific to that cell type** with the single **ubiquitous** cluster (Appendix
B.2; the authors' ``basenji_reference_accuracy_by_cluster.py`` selects, per
cell type, the peaks of its own cluster). A lineage cluster shared by several
cell types (label ``ctA+ctB``) counts for each of them. Peaks specific to
*other* cell types are closed in this one: pooling them with its own cluster
turns the comparison into open-vs-closed, so they are a separate stratum.

Vocabulary (column ``stratum`` of the variant tables, strata of ``metrics.parquet``)
- ``ubiquitous``   — the ubiquitous cluster (cluster id 0).
- ``specific``     — a cluster whose label names this cell type (own cluster).
- ``other_specific`` — a specific cluster of other cell types only.
- ``specific_any`` — metrics only: ``specific`` ∪ ``other_specific`` (the pooled, old definition).
- null           — outside every peak.

Cluster labels name their cell types joined by ``+`` (``ctA``, ``ctA+ctB``);
a repeated label gets a ``_N`` suffix (``ctA_2``), see
:func:`caveat.cluster_peaks.label_clusters`. User cluster BEDs follow the same
convention; a label naming no cell type belongs to none.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .log import get_logger

log = get_logger("strata")

UBIQUITOUS = "ubiquitous"
SPECIFIC = "specific"
OTHER_SPECIFIC = "other_specific"
SPECIFIC_ANY = "specific_any"
#: the two strata the study compares, in report order
KINDS = (UBIQUITOUS, SPECIFIC)
STRATA = (UBIQUITOUS, SPECIFIC, OTHER_SPECIFIC)
_SUFFIX = re.compile(r"_\d+$")


def cluster_members(label: str, cell_types: Sequence[str]) -> frozenset[str]:
    """Cell types a cluster label names (empty for the ubiquitous cluster).

    Examples
    --------
    >>> sorted(cluster_members("B+T_2", ["B", "T", "NK"]))
    ['B', 'T']
    """
    if label is None or label == UBIQUITOUS:
        return frozenset()
    known = set(cell_types)
    out = set()
    for tok in str(label).split("+"):
        tok = tok.strip()
        if tok in known:
            out.add(tok)
        elif _SUFFIX.sub("", tok) in known:
            out.add(_SUFFIX.sub("", tok))
    return frozenset(out)


def own_stratum(kind: Iterable, cluster_label: Iterable, cell_type: Iterable,
                cell_types: Sequence[str]) -> np.ndarray:
    """The stratum of each (peak, cell type) row.

    Parameters
    ----------
    kind : array-like of str or None, shape (n,)
        The peak's kind (``ubiquitous`` / ``specific``; None outside peaks).
    cluster_label : array-like of str or None, shape (n,)
    cell_type : array-like of str, shape (n,)
        The cell type the row is about.
    cell_types : sequence of str
        Every cell type of the study (to parse labels).

    Returns
    -------
    numpy.ndarray of object, shape (n,)
        ``ubiquitous``, ``specific``, ``other_specific`` or None.
    """
    kind = np.asarray(list(kind), dtype=object)
    label = np.asarray(list(cluster_label), dtype=object)
    ct = np.asarray(list(cell_type), dtype=object)
    members = {lab: cluster_members(lab, cell_types) for lab in set(label.tolist()) if isinstance(lab, str)}
    out = np.full(kind.shape, None, dtype=object)
    out[kind == UBIQUITOUS] = UBIQUITOUS
    spec = np.flatnonzero(kind == SPECIFIC)
    own = np.fromiter((ct[i] in members.get(label[i], ()) for i in spec), dtype=bool, count=spec.size)
    out[spec[own]] = SPECIFIC
    out[spec[~own]] = OTHER_SPECIFIC
    return out


def stratum_masks(stratum: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of every reported stratum over rows labelled by :func:`own_stratum`.

    Returns ``all``, ``ubiquitous``, ``specific`` (own cluster) and
    ``specific_any`` (own or other specific), shape (n,) each.
    """
    s = np.asarray(stratum, dtype=object)
    return {"all": np.ones(s.shape, bool), UBIQUITOUS: s == UBIQUITOUS, SPECIFIC: s == SPECIFIC,
            SPECIFIC_ANY: (s == SPECIFIC) | (s == OTHER_SPECIFIC)}


def attach_peak_strata(pred: pd.DataFrame, peaks: pd.DataFrame | None) -> pd.DataFrame:
    """Peak-level predictions with ``peak_kind``, ``cluster_label`` and the own-cluster ``stratum``.

    ``stratum`` is per row's cell type (:func:`caveat.strata.own_stratum`): a peak
    of cluster ``ctA+ctB`` is ``specific`` for ctA and ctB and ``other_specific``
    for every other cell type.
    """
    pk = pred[pred["kind"] == "peak"].copy()
    if "stratum" in pk.columns:
        return pk
    if peaks is None or "peak_id" not in pk.columns:
        log.info("no peak clusters (peaks.parquet absent): reference accuracy for all peaks only")
        pk["peak_kind"], pk["cluster_label"], pk["stratum"] = None, None, None
        return pk
    info = peak_info(peaks)
    pk = pk.drop(columns=[c for c in ("peak_kind", "cluster_label") if c in pk.columns])
    pk = pk.merge(info.reset_index(), on="peak_id", how="left")
    unknown = pk.loc[pk["peak_kind"].isna(), "peak_id"].nunique()
    if unknown:
        log.warning("%d predicted peak(s) are not in peaks.parquet: counted in stratum 'all' only", unknown)
    pk["stratum"] = own_stratum(pk["peak_kind"], pk["cluster_label"], pk["cell_type"],
                                study_cell_types(peaks, pk["cell_type"]))
    return pk


def peak_info(peaks: pd.DataFrame) -> pd.DataFrame:
    """peak_id → peak_kind, cluster_label (None when the table has no labels: no own-cluster strata)."""
    info = peaks.drop_duplicates("peak_id").set_index("peak_id")
    if "cluster_label" not in info.columns:
        log.warning("peaks.parquet has no cluster_label: no cell type has an own-cluster 'specific' stratum "
                    "(only specific_any)")
    label = info["cluster_label"] if "cluster_label" in info.columns else pd.Series(None, index=info.index)
    return pd.DataFrame({"peak_kind": info["kind"].astype(object), "cluster_label": label.astype(object)})


def study_cell_types(peaks: pd.DataFrame | None, *more) -> list[str]:
    """Every cell type of the study: peaks.parquet's ``acc_<cell type>`` columns plus any given."""
    cts = [c[4:] for c in peaks.columns if c.startswith("acc_")] if peaks is not None else []
    for m in more:
        cts += [str(x) for x in pd.unique(pd.Series(m))]
    return list(dict.fromkeys(cts))
