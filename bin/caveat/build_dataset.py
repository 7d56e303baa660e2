"""build_dataset: tile the genome into training windows with per-cell-type targets.

Every chromosome is tiled into ``window_size`` (1344 bp) windows at
``window_stride`` (192 bp); windows containing an N (assembly gaps), overlapping
a ``blacklist`` interval, or whose centre target bin is more than
``unmappable_max_fraction`` covered by the optional ``unmappable_bed`` (regions
that reads cannot map to uniquely) are dropped, each counted under its first
reason. A window's raw target for a cell type is the sum of that cell type's
pseudobulk insertion bigWig over the window's centre ``target_bin`` (192 bp;
offset 576..768); targets are then scaled to a common depth per cell type and
optionally clipped (:mod:`caveat.targets`; factors and thresholds recorded in
the summary and in ``windows.parquet``'s schema metadata). Windows are split by chromosome
(valid chr7, chr14, chr15; test chr4, chr5; the rest train) and flagged
``in_peak`` / ``in_nonubiquitous_peak`` when their centre target bin overlaps
a union peak / a cell-type specific (non-ubiquitous) peak: with stride equal
to the target bin, the centre bins tile the genome, so the windows flagged for
a peak are exactly the windows tiling it (the rule ``predict`` uses for peak
values).

Output: ``windows.parquet`` (chrom, start, end, split, in_peak,
in_nonubiquitous_peak, targets: fixed-size list<float32>, one per cell type
in samplesheet order) and ``build_dataset.summary.json`` (counts, cell types,
windows dropped by reason, ``target_scale``).
Sequences are never stored: the genome stays integer-coded (see
:mod:`caveat.loader`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from .engine import Step, StepContext
from .errors import InputError
from .dataset_io import cell_types_of, read_windows  # noqa: F401  (their home is dataset_io)
from .genome import fasta_lengths, read_genome
from .intervals import read_bed
from .io import atomic_path, write_json
from .log import get_logger
from .step_cli import add_param_options, params_from_args
from .targets import NORMS, metadata, normalise_and_clip, track_total

log = get_logger("build_dataset")

PARAMS = {
    "window_size": 1344,
    "window_stride": 192,
    "target_bin": 192,
    "valid_chroms": ["chr7", "chr14", "chr15"],
    "test_chroms": ["chr4", "chr5"],
    "blacklist": None,
    "dataset_chroms": None,  # optional list restricting the tiled contigs (default: every FASTA contig)
    "unmappable_bed": None,  # BED of regions that are NOT uniquely mappable (Basenji's -u umap BED)
    "unmappable_max_fraction": 0.5,  # Basenji's umap_t: drop when more of the target bin is unmappable
    "target_norm": "mean_depth",  # per-cell-type depth scaling (caveat.targets)
    "target_clip_soft_quantile": None,  # the study's targets file has no clip_soft
    "target_clip_quantile": None,  # ... nor clip
}
SPLITS = ("train", "valid", "test")


# ---------------------------------------------------------------- tiling


def tile_starts(length: int, window_size: int, stride: int) -> np.ndarray:
    """Window starts tiling a contig of ``length`` bp, shape (W,), int64."""
    if length < window_size:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, length - window_size + 1, stride, dtype=np.int64)


def has_n(codes: np.ndarray, starts: np.ndarray, window_size: int) -> np.ndarray:
    """Whether each window contains an N, via a prefix sum of N codes.

    codes: (L,) uint8; starts: (W,) → (W,) bool.
    """
    csum = np.concatenate([[0], np.cumsum(codes >= 4, dtype=np.int64)])
    return (csum[starts + window_size] - csum[starts]) > 0


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort and merge overlapping half-open intervals → (starts, ends), disjoint."""
    if len(starts) == 0:
        return starts.astype(np.int64), ends.astype(np.int64)
    o = np.argsort(starts, kind="stable")
    s, e = starts[o].astype(np.int64), ends[o].astype(np.int64)
    run_end = np.maximum.accumulate(e)
    new = np.concatenate([[True], s[1:] >= run_end[:-1]])
    idx = np.flatnonzero(new)
    return s[idx], np.maximum.reduceat(e, idx)


