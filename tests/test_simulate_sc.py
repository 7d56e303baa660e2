"""Tests of the single-cell presets (issue 19, part 4) on ``tiny-sc``: the bulk tiny study's
truth and reads, given to cells of two pooled-donor 10x-like libraries. Counted here from the
BAMs and fragments files with pysam, independently of the simulator's own bookkeeping."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from caveat.samplesheet import read_samplesheet
from caveat.simulate.single_cell import FRAGMENT_MIN_MAPQ, TN5_LEFT, TN5_RIGHT
from caveat.single_cell import pseudobulk_samples, read_libraries

LIBS = ("lib1", "lib2")
SAMPLES = [f"{d}_{c}" for d in ("D1", "D2", "D3") for c in ("ctA", "ctB", "ctC")]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _digests(root: Path) -> dict:
    return {str(p.relative_to(root)): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pairs(tiny_sc_sim) -> pd.DataFrame:
    """One row per aligned read pair of both libraries (from read 1, mates joined by name)."""
    rows, mates = [], {}
    for lib in LIBS:
        with pysam.AlignmentFile(str(tiny_sc_sim / "libraries" / f"{lib}.bam")) as bam:
            for r in bam.fetch(until_eof=True):
                if r.is_unmapped or not r.is_proper_pair:
                    continue
                if r.is_read1:
                    left = min(r.reference_start, r.next_reference_start)
                    rows.append((lib, r.query_name, r.get_tag("CB"), r.reference_name, left,
                                 left + abs(r.template_length), r.reference_start, r.mapping_quality, r.is_duplicate,
                                 max(r.reference_start, r.next_reference_start), *_end_strands(r)))
                else:
                    mates[(lib, r.query_name)] = (r.mapping_quality, r.is_duplicate)
    df = pd.DataFrame(rows, columns=["library", "name", "cb", "chrom", "start", "end", "pos1", "mapq1", "dup",
                                     "hi", "lo_rev", "hi_rev"])
    m = [mates[k] for k in zip(df.library, df.name)]
    df["mapq2"] = [x[0] for x in m]
    assert (df["dup"] == [x[1] for x in m]).all()  # both mates carry the pair's flag
    df["sample"] = df["name"].str.rsplit(":", n=1).str[0]
    df["idx"] = df["name"].str.rsplit(":", n=1).str[1].astype(int)
    return df


def _end_strands(r: pysam.AlignedSegment) -> tuple[bool, bool]:
    """Strand of the read at the pair's lower and upper start (mates starting together: the
    reverse one last)."""
    own, mate = r.is_reverse, r.mate_is_reverse
    if r.reference_start == r.next_reference_start:
        return own and mate, own or mate
    return (own, mate) if r.reference_start < r.next_reference_start else (mate, own)


#: the WASP step's duplicate key of a pair (wasp_remap._dedup_keep), barcode aside
DEDUP = ["chrom", "start", "hi", "lo_rev", "hi_rev"]


@pytest.fixture(scope="module")
def truth(tiny_sc_sim):
    return (pd.read_parquet(tiny_sc_sim / "truth" / "barcodes.parquet"),
            json.loads((tiny_sc_sim / "simulate.summary.json").read_text()))


def test_layout_samplesheet_and_tables(tiny_sc_sim):
    assert not (tiny_sc_sim / "bams").exists()  # the donors' reads are only in the pooled libraries
    for lib in LIBS:
        for ext in (".bam", ".bam.bai", ".fragments.tsv.gz", ".fragments.tsv.gz.tbi", ".barcodes.csv"):
            assert (tiny_sc_sim / "libraries" / f"{lib}{ext}").is_file()
    with pysam.VariantFile(str(tiny_sc_sim / "genotypes.vcf.gz")) as vcf:
        donors = list(vcf.header.samples)
    libs, bcs = read_libraries(tiny_sc_sim / "samplesheet.csv", vcf_donors=donors)  # every check passes
    assert list(libs["library"]) == list(LIBS)
    assert read_samplesheet(tiny_sc_sim / "samplesheet.csv", libraries="skip").empty
    pb = pseudobulk_samples(bcs)
    assert list(pb["sample"]) == SAMPLES and all(x == list(LIBS) for x in pb["library"])
    # ~5 % of the table's barcodes are unassigned or doublets, dropped by the reader
    dropped = libs["dropped"].sum() / (libs["dropped"].sum() + libs["cells"].sum())
    assert 0.03 <= dropped <= 0.08
    for lib in LIBS:
        with pysam.AlignmentFile(str(tiny_sc_sim / "libraries" / f"{lib}.bam")) as bam:
            assert bam.header["HD"]["SO"] == "coordinate"
            assert [rg["ID"] for rg in bam.header["RG"]] == [lib]
            assert all("D1" not in rg.get("SM", "") for rg in bam.header["RG"])  # no donor in the header


def test_same_study_truth_as_the_bulk_preset(tiny_sim, tiny_sc_sim):
    """tiny-sc is tiny's study: the genome, VCF, peaks and every truth table are the same files."""
    for rel in ("genome.fa", "genotypes.vcf.gz", "blacklist.bed", "peaks/ctA.bed", "truth/snps.parquet",
                "truth/elements.parquet", "truth/genotype_errors.parquet", "truth/haplotype_shares.parquet",
                "truth/motifs.json", "truth/artefact_regions.bed"):
        assert _sha(tiny_sim / rel) == _sha(tiny_sc_sim / rel), rel


