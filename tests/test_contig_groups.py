"""Contig groups of the Nextflow WASP scatter (caveat.contig_groups, wasp_remap --plan-groups).

One WASP_REMAP task per sample × group: the number of tasks must follow the genome's size over
``wasp_group_bp``, not its number of contigs, and the groups must keep what the gather needs
(contiguous runs of the header, each contig with reads in exactly one group).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from caveat import contig_groups as cg
from caveat import wasp_remap as wr
from caveat.errors import InputError

DATA = Path(__file__).resolve().parent / "data"
#: GRCh38 no-alt analysis set (GCA_000001405.15): the 195 contigs' names and lengths, .fai order
GRCH38 = DATA / "GRCh38_no_alt_analysis_set.lengths.tsv"


def _min_contiguous_groups(lengths, target) -> int:
    """Fewest contiguous runs of ``lengths`` with each run <= target or a single contig (DP)."""
    n = len(lengths)
    best = [0] + [math.inf] * n
    for i in range(1, n + 1):
        size = 0
        for j in range(i - 1, -1, -1):
            size += lengths[j]
            if size > target and j < i - 1:
                break
            best[i] = min(best[i], best[j] + 1)
    return best[n]


def _synthetic_genome(rng) -> tuple[list[str], np.ndarray]:
    """24 chromosomes of GRCh38's sizes, then 3,000 small contigs (1 kb - 200 kb)."""
    chroms = np.array([248, 242, 198, 190, 181, 171, 159, 145, 138, 134, 135, 133, 114, 107, 102, 90, 83, 80,
                       59, 64, 47, 51, 156, 57]) * 1_000_000
    small = rng.integers(1_000, 200_000, 3_000)
    names = [f"chr{i}" for i in range(1, 23)] + ["chrX", "chrY"] + [f"scaffold_{i}" for i in range(3_000)]
    return names, np.concatenate([chroms, small])


# ---------------------------------------------------------------- (a) the grouping


def test_groups_of_a_genome_with_3000_small_contigs():
    rng = np.random.default_rng(3)
    names, lengths = _synthetic_genome(rng)
    reads = np.zeros((4, len(names)), np.int64)
    reads[:, :24] = rng.integers(1, 10**6, (4, 24))
    reads[rng.integers(0, 4, 1200), 24 + rng.choice(3000, 1200, replace=False)] = 5   # 1,200 scaffolds with reads
    target = 50_000_000
    groups = cg.group_contigs(names, lengths, target, reads)
    with_reads = [n for n, r in zip(names, reads.any(axis=0)) if r]
    # every contig with reads in exactly one group, in header order; the empty ones in none
    assert [c for g in groups for c in g] == with_reads
    # each group within the target, or one contig longer than it
    size = dict(zip(names, lengths.tolist()))
    assert all(sum(size[c] for c in g) <= target or len(g) == 1 for g in groups)
    # the bound: the bases over the target plus the contigs larger than it, plus one
    total = sum(size[c] for c in with_reads)
    big = sum(size[c] > target for c in with_reads)
    assert len(groups) <= total // target + big + 1
    assert len(groups) <= cg.max_groups(total, target)
    assert len(groups) == _min_contiguous_groups([size[c] for c in with_reads], target)
    # the 24 chromosomes are tasks of their own (all but chr21 are over the target; chr21 + chr22
    # would be 98 Mb), the 1,200 scaffolds (~120 Mb) share a few
    assert groups[:24] == [[c] for c in names[:24]]
    scaffolds = sum(size[c] for c in with_reads[24:])
    assert math.ceil(scaffolds / target) <= len(groups[24:]) <= math.ceil(scaffolds / target) + 1
    # deterministic
    assert cg.group_contigs(names, lengths, target, reads) == groups


def test_greedy_is_the_fewest_contiguous_groups_and_within_the_proven_bound():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        lengths = rng.integers(1, 100, n)
        target = int(rng.integers(1, 150))
        groups = cg.group_contigs([str(i) for i in range(n)], lengths, target)
        assert [int(c) for g in groups for c in g] == list(range(n))
        assert len(groups) == _min_contiguous_groups(lengths.tolist(), target)
        assert len(groups) <= cg.max_groups(int(lengths.sum()), target)


