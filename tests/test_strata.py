"""strata: the study's own-cluster strata, from cluster labels."""

from __future__ import annotations

import numpy as np

from caveat.strata import cluster_members, own_stratum, stratum_masks

CTS = ["B", "T", "T_cell", "NK"]


def test_cluster_members_reads_labels_and_suffixes():
    assert cluster_members("ubiquitous", CTS) == frozenset()
    assert cluster_members("B", CTS) == {"B"}
    assert cluster_members("B+NK", CTS) == {"B", "NK"}
    assert cluster_members("B+NK_2", CTS) == {"B", "NK"}       # a repeated label's suffix
    assert cluster_members("T_cell", CTS) == {"T_cell"}         # an underscore in a name is not a suffix
    assert cluster_members("T_2", CTS) == {"T"}
    assert cluster_members("lineage7", CTS) == frozenset()      # a user label naming no cell type


def test_own_stratum_per_cell_type():
    kind = ["ubiquitous", "specific", "specific", "specific", None]
    label = ["ubiquitous", "B+NK", "T", "mystery", None]
    got_b = own_stratum(kind, label, ["B"] * 5, CTS)
    got_t = own_stratum(kind, label, ["T"] * 5, CTS)
    assert list(got_b) == ["ubiquitous", "specific", "other_specific", "other_specific", None]
    assert list(got_t) == ["ubiquitous", "other_specific", "specific", "other_specific", None]
    m = stratum_masks(got_b)
    assert m["specific"].tolist() == [False, True, False, False, False]
    assert m["specific_any"].tolist() == [False, True, True, True, False]
    assert m["all"].all() and m["ubiquitous"].sum() == 1
    # a lineage cluster counts for each cell type it names
    assert own_stratum(["specific"] * 2, ["B+NK"] * 2, ["B", "NK"], CTS).tolist() == ["specific", "specific"]
    assert own_stratum(np.array([], object), [], [], CTS).size == 0