def overlaps(q_start: np.ndarray, q_end: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Whether each query [q_start, q_end) overlaps any of the intervals [s, e).

    The intervals need not be sorted or disjoint. Returns (Q,) bool.
    """
    if len(s) == 0:
        return np.zeros(len(q_start), dtype=bool)
    ms, me = merge_intervals(np.asarray(s), np.asarray(e))
    # the last merged interval starting before q_end must end after q_start
    k = np.searchsorted(ms, q_end, side="left") - 1
    ok = k >= 0
    out = np.zeros(len(q_start), dtype=bool)
    out[ok] = me[k[ok]] > q_start[ok]
    return out


# ---------------------------------------------------------------- targets


def interval_sums(intervals, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sum of a piecewise-constant signal over each [start, end).

    Parameters
    ----------
    intervals : sequence of (start, end, value)
        Sorted, non-overlapping (a bigWig's ``intervals(chrom)``).
    starts, ends : (Q,) int arrays

    Returns
    -------
    numpy.ndarray
        (Q,) float64.
    """
    if not intervals:
        return np.zeros(len(starts))
    arr = np.asarray(intervals, dtype=np.float64)
    s, e, v = arr[:, 0], arr[:, 1], arr[:, 2]
    v = np.nan_to_num(v)
    before = np.concatenate([[0.0], np.cumsum(v * (e - s))])  # integral up to each interval's start

    def integral(x: np.ndarray) -> np.ndarray:
        k = np.searchsorted(s, x, side="right") - 1
        kk = np.maximum(k, 0)
        inside = np.clip(x - s[kk], 0, e[kk] - s[kk]) * v[kk]
        return np.where(k >= 0, before[kk] + inside, 0.0)

    return integral(np.asarray(ends, dtype=np.float64)) - integral(np.asarray(starts, dtype=np.float64))


def covered_fraction(bin_starts: np.ndarray, width: int, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Share of each bin [bin_start, bin_start + width) covered by the union of intervals [s, e).

    bin_starts : (B,) int; s, e : (R,) int, any order, may overlap → (B,) float64 in [0, 1].
    """
    if len(s) == 0:
        return np.zeros(len(bin_starts))
    ms, me = merge_intervals(np.asarray(s), np.asarray(e))
    runs = np.column_stack([ms, me, np.ones(len(ms))]).tolist()
    return interval_sums(runs, bin_starts, np.asarray(bin_starts) + width) / width


def bigwig_bin_sums(bw_path: Path, chrom: str, bin_starts: np.ndarray, bin_size: int) -> np.ndarray:
    """Sum of a bigWig over [bin_start, bin_start + bin_size) for each bin, (B,) float32."""
    import pyBigWig

    with pyBigWig.open(str(bw_path)) as bw:
        if chrom not in bw.chroms():
            return np.zeros(len(bin_starts), dtype=np.float32)
        iv = bw.intervals(chrom) or ()
    return interval_sums(iv, bin_starts, bin_starts + bin_size).astype(np.float32)


# ---------------------------------------------------------------- dataset


def check_splits(contigs: list[str], valid_chroms: list[str], test_chroms: list[str], fasta) -> None:
    """Raise when a split chromosome is absent from the genome (naming the param)."""
    for key, chroms in (("valid_chroms", valid_chroms), ("test_chroms", test_chroms)):
        missing = [c for c in chroms if c not in contigs]
        if missing:
            raise InputError(fasta, f"{key} chromosome(s) {', '.join(map(repr, missing))} not in the genome "
                             f"(contigs: {', '.join(contigs[:8])}{' …' if len(contigs) > 8 else ''})",
                             f"set the param `{key}` to chromosomes of this genome")
        if not chroms:
            raise InputError("params", f"`{key}` is empty", f"give at least one chromosome in `{key}`")
    both = set(valid_chroms) & set(test_chroms)
    if both:
        raise InputError("params", f"chromosome(s) {sorted(both)} are in both valid_chroms and test_chroms",
                         "make the validation and test chromosomes disjoint")


def read_bed_intervals(path: Path) -> pd.DataFrame:
    """First three columns of a BED file → DataFrame chrom, start, end."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "blacklist BED not found", "fix the `blacklist` path or set it to null")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        f = line.split("\t") if "\t" in line else line.split()
        try:
            rows.append((f[0], int(f[1]), int(f[2])))
        except (IndexError, ValueError):
            raise InputError(path, f"line {i}: expected chrom<TAB>start<TAB>end, got {line[:60]!r}",
                             "give a BED file (0-based half-open)") from None
    return pd.DataFrame(rows, columns=["chrom", "start", "end"])


def build_windows(fasta: Path, bigwigs: list[Path], peaks: pd.DataFrame | None, *,
                  window_size: int = 1344, stride: int = 192, target_bin: int = 192,
                  valid_chroms=("chr7", "chr14", "chr15"), test_chroms=("chr4", "chr5"),
                  blacklist: pd.DataFrame | None = None, chroms: list[str] | None = None,
                  unmappable: pd.DataFrame | None = None, unmappable_max_fraction: float = 0.5
                  ) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Tile the genome, drop N/blacklisted/unmappable windows, compute raw targets and flags.

    Parameters
    ----------
    fasta : path
    bigwigs : list of path
        One pseudobulk insertion bigWig per cell type, in target order.
    peaks : DataFrame or None
        Union peaks (chrom, start, end, kind).
    window_size, stride, target_bin : int
    valid_chroms, test_chroms : sequence of str
    blacklist : DataFrame or None
        chrom, start, end.
    chroms : list of str, optional
        Contigs to tile (default every FASTA contig).
    unmappable : DataFrame or None
        chrom, start, end of regions that are NOT uniquely mappable.
    unmappable_max_fraction : float
        A window is dropped when more than this share of its target bin is unmappable.

    Returns
    -------
    windows : DataFrame
        chrom, start, end, split, in_peak, in_nonubiquitous_peak (W rows).
    targets : numpy.ndarray
        (W, T) float32: raw insertion sums over each centre bin (before :mod:`caveat.targets`).
    dropped : dict
        Counts of windows dropped by reason (n_bases, blacklist, unmappable; first reason only).
    """
    if target_bin > window_size or (window_size - target_bin) % 2:
        raise InputError("params", f"target_bin {target_bin} must be ≤ window_size {window_size} with an even difference",
                         "use e.g. window_size 1344 and target_bin 192")
    lengths = fasta_lengths(fasta)
    contigs = list(lengths) if chroms is None else list(chroms)
    check_splits(list(lengths), list(valid_chroms), list(test_chroms), fasta)
    offset = (window_size - target_bin) // 2
    frames, targets = [], []
    dropped = {"n_bases": 0, "blacklist": 0, "unmappable": 0, "short_contig": 0}
    for chrom in contigs:
        starts = tile_starts(lengths[chrom], window_size, stride)
        if len(starts) == 0:
            dropped["short_contig"] += 1
            continue
        codes = read_genome(fasta, [chrom])[chrom]
        keep = ~has_n(codes, starts, window_size)
        dropped["n_bases"] += int((~keep).sum())
        if blacklist is not None and len(blacklist):
            bl = blacklist[blacklist["chrom"] == chrom]
            black = overlaps(starts, starts + window_size, bl["start"].to_numpy(), bl["end"].to_numpy()) & keep
            dropped["blacklist"] += int(black.sum())
            keep &= ~black
        if unmappable is not None and len(unmappable):
            um = unmappable[unmappable["chrom"] == chrom]
            frac = covered_fraction(starts + offset, target_bin, um["start"].to_numpy(), um["end"].to_numpy())
            unmap = (frac > unmappable_max_fraction) & keep
            dropped["unmappable"] += int(unmap.sum())
            keep &= ~unmap
        starts = starts[keep]
        bins = starts + offset
        in_peak = np.zeros(len(starts), bool)
        in_nonubi = np.zeros(len(starts), bool)
        if peaks is not None and len(peaks):
            pk = peaks[peaks["chrom"] == chrom]
            ps, pe = pk["start"].to_numpy(), pk["end"].to_numpy()
            in_peak = overlaps(bins, bins + target_bin, ps, pe)
            spec = (pk["kind"] != "ubiquitous").to_numpy()
            in_nonubi = overlaps(bins, bins + target_bin, ps[spec], pe[spec])
        split = "test" if chrom in test_chroms else "valid" if chrom in valid_chroms else "train"
        frames.append(pd.DataFrame({"chrom": chrom, "start": starts, "end": starts + window_size,
                                    "split": split, "in_peak": in_peak, "in_nonubiquitous_peak": in_nonubi}))
        targets.append(np.stack([bigwig_bin_sums(bw, chrom, bins, target_bin) for bw in bigwigs], axis=1)
                       if bigwigs else np.zeros((len(starts), 0), np.float32))
        log.info("%s: %d windows kept", chrom, len(starts))
    if not frames:
        raise InputError(fasta, f"no contig is at least window_size = {window_size} bp long",
                         "lower `window_size` or use a larger genome")
    windows = pd.concat(frames, ignore_index=True)
    windows["start"] = windows["start"].astype(np.int64)
    windows["end"] = windows["end"].astype(np.int64)
    return windows, np.concatenate(targets).astype(np.float32), dropped


def write_windows(windows: pd.DataFrame, targets: np.ndarray, path: Path, meta: dict | None = None) -> Path:
    """Write windows.parquet with ``targets`` as fixed-size list<float32>, atomically.

    Written like :func:`caveat.io.write_parquet` (zstd, no pandas metadata) but
    keeping the Arrow schema, which is what records the fixed list size; ``meta``
    (bytes → bytes) is the schema's metadata (the target scale, :func:`caveat.targets.metadata`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(windows, preserve_index=False)
    flat = pa.array(np.ascontiguousarray(targets, dtype=np.float32).ravel(), type=pa.float32())
    table = table.append_column("targets", pa.FixedSizeListArray.from_arrays(flat, targets.shape[1]))
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


# ---------------------------------------------------------------- step


def _cell_types(params: dict) -> list[str]:
    from .samplesheet import cell_types
    from .single_cell import read_study

    return cell_types(read_study(params["input"], check_files=False).samples)


def _read_peaks(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        log.warning("%s not found: in_peak and in_nonubiquitous_peak are all false", path)
        return None
    return pd.read_parquet(path, columns=["chrom", "start", "end", "kind"])


def dataset_summary(windows: pd.DataFrame, cell_types: list[str], dropped: dict, scale: dict) -> dict:
    by = windows.groupby("split")
    return {"cell_types": cell_types, "windows": len(windows),
            "windows_by_split": {s: int((windows["split"] == s).sum()) for s in SPLITS},
            "in_peak": int(windows["in_peak"].sum()),
            "in_nonubiquitous_peak": int(windows["in_nonubiquitous_peak"].sum()),
            "in_peak_by_split": {s: int(g["in_peak"].sum()) for s, g in by},
            "dropped": dropped, "target_scale": scale}


def scale_targets(bigwigs: list, raw: np.ndarray, cell_types: list[str], params: dict) -> tuple[np.ndarray, dict]:
    """Raw centre-bin sums (W, T) → targets on one depth, clipped (:mod:`caveat.targets`), and the record."""
    totals = np.array([track_total(b) for b in bigwigs], dtype=np.float64)
    targets, rec = normalise_and_clip(raw, totals, list(cell_types), files=[str(b) for b in bigwigs],
                                      norm=params["target_norm"],
                                      clip_soft_quantile=params["target_clip_soft_quantile"],
                                      clip_quantile=params["target_clip_quantile"])
    for i, ct in enumerate(rec["cell_types"]):
        log.info("targets %s: %.0f insertions genome-wide, scale %.4g (%s), soft clip above %s, clip at %s", ct,
                 totals[i], rec["scale"][i], rec["norm"], _at(rec["clip_soft"], i), _at(rec["clip"], i))
    return targets, rec


def _at(values: list | None, i: int) -> str:
    return "none" if values is None else f"{values[i]:.4g}"


def run(fasta, bigwigs, cell_types, peaks_path, out, params: dict) -> dict:
    """Build and write windows.parquet + summary; returns the summary."""
    bl = read_bed_intervals(Path(params["blacklist"])) if params.get("blacklist") else None
    um = read_bed(params["unmappable_bed"], what="unmappable region", allow_empty=True) \
        if params.get("unmappable_bed") else None
    peaks = _read_peaks(Path(peaks_path)) if peaks_path else None
    for bw in bigwigs:
        if not Path(bw).exists():
            raise InputError(bw, "pseudobulk bigWig not found", "run the insertions step first")
    windows, targets, dropped = build_windows(
        Path(fasta), [Path(b) for b in bigwigs], peaks, window_size=params["window_size"],
        stride=params["window_stride"], target_bin=params["target_bin"],
        valid_chroms=params["valid_chroms"], test_chroms=params["test_chroms"], blacklist=bl,
        chroms=params.get("dataset_chroms"), unmappable=um,
        unmappable_max_fraction=params["unmappable_max_fraction"])
    log.info("read %s and %d bigWigs; %d windows kept, dropped %s", Path(fasta).name, len(bigwigs),
             len(windows), ", ".join(f"{v} for {k}" for k, v in dropped.items()))
    targets, scale = scale_targets(list(bigwigs), targets, list(cell_types), params)
    write_windows(windows, targets, Path(out), metadata(scale))
    summary = dataset_summary(windows, list(cell_types), dropped, scale)
    write_json(summary, Path(out).parent / "build_dataset.summary.json")
    return summary


def run_step(ctx: StepContext) -> dict:
    p = ctx.params
    cts = _cell_types(p)
    bws = [ctx.outdir / "insertions" / f"{ct}.pseudobulk.bw" for ct in cts]
    s = run(p["fasta"], bws, cts, ctx.outdir / "peaks.parquet", ctx.out("windows.parquet"), p)
    return {"windows": s["windows"], "train": s["windows_by_split"]["train"],
            "valid": s["windows_by_split"]["valid"], "test": s["windows_by_split"]["test"],
            "in_peak": s["in_peak"]}


def input_files(params: dict) -> list:
    return [f for f in (params.get("fasta"), params.get("input"), params.get("blacklist"),
                        params.get("unmappable_bed")) if f]


STEP = Step(name="build_dataset", run=run_step, needs=("insertions", "cluster_peaks"), params=PARAMS,
            input_files=input_files, path_params=("blacklist", "unmappable_bed"),
            doc="1344 bp windows, centre-bin targets per cell type, chromosome splits")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat build_dataset", description=__doc__.splitlines()[0])
    ap.add_argument("--fasta", required=True, help="reference genome FASTA")
    ap.add_argument("--bigwigs", nargs="+", required=True, help="pseudobulk insertion bigWigs, one per cell type")
    ap.add_argument("--cell-types", nargs="+", required=True, help="cell types, in the order of --bigwigs")
    ap.add_argument("--peaks", help="peaks.parquet (union peaks with kind)")
    ap.add_argument("--out", default="windows.parquet", help="output windows.parquet")
    add_param_options(ap, PARAMS, aliases={"dataset_chroms": ["--chroms"]},
                      types={"dataset_chroms": list, "target_clip_soft_quantile": float,
                             "target_clip_quantile": float},
                      choices={"target_norm": NORMS},
                      helps={"blacklist": "BED of regions to exclude",
                             "dataset_chroms": "contigs to tile (default all)",
                             "unmappable_bed": "BED of regions that are not uniquely mappable",
                             "unmappable_max_fraction": "drop a window when more than this share of its target bin "
                                                        "is unmappable",
                             "target_norm": "per-cell-type depth scaling of the targets",
                             "target_clip_soft_quantile": "soft-clip targets above this quantile (default: none)",
                             "target_clip_quantile": "clip targets at this quantile (default: none)"})
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if len(a.bigwigs) != len(a.cell_types):
        raise InputError("--cell-types", f"{len(a.cell_types)} cell types for {len(a.bigwigs)} bigWigs",
                         "give one cell type per bigWig, in the same order")
    params = params_from_args(a, PARAMS)
    run(a.fasta, a.bigwigs, a.cell_types, a.peaks, Path(a.out), params)
    return 0
