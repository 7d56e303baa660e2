"""BGZF integrity in the project's own BAM reader: every block's CRC32 and ISIZE,
the header blocks and the end-of-file marker are checked, as htslib does."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pysam
import pytest

from caveat import bam_records as br
from caveat.errors import InputError

N_READS = 6000


def _write_bam(path: Path, n: int = N_READS, seed: int = 0) -> Path:
    """A coordinate-sorted, indexed BAM of random single-end reads on two contigs,
    large enough for many BGZF blocks."""
    rng = np.random.default_rng(seed)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"},
              "SQ": [{"SN": "chr1", "LN": 200_000}, {"SN": "chr2", "LN": 100_000}]}
    with pysam.AlignmentFile(str(path), "wb", header=header) as f:
        for ref, k in ((0, n * 2 // 3), (1, n - n * 2 // 3)):
            for i, pos in enumerate(np.sort(rng.integers(0, 90_000, k))):
                r = pysam.AlignedSegment(f.header)
                r.query_name = f"r{ref}_{i}"
                r.reference_id, r.reference_start, r.mapping_quality = ref, int(pos), 60
                r.cigarstring = "60M"
                r.query_sequence = "".join(rng.choice(list("ACGT"), 60))
                r.query_qualities = pysam.qualitystring_to_array("".join(rng.choice(list("#5?FI"), 60)))
                f.write(r)
    pysam.index(str(path))
    return path


@pytest.fixture(scope="module")
def bam(tmp_path_factory) -> Path:
    return _write_bam(tmp_path_factory.mktemp("bgzf") / "reads.bam")


def block_offsets(data: bytes) -> list[int]:
    """Compressed offsets of the BGZF blocks of ``data`` (the last one is the EOF marker)."""
    offs, o = [], 0
    while o < len(data):
        offs.append(o)
        o += struct.unpack_from("<H", data, o + 16)[0] + 1
    return offs


def read_like_the_pipeline(bam: Path) -> int:
    """What wasp_remap and count_alleles do with a BAM: check it, read its header,
    stream every contig's records (the in-process BGZF reader). Returns the record count."""
    br.check_bam(bam)
    _, names, _ = br.read_header(bam)
    return sum(len(ch) for i, c in enumerate(names) for ch in br.stream_chunks(bam, c, ref_id=i))


def _copy_with(bam: Path, dest: Path, data: bytes) -> Path:
    dest.write_bytes(data)
    shutil.copy(str(bam) + ".bai", str(dest) + ".bai")  # the index of the intact file, as after a bad copy
    return dest


def test_intact_bam_reads_every_record(bam):
    assert len(block_offsets(bam.read_bytes())) > 10  # many blocks: the flips below land in different ones
    assert read_like_the_pipeline(bam) == N_READS


def test_one_flipped_bit_anywhere_in_a_block_is_rejected(bam, tmp_path):
    """Property: a single flipped bit at a random position of a random block (header
    blocks, record blocks, the EOF marker) fails with an InputError that names the file
    and the damaged block's compressed offset (or the missing EOF marker)."""
    data = bam.read_bytes()
    offs = block_offsets(data)
    rng = np.random.default_rng(16)
    hits = 0
    while hits < 40:
        pos = int(rng.integers(0, len(data)))
        start = max(o for o in offs if o <= pos)
        if 3 <= pos - start <= 9:
            continue  # FLG, MTIME, XFL, OS: nothing there is read (htslib ignores them as well)
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        f = _copy_with(bam, tmp_path / f"flip{hits}.bam", bytes(bad))
        with pytest.raises(InputError) as e:
            read_like_the_pipeline(f)
        msg = str(e.value)
        assert f.name in msg and "samtools quickcheck" in msg, msg
        if start == offs[-1]:
            assert "end-of-file marker" in msg, msg
        else:
            assert f"compressed offset {start}:" in msg, (pos, start, msg)
        hits += 1


def test_crc_and_isize_are_checked_even_when_the_data_inflates(bam, tmp_path):
    """A damaged trailer (CRC32 or ISIZE) leaves the deflate stream intact: only the check sees it."""
    data = bam.read_bytes()
    offs = block_offsets(data)
    start, end = offs[3], offs[4]
    for field, where, word in (("CRC32 mismatch", end - 8, "CRC32"), ("its trailer says", end - 4, "ISIZE")):
        bad = bytearray(data)
        bad[where] ^= 0x10
        f = _copy_with(bam, tmp_path / f"{word}.bam", bytes(bad))
        with pytest.raises(InputError, match=f"compressed offset {start}: .*{field}"):
            read_like_the_pipeline(f)


