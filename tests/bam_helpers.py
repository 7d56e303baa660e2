"""Hand-built BAM files for tests: a coordinate-sorted header and an indexed BAM written from
``pysam.AlignedSegment`` records built in memory."""

from __future__ import annotations

from pathlib import Path

import pysam


def sorted_header(contigs: dict[str, int]) -> pysam.AlignmentHeader:
    """A coordinate-sorted header listing ``contigs`` (name → length) in the order given."""
    return pysam.AlignmentHeader.from_dict({"HD": {"VN": "1.6", "SO": "coordinate"},
                                            "SQ": [{"SN": name, "LN": n} for name, n in contigs.items()]})


def write_sorted_bam(path: Path, header: pysam.AlignmentHeader, records: list) -> Path:
    """Write ``records`` as a coordinate-sorted, indexed BAM (``<path>.bai`` beside it).

    Parameters
    ----------
    path : Path
        The BAM to write.
    header : pysam.AlignmentHeader
        The header the records were built against.
    records : list of pysam.AlignedSegment, shape (n,)
        In any order; sorted here by contig then start (stable: records at one position keep
        their order), unplaced records last, as ``samtools sort`` places them.

    Returns
    -------
    Path
        ``path``.
    """
    unplaced = len(header.references)
    recs = sorted(records, key=lambda r: (r.reference_id if r.reference_id >= 0 else unplaced, r.reference_start))
    with pysam.AlignmentFile(str(path), "wb", header=header) as f:
        for r in recs:
            f.write(r)
    pysam.index(str(path))
    return path
