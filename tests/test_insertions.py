"""Tests for caveat.insertions: Tn5 offsets, fragment counting rule, track totals, pseudobulk."""

from __future__ import annotations

import json
import os

import numpy as np
import pysam
import pyBigWig
import pytest

from caveat.errors import InputError
from caveat.insertions import main, pseudobulk_track, sample_track, sites_to_runs, runs_to_sites

LENGTHS = {"c1": 2000, "c2": 800, "c3": 300}
READ_LEN = 50


def _fasta(tmp_path):
    fa = tmp_path / "g.fa"
    rng = np.random.default_rng(0)
    with open(fa, "w") as fh:
        for c, n in LENGTHS.items():
            fh.write(f">{c}\n{''.join(rng.choice(list('ACGT'), n))}\n")
    pysam.faidx(str(fa))
    return fa


def _pair(header, name, chrom_id, left, right_end, *, read1_reverse=False, flag_extra=0,
          mapq=30, proper=True, mq=None):
    """A FR pair: forward mate at [left, left+50), reverse mate at [right_end-50, right_end)."""
    tlen = right_end - left
    fwd, rev = pysam.AlignedSegment(header), pysam.AlignedSegment(header)
    for seg, start, is_rev in ((fwd, left, False), (rev, right_end - READ_LEN, True)):
        seg.query_name = name
        seg.query_sequence = "A" * READ_LEN
        seg.query_qualities = pysam.qualitystring_to_array("I" * READ_LEN)
        seg.reference_id = chrom_id
        seg.reference_start = start
        seg.cigarstring = f"{READ_LEN}M"
        seg.mapping_quality = mapq
        seg.next_reference_id = chrom_id
        if mq is not None:
            seg.set_tag("MQ", mq)
    fwd.next_reference_start, rev.next_reference_start = rev.reference_start, fwd.reference_start
    fwd.template_length, rev.template_length = tlen, -tlen
    base = 0x1 | (0x2 if proper else 0) | flag_extra
    r1_fwd = 0x40 if not read1_reverse else 0x80
    fwd.flag = base | 0x20 | r1_fwd
    rev.flag = base | 0x10 | (0xC0 ^ r1_fwd)
    return [fwd, rev]