def test_each_samples_reads_are_the_bulk_reads_plus_its_twins(tiny_sim, tiny_sc_sim, pairs, truth):
    """Split by source, each donor × cell type's read pairs are exactly the bulk preset's
    (same names, positions, MAPQ), plus its planted twins (names after the bulk ones)."""
    _, summary = truth
    twins = pd.read_parquet(tiny_sc_sim / "truth" / "cross_cell_twins.parquet")
    for sample in SAMPLES:
        n_bulk = summary["fragments"][sample]["fragments"]
        with pysam.AlignmentFile(str(tiny_sim / "bams" / f"{sample}.bam")) as bam:
            bulk = {(r.query_name, r.reference_name, r.reference_start, r.mapping_quality)
                    for r in bam.fetch(until_eof=True) if r.is_read1 and r.is_proper_pair}
        mine = pairs[pairs["sample"] == sample]
        sc_bulk = mine[mine["idx"] < n_bulk]
        assert set(zip(sc_bulk.name, sc_bulk.chrom, sc_bulk.pos1, sc_bulk.mapq1)) == bulk, sample
        extra = set(mine.loc[mine["idx"] >= n_bulk, "name"])
        planted = set(twins.loc[twins["sample"] == sample, "twin_read"])
        assert extra <= planted and len(extra) >= 0.95 * len(planted) > 50


def test_barcodes_name_their_cells_donor_and_cell_type(pairs, truth):
    """Every read's CB is a barcode of its library whose truth holds the read's donor × cell type
    (a doublet's two cells; an ambient barcode any); the table's labels are the truth's."""
    table, _ = truth
    t = table.set_index(["library", "barcode"])
    key = list(zip(pairs.library, pairs.cb))
    assert set(key) <= set(t.index)
    row = t.loc[key]
    one = (row["donor"] + "_" + row["cell_type"]).to_numpy()
    two = (row["donor2"] + "_" + row["cell_type2"]).to_numpy()
    kind = row["kind"].to_numpy()
    s = pairs["sample"].to_numpy()
    cell = np.isin(kind, ["cell", "unassigned"])
    assert (s[cell] == one[cell]).all()
    dbl = kind == "doublet"
    assert ((s[dbl] == one[dbl]) | (s[dbl] == two[dbl])).all() and (one[dbl] != two[dbl]).all()
    doublets = table[table.kind == "doublet"]
    assert set(s[dbl]) and (doublets["donor"] != doublets["donor2"]).all()
    assert (kind == "ambient").mean() < 0.05
    cells = table[table.kind == "cell"]
    assert (cells.table_donor == cells.donor).all() and (cells.table_cell_type == cells.cell_type).all()
    assert set(table.loc[table.kind == "unassigned", "table_donor"]) == {"unassigned"}
    assert not table.loc[table.kind == "ambient", "in_table"].any()


