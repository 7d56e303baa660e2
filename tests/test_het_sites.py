"""Het sites per donor from the genotypes VCF."""

from __future__ import annotations

import pytest

from caveat.errors import InputError
from caveat.het_sites import check_donors_have_sites, read_het_sites
from wasp_data import write_vcf

CONTIGS = {"chr1": 1000, "chr2": 1000}


@pytest.fixture
def vcf(tmp_path):
    recs = [
        ("chr1", 11, "A", "G", "PASS", ["0/1", "0/0"]),      # het SNV (unphased)
        ("chr1", 21, "C", "T", "PASS", ["1|0", "0|1"]),      # het SNV, phased, both donors
        ("chr1", 31, "G", "A", "PASS", ["1/1", "0/1"]),      # hom alt in D1
        ("chr1", 41, "T", "C,G", "PASS", ["1/2", "0/1"]),    # multi-allelic: skipped
        ("chr1", 51, "A", "C", "LowQual", ["0/1", "0/1"]),   # filtered
        ("chr1", 61, "C", "G", "PASS", ["./.", "0/1"]),      # missing GT in D1
        ("chr1", 71, "ACG", "A", "PASS", ["0/1", "0/0"]),    # het deletion
        ("chr2", 81, "T", "TAA", ".", ["0|1", "0/0"]),       # het insertion, FILTER missing = pass
        ("chr2", 91, "G", "C", ".", ["0|1", "0/0"]),         # het SNV, FILTER '.'
    ]
    return write_vcf(tmp_path / "g.vcf.gz", ["D1", "D2"], recs, CONTIGS)


def test_het_snvs_and_indels(vcf):
    snps, indels, st = read_het_sites(vcf, ["D1", "D2"], contigs=list(CONTIGS))
    d1 = snps[snps.donor == "D1"]
    assert d1["variant_id"].tolist() == ["chr1:11:A:G", "chr1:21:C:T", "chr2:91:G:C"]
    assert d1["pos"].tolist() == [10, 20, 90]  # 0-based
    assert set(snps[snps.donor == "D2"]["variant_id"]) == {"chr1:21:C:T", "chr1:31:G:A", "chr1:61:C:G"}
    assert indels[indels.donor == "D1"]["variant_id"].tolist() == ["chr1:71:ACG:A", "chr2:81:T:TAA"]
    assert indels.iloc[0][["pos", "end"]].tolist() == [70, 73]
    assert st["skipped"] == {"filtered": 1, "missing_genotype": 1, "multiallelic": 1}
    assert list(snps.columns[:6]) == ["variant_id", "chrom", "pos", "ref", "alt", "donor"]


def test_pass_only_off_keeps_filtered(vcf):
    snps, _, st = read_het_sites(vcf, ["D1"], pass_only=False)
    assert "chr1:51:A:C" in set(snps["variant_id"])
    assert "filtered" not in st["skipped"]


def test_contig_mismatch_and_map(vcf, tmp_path):
    with pytest.raises(InputError, match="with 'chr'|without 'chr'|contig_map") as e:
        read_het_sites(vcf, ["D1"], contigs=["1", "2"])
    assert "g.vcf.gz" in str(e.value)
    snps, _, _ = read_het_sites(vcf, ["D1"], contigs=["1", "2"], contig_map={"chr1": "1", "chr2": "2"})
    assert set(snps["chrom"]) == {"1", "2"}
    assert snps["variant_id"].iloc[0] == "1:11:A:G"


def test_missing_donor_and_donor_without_sites(vcf, tmp_path):
    with pytest.raises(InputError, match="'D9' is not a sample") as e:
        read_het_sites(vcf, ["D9"])
    assert "fix:" in str(e.value)
    recs = [("chr1", 11, "A", "G", "PASS", ["0/0"])]
    v2 = write_vcf(tmp_path / "hom.vcf.gz", ["D1"], recs, CONTIGS)
    snps, _, _ = read_het_sites(v2, ["D1"])
    with pytest.raises(InputError, match="no heterozygous"):
        check_donors_have_sites(snps, ["D1"], v2)


def test_missing_vcf(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_het_sites(tmp_path / "nope.vcf.gz", ["D1"])


def _fasta(tmp_path, seqs):
    import pysam

    fa = tmp_path / "g.fa"
    fa.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))
    pysam.faidx(str(fa))
    return fa


def test_split_multiallelic_site_is_merged_not_tested_twice(tmp_path):
    """`bcftools norm -m-` splits a 1/2 genotype into 1/0 and 0/1 records at one position:
    neither half is a het SNP (each would have ALT = 0 reads), as for the unsplit record."""
    recs = [("chr1", 11, "A", "G", "PASS", ["1/0"]), ("chr1", 11, "A", "T", "PASS", ["0/1"]),
            ("chr1", 21, "C", "T", "PASS", ["0/1"])]
    vcf = write_vcf(tmp_path / "s.vcf.gz", ["D1"], recs, CONTIGS)
    snps, _, st = read_het_sites(vcf, ["D1"], contigs=list(CONTIGS))
    assert snps["variant_id"].tolist() == ["chr1:21:C:T"]
    assert st["skipped"] == {"split_multiallelic": 2}


def test_ref_differing_from_the_fasta_is_an_error_listing_the_sites(tmp_path):
    seqs = {"chr1": "A" * 10 + "A" + "C" * 9 + "C" + "G" * 979, "chr2": "T" * 1000}
    recs = [("chr1", 11, "A", "G", "PASS", ["0/1"]), ("chr1", 21, "G", "T", "PASS", ["0/1"]),
            ("chr2", 5, "TT", "T", "PASS", ["0/1"])]
    vcf = write_vcf(tmp_path / "r.vcf.gz", ["D1"], recs, CONTIGS)
    with pytest.raises(InputError, match=r"r.vcf.gz: REF of 1 of 3 het sites differs from g.fa: chr1:21:G:T "
                                         r"\(FASTA has C\)"):
        read_het_sites(vcf, ["D1"], contigs=list(CONTIGS), fasta=_fasta(tmp_path, seqs))
    seqs["chr1"] = "A" * 20 + "G" + "C" * 979
    snps, indels, _ = read_het_sites(vcf, ["D1"], contigs=list(CONTIGS), fasta=_fasta(tmp_path, seqs))
    assert len(snps) == 2 and len(indels) == 1