def _bam(tmp_path, name, segs_fn, index=True):
    header = pysam.AlignmentHeader.from_dict(
        {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": c, "LN": n} for c, n in LENGTHS.items()]})
    segs = segs_fn(header)
    tmp = tmp_path / f"{name}.unsorted.bam"
    with pysam.AlignmentFile(str(tmp), "wb", header=header) as out:
        for s in segs:
            out.write(s)
    bam = tmp_path / f"{name}.bam"
    pysam.sort("-o", str(bam), str(tmp))
    if index:
        pysam.index(str(bam))
    return bam


def _values(bw_path, chrom):
    with pyBigWig.open(str(bw_path)) as bw:
        v = np.nan_to_num(np.array(bw.values(chrom, 0, LENGTHS[chrom])))
        return v, bw.chroms()


def test_offsets_on_both_strands_and_drop_reasons(tmp_path):
    fa = _fasta(tmp_path)

    def segs(h):
        s = []
        s += _pair(h, "fwd_r1", 0, 100, 300)                       # read1 forward: 104, 294
        s += _pair(h, "rev_r1", 0, 500, 650, read1_reverse=True)   # read1 reverse: 504, 644
        s += _pair(h, "c2frag", 1, 10, 210)                         # 14, 204 on c2
        s += _pair(h, "dup", 0, 700, 900, flag_extra=0x400)
        s += _pair(h, "qc", 0, 700, 900, flag_extra=0x200)
        s += _pair(h, "improper", 0, 700, 900, proper=False)
        s += _pair(h, "lowq", 0, 700, 900, mapq=3)
        s += _pair(h, "mate_lowq", 0, 1000, 1200, mq=2)
        sec = _pair(h, "sec", 0, 1000, 1200, flag_extra=0x100)
        s += sec
        single = pysam.AlignedSegment(h)
        single.query_name, single.query_sequence = "single", "A" * READ_LEN
        single.reference_id, single.reference_start, single.cigarstring = 0, 1500, f"{READ_LEN}M"
        single.flag, single.mapping_quality = 0, 40
        s.append(single)
        return s

    bam = _bam(tmp_path, "s1", segs)
    st = sample_track(bam, LENGTHS, tmp_path / "s1.bw", min_mapq=10)
    v1, chroms = _values(tmp_path / "s1.bw", "c1")
    assert list(chroms) == list(LENGTHS)  # every contig, FASTA order
    assert np.flatnonzero(v1).tolist() == [104, 294, 504, 644]
    v2, _ = _values(tmp_path / "s1.bw", "c2")
    assert np.flatnonzero(v2).tolist() == [14, 204]
    assert st["fragments_by_chrom"] == {"c1": 2, "c2": 1, "c3": 0}
    assert v1.sum() == 2 * st["fragments_by_chrom"]["c1"]
    d = st["dropped"]
    assert (d["duplicate"], d["qc_fail"], d["not_proper_pair"], d["low_mapq"], d["not_primary"], d["unpaired"]) \
        == (1, 1, 1, 2, 1, 1)
    # the CLI writes the same track and stats
    assert main(["--fasta", str(fa), "--bam", str(bam), "--out-bw", str(tmp_path / "cli.bw"),
                 "--stats", str(tmp_path / "cli.json")]) == 0
    assert json.loads((tmp_path / "cli.json").read_text())["fragments"] == 3
    assert (tmp_path / "cli.bw").read_bytes() == (tmp_path / "s1.bw").read_bytes()


def _random_pairs(rng, n):
    def segs(h):
        s = []
        for i in range(n):
            c = int(rng.integers(0, 3))
            ln = LENGTHS[f"c{c + 1}"]
            frag = int(rng.integers(60, min(400, ln - 1)))
            left = int(rng.integers(0, ln - frag))
            s += _pair(h, f"r{i}", c, left, left + frag, read1_reverse=bool(rng.integers(0, 2)),
                       flag_extra=0x400 if rng.random() < 0.1 else 0)
        return s
    return segs


def _independent_sites(bam):
    """Insertions from each read's own 5' end (+4 forward, -5 reverse), both mates, no TLEN."""
    out = {c: np.zeros(n, np.int64) for c, n in LENGTHS.items()}
    with pysam.AlignmentFile(str(bam)) as f:
        for r in f.fetch():
            if r.is_duplicate or not r.is_proper_pair:
                continue
            p = r.reference_end - 1 - 5 if r.is_reverse else r.reference_start + 4
            out[r.reference_name][p] += 1
    return out


def test_track_equals_independent_per_read_count_and_pseudobulk_sums(tmp_path):
    rng = np.random.default_rng(11)
    bams = [_bam(tmp_path, f"d{k}", _random_pairs(rng, 300)) for k in range(2)]
    bws = []
    for k, bam in enumerate(bams):
        bw = tmp_path / f"d{k}.bw"
        st = sample_track(bam, LENGTHS, bw, min_mapq=0)
        expect = _independent_sites(bam)
        for c in LENGTHS:
            v, _ = _values(bw, c)
            np.testing.assert_array_equal(v, expect[c])
            assert v.sum() == 2 * st["fragments_by_chrom"][c]
        bws.append(bw)
    res = pseudobulk_track(bws, LENGTHS, tmp_path / "pb.bw")
    for c in LENGTHS:
        pb, _ = _values(tmp_path / "pb.bw", c)
        np.testing.assert_array_equal(pb, _values(bws[0], c)[0] + _values(bws[1], c)[0])
        assert res["insertions_by_chrom"][c] == pb.sum()


def test_duplicate_fragments_are_removed_whether_flagged_or_not(tmp_path):
    """Copies of a fragment (same contig, start, end, orientation) count once, R1/R2-swapped copies
    included; a different end or contig is another fragment; a copy dropped for MAPQ leaves the
    other counted; flagged duplicates are dropped as before (and not counted twice)."""
    def segs(h):
        s = []
        s += _pair(h, "A", 0, 100, 300)
        s += _pair(h, "A_swapped", 0, 100, 300, read1_reverse=True)   # duplicate
        s += _pair(h, "A_flagged", 0, 100, 300, flag_extra=0x400)     # dropped as flagged duplicate
        s += _pair(h, "B", 0, 100, 301)                               # other end: not a duplicate
        s += _pair(h, "C_lowq", 0, 400, 600, mapq=3)                  # dropped (MAPQ) ...
        s += _pair(h, "C", 0, 400, 600)                               # ... so this copy counts
        s += _pair(h, "D", 1, 400, 600)                               # same span, other contig
        for k in range(3):
            s += _pair(h, f"E{k}", 0, 700, 900, read1_reverse=bool(k % 2))  # 2 duplicates
        return s

    bam = _bam(tmp_path, "dups", segs)
    st = sample_track(bam, LENGTHS, tmp_path / "dups.bw", min_mapq=10)
    assert st["duplicates_removed"] == 3
    assert st["fragments_by_chrom"] == {"c1": 4, "c2": 1, "c3": 0}
    assert (st["dropped"]["duplicate"], st["dropped"]["low_mapq"]) == (1, 1)
    v1, _ = _values(tmp_path / "dups.bw", "c1")
    assert {int(i): int(v1[i]) for i in np.flatnonzero(v1)} == {104: 2, 294: 1, 295: 1, 404: 1, 594: 1,
                                                                   704: 1, 894: 1}


def test_duplicate_removal_recovers_planted_copies(tmp_path):
    """Distinct random fragments plus unflagged copies of some of them (random mate order):
    exactly the planted copies are removed, and the track equals an independent per-read count
    of the distinct fragments."""
    rng = np.random.default_rng(21)
    frags = set()
    while len(frags) < 250:
        c = int(rng.integers(0, 2))
        ln = LENGTHS[f"c{c + 1}"]
        size = int(rng.integers(60, 400))
        left = int(rng.integers(0, ln - size))
        frags.add((c, left, left + size))
    frags = sorted(frags)
    copies = rng.integers(0, 4, len(frags)) * (rng.random(len(frags)) < 0.3)

    def segs(h):
        s = []
        for i, (c, a, b) in enumerate(frags):
            for k in range(1 + int(copies[i])):
                s += _pair(h, f"f{i}_{k}", c, a, b, read1_reverse=bool(rng.integers(0, 2)))
        return s

    bam = _bam(tmp_path, "planted", segs)
    st = sample_track(bam, LENGTHS, tmp_path / "planted.bw", min_mapq=0)
    assert st["duplicates_removed"] == int(copies.sum()) > 0
    assert st["fragments"] == len(frags)
    for c in ("c1", "c2"):
        expect = np.zeros(LENGTHS[c], np.int64)
        for ci, a, b in frags:
            if f"c{ci + 1}" == c:
                expect[a + 4] += 1
                expect[b - 1 - 5] += 1
        np.testing.assert_array_equal(_values(tmp_path / "planted.bw", c)[0], expect)


def test_raw_source_does_not_read_wasp_remap():
    """With insertions_source raw the step neither depends on wasp_remap (fingerprint) nor runs it
    for --until insertions; with wasp it does."""
    from caveat.engine import _ancestors, order_steps
    from caveat.insertions import STEP
    from caveat.pipeline import pipeline_steps

    assert STEP.params["insertions_source"] == "raw"
    assert STEP.upstream({"insertions_source": "raw"}) == ()
    assert STEP.upstream({"insertions_source": "wasp"}) == ("wasp_remap",)
    ordered = order_steps(pipeline_steps())
    assert "wasp_remap" not in _ancestors(ordered, "insertions", {"insertions_source": "raw"})
    assert "wasp_remap" in _ancestors(ordered, "insertions", {"insertions_source": "wasp"})


def test_no_proper_pairs_is_an_error_and_leaves_nothing(tmp_path):
    bam = _bam(tmp_path, "bad", lambda h: _pair(h, "x", 0, 100, 300, proper=False))
    with pytest.raises(InputError, match="no properly paired fragment"):
        sample_track(bam, LENGTHS, tmp_path / "bad.bw")
    assert not list(tmp_path.glob("*bad.bw*"))


def test_a_bigwig_that_reads_back_wrong_is_never_renamed_into_place(tmp_path, monkeypatch):
    """pyBigWig's close() does not report a failed write: the track is read back before the rename.
    A write that loses entries (as a full disk does) and a truncated file are both refused, and no
    file with the final name (nor a temporary one) is left."""
    import caveat.insertions as ins

    rng = np.random.default_rng(3)
    bam = _bam(tmp_path, "d", _random_pairs(rng, 200))
    good = tmp_path / "good.bw"
    sample_track(bam, LENGTHS, good, min_mapq=0)  # a correct write passes the check
    real = ins.add_runs
    monkeypatch.setattr(ins, "add_runs", lambda bw, chrom, *a: None if chrom == "c2" else real(bw, chrom, *a))
    with pytest.raises(InputError, match=r"lost\.bw: the bigWig just written holds 0 insertions on c2"):
        sample_track(bam, LENGTHS, tmp_path / "lost.bw", min_mapq=0)
    with pytest.raises(InputError, match="pb.bw: the bigWig just written holds"):
        pseudobulk_track([good], LENGTHS, tmp_path / "pb.bw")
    monkeypatch.setattr(ins, "add_runs", real)
    cut = tmp_path / "cut.bw"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.bw: the bigWig just written"):
        ins.verify_bigwig(cut, LENGTHS, {"c1": 1}, cut)
    assert sorted(f.name for f in tmp_path.glob("*.bw*")) == ["cut.bw", "good.bw"]


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.9, 0.999])
def test_track_cut_short_by_a_full_disk_is_refused(tmp_path, fraction):
    """A write cut at ``limit`` bytes (``RLIMIT_FSIZE``, as a full disk cuts it) fails naming
    the output and leaves nothing: pyBigWig's close() only prints a warning, and a track that
    lost its zoom levels opens and sums like a whole one."""
    import subprocess
    import sys

    fa = _fasta(tmp_path)
    rng = np.random.default_rng(5)
    bam = _bam(tmp_path, "d", _random_pairs(rng, 4000))
    good = tmp_path / "good.bw"
    sample_track(bam, LENGTHS, good, min_mapq=0)
    limit = int(good.stat().st_size * fraction)  # the write is cut at this byte
    out = tmp_path / "out" / "cut.bw"
    out.parent.mkdir()
    code = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY)); "
            "from caveat.cli import main; "
            f"sys.exit(main(['insertions', '--fasta', {str(fa)!r}, '--bam', {str(bam)!r}, "
            f"'--out-bw', {str(out)!r}, '--insertions-min-mapq', '0']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and str(out) in res.stderr and "fix:" in res.stderr, res.stderr[-2000:]
    assert not list(out.parent.iterdir())