def test_worst_case_reaches_the_bound():
    """Contigs of 0.6 × target: no two fit together, so the bound's factor 2 is needed."""
    groups = cg.group_contigs(list("abcde"), [60] * 5, 100)
    assert len(groups) == 5 and cg.max_groups(300, 100) == 5


def test_grch38_default_target_gives_25_groups():
    """The figure docs/nextflow.md uses: each chromosome alone, chrM and the other 170 contigs together."""
    lengths = cg.read_fai(GRCH38)
    assert len(lengths) == 195 and sum(lengths.values()) == 3_099_922_541
    groups = cg.group_contigs(list(lengths), list(lengths.values()), wr.PARAMS["wasp_group_bp"])
    assert len(groups) == 25
    assert [g[0] for g in groups[:24]] == [*(f"chr{i}" for i in range(1, 23)), "chrX", "chrY"]
    assert all(len(g) == 1 for g in groups[:24]) and len(groups[24]) == 171 and groups[24][0] == "chrM"


def test_keep_and_empty_inputs():
    assert cg.group_contigs(["a", "b"], [5, 5], 10, np.zeros((2, 2)), keep=np.array([True, False])) == [["a"]]
    assert cg.group_contigs(["a", "b"], [5, 5], 10, np.zeros((1, 2))) == []
    with pytest.raises(ValueError, match="target_bp"):
        cg.group_contigs(["a"], [5], 0)
    with pytest.raises(ValueError, match="reads of shape"):
        cg.group_contigs(["a"], [5], 10, np.zeros((1, 2)))


def test_plan_file_round_trip_and_bad_files(tmp_path):
    cg.write_plan([["chr1"], ["chr2", "chrUn_x*1|2"]], tmp_path / "p.tsv")
    assert (tmp_path / "p.tsv").read_text() == "group_id\tcontigs\ng001\tchr1\ng002\tchr2,chrUn_x*1|2\n"
    assert cg.read_plan(tmp_path / "p.tsv") == {"g001": ["chr1"], "g002": ["chr2", "chrUn_x*1|2"]}
    with pytest.raises(ValueError, match="comma"):
        cg.write_plan([["a,b"]], tmp_path / "q.tsv")
    assert not (tmp_path / "q.tsv").exists()
    assert cg.group_ids(1000)[-1] == "g1000" and cg.group_ids(3) == ["g001", "g002", "g003"]
    (tmp_path / "bad.fai").write_text("chr1\t100\nchr2\tx\n")
    with pytest.raises(InputError, match="line 2"):
        cg.read_fai(tmp_path / "bad.fai")
    (tmp_path / "dup.fai").write_text("chr1\t100\nchr1\t100\n")
    with pytest.raises(InputError, match="twice"):
        cg.read_fai(tmp_path / "dup.fai")


# ---------------------------------------------------------------- (b) the WASP task count from BAMs


def _bam(path: Path, contigs: dict[str, int], reads_on: dict[str, int], unplaced: int = 0) -> Path:
    """A coordinate-sorted, indexed BAM with ``contigs`` in its header and reads_on[c] reads on c."""
    import pysam

    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": c, "LN": n} for c, n in contigs.items()]}
    with pysam.AlignmentFile(str(path), "wb", header=header) as f:
        for tid, c in enumerate(contigs):
            for k in range(reads_on.get(c, 0)):
                r = pysam.AlignedSegment(f.header)
                r.query_name, r.reference_id, r.reference_start = f"{c}_{k}", tid, 10 * k
                r.query_sequence, r.cigarstring, r.mapping_quality = "ACGTACGTAC", "10M", 30
                r.query_qualities = pysam.qualitystring_to_array("I" * 10)
                f.write(r)
        for k in range(unplaced):
            r = pysam.AlignedSegment(f.header)
            r.query_name, r.flag, r.reference_id, r.reference_start = f"u{k}", 4, -1, -1
            r.query_sequence, r.query_qualities = "ACGTACGTAC", pysam.qualitystring_to_array("I" * 10)
            f.write(r)
    pysam.index(str(path))
    return path


