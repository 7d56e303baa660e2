#!/usr/bin/env python3
"""Hand-written pieces vs maintained libraries, same input, same run (issue 17.6).

Usage::

    .venv/bin/python benchmarks/bench_libraries.py [--reads N] [--sites N] [--peaks N] [--pvalues N]
                                                    [--scores N] [--reps R] [--peers DIR] [--only NAME ...]

Each row times one caveat function and its peer on the same input it builds
itself (best of ``--reps`` interleaved repetitions: the machine is shared),
prints ``peer time / caveat time`` (> 1: caveat is faster) and checks the two
results are equal (exactly, or to the float tolerance named in the row).

Rows: Benjamini–Hochberg (caveat's former hand-written version vs ``scipy``
``false_discovery_control``, which ``stats.bh_qvalues`` now calls, and
``statsmodels`` ``fdr_bh``); import costs of the peers; AUROC (``sklearn`` ``roc_auc_score``, with
and without bootstrap weights) and average precision; interval overlap, merge
and point lookup (``bioframe``); BAM decoding (``pysam`` iteration,
``oxbow``); BGZF decompression with CRC32 checks (``pysam.libcbgzf``, htslib);
BGZF writing (``pysam.libcbgzf``).

Peers that are not caveat dependencies (``bioframe``, ``oxbow``) are taken
from ``--peers DIR`` when given (``pip install --no-deps --target DIR bioframe
oxbow arro3-core requests``); a row whose peer does not import is skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bin"))

from caveat import bam_records as br  # noqa: E402
from caveat import intervals as iv  # noqa: E402
from caveat import metrics as M  # noqa: E402
from caveat.stats import bh_qvalues  # noqa: E402

ROWS: list[dict] = []


def best_of(reps: int, *fns):
    """Best wall time of each function over ``reps`` interleaved runs, and each one's last result."""
    times = [np.inf] * len(fns)
    out = [None] * len(fns)
    for _ in range(reps):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            out[k] = fn()
            times[k] = min(times[k], time.perf_counter() - t)
    return times, out


def row(op: str, size: str, caveat_s: float, peer: str, peer_s: float, same: str) -> None:
    r = dict(operation=op, input=size, caveat_s=caveat_s, peer=peer, peer_s=peer_s,
             ratio=peer_s / caveat_s, identical=same)
    ROWS.append(r)
    print(f"{op:34s} {size:>18s} caveat {caveat_s:8.3f} s  {peer:34s} {peer_s:8.3f} s  "
          f"peer/caveat {r['ratio']:5.2f}  identical: {same}", flush=True)


def _close(a, b, tol: float) -> str:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.array_equal(np.isnan(a), np.isnan(b))
    d = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
    return f"{'yes' if ok and d <= tol else 'NO'} (max |diff| {d:.1e})"


# --------------------------------------------------------------------------- multiple testing, AUROC
def bh_handwritten(p: np.ndarray) -> np.ndarray:
    """caveat's BH before the switch to scipy (commit 9c1ede0): stable sort, step-up minimum."""
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = np.argsort(p[ok], kind="stable")
    ranked = p[ok][order] * ok.size / np.arange(1, ok.size + 1)
    q[ok[order]] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return q


def fresh_import(module: str) -> float:
    """Seconds a fresh interpreter takes to import ``module`` (``a, b`` imports both)."""
    import os
    import subprocess
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path[:1] + [p for p in sys.path if "peers" in p]))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env=env)
    return time.perf_counter() - t


