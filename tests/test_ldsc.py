"""Tests for caveat.ldsc: per-cluster BEDs, thin .annot.gz files valid for ldsc, the ldsc script."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from caveat.errors import InputError
from caveat.ldsc import export_ldsc


def _table():
    return pd.DataFrame({
        "peak_id": ["chr1:100-200", "chr1:500-600", "chr2:50-80", "chr2:300-400"],
        "chrom": ["chr1", "chr1", "chr2", "chr2"], "start": [100, 500, 50, 300], "end": [200, 600, 80, 400],
        "cluster": [0, 1, 0, 2], "cluster_label": ["ubiquitous", "ctA", "ubiquitous", "ctA+ctB"]})


def _bim(rng, chrom, n):
    bp = np.sort(rng.choice(np.arange(1, 700), n, replace=False))
    return pd.DataFrame({"chr": chrom, "snp": [f"rs{chrom}_{i}" for i in range(n)], "cm": 0.0, "bp": bp,
                         "a1": "A", "a2": "G"})


def _expected(bim, table, label):
    chrom = "chr" + bim["chr"].astype(str)
    sub = table[table["cluster_label"] == label]
    return np.array([int(((sub["chrom"] == c) & (sub["start"] < p) & (p <= sub["end"])).any())
                     for c, p in zip(chrom, bim["bp"])])


def _read_annot(path):
    with gzip.open(path, "rt") as fh:
        return pd.read_csv(fh, sep="\t")


def test_per_chromosome_thin_annot_valid_for_ldsc(tmp_path):
    rng = np.random.default_rng(0)
    bims = {c: _bim(rng, c, 200) for c in ("1", "2")}
    for c, b in bims.items():
        b.to_csv(tmp_path / f"ref.{c}.bim", sep="\t", header=False, index=False)
    t = _table()
    res = export_ldsc(t, tmp_path / "ldsc", bim=tmp_path / "ref.")
    for c, b in bims.items():
        a = _read_annot(tmp_path / "ldsc" / f"caveat.{c}.annot.gz")
        assert list(a.columns) == ["ubiquitous", "ctA", "ctA+ctB"]  # thin: annotations only, cluster order
        assert len(a) == len(b)                                     # one row per .bim SNP, .bim order
        assert set(np.unique(a.values)) <= {0, 1}
        for lab in a.columns:
            np.testing.assert_array_equal(a[lab].to_numpy(), _expected(b, t, lab))
        assert res["annot"][c]["snps"] == len(b)
    assert a.values.sum() > 0
    script = (tmp_path / "ldsc" / "run_ldsc.sh").read_text()
    assert "--l2" in script and "--thin-annot" in script and "--annot caveat.${chr}.annot.gz" in script
    assert "--h2" in script and "--overlap-annot" in script and "--ref-ld-chr \"$BASELINE\",caveat." in script
    assert "for chr in 1 2;" in script and str(tmp_path) not in script
    bed = (tmp_path / "ldsc" / "ctA+ctB.bed").read_text()
    assert bed == "chr2\t300\t400\tchr2:300-400\n"
    # deterministic bytes (gzip without a timestamp)
    first = (tmp_path / "ldsc" / "caveat.1.annot.gz").read_bytes()
    export_ldsc(t, tmp_path / "ldsc", bim=tmp_path / "ref.")
    assert (tmp_path / "ldsc" / "caveat.1.annot.gz").read_bytes() == first


def test_single_bim_split_by_chromosome_and_bad_bim(tmp_path):
    rng = np.random.default_rng(1)
    b = pd.concat([_bim(rng, "1", 50), _bim(rng, "2", 30)])
    b.to_csv(tmp_path / "all.bim", sep="\t", header=False, index=False)
    export_ldsc(_table(), tmp_path / "ldsc", bim=tmp_path / "all.bim")
    assert len(_read_annot(tmp_path / "ldsc" / "caveat.1.annot.gz")) == 50
    assert len(_read_annot(tmp_path / "ldsc" / "caveat.2.annot.gz")) == 30
    with pytest.raises(InputError, match="no PLINK .bim"):
        export_ldsc(_table(), tmp_path / "ldsc2", bim=tmp_path / "missing.")
    (tmp_path / "bad.bim").write_text("1\trs1\t0\tnotanumber\tA\tG\n")
    with pytest.raises(InputError, match="not an integer"):
        export_ldsc(_table(), tmp_path / "ldsc3", bim=tmp_path / "bad.bim")