def test_duplicates_are_flagged_per_barcode_only(pairs, truth):
    """Within one barcode, one pair per WASP dedup key (both mates' starts and strands) is kept
    and the rest flagged 0x400; a pair is never flagged for a twin in another barcode."""
    _, summary = truth
    per = pairs.groupby(["library", "cb", *DEDUP])["dup"].agg(["sum", "size"])
    assert ((per["size"] - per["sum"]) == 1).all()
    flagged = int(pairs["dup"].sum())
    planted = sum(v["pcr_duplicates"] for v in summary["fragments"].values())
    assert flagged >= 0.9 * planted
    # a bulk-style dedup (position only) would flag more: the cross-cell identical ends
    by_pos = pairs.duplicated(["library", "chrom", "start", "end"]).sum()
    assert by_pos > flagged


def test_flagged_pairs_are_what_the_wasp_dedup_removes(pairs, tiny_sc_sim):
    """The WASP step's per-barcode dedup (wasp_remap._dedup_keep, run here on each library's
    records per contig) removes as many records as the simulator flagged pairs, two per pair:
    both key a pair alike (the simulator's interval key would not where one alignment of a
    fragment's right mate has a gap and the other not)."""
    from caveat import bam_records as br
    from caveat import barcodes as bcs
    from caveat import wasp_remap as wr

    for lib in LIBS:
        bam = tiny_sc_sim / "libraries" / f"{lib}.bam"
        _, chunks = br.stream_file(bam)
        ch = wr.concat_many(list(chunks))
        ok = (ch.flag & (br.UNMAP | br.SECONDARY | br.SUPPLEMENTARY)) == 0
        ok &= (ch.flag & br.PROPER) != 0
        removed = 0
        for ref in np.unique(ch.refid[ok]):
            sub = wr.take(ch, np.flatnonzero(ok & (ch.refid == ref)))
            removed += int((~wr._dedup_keep(sub, bcs.value_hashes(sub.buf, sub.offs, "CB", bam))).sum())
        flagged = int(pairs.loc[pairs.library == lib, "dup"].sum())
        assert removed == 2 * flagged > 0, (lib, removed, flagged)


def test_cross_cell_identical_ends_equal_truth(pairs, tiny_sc_sim, truth):
    """Per library and table-labelled donor × cell type, the non-duplicate pairs a dedup by
    position alone would remove equal the truth; every planted twin is one of them."""
    table, summary = truth
    lab = table.loc[table.kind == "cell", ["library", "barcode", "donor", "cell_type"]]
    lab = lab.rename(columns={"barcode": "cb"})
    nd = pairs[~pairs["dup"]].merge(lab, on=["library", "cb"])
    nd["group"] = nd["donor"] + "_" + nd["cell_type"]
    got = {f"{lib}/{s}": int(len(g) - len(g.drop_duplicates(DEDUP)))
           for (lib, s), g in nd.groupby(["library", "group"])}
    want = summary["single_cell"]["position_collapse_nonduplicate_pairs"]
    assert got == want
    twins = pd.read_parquet(tiny_sc_sim / "truth" / "cross_cell_twins.parquet")
    assert sum(summary["single_cell"]["cross_cell_twins_planted"].values()) == len(twins)
    at = pairs.set_index("name")
    both = twins[twins.twin_read.isin(at.index) & twins.source_read.isin(at.index)]
    a, b = at.loc[both.twin_read], at.loc[both.source_read]
    same = (a.chrom.to_numpy() == b.chrom.to_numpy()) & (a.start.to_numpy() == b.start.to_numpy()) \
        & (a.end.to_numpy() == b.end.to_numpy())
    assert len(both) >= 0.95 * len(twins) and same.mean() > 0.95
    assert (a.cb.to_numpy() != b.cb.to_numpy()).all() and (a.library.to_numpy() == b.library.to_numpy()).all()
    assert not a.dup.to_numpy()[same].any()  # a twin is no duplicate
    assert sum(want.values()) >= same.sum()