def bench_bh(n: int, reps: int) -> None:
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(size=n - n // 10), rng.beta(0.1, 5, n // 10)])
    p = np.round(p, 7)          # ties, as the discrete binomial tests give
    p[rng.integers(0, n, n // 100)] = np.nan

    def sm():
        q = np.full(p.shape, np.nan)
        ok = ~np.isnan(p)
        q[ok] = multipletests(p[ok], method="fdr_bh", is_sorted=False)[1]
        return q

    (th, tc, ts), (qh, qc, qs) = best_of(reps, lambda: bh_handwritten(p), lambda: bh_qvalues(p), sm)
    size = f"{n / 1e6:g} M p"
    row("BH, hand-written (before)", size, th, "stats.bh_qvalues = scipy fdc", tc, _close(qh, qc, 1e-15))
    row("BH, hand-written (before)", size, th, "statsmodels multipletests fdr_bh", ts, _close(qh, qs, 1e-15))
    (tc, ts), _ = best_of(reps, lambda: fresh_import("scipy.stats"),
                          lambda: fresh_import("scipy.stats, statsmodels.stats.multitest"))
    row("import scipy.stats (fresh)", "-", tc, "+ statsmodels.stats.multitest", ts, "-")


def bench_auc(n: int, reps: int) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(2)
    y = rng.uniform(size=n) < 0.1
    s = np.round(rng.normal(size=n) + 0.8 * y, 3)  # ties
    (tc, tp), (rc, rp) = best_of(reps, lambda: M.delong_auc(y, s), lambda: roc_auc_score(y, s))
    row("AUROC + DeLong var (delong_auc)", f"{n / 1e6:g} M scores", tc, "sklearn roc_auc_score (no var)", tp,
        _close(rc.auc, rp, 1e-12))
    (tc, tp), (rc, rp) = best_of(reps, lambda: M.average_precision(y, s), lambda: average_precision_score(y, s))
    row("average precision", f"{n / 1e6:g} M scores", tc, "sklearn average_precision_score", tp,
        _close(rc, rp, 1e-12))
    nb, m = 200, n // 10
    w = rng.multinomial(m, np.full(m, 1.0 / m), size=nb).astype(np.float64)
    ys, ss = y[:m], s[:m]
    (tc, tp), (rc, rp) = best_of(reps, lambda: M.weighted_auc(w, ys, ss),
                                 lambda: np.array([roc_auc_score(ys, ss, sample_weight=r) for r in w]))
    row("bootstrap AUROC (weighted_auc)", f"{nb} x {m / 1e3:g} k", tc, "sklearn roc_auc_score(sample_weight)",
        tp, _close(rc, rp, 1e-12))
    bench_bootstrap_spearman(reps)


def bench_bootstrap_spearman(reps: int, n_boot: int = 200, sizes=(300, 30_000)) -> None:
    """Block-bootstrap Spearman as evaluate computes it (``weighted_spearman``) vs ``scipy.stats.spearmanr``
    of each materialised resample: evaluate's effect-size CIs are 200 resamples of a few hundred (demo)
    to tens of thousands (study) imbalanced variants per cell type."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(4)
    for n in sizes:
        x = np.round(rng.normal(size=n), 2)
        y = np.round(x + rng.normal(size=n), 2)
        w = M.block_bootstrap_weights(np.arange(n) // 3, n_boot, seed=1)
        idx = [np.repeat(np.arange(n), r.astype(np.int64)) for r in w]
        (tc, tp), (rc, rp) = best_of(reps, lambda: M.weighted_spearman(w, x, y),
                                     lambda: np.array([spearmanr(x[i], y[i])[0] for i in idx]))
        row("bootstrap Spearman (weighted_spearman)", f"{n_boot} x {n:,}", tc, "scipy spearmanr per resample",
            tp, _close(rc, rp, 1e-12))


# --------------------------------------------------------------------------- intervals
def _intervals(rng, n: int, contigs: list[str], length: int, lo: int, hi: int) -> pd.DataFrame:
    start = rng.integers(0, length - hi, n)
    return pd.DataFrame({"chrom": rng.choice(contigs, n), "start": start,
                         "end": start + rng.integers(lo, hi, n)})


def bench_intervals(n_sites: int, n_peaks: int, reps: int) -> None:
    try:
        import bioframe
    except ImportError:
        print("bioframe not importable: interval rows skipped (see --peers)")
        return
    (tc, tp), _ = best_of(reps, lambda: fresh_import("caveat.intervals"),
                          lambda: fresh_import("caveat.intervals, bioframe"))
    row("import caveat.intervals (fresh)", "-", tc, "+ bioframe", tp, "-")
    rng = np.random.default_rng(3)
    contigs = [f"chr{i}" for i in range(1, 23)]
    peaks = _intervals(rng, n_peaks, contigs, 50_000_000, 150, 1500)
    sites = _intervals(rng, n_sites, contigs, 50_000_000, 1, 2)       # SNVs as 1-bp intervals
    wins = _intervals(rng, n_sites, contigs, 50_000_000, 1000, 1001)   # 1 kb windows

    def pairs_bf(a, b):
        o = bioframe.overlap(a, b, how="inner", return_index=True, return_input=False)
        return np.sort(o["index"].to_numpy() * len(b) + o["index_"].to_numpy())

    for name, a in (("SNV sites", sites), ("1 kb windows", wins)):
        (tc, tp), (rc, rp) = best_of(reps, lambda: iv.overlap_pairs(a, peaks), lambda: pairs_bf(a, peaks))
        same = np.array_equal(np.sort(rc[0] * len(peaks) + rc[1]), rp)
        row(f"overlap_pairs ({name})", f"{len(a) / 1e6:g} M x {n_peaks / 1e3:g} k", tc,
            "bioframe.overlap inner", tp, f"{'yes' if same else 'NO'} ({rc[0].size} pairs)")
    (tc, tp), (rc, rp) = best_of(reps, lambda: iv.overlaps(sites, peaks),
                                 lambda: bioframe.count_overlaps(sites, peaks)["count"].to_numpy() > 0)
    row("overlaps (any, per site)", f"{n_sites / 1e6:g} M x {n_peaks / 1e3:g} k", tc,
        "bioframe.count_overlaps > 0", tp, "yes" if np.array_equal(rc, rp) else "NO")
    (tc, tp), (rc, rp) = best_of(reps, lambda: iv.merge_intervals(wins),
                                 lambda: bioframe.merge(wins, min_dist=0))
    bf = rp.sort_values(["chrom", "start"]).reset_index(drop=True)[["chrom", "start", "end"]]
    row("merge_intervals", f"{n_sites / 1e6:g} M", tc, "bioframe.merge", tp,
        "yes" if rc.reset_index(drop=True).astype({"start": "int64", "end": "int64"})
        .equals(bf.astype({"start": "int64", "end": "int64"})) else "NO")
    merged = iv.merge_intervals(peaks, contig_order=contigs)
    chrom, pos = sites["chrom"].to_numpy(), sites["start"].to_numpy()

    def points_bf():
        o = bioframe.overlap(sites, merged, how="left", return_index=True, return_input=False)
        out = np.full(len(sites), -1, np.int64)
        hit = o["index_"].notna().to_numpy()
        out[o["index"].to_numpy()[hit]] = o["index_"].to_numpy()[hit].astype(np.int64)
        return out

    (tc, tp), (rc, rp) = best_of(reps, lambda: iv.contains_points(merged, chrom, pos), points_bf)
    row("contains_points", f"{n_sites / 1e6:g} M x {len(merged) / 1e3:.0f} k", tc, "bioframe.overlap left", tp,
        "yes" if np.array_equal(rc, rp) else "NO")


# --------------------------------------------------------------------------- BAM / BGZF
NT16 = np.zeros(256, np.uint8)
NT16[np.frombuffer(b"ACGT", np.uint8)] = [1, 2, 4, 8]


def synthetic_bam(path: Path, n: int, read_len: int = 50, seed: int = 4) -> tuple[bytes, bytes]:
    """A coordinate-sorted, indexed BAM of ``n`` reads on two contigs, compressed by htslib.

    CIGARs vary (50M, 20M5D30M, 10S40M, 25M300N25M) so that the reference end is decoded, not
    assumed. Returns (header bytes, record bytes) as written (uncompressed).
    """
    import pysam

    rng = np.random.default_rng(seed)
    lengths = {"chr1": 50_000_000, "chr2": 40_000_000}
    cigars = [[(0, 50)], [(0, 20), (2, 5), (0, 30)], [(4, 10), (0, 40)], [(0, 25), (3, 300), (0, 25)]]
    ncig = max(len(c) for c in cigars)
    name_len = 16
    dt = np.dtype([("bs", "<i4"), ("ref", "<i4"), ("pos", "<i4"), ("lrn", "u1"), ("mapq", "u1"), ("bin", "<u2"),
                   ("ncig", "<u2"), ("flag", "<u2"), ("lseq", "<i4"), ("nref", "<i4"), ("npos", "<i4"),
                   ("tlen", "<i4"), ("name", f"S{name_len}"), ("cig", "<u4", ncig),
                   ("seq", "u1", read_len // 2), ("qual", "u1", read_len)])
    a = np.zeros(n, dt)
    a["ref"] = (np.arange(n) >= n * 5 // 9).astype(np.int32)
    a["pos"] = rng.integers(0, 39_000_000, n)
    a = a[np.lexsort((a["pos"], a["ref"]))]
    k = rng.integers(0, len(cigars), n)
    cig = np.zeros((len(cigars), ncig), np.uint32)
    for i, c in enumerate(cigars):
        cig[i, :len(c)] = [ln << 4 | op for op, ln in c]
    a["cig"] = cig[k]
    n_ops = np.array([len(c) for c in cigars])[k]
    a["ncig"] = n_ops
    a["lrn"] = name_len
    a["mapq"] = rng.integers(0, 61, n)
    a["bin"] = 4680
    a["flag"] = rng.choice([0x1 | 0x2 | 0x20 | 0x40, 0x1 | 0x2 | 0x10 | 0x80, 0x10, 0x400], n)
    a["lseq"] = read_len
    a["nref"] = a["ref"]
    a["npos"] = np.maximum(a["pos"] + rng.integers(-300, 300, n), 0)
    a["name"] = np.char.add(b"r", np.char.zfill(rng.permutation(n).astype("S14"), 14))
    a["seq"] = (NT16[rng.choice(np.frombuffer(b"ACGT", np.uint8), (n, read_len // 2))] << 4) | 1
    a["qual"] = 30
    # a record with c CIGAR ops drops the 4 * (ncig - c) padding bytes after its ops
    a["bs"] = dt.itemsize - 4 - 4 * (ncig - n_ops)
    rec = a.view(np.uint8).reshape(n, dt.itemsize)
    col = np.arange(dt.itemsize)[None, :]
    cig0 = dt.fields["cig"][1]
    keep = ~((col >= cig0 + 4 * n_ops[:, None]) & (col < cig0 + 4 * ncig))
    body = rec[keep].tobytes()
    text = "@HD\tVN:1.6\tSO:coordinate\n" + "".join(f"@SQ\tSN:{c}\tLN:{ln}\n" for c, ln in lengths.items())
    header = (b"BAM\x01" + np.int32(len(text)).tobytes() + text.encode() + np.int32(len(lengths)).tobytes()
              + b"".join(np.int32(len(c) + 1).tobytes() + c.encode() + b"\0" + np.int32(ln).tobytes()
                         for c, ln in lengths.items()))
    import pysam.libcbgzf as bgzf
    with bgzf.BGZFile(str(path), "wb") as f:
        f.write(header)
        f.write(body)
    pysam.index(str(path))
    return header, body


def _caveat_fields(bam: Path, direct: bool) -> dict:
    """Every record's fixed fields through caveat's reader (bai + in-process BGZF, or samtools)."""
    parts: dict = {k: [] for k in ("refid", "pos", "end", "mapq", "flag", "next_refid", "next_pos")}
    for ref_id, contig in enumerate(("chr1", "chr2")):
        for ch in br.stream_chunks(bam, contig, ref_id=ref_id if direct else None):
            for k in parts:
                parts[k].append(getattr(ch, k))
    return {k: np.concatenate(v) for k, v in parts.items()}


def _pysam_fields(bam: Path) -> dict:
    import pysam

    cols: dict = {k: [] for k in ("refid", "pos", "end", "mapq", "flag", "next_refid", "next_pos")}
    with pysam.AlignmentFile(str(bam), "rb") as f:
        for contig in ("chr1", "chr2"):
            for r in f.fetch(contig):
                cols["refid"].append(r.reference_id)
                cols["pos"].append(r.reference_start)
                cols["end"].append(r.reference_end)
                cols["mapq"].append(r.mapping_quality)
                cols["flag"].append(r.flag)
                cols["next_refid"].append(r.next_reference_id)
                cols["next_pos"].append(r.next_reference_start)
    return {k: np.asarray(v, np.int64) for k, v in cols.items()}


def _oxbow_fields(bam: Path) -> dict:
    import oxbow

    df = oxbow.from_bam(str(bam), fields=["rname", "pos", "end", "mapq", "flag", "rnext", "pnext"],
                        coords="01").to_pandas()
    names = {"chr1": 0, "chr2": 1}
    return {"refid": df["rname"].map(names).to_numpy(np.int64), "pos": df["pos"].to_numpy(np.int64),
            "end": df["end"].to_numpy(np.int64), "mapq": df["mapq"].fillna(255).to_numpy(np.int64),
            "flag": df["flag"].to_numpy(np.int64), "next_refid": df["rnext"].map(names).to_numpy(np.int64),
            "next_pos": df["pnext"].to_numpy(np.int64)}


def _same_fields(a: dict, b: dict) -> str:
    bad = [k for k in a if not np.array_equal(a[k], b[k])]
    return "yes (7 fields)" if not bad else f"NO ({', '.join(bad)})"


def bench_bam(n: int, reps: int, work: Path) -> None:
    import pysam.libcbgzf as bgzf

    bam = work / "reads.bam"
    header, body = synthetic_bam(bam, n)
    size = f"{n / 1e6:g} M reads"
    list(br.stream_chunks(bam, "chr2", ref_id=1))  # numba kernels loaded from their cache
    (td, ts, tp), (rd, rs, rp) = best_of(reps, lambda: _caveat_fields(bam, True),
                                         lambda: _caveat_fields(bam, False), lambda: _pysam_fields(bam))
    row("BAM decode (stream_chunks, bai)", size, td, "pysam fetch, same 7 fields", tp, _same_fields(rd, rp))
    row("BAM decode (stream_chunks, samtools)", size, ts, "pysam fetch, same 7 fields", tp, _same_fields(rs, rp))
    try:
        import oxbow  # noqa: F401
        (td, to), (rd, ro) = best_of(reps, lambda: _caveat_fields(bam, True), lambda: _oxbow_fields(bam))
        row("BAM decode (stream_chunks, bai)", size, td, "oxbow from_bam (Arrow)", to, _same_fields(rd, ro))
    except ImportError:
        print("oxbow not importable: its row skipped (see --peers)")

    def inflate_caveat():
        with open(bam, "rb") as fh:
            return sum(len(d) for d in br.bgzf_blocks(fh, 0, 4 << 20))

    def inflate_htslib():
        with bgzf.BGZFile(str(bam), "rb") as f:
            k = 0
            while d := f.read(4 << 20):
                k += len(d)
        return k

    (tc, tp), (kc, kp) = best_of(reps, inflate_caveat, inflate_htslib)
    row("BGZF inflate + CRC32 (bgzf_blocks)", f"{kc / 1e6:.0f} MB", tc, "pysam BGZFile.read (htslib)", tp,
        "yes" if kc == kp else "NO")

    data = header + body

    def write_caveat():
        with br.BamWriter(work / "c.bam") as w:
            w.write(data)
        return (work / "c.bam").stat().st_size

    def write_htslib():
        with bgzf.BGZFile(str(work / "h.bam"), "wb1") as f:  # the same deflate level 1
            f.write(data)
        return (work / "h.bam").stat().st_size

    (tc, tp), (sc, sp) = best_of(reps, write_caveat, write_htslib)
    with bgzf.BGZFile(str(work / "c.bam"), "rb") as f:
        back = f.read(len(data) + 1)
    row("BGZF write (BamWriter, zlib 1)", f"{len(data) / 1e6:.0f} MB", tc, "pysam BGZFile wb1 (htslib, level 1)", tp,
        f"{'yes' if back == data else 'NO'} (content; compressed bytes "
        f"{'equal' if (work / 'c.bam').read_bytes() == (work / 'h.bam').read_bytes() else 'differ'})")


def markdown() -> str:
    lines = ["| operation | input | caveat (s) | peer | peer (s) | peer / caveat | identical |",
             "|---|---|---:|---|---:|---:|---|"]
    for r in ROWS:
        lines.append(f"| {r['operation']} | {r['input']} | {r['caveat_s']:.3f} | {r['peer']} | {r['peer_s']:.3f} | "
                     f"{r['ratio']:.2f} | {r['identical']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=1_500_000)
    ap.add_argument("--sites", type=int, default=1_000_000)
    ap.add_argument("--peaks", type=int, default=100_000)
    ap.add_argument("--pvalues", type=int, default=10_000_000)
    ap.add_argument("--scores", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peers", type=Path, help="directory with bioframe / oxbow (pip install --target)")
    ap.add_argument("--only", nargs="*", choices=["bh", "auc", "intervals", "bam"],
                    default=["bh", "auc", "intervals", "bam"])
    args = ap.parse_args(argv)
    if args.peers:
        sys.path.append(str(args.peers))  # appended: the venv's numpy/pandas stay first
    if "bh" in args.only:
        bench_bh(args.pvalues, args.reps)
    if "auc" in args.only:
        bench_auc(args.scores, args.reps)
    if "intervals" in args.only:
        bench_intervals(args.sites, args.peaks, args.reps)
    if "bam" in args.only:
        with tempfile.TemporaryDirectory() as d:
            bench_bam(args.reads, args.reps, Path(d))
    print()
    print(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