def test_bigwig_layout_check_catches_lost_zoom_levels(tmp_path):
    """The hand-read header check on real files: a whole track passes; one whose zoom table or
    data was cut off does not."""
    from caveat.tracks import bigwig_layout_problem

    rng = np.random.default_rng(6)
    good = tmp_path / "good.bw"
    sample_track(_bam(tmp_path, "d", _random_pairs(rng, 2000)), LENGTHS, good, min_mapq=0)
    assert bigwig_layout_problem(good) is None
    data = good.read_bytes()
    for cut in (40, 70, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.bw").write_bytes(data[:cut])
        assert bigwig_layout_problem(tmp_path / "cut.bw") is not None, cut


def test_unindexed_bam_and_wrong_genome_are_errors(tmp_path):
    bam = _bam(tmp_path, "noidx", lambda h: _pair(h, "x", 0, 100, 300), index=False)
    with pytest.raises(InputError, match="samtools index"):
        sample_track(bam, LENGTHS, tmp_path / "o.bw")
    bam = _bam(tmp_path, "ok", lambda h: _pair(h, "x", 0, 100, 300))
    with pytest.raises(InputError, match="length 2000 in the BAM"):
        sample_track(bam, {**LENGTHS, "c1": 2500}, tmp_path / "o.bw")


def test_runs_roundtrip():
    pos = np.array([3, 4, 5, 9, 10, 20])
    cnt = np.array([1, 1, 2, 2, 2, 5])
    s, e, v = sites_to_runs(pos, cnt)
    assert s.tolist() == [3, 5, 9, 20] and e.tolist() == [5, 6, 11, 21] and v.tolist() == [1, 2, 2, 5]
    p2, c2 = runs_to_sites(s, e, v)
    assert p2.tolist() == pos.tolist() and c2.tolist() == cnt.tolist()


# ---------------------------------------------------------------- on the simulated study
def check_track_totals(sim, run) -> int:
    """Per sample and chromosome: bigWig sum == 2 × fragments counted; per sample, fragments
    counted + duplicates removed == an independent samtools count of read-1 records (proper pair,
    primary, not QC-fail/duplicate, MAPQ ≥ min) up to the too-short ones, and duplicates removed ==
    an independent pysam count of repeated (start, end) spans among those records; pseudobulk ==
    sum of its samples. Returns the number of (sample, chrom) checks."""
    import subprocess

    from caveat.samplesheet import read_samplesheet

    raw = read_samplesheet(sim / "samplesheet.csv").set_index("sample")["bam"]
    summ = json.loads((run / "insertions.summary.json").read_text())
    n = 0
    for sample, st in summ["samples"].items():
        bam = run / "wasp" / f"{sample}.bam" if st["source"] == "wasp" else raw[sample]
        eligible = 0
        with pyBigWig.open(str(run / "insertions" / f"{sample}.bw")) as bw:
            for chrom, frags in st["fragments_by_chrom"].items():
                iv = bw.intervals(chrom) or ()
                total = sum((e - s) * v for s, e, v in iv)
                assert total == 2 * frags, (sample, chrom)
                out = subprocess.run(["samtools", "view", "-c", "-f", "0x42", "-F", "0xF0C", "-q",
                                      str(summ["min_mapq"]), str(bam), chrom], capture_output=True, text=True)
                eligible += int(out.stdout)
                n += 1
        assert 0 <= eligible - st["fragments"] - st["duplicates_removed"] <= st["dropped"]["too_short"], sample
        assert st["duplicates_removed"] == _repeated_spans(bam, summ["min_mapq"]), sample
    for ct, pb in summ["pseudobulk"].items():
        assert pb["insertions"] == sum(summ["samples"][s]["insertions"] for s in pb["samples"])
    return n


def _repeated_spans(bam, min_mapq: int) -> int:
    """Read-1 records of proper pairs (primary, not QC-fail/duplicate, MAPQ ≥ min, ≥ 10 bp) whose
    (contig, fragment start, fragment end) was already seen, from each record's own fields."""
    seen, repeats = set(), 0
    with pysam.AlignmentFile(str(bam)) as f:
        for r in f.fetch():
            if (not r.is_read1 or not r.is_proper_pair or r.is_secondary or r.is_supplementary or r.is_qcfail
                    or r.is_duplicate or r.mapping_quality < min_mapq or r.mate_is_unmapped
                    or abs(r.template_length) < 10):
                continue
            a = r.reference_start if r.template_length > 0 else r.reference_end + r.template_length
            key = (r.reference_name, a, a + abs(r.template_length))
            repeats += key in seen
            seen.add(key)
    return repeats


def test_tiny_run_track_totals(tiny_sim, tiny_run):
    assert check_track_totals(tiny_sim, tiny_run) > 0


def _artefact_end_collisions(sim, sample: str, min_mapq: int = 10) -> int:
    """Fragments (read 1 of proper pairs, MAPQ >= ``min_mapq``) inside the simulator's artefact
    regions beyond the first with the same (contig, start, TLEN span, read 1's strand): what
    deduplication removes there, planted PCR copies or not."""
    regions = [ln.split("\t")[:3] for ln in (sim / "truth" / "artefact_regions.bed").read_text().splitlines() if ln]
    seen, n = set(), 0
    with pysam.AlignmentFile(str(sim / "bams" / f"{sample}.bam")) as bam:
        for chrom, start, end in regions:
            for r in bam.fetch(chrom, int(start), int(end)):
                if (not r.is_read1 or not r.is_proper_pair or r.is_secondary or r.is_supplementary
                        or r.mapping_quality < min_mapq or r.mate_is_unmapped):
                    continue
                left = min(r.reference_start, r.next_reference_start)
                key = (chrom, left, abs(r.template_length), r.is_reverse)
                if key in seen:
                    n += 1
                seen.add(key)
    return n


def test_tiny_run_removes_the_simulated_pcr_duplicates(tiny_sim, tiny_run):
    """The simulated BAMs carry unflagged PCR duplicates (exact copies of a fragment): the tracks
    come from the raw BAMs by default and remove the planted copies among the fragments that pass
    the filters (planted × the share of simulated fragments counted, duplicates included), plus a
    few independent fragments that happen to share both ends."""
    summ = json.loads((tiny_run / "insertions.summary.json").read_text())
    planted = json.loads((tiny_sim / "simulate.summary.json").read_text())["fragments"]
    assert summ["source"] == "raw"
    for sample, st in summ["samples"].items():
        # the collapsed-repeat artefacts pile ~1500x of fragments on a few hundred bp, where
        # independent fragments share both ends by the hundreds: counted here from the BAM
        pile = _artefact_end_collisions(tiny_sim, sample)
        passing = (st["fragments"] + st["duplicates_removed"] - pile) / planted[sample]["fragments"]
        want = planted[sample]["pcr_duplicates"] * passing + pile
        assert st["source"] == "raw" and st["dropped"]["duplicate"] == 0  # nothing flagged upstream
        assert 0.9 * want <= st["duplicates_removed"] <= 1.2 * want, (sample, st["duplicates_removed"], want)
    assert summ["duplicates_removed"] == sum(st["duplicates_removed"] for st in summ["samples"].values())


def test_tiny_run_wasp_tracks_lose_coverage_at_het_indels(tiny_run, tmp_path):
    """WASP drops every read over a het indel: insertions within 30 bp of a donor's het indels fall
    far more from the raw to the WASP-filtered BAM than the sample's insertions genome-wide (the
    reason targets come from the raw BAMs by default)."""
    import pandas as pd

    summ = json.loads((tiny_run / "insertions.summary.json").read_text())
    indels = pd.read_parquet(tiny_run / "het_indels.parquet")
    near = {"raw": 0.0, "wasp": 0.0}
    total = {"raw": 0.0, "wasp": 0.0}
    for sample, st in summ["samples"].items():
        mine = indels[indels["donor"] == st["donor"]]
        tracks = {"raw": tiny_run / "insertions" / f"{sample}.bw", "wasp": tmp_path / f"{sample}.wasp.bw"}
        with pyBigWig.open(str(tracks["raw"])) as bw:
            hdr = dict(bw.chroms())  # every FASTA contig, FASTA order
        sample_track(tiny_run / "wasp" / f"{sample}.bam", hdr, tracks["wasp"], min_mapq=summ["min_mapq"])
        for src, path in tracks.items():
            with pyBigWig.open(str(path)) as bw:
                total[src] += sum(bw.stats(c, 0, n, type="sum", exact=True)[0] or 0 for c, n in hdr.items())
                for r in mine.itertuples():
                    lo, hi = max(0, int(r.pos) - 1 - 30), min(hdr[r.chrom], int(r.pos) - 1 + 30)
                    near[src] += float(np.nansum(bw.values(r.chrom, lo, hi, numpy=True)))
    assert near["raw"] > 100 and len(indels) > 5
    loss_near = 1 - near["wasp"] / near["raw"]
    loss_all = 1 - total["wasp"] / total["raw"]
    assert loss_near > loss_all + 0.25, (loss_near, loss_all)


def _sheet(tmp_path, bams):
    rows = ["sample,donor,cell_type,bam"] + [f"{s},{d},{ct},{b}" for s, d, ct, b in bams]
    (tmp_path / "samples.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "samples.csv"


def test_run_step_pools_donors_and_prefers_wasp_bams(tmp_path):
    from caveat.engine import StepContext
    from caveat.insertions import run_step

    fa = _fasta(tmp_path)
    rng = np.random.default_rng(5)
    b = {k: _bam(tmp_path, k, _random_pairs(rng, 50)) for k in ("a1", "a2", "b1", "w")}
    sheet = _sheet(tmp_path, [("A_D1", "D1", "ctA", b["a1"]), ("A_D2", "D2", "ctA", b["a2"]),
                              ("B_D1", "D1", "ctB", b["b1"])])
    out = tmp_path / "out"
    (out / "wasp").mkdir(parents=True)
    for ext in ("", ".bai"):  # A_D2 has a WASP-filtered BAM: that one is used
        (out / "wasp" / f"A_D2.bam{ext}").write_bytes((tmp_path / f"w.bam{ext}").read_bytes())
    params = {"input": str(sheet), "fasta": str(fa), "insertions_source": "wasp", "insertions_min_mapq": 10}
    res = run_step(StepContext(params=params, outdir=out, threads=2))
    assert res["samples"] == 3 and res["cell_types"] == 2
    summ = json.loads((out / "insertions.summary.json").read_text())
    assert [summ["samples"][s]["source"] for s in ("A_D1", "A_D2", "B_D1")] == ["raw", "wasp", "raw"]
    assert summ["samples"]["A_D2"]["fragments"] == sample_track(b["w"], LENGTHS, tmp_path / "w.bw")["fragments"]
    for c in LENGTHS:
        pb, _ = _values(out / "insertions" / "ctA.pseudobulk.bw", c)
        np.testing.assert_array_equal(pb, _values(out / "insertions" / "A_D1.bw", c)[0]
                                      + _values(out / "insertions" / "A_D2.bw", c)[0])
    assert str(tmp_path) not in (out / "insertions.summary.json").read_text()
    # a sample without proper pairs fails the step with the file named, across worker processes
    bad = _bam(tmp_path, "bad", lambda h: _pair(h, "x", 0, 100, 300, proper=False))
    sheet = _sheet(tmp_path, [("A_D1", "D1", "ctA", b["a1"]), ("X", "D2", "ctA", bad)])
    with pytest.raises(InputError, match="bad.bam.*no properly paired"):
        run_step(StepContext(params={**params, "input": str(sheet)}, outdir=tmp_path / "out2", threads=2))


def test_per_sample_cli_and_summarize_rebuild_the_run_summary(tmp_path):
    """The Nextflow path (one task per sample and per cell type, then --summarize) writes
    the local engine's tracks and insertions.summary.json byte for byte."""
    from caveat.engine import StepContext
    from caveat.insertions import run_step

    fa = _fasta(tmp_path)
    rng = np.random.default_rng(9)
    rows = [("A_D1", "D1", "ctA"), ("A_D2", "D2", "ctA"), ("B_D1", "D1", "ctB")]
    bams = {s: _bam(tmp_path, s, _random_pairs(rng, 40)) for s, _, _ in rows}
    sheet = _sheet(tmp_path, [(s, d, ct, bams[s]) for s, d, ct in rows])
    out = tmp_path / "out"
    params = {"input": str(sheet), "fasta": str(fa), "insertions_source": "raw", "insertions_min_mapq": 10}
    run_step(StepContext(params=params, outdir=out, threads=1))
    nf = tmp_path / "nf"
    nf.mkdir()
    for s, _, _ in rows:
        assert main(["--fasta", str(fa), "--bam", str(bams[s]), "--sample", s, "--out-bw", str(nf / f"{s}.bw"),
                     "--stats", str(nf / f"{s}.insertions.json")]) == 0
    for ct, members in (("ctA", ["A_D1", "A_D2"]), ("ctB", ["B_D1"])):
        assert main(["--fasta", str(fa), "--pseudobulk", *(str(nf / f"{s}.bw") for s in members),
                     "--out-bw", str(nf / f"{ct}.pseudobulk.bw"), "--stats", str(nf / f"{ct}.pseudobulk.json")]) == 0
    for f in ["A_D1.bw", "A_D2.bw", "B_D1.bw", "ctA.pseudobulk.bw", "ctB.pseudobulk.bw"]:
        assert (nf / f).read_bytes() == (out / "insertions" / f).read_bytes(), f
    stats = sorted(nf.glob("*.json"))
    assert main(["--summarize", *map(str, stats), "--input", str(sheet), "--source", "raw",
                 "--out-summary", str(nf / "insertions.summary.json")]) == 0
    assert (nf / "insertions.summary.json").read_bytes() == (out / "insertions.summary.json").read_bytes()
    with pytest.raises(InputError, match="ctB.pseudobulk.json"):
        main(["--summarize", *map(str, stats[:-1]), "--input", str(sheet), "--out-summary", str(nf / "x.json")])
    assert not (nf / "x.json").exists()
    with pytest.raises(SystemExit):
        main(["--bam", str(bams["A_D1"]), "--out-bw", str(nf / "x.bw")])


@pytest.mark.demo
def test_demo_run_track_totals(demo_sim, demo_run):
    assert check_track_totals(demo_sim, demo_run) > 0


def test_corrupt_bam_block_is_an_error_naming_the_bam(tmp_path):
    """A BAM that went bad after it was indexed (one flipped bit in a read block): htslib's
    CRC error reaches the user as an error naming the BAM, and no track is left."""
    rng = np.random.default_rng(8)
    bam = _bam(tmp_path, "d", _random_pairs(rng, 6000))
    data = bytearray(bam.read_bytes())
    data[len(data) // 2] ^= 0x10
    bam.write_bytes(bytes(data))
    os.utime(str(bam) + ".bai")  # the index stays newer than the BAM, as when the disk flipped the bit
    with pytest.raises(InputError, match=r"d\.bam: reading c\d failed .*corrupt or cut short"):
        sample_track(bam, LENGTHS, tmp_path / "o.bw", min_mapq=0)
    assert not list(tmp_path.glob("*o.bw*"))