def test_fragments_file_is_the_bams_read_pairs_shifted(pairs, tiny_sc_sim):
    """Cell Ranger's format: one line per (barcode, Tn5-shifted interval) of the pairs whose
    mates both have MAPQ > 30, column 5 the read pairs (duplicates included); tabix works."""
    for lib in LIBS:
        path = tiny_sc_sim / "libraries" / f"{lib}.fragments.tsv.gz"
        with gzip.open(path, "rt") as fh:
            head = [ln for ln in fh if ln.startswith("#")]
        assert head[0] == f"# id={lib}\n"
        fr = pd.read_csv(path, sep="\t", header=None, comment="#", names=["chrom", "start", "end", "cb", "n"])
        p = pairs[(pairs.library == lib) & (np.minimum(pairs.mapq1, pairs.mapq2) > FRAGMENT_MIN_MAPQ)]
        want = (p.assign(start=p.start + TN5_LEFT, end=p.end + TN5_RIGHT)
                .groupby(["chrom", "start", "end", "cb"]).size().rename("n").reset_index())
        key = ["chrom", "start", "end", "cb"]
        assert fr.sort_values(key).reset_index(drop=True).equals(want.sort_values(key).reset_index(drop=True))
        assert (fr["n"] > 1).any() and (fr["end"] > fr["start"]).all()
        order = {c: i for i, c in enumerate(dict.fromkeys(fr.chrom))}
        assert fr.assign(o=fr.chrom.map(order))[["o", "start"]].apply(tuple, axis=1).is_monotonic_increasing
        with pysam.TabixFile(str(path)) as tbx:
            row = fr.iloc[len(fr) // 2]
            hits = [ln.split("\t") for ln in tbx.fetch(row.chrom, int(row.start), int(row.end))]
            assert [row.chrom, str(row.start), str(row.end), row.cb] in [h[:4] for h in hits]


def test_pooled_donor_pseudobulk_keeps_most_of_each_sample(tiny_sc_sim, pairs, truth):
    """Through the barcode tables (unassigned, doublets and ambient dropped), each donor ×
    cell type keeps ~90 % of its read pairs (each > 75 %), and only its own."""
    _, summary = truth
    _, bcs = read_libraries(tiny_sc_sim / "samplesheet.csv", check_reads=False)
    lab = {(lb, b): f"{d}_{c}" for lb, b, d, c in zip(bcs.library, bcs.barcode, bcs.donor, bcs.cell_type)}
    got = pd.Series([lab.get(k) for k in zip(pairs.library, pairs.cb)], index=pairs.index)
    kept = pairs[got.notna()]
    assert (kept["sample"] == got[got.notna()]).all()
    share = kept.groupby("sample").size() / pairs.groupby("sample").size()
    # lost: ~2 % ambient, and the cells of doublets (3 % of pairs of cells) and unassigned (2 %)
    assert share.min() > 0.75 and share.mean() > 0.85, share


def test_swap_donors_is_refused_for_a_pooled_preset(tmp_path):
    from caveat.errors import InputError
    from caveat.simulate import simulate

    with pytest.raises(InputError, match="pools donors"):
        simulate("tiny-sc", seed=1, out=tmp_path / "x", swap_donors=("D1", "D2"))
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_deterministic(tiny_sc_sim, tmp_path):
    from caveat.simulate import simulate

    simulate("tiny-sc", seed=7, out=tmp_path / "again")
    assert _digests(tiny_sc_sim) == _digests(tmp_path / "again")