def _fai(path: Path, contigs: dict[str, int]) -> Path:
    path.write_text("".join(f"{c}\t{n}\t0\t60\t61\n" for c, n in contigs.items()))
    return path


@pytest.fixture
def many_contigs():
    """3 chromosomes of 3 Mb, then 2,000 scaffolds of 500 bp - 20 kb."""
    rng = np.random.default_rng(11)
    contigs = {"chr1": 3_000_000, "chr2": 3_000_000, "chr3": 3_000_000}
    contigs.update({f"chrUn_{i}": int(n) for i, n in enumerate(rng.integers(500, 20_000, 2_000))})
    return contigs


def test_wasp_task_count_follows_the_groups_not_the_contigs(many_contigs, tmp_path):
    """WASP_REMAP runs once per sample × line of the plan: with 2,003 contigs in the BAM header
    and reads on a few, two samples make a handful of tasks, not 4,006."""
    fai = _fai(tmp_path / "genome.fa.fai", many_contigs)
    bams = [_bam(tmp_path / "s1.bam", many_contigs, {"chr1": 30, "chr2": 5, "chrUn_7": 2, "chrUn_1500": 1}),
            _bam(tmp_path / "s2.bam", many_contigs, {"chr1": 10, "chr3": 4, "chrUn_8": 3})]
    target = 2_000_000
    out = tmp_path / "wasp_groups.tsv"
    assert wr.main(["--plan-groups", *map(str, bams), "--fai", str(fai), "--out-groups", str(out),
                    "--wasp-group-bp", str(target)]) == 0
    plan = cg.read_plan(out)
    with_reads = ["chr1", "chr2", "chr3", "chrUn_7", "chrUn_8", "chrUn_1500"]
    assert [c for g in plan.values() for c in g] == with_reads          # header order, each once
    # chromosomes over the target alone; the three scaffolds (< 60 kb together) in one group
    assert list(plan.values()) == [["chr1"], ["chr2"], ["chr3"], ["chrUn_7", "chrUn_8", "chrUn_1500"]]
    tasks = len(bams) * len(plan)
    total = sum(many_contigs[c] for c in with_reads)
    assert tasks == 8 and len(plan) <= cg.max_groups(total, target)
    assert tasks < len(bams) * len(many_contigs) / 500


def test_plan_keeps_the_first_contig_for_reads_without_a_coordinate(tmp_path):
    contigs = {"chr1": 1000, "chr2": 1000, "chr3": 1000}
    fai = _fai(tmp_path / "g.fai", contigs)
    bam = _bam(tmp_path / "s.bam", contigs, {"chr3": 2}, unplaced=3)
    assert cg.plan_groups(fai, [bam], 10_000) == [["chr1", "chr3"]]
    # no read at all: one group (the first contig), so the sample still gets its header-only BAM
    empty = _bam(tmp_path / "e.bam", contigs, {})
    assert cg.plan_groups(fai, [empty], 10_000) == [["chr1"]]


def test_plan_rejects_bams_it_cannot_serve(tmp_path):
    contigs = {"chr1": 1000, "chr2": 1000}
    fai = _fai(tmp_path / "g.fai", contigs)
    a = _bam(tmp_path / "a.bam", contigs, {"chr1": 1})
    b = _bam(tmp_path / "b.bam", {"chr2": 1000, "chr1": 1000}, {"chr1": 1})
    with pytest.raises(InputError, match="contig #1 is 'chr2'") as e:
        cg.plan_groups(fai, [a, b], 10_000)
    assert "b.bam" in str(e.value)
    c = _bam(tmp_path / "c.bam", {"chr1": 1000, "chrZ": 5}, {"chr1": 1})
    with pytest.raises(InputError, match="not in"):
        cg.plan_groups(fai, [c], 10_000)
    (tmp_path / "a.bam.bai").unlink()
    with pytest.raises(InputError, match="a.bam"):
        cg.plan_groups(fai, [a], 10_000)
    with pytest.raises(SystemExit):
        wr.main(["--plan-groups", str(a), "--out-groups", str(tmp_path / "x.tsv")])   # no --fai
