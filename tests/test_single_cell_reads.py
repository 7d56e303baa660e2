"""Single-cell ATAC reads (issue 19, parts 2-3): per-barcode WASP dedup, allele counts per
donor x cell type by barcode lookup, insertion tracks from a Cell Ranger fragments file."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from caveat import bam_records as br
from caveat import barcodes as bcs
from caveat import fragments as fr
from caveat import insertions as ins
from caveat import wasp_remap as wr
from caveat.aligner import BWA_MEM_OPTS, DEFAULT_ARGS, args_for, check_bwa_mem_args, provenance_warning
from caveat.count_alleles import COUNT_COLUMNS, count_groups, count_sample
from caveat.errors import InputError
from caveat.genome import fasta_lengths
from caveat.het_sites import read_het_sites
from caveat.tracks import read_runs, runs_to_sites
from bam_helpers import sorted_header, write_sorted_bam
from wasp_data import build_study

BCS = ["AAACGAACAAGGTCGA-1", "AAACGAACAGCTATTG-1", "TTTGTGTTCCTACGCA-1", "GGGTCAATCAGCACAT-1",
       "CCTAGACAGTTCGCAT-1", "ACGTACGTACGTACGT-1"]
#: barcode -> group code; BCS[5] is outside the table
CODES = {BCS[0]: 0, BCS[1]: 0, BCS[2]: 0, BCS[3]: 1, BCS[4]: 1}
GROUPS = [("D1", "ctA"), ("D1", "ctB")]


# ----------------------------------------------------------------------------- hand-built records

def _pair_records(header, name, p1, p2, cb, seq="A" * 50):
    out = []
    for pos, mpos, flag in ((p1, p2, 0x1 | 0x2 | 0x40 | 0x20), (p2, p1, 0x1 | 0x2 | 0x80 | 0x10)):
        a = pysam.AlignedSegment(header)
        a.query_name, a.reference_id, a.reference_start, a.cigarstring = name, 0, pos, "50M"
        a.query_sequence, a.query_qualities = seq, pysam.qualitystring_to_array("I" * 50)
        a.flag, a.mapping_quality, a.next_reference_id, a.next_reference_start = flag, 60, 0, mpos
        a.template_length = (p2 + 50 - p1) * (1 if pos == p1 else -1)
        if cb is not None:
            a.set_tag("CR", cb[:-2], "Z")  # a tag before CB: the aux scan must walk past it
            a.set_tag("CB", cb, "Z")
            a.set_tag("XS", 3, "i")
        out.append(a)
    return out


def _hand_bam(tmp: Path, pairs) -> Path:
    header = sorted_header({"chr1": 5000})
    return write_sorted_bam(tmp / "hand.bam", header, [r for p in pairs for r in _pair_records(header, *p)])


def test_aux_scan_reads_the_cb_tag_of_every_record(tmp_path):
    bam = _hand_bam(tmp_path, [("a", 100, 300, BCS[0]), ("b", 120, 320, None), ("c", 140, 340, BCS[5])])
    _, chunks = br.stream_file(bam)
    ch = wr.concat_many(list(chunks))
    start, length = bcs.record_spans(ch.buf, ch.offs, "CB", bam)
    got = [None if s < 0 else bytes(ch.buf[s:s + n]).decode() for s, n in zip(start, length)]
    want = [r.get_tag("CB") if r.has_tag("CB") else None for r in pysam.AlignmentFile(str(bam)).fetch(until_eof=True)]
    assert got == want and got.count(None) == 2
    h = bcs.value_hashes(ch.buf, ch.offs, "CB", bam)
    assert ((h == 0) == (start < 0)).all()
    assert set(h[h != 0]) == set(bcs.string_hashes([BCS[0], BCS[5]]))
    lookup = bcs.BarcodeLookup(CODES)
    code, has = lookup.record_codes(ch.buf, ch.offs, "CB", bam)
    assert list(code) == [CODES.get(b, -1) if b else -1 for b in got] and list(has) == [b is not None for b in got]
    assert list(lookup.string_codes([BCS[3], BCS[5], BCS[3][:-1], ""])) == [1, -1, -1, -1]


def test_dedup_is_per_barcode_on_a_hand_built_bam(tmp_path):
    """Two barcodes with a fragment of identical ends: both kept; a true PCR duplicate pair
    within one barcode: one removed. Without barcodes (bulk) the three are one fragment."""
    bam = _hand_bam(tmp_path, [("x1", 100, 300, BCS[0]), ("y1", 100, 300, BCS[3]), ("x2", 100, 300, BCS[0]),
                               ("z", 500, 700, BCS[3])])
    _, chunks = br.stream_file(bam)
    ch = wr.concat_many(list(chunks))
    for seed in range(6):
        c = br.make_chunk(ch.buf, ch.offs, seed)
        names = lambda keep: sorted(br.record_parts(c.buf, int(o))[0] for o in c.offs[keep])  # noqa: E731
        kept = names(wr._dedup_keep(c, bcs.value_hashes(c.buf, c.offs, "CB", bam)))
        assert kept.count("y1") == 2 and kept.count("z") == 2  # the other cell's copy stays
        assert sorted(set(kept) & {"x1", "x2"}) in (["x1"], ["x2"]) and len(kept) == 6  # one of the PCR pair
        assert len(names(wr._dedup_keep(c))) == 4  # bulk: one of x1/x2/y1


# ----------------------------------------------------------------------------- a tagged library

def _barcode_of(name: str) -> str | None:
    """Planted barcodes: fragment f<i> in cell BCS[i % 6] (none when i % 40 == 7); its PCR copy
    d<j>_f<i> in the same cell when j is even (a true duplicate), in another cell when odd."""
    parts = name.split("_")
    i = int(parts[-2][1:])
    if i % 40 == 7:
        return None
    if name.startswith("d") and int(parts[0][1:]) % 2 == 1:
        return BCS[(i + 1) % 6]
    return BCS[i % 6]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sc_library")
    study = build_study(tmp, n_frags=3000)
    tagged = tmp / "library.bam"
    with pysam.AlignmentFile(str(study["bam"])) as f, pysam.AlignmentFile(str(tagged), "wb", template=f) as o:
        for r in f.fetch(until_eof=True):
            cb = _barcode_of(r.query_name)
            if cb is not None:
                r.set_tag("CB", cb, "Z")
            o.write(r)
    pysam.index(str(tagged))
    snps, indels, _ = read_het_sites(study["vcf"], ["D1"])
    return {**study, "library": tagged, "snps": snps, "indels": indels, "tmp": tmp}


@pytest.fixture(scope="module")
def filtered_library(library, tmp_path_factory):
    out = tmp_path_factory.mktemp("sc_wasp")
    kw = dict(aligner_index=library["index"], aligner_args="-X 1000", seed=1)
    sc = wr.wasp_filter(library["library"], library["snps"], library["indels"], out / "sc.bam", out / "sc.json",
                        barcode_tag="CB", barcodes=list(CODES), **kw)
    bulk = wr.wasp_filter(library["library"], library["snps"], library["indels"], out / "bulk.bam",
                          out / "bulk.json", **kw)
    return out, sc, bulk


def _by_name(bam: Path) -> dict[str, list]:
    out = defaultdict(list)
    with pysam.AlignmentFile(str(bam)) as f:
        for r in f.fetch(until_eof=True):
            out[r.query_name].append(r)
    return out


def test_reads_without_barcode_or_outside_the_table_are_dropped_and_counted(library, filtered_library):
    out, sc, bulk = filtered_library
    assert sc["dropped_no_barcode"] > 0 and sc["dropped_barcode_not_in_table"] > 0
    assert bulk["dropped_no_barcode"] == bulk["dropped_barcode_not_in_table"] == 0
    # exactly the reads bulk mode let through (kept or sent to remap) and barcode mode did not
    passed = lambda st: st["kept_without_remap"] + st["sent_to_remap"]  # noqa: E731
    assert sc["dropped_no_barcode"] + sc["dropped_barcode_not_in_table"] == passed(bulk) - passed(sc)
    for r in wr.DROP_REASONS[:-2]:
        assert sc["dropped_" + r] == bulk["dropped_" + r], r
    assert sc["reads_in"] == sc["kept_without_remap"] + sc["sent_to_remap"] + sum(
        sc["dropped_" + r] for r in wr.DROP_REASONS)
    # the tag travels with every kept record, the remapped ones included
    reads = _by_name(out / "sc.bam")
    assert sc["kept_after_remap"] > 0 and len(reads) > 0
    for name, recs in reads.items():
        assert [r.get_tag("CB") for r in recs] == [_barcode_of(name)] * len(recs)
        assert _barcode_of(name) in CODES


def test_pcr_copies_are_removed_within_a_barcode_only(library, filtered_library):
    out, sc, bulk = filtered_library
    raw = _by_name(library["library"])
    kept_sc, kept_bulk = _by_name(out / "sc.bam"), _by_name(out / "bulk.bam")
    families = defaultdict(list)  # original fragment -> its read pairs (itself and its PCR copies)
    for name in raw:
        families[name.split("_", 1)[1] if name.startswith("d") else name].append(name)
    cross = within = 0
    for members in families.values():
        place = {tuple(sorted((r.reference_start, r.next_reference_start, r.is_reverse) for r in raw[m]))
                 for m in members}
        if len(members) < 2 or len(place) != 1:
            continue  # no copy, or the aligner placed the copies differently
        if not any(m in kept_bulk for m in members):
            continue  # the family failed the filter
        cells = {_barcode_of(m) for m in members} & set(CODES)
        n_sc = sum(m in kept_sc for m in members)
        assert n_sc == len(cells), (members, cells)
        assert sum(m in kept_bulk for m in members) == 1
        cross += len(cells) > 1
        within += len(cells) < sum(_barcode_of(m) in CODES for m in members)
    assert cross >= 10 and within >= 10  # both cases were exercised


def test_counts_per_group_equal_counts_of_the_barcode_split_reads(library, filtered_library, tmp_path):
    out, _, _ = filtered_library
    bam = out / "sc.bam"
    snps = library["snps"]
    tables, dropped = count_groups(bam, snps, CODES, GROUPS, library="lib1")
    assert list(tables) == ["D1_ctA", "D1_ctB"]
    assert dropped == {"no_barcode": 0, "barcode_not_in_table": 0}  # the WASP filter dropped them already
    with pysam.AlignmentFile(str(bam)) as f:
        outs = [pysam.AlignmentFile(str(tmp_path / f"g{g}.bam"), "wb", template=f) for g in range(len(GROUPS))]
        for r in f.fetch(until_eof=True):
            outs[CODES[r.get_tag("CB")]].write(r)
        for o in outs:
            o.close()
    for g, (donor, ct) in enumerate(GROUPS):
        pysam.index(str(tmp_path / f"g{g}.bam"))
        want = count_sample(tmp_path / f"g{g}.bam", snps)
        got = tables[f"{donor}_{ct}"]
        assert (got["sample"] == f"{donor}_{ct}").all() and (got["donor"] == donor).all()
        assert (got["cell_type"] == ct).all()
        pd.testing.assert_frame_equal(got[["variant_id", *COUNT_COLUMNS]].reset_index(drop=True),
                                      want[["variant_id", *COUNT_COLUMNS]].reset_index(drop=True))
        assert got[["ref_count", "alt_count"]].to_numpy().sum() > 100
    # the raw library: untagged and outside-table reads are not counted, and say so
    _, dropped = count_groups(library["library"], snps, CODES, GROUPS)
    assert dropped["no_barcode"] > 0 and dropped["barcode_not_in_table"] > 0


def test_bam_without_barcode_tags_is_refused_naming_the_record(library, tmp_path, caplog):
    out = tmp_path / "o"
    with caplog.at_level(logging.WARNING, logger="caveat.wasp_remap"):
        with pytest.raises(InputError) as e:
            wr.wasp_filter(library["bam"], library["snps"], library["indels"], out / "x.bam", out / "x.json",
                           aligner_index=library["index"], aligner_args="--very-sensitive -X 1000",
                           barcode_tag="CB")
    msg = str(e.value)
    assert str(library["bam"]) in msg and "CB" in msg and "first record" in msg and "possorted_bam" in msg
    assert not out.exists() or not any(out.iterdir())  # nothing partial
    # the @PG check ran first: bowtie2 made the BAM with -X 1000 only
    assert any("--very-sensitive" in r.getMessage() and "@PG" in r.getMessage() for r in caplog.records)
    with pytest.raises(InputError, match="first record"):
        count_groups(library["bam"], library["snps"], CODES, GROUPS)


# ----------------------------------------------------------------------------- aligner provenance

def test_pg_mismatch_names_both_programs():
    made_by_bwa = "@HD\tVN:1.6\n@PG\tID:bwa\tPN:bwa\tVN:0.7.17-r1188\tCL:bwa mem -t 8 -M ref.fa r1.fq r2.fq\n"
    w = provenance_warning(made_by_bwa, "bowtie2", DEFAULT_ARGS["bowtie2"], "lib.bam")
    assert "bwa 0.7.17-r1188" in w and "bowtie2 --very-sensitive -X 2000" in w and "lib.bam" in w
    assert provenance_warning(made_by_bwa, "bwa", "-M", "lib.bam") is None  # same aligner and options
    w = provenance_warning(made_by_bwa, "bwa", "", "lib.bam")
    assert "-M" in w and "aligner_args" in w
    cellranger = "@PG\tID:cellranger-atac\tPN:cellranger-atac\tVN:2.1.0\n"
    assert "cellranger-atac 2.1.0 (bwa)" in provenance_warning(cellranger, "bowtie2", "", "x.bam")
    assert provenance_warning(cellranger, "bwa", "", "x.bam") is None
    assert provenance_warning("@HD\tVN:1.6\n", "bwa", "", "x.bam") is None  # the header does not say


def test_bwa_default_args_are_valid_bwa_mem_arguments(tmp_path):
    assert args_for("bwa", DEFAULT_ARGS["bowtie2"]) == DEFAULT_ARGS["bwa"]  # the param default, switched aligner
    assert args_for("bwa", "-M -k 19") == "-M -k 19" and args_for("bowtie2", "-X 1000") == "-X 1000"
    check_bwa_mem_args(DEFAULT_ARGS["bwa"].split())
    check_bwa_mem_args(["-M", "-k", "19", "-t4", "-Y"])
    for bad in (["--very-sensitive"], ["-J"], ["-k"]):
        with pytest.raises(InputError, match="aligner_args"):
            check_bwa_mem_args(bad)
    if shutil.which("bwa") is None:
        pytest.skip("bwa not installed")
    (tmp_path / "g.fa").write_text(">c\n" + "ACGTTGCAAGCTTCGA" * 8 + "\n")
    subprocess.run(["bwa", "index", str(tmp_path / "g.fa")], check=True, capture_output=True)
    (tmp_path / "e.fq").write_text("")

    def bwa_accepts(args: list[str]) -> bool:
        return subprocess.run(["bwa", "mem", *args, str(tmp_path / "g.fa"), str(tmp_path / "e.fq")],
                              capture_output=True).returncode == 0

    assert bwa_accepts(args_for("bwa", DEFAULT_ARGS["bowtie2"]).split())
    assert bwa_accepts(["-M", "-k", "19", "-t4", "-Y"]) and not bwa_accepts(["--very-sensitive"])
    assert "J" not in BWA_MEM_OPTS and not bwa_accepts(["-J"])


# ----------------------------------------------------------------------------- fragments

def _write_fragments(bam: Path, path: Path, min_mapq: int = 10) -> Path:
    """Cell Ranger's fragments file of a tagged BAM, written here by its documented rule: each
    read pair's alignment span moved +4 at the left end and -5 at the right end (BED, 0-based,
    end exclusive), duplicates within a barcode collapsed into one line with their count."""
    lines = defaultdict(int)
    with pysam.AlignmentFile(str(bam)) as f:
        for r in f.fetch(until_eof=True):
            if (not r.is_read1 or not r.is_proper_pair or r.is_secondary or r.is_supplementary or r.is_qcfail
                    or r.is_duplicate or r.mapping_quality < min_mapq or not r.has_tag("CB")
                    or r.mate_is_unmapped or r.next_reference_id != r.reference_id or abs(r.template_length) < 10):
                continue
            t = r.template_length
            lo, hi = (r.reference_start, r.reference_start + t) if t > 0 else (r.reference_end + t, r.reference_end)
            lines[(r.reference_name, lo + 4, hi - 5, r.get_tag("CB"))] += 1
    plain = path.with_suffix("")
    with open(plain, "w") as o:
        o.write("# id=lib1\n# reference_path=genome\n")
        for (c, s, e, b), n in sorted(lines.items()):
            o.write(f"{c}\t{s}\t{e}\t{b}\t{n}\n")
    pysam.tabix_index(str(plain), preset="bed", force=True)  # bgzip + .tbi, as Cell Ranger
    return Path(str(plain) + ".gz")


def test_fragment_line_gives_start_and_end_minus_one_once():
    frags = pd.DataFrame({"start": [100, 100], "end": [300, 300], "barcode": [BCS[0], BCS[5]]})
    sites, fig = fr.group_sites(frags, bcs.BarcodeLookup(CODES))
    assert fig == {"fragments": 1, "outside_table": 1}
    assert {k: (list(p), list(c)) for k, (p, c) in sites.items()} == {0: ([100, 299], [1, 1])}
    # the BAM rule on the read pair behind it: alignment span [96, 305), +4 / -1-5
    rec = np.array([[0x1 | 0x2 | 0x40 | 0x20, 60, -1, 96, 146, 209, 1]], np.int64)
    assert list(ins.fragment_insertions(rec)) == [100, 299]


def test_tracks_from_fragments_equal_tracks_from_the_bam(library, tmp_path):
    lengths = fasta_lengths(library["fasta"])
    frag = _write_fragments(library["library"], tmp_path / "fragments.tsv.gz")
    lookup = bcs.BarcodeLookup(CODES)
    from_bam = ins.library_bam_sites(library["library"], lengths, lookup)
    tbx = fr.open_fragments(frag)
    total = 0
    for chrom in lengths:
        got, _ = fr.group_sites(fr.contig_fragments(tbx, chrom, frag), lookup)
        assert got.keys() == from_bam[chrom].keys()
        for g in got:
            np.testing.assert_array_equal(got[g][0], from_bam[chrom][g][0])
            np.testing.assert_array_equal(got[g][1], from_bam[chrom][g][1])
            total += int(got[g][1].sum())
    assert total > 2000
    # the bigWigs: per donor x cell type and per cell type, read back base by base
    fig = ins.fragment_tracks([(frag, lookup)], GROUPS, lengths, tmp_path / "tracks")
    import pyBigWig

    for g, (d, ct) in enumerate(GROUPS):
        with pyBigWig.open(str(tmp_path / "tracks" / f"{d}_{ct}.bw")) as bw:
            for chrom in lengths:
                pos, cnt = runs_to_sites(*read_runs(bw, chrom))
                want = from_bam[chrom].get(g, (np.empty(0), np.empty(0)))
                np.testing.assert_array_equal(pos, want[0])
                np.testing.assert_array_equal(cnt, want[1])
        with pyBigWig.open(str(tmp_path / "tracks" / f"{ct}.pseudobulk.bw")) as bw:  # one group per cell type
            assert sum(int(runs_to_sites(*read_runs(bw, c))[1].sum()) for c in lengths) == fig["groups"][f"{d}_{ct}"]
    assert sum(fig["groups"].values()) == total and fig["libraries"][str(frag)]["outside_table"] > 0


def test_fragments_without_index_or_malformed_are_refused_and_nothing_written(library, tmp_path):
    lengths = fasta_lengths(library["fasta"])
    frag = _write_fragments(library["library"], tmp_path / "fragments.tsv.gz")
    lookup = bcs.BarcodeLookup(CODES)
    Path(str(frag) + ".tbi").unlink()
    with pytest.raises(InputError) as e:
        ins.fragment_tracks([(frag, lookup)], GROUPS, lengths, tmp_path / "out")
    assert str(frag) in str(e.value) and "tabix -p bed fragments.tsv.gz" in str(e.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    bad = tmp_path / "bad.tsv"
    bad.write_text(f"chrA\t100\t300\t{BCS[0]}\t1\nchrA\t400\t500\n")  # a line without its barcode
    pysam.tabix_index(str(bad), preset="bed", force=True)
    with pytest.raises(InputError) as e:
        ins.fragment_tracks([(str(bad) + ".gz", lookup)], GROUPS, lengths, tmp_path / "out")
    assert "chrA\\t400\\t500" in str(e.value) and "bad.tsv.gz" in str(e.value) and "start < end" in str(e.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _barcode_table(path: Path) -> Path:
    rows = [f"{b},{GROUPS[g][1]},{GROUPS[g][0]}" for b, g in CODES.items()]
    path.write_text("barcode,cell_type,donor\n" + "\n".join(rows) + "\n")
    return path


def test_step_clis_write_the_group_tables_and_tracks(library, filtered_library, tmp_path):
    from caveat import count_alleles as ca

    out, _, _ = filtered_library
    table = _barcode_table(tmp_path / "lib1.barcodes.csv")
    snps_path = tmp_path / "het_snps.parquet"
    library["snps"].to_parquet(snps_path)
    assert ca.main(["--bam", str(out / "sc.bam"), "--het-snps", str(snps_path), "--sample", "lib1",
                    "--barcodes", str(table), "--out-dir", str(tmp_path / "counts")]) == 0
    want, _ = count_groups(out / "sc.bam", library["snps"], CODES, GROUPS)
    assert sorted(p.name for p in (tmp_path / "counts").iterdir()) == ["D1_ctA.parquet", "D1_ctB.parquet"]
    for sample, t in want.items():
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "counts" / f"{sample}.parquet"), t)
    frag = _write_fragments(library["library"], tmp_path / "fragments.tsv.gz")
    assert ins.main(["--fasta", str(library["fasta"]), "--fragments", str(frag), "--barcodes", str(table),
                     "--out-dir", str(tmp_path / "tracks"), "--stats", str(tmp_path / "t.json")]) == 0
    got = sorted(p.name for p in (tmp_path / "tracks").iterdir())
    assert got == ["D1_ctA.bw", "D1_ctB.bw", "ctA.pseudobulk.bw", "ctB.pseudobulk.bw"]
    # the WASP filter's CLI takes the library switch too
    rc = wr.main(["--bam", str(library["library"]), "--sample", "lib1", "--donor", "D1", "--vcf",
                  str(library["vcf"]), "--aligner-index", library["index"], "--aligner-args", "-X 1000", "--seed", "1",
                  "--barcode-tag", "CB", "--barcodes", str(table), "--out-bam", str(tmp_path / "c.bam"),
                  "--out-stats", str(tmp_path / "c.json")])
    assert rc == 0 and (tmp_path / "c.bam").read_bytes() == (out / "sc.bam").read_bytes()


def test_tracks_from_the_simulated_libraries_fragments_equal_their_bams(request):
    """The simulator's libraries (``--preset tiny-sc``): each fragments file, written by the 10x
    rule from read pairs with both mates' MAPQ > 30, gives the BAM-side insertions of every
    donor x cell type exactly (min MAPQ 31, duplicates per barcode)."""
    try:
        d = request.getfixturevalue("tiny_sc_sim")
    except pytest.FixtureLookupError:
        pytest.skip("the tiny-sc simulator fixture is not in this tree yet")
    from caveat.single_cell import barcode_group_codes, read_libraries

    libs, table = read_libraries(d / "samplesheet.csv")
    lengths = fasta_lengths(d / "genome.fa")
    total = 0
    for lib in libs.itertuples():
        codes, groups = barcode_group_codes(table, lib.library)
        lookup = bcs.BarcodeLookup(codes)
        from_bam = ins.library_bam_sites(lib.bam, lengths, lookup, min_mapq=31)
        tbx = fr.open_fragments(lib.fragments)
        for chrom in lengths:
            got, _ = fr.group_sites(fr.contig_fragments(tbx, chrom, lib.fragments), lookup)
            assert got.keys() == from_bam[chrom].keys(), (lib.library, chrom)
            for g in got:
                np.testing.assert_array_equal(got[g][0], from_bam[chrom][g][0])
                np.testing.assert_array_equal(got[g][1], from_bam[chrom][g][1])
                total += int(got[g][1].sum())
        tbx.close()
    assert total > 100_000