def test_missing_eof_marker_is_an_error(bam, tmp_path):
    data = bam.read_bytes()
    f = _copy_with(bam, tmp_path / "noeof.bam", data[:-len(br.BGZF_EOF)])
    with pytest.raises(InputError, match="end-of-file marker.*truncated"):
        read_like_the_pipeline(f)
    with pytest.raises(InputError, match="end-of-file marker"):  # the index-less path (samtools) too
        list(br.stream_chunks(f, "chr1"))


def test_file_cut_inside_a_block_names_the_block(bam, tmp_path):
    data = bam.read_bytes()
    offs = block_offsets(data)
    cut = offs[5] + 100
    with open(tmp_path / "cut.bam", "wb") as fh:
        fh.write(data[:cut])
    with open(tmp_path / "cut.bam", "rb") as fh:
        with pytest.raises(InputError, match=f"compressed offset {offs[5]}: the file ends 100 bytes into"):
            for _ in br.bgzf_blocks(fh, offs[1], 1 << 16):
                pass


def test_samtools_path_refuses_a_damaged_block(bam, tmp_path):
    """Whole files are read through `samtools view` (htslib checks the CRC): also an InputError."""
    data = bam.read_bytes()
    offs = block_offsets(data)
    bad = bytearray(data)
    bad[offs[4] + 40] ^= 0x04
    f = tmp_path / "noidx.bam"
    f.write_bytes(bytes(bad))
    with pytest.raises(InputError) as e:
        for _ in br.stream_file(f)[1]:
            pass
    assert f.name in str(e.value) and "samtools quickcheck" in str(e.value)


# ---------------------------------------------------------------- byte-deterministic writing


def _bam_stream(path: Path) -> bytes:
    """The uncompressed BAM stream (header and records) of a BGZF file, by plain zlib."""
    import zlib

    raw, out, o = path.read_bytes(), [], 0
    while o < len(raw):
        bsize = struct.unpack_from("<H", raw, o + 16)[0] + 1
        out.append(zlib.decompress(raw[o + 18:o + bsize - 8], -15))
        o += bsize
    return b"".join(out)


def _write_stream(path: Path, data: bytes, cuts) -> bytes:
    """Write ``data`` through BamWriter in pieces cut at ``cuts``; the file's bytes."""
    with br.BamWriter(path) as w:
        for a, b in zip([0, *cuts], [*cuts, len(data)]):
            w.write(np.frombuffer(data[a:b], np.uint8) if (a // 7) % 2 else data[a:b])
    return path.read_bytes()


def test_written_bam_bytes_depend_on_the_records_only(bam, tmp_path):
    """Same records → same bytes, however the writes are cut, on any number of threads at once,
    after any earlier compression left its memory behind; each block is the plain zlib level-1
    deflate of the next 0xFF00 bytes of the stream (an independent computation), and the file
    reads back as the same records."""
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    data = _bam_stream(bam)
    assert len(data) > 8 * br._BLOCK
    rng = np.random.default_rng(1)
    ref = _write_stream(tmp_path / "one.bam", data, [])
    cut_sets = [sorted(rng.choice(len(data), k, replace=False).tolist()) for k in (3, 40, 400)]
    cut_sets.append(list(range(16 * br._BLOCK - 5, len(data), 16 * br._BLOCK)))   # around the flush point
    for i, cuts in enumerate(cut_sets):
        assert _write_stream(tmp_path / f"cut{i}.bam", data, cuts) == ref
    garbage = rng.integers(0, 256, 4 * br._BLOCK, dtype=np.uint8).tobytes()
    for threads in (1, 4):
        def job(k, threads=threads):
            zlib.compressobj(9).compress(garbage)                 # leave other memory behind
            return _write_stream(tmp_path / f"t{threads}_{k}.bam", data, cut_sets[k % len(cut_sets)])
        with ThreadPoolExecutor(threads) as ex:
            assert all(b == ref for b in ex.map(job, range(8)))
    # the independent computation, block by block
    o, k = 0, 0
    while o < len(ref) - len(br.BGZF_EOF):
        bsize = struct.unpack_from("<H", ref, o + 16)[0] + 1
        part = data[k * br._BLOCK:(k + 1) * br._BLOCK]
        c = zlib.compressobj(1, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
        assert ref[o + 18:o + bsize - 8] == c.compress(part) + c.flush()
        assert struct.unpack_from("<II", ref, o + bsize - 8) == (zlib.crc32(part), len(part))
        o, k = o + bsize, k + 1
    assert k == -(-len(data) // br._BLOCK) and ref[o:] == br.BGZF_EOF
    with pysam.AlignmentFile(str(bam)) as a, pysam.AlignmentFile(str(tmp_path / "one.bam"), check_sq=False) as b:
        assert [r.to_string() for r in a.fetch(until_eof=True)] == [r.to_string() for r in b.fetch(until_eof=True)]
