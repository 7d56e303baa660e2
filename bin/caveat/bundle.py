"""The portable benchmark bundle (issue 18, point 7): what scoring any model on this study needs,
without the reads, the genome or the upstream steps.

``<outdir>/benchmark_bundle/`` (written by the evaluate step; read by ``caveat benchmark``):

=======================================  ================================================================
``manifest.json``                        format and version, cell types, window length, target bin, the
                                         longest model input the sequences cover, strata, counts, the
                                         settings that make the metrics (averaging, shifts, evaluate
                                         params, seed, test chromosomes), contig lengths, and the
                                         SHA-256 and size of every file. No absolute path, no timestamp:
                                         the same run gives the same bytes.
``windows.parquet``                      the test-split windows in windows.parquet's format (chrom, start,
                                         end, split, …, ``targets``: one float per cell type, the
                                         targets' scale)
``peaks.parquet``                        test-chromosome peaks: peak_id, interval, kind, cluster label,
                                         ``acc_*``, and ``value_<cell type>`` (insertions over the centred
                                         target-bin site, on the targets' scale): the reference-accuracy
                                         peak sites and their targets
``variant_sets.parquet``                 the labelled variants as evaluate reads them: cell_type,
                                         variant_id, set (positive = imbalanced, negative = balanced),
                                         negative_set (depth_matched / region_controlled), observed
                                         ``ref_ratio`` (REF fraction), stratum, split, …
``variant_sets_stratum_matched.parquet`` Fig. 4B's stratum-matched variants (when the run has them)
``sequences.parquet``                    chrom, start, end, sequence (ACGTN text): merged genome
                                         stretches covering every test window, peak-centred window and
                                         variant window (with shifts and indel room); all else is N
=======================================  ================================================================
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import __version__
from .errors import InputError
from .genome import decode, encode, read_genome
from .io import atomic_path, read_json, read_parquet, write_json, write_parquet
from .log import get_logger
from .peak_sites import centred_sites

log = get_logger("bundle")

FORMAT = "caveat-benchmark-bundle"
FORMAT_VERSION = 1
BUNDLE_DIR = "benchmark_bundle"
#: bases of context kept beyond every window (covers prediction shifts and indel alleles)
MARGIN = 32
#: the settings copied from the run's params into the manifest (the benchmark uses them)
SETTINGS = ("window_size", "target_bin", "predict_average", "predict_batch_size", "predict_peak_value",
            "score_rc", "score_shifts", "score_batch_size", "score_fast_ism", "evaluate_height_bin",
            "evaluate_bootstrap", "evaluate_ci_level", "evaluate_block_bp", "test_chroms", "seed")
FILES = ("windows.parquet", "peaks.parquet", "variant_sets.parquet", "variant_sets_stratum_matched.parquet",
         "sequences.parquet")


@dataclass
class Bundle:
    """A bundle read back (:func:`read_bundle`).

    Attributes
    ----------
    windows : DataFrame
        Test windows (W rows, without targets).
    targets : numpy.ndarray
        (W, C) float32.
    cell_types : list of str
        C names, target order.
    peaks : DataFrame or None
        Test-chromosome peaks, ``value_*`` on the targets' scale.
    sets, strata_sets : DataFrame or None
        Labelled variants (evaluate's ``sets`` and ``strata_sets``).
    genome : dict
        contig → (length,) uint8 codes (N outside the stored stretches).
    lengths : dict
        contig → length.
    manifest : dict
    """

    windows: pd.DataFrame
    targets: np.ndarray
    cell_types: list
    peaks: pd.DataFrame | None
    sets: pd.DataFrame
    strata_sets: pd.DataFrame | None
    genome: dict
    lengths: dict
    manifest: dict


def sha256(path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- writing


def merge_intervals(iv: pd.DataFrame) -> pd.DataFrame:
    """Overlapping or touching (chrom, start, end) intervals merged, sorted by chrom and start."""
    out = []
    for chrom, g in iv.sort_values(["chrom", "start"], kind="stable").groupby("chrom", sort=True):
        s, e = g["start"].to_numpy(np.int64), g["end"].to_numpy(np.int64)
        run_end = np.maximum.accumulate(e)
        new = np.r_[True, s[1:] > run_end[:-1]]
        idx = np.flatnonzero(new)
        ends = np.r_[run_end[idx[1:] - 1], run_end[-1]] if len(idx) else np.zeros(0, np.int64)
        out.append(pd.DataFrame({"chrom": chrom, "start": s[idx], "end": ends}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame({"chrom": [], "start": [], "end": []})


def needed_intervals(windows: pd.DataFrame, peaks: pd.DataFrame | None, variant_ids, window_size: int,
                     target_bin: int, max_shift: int, lengths: dict) -> pd.DataFrame:
    """Genome stretches the benchmark reads: test windows, peak-centred windows, variant windows.

    Each is widened by ``MARGIN`` + ``max_shift`` bp (variant windows also by the REF allele's
    length and a full window each side, for indels), clipped to its contig, then merged.
    """
    m = MARGIN + int(max_shift)
    parts = [pd.DataFrame({"chrom": windows["chrom"].astype(str).to_numpy(),
                           "start": windows["start"].to_numpy(np.int64) - m,
                           "end": windows["end"].to_numpy(np.int64) + m})]
    if peaks is not None and len(peaks):
        sites = centred_sites(peaks, window_size, target_bin, lengths)
        ws = sites["window_start"].to_numpy(np.int64)
        parts.append(pd.DataFrame({"chrom": sites["chrom"].astype(str).to_numpy(), "start": ws - m,
                                   "end": ws + window_size + m}))
    ids = pd.Series(pd.unique(pd.Series(list(variant_ids), dtype=object)), dtype=object)
    if len(ids):
        f = ids.str.split(":", expand=True)
        pos0 = f[1].astype(np.int64).to_numpy() - 1
        ref_len = f[2].str.len().to_numpy(np.int64)
        parts.append(pd.DataFrame({"chrom": f[0].to_numpy(), "start": pos0 - window_size - m,
                                   "end": pos0 + ref_len + window_size + m}))
    iv = pd.concat(parts, ignore_index=True)
    iv = iv[iv["chrom"].isin(list(lengths))]
    ln = iv["chrom"].map(lengths).to_numpy(np.int64)
    iv = iv.assign(start=np.clip(iv["start"].to_numpy(np.int64), 0, ln), end=np.clip(iv["end"].to_numpy(np.int64), 0, ln))
    return merge_intervals(iv[iv["end"] > iv["start"]])


def sequences_table(fasta, intervals: pd.DataFrame) -> pd.DataFrame:
    """(chrom, start, end, sequence) of each interval, read from ``fasta`` (upper-case ACGTN)."""
    genome = read_genome(fasta, sorted(set(intervals["chrom"])))
    seqs = [decode(genome[c][s:e]) for c, s, e in
            zip(intervals["chrom"], intervals["start"], intervals["end"])]
    return intervals.assign(sequence=seqs).reset_index(drop=True)


def test_peaks(peaks: pd.DataFrame | None, test_chroms, windows_path, cell_types) -> pd.DataFrame | None:
    """Peaks on the test chromosomes with ``value_*`` put on the targets' scale (as predict does)."""
    from .targets import peaks_on_target_scale

    if peaks is None:
        return None
    pk = peaks[peaks["chrom"].isin(list(test_chroms))].reset_index(drop=True)
    return peaks_on_target_scale(pk, windows_path, cell_types)


def write_bundle(dest, *, windows_path, summary_path, fasta, peaks: pd.DataFrame | None, sets: pd.DataFrame,
                 strata_sets: pd.DataFrame | None, params: dict) -> dict:
    """Write the bundle folder ``dest`` (replaced whole, atomically) and return its manifest.

    Parameters
    ----------
    windows_path, summary_path : path
        windows.parquet and build_dataset.summary.json of the run.
    fasta : path
        The genome the run read.
    peaks : DataFrame or None
        peaks.parquet of the run (every chromosome; the test ones are kept).
    sets, strata_sets : DataFrame
        evaluate's labelled variant tables (with ref_ratio, stratum, split).
    params : dict
        The run's params (``SETTINGS`` are recorded).
    """
    from .genome import fasta_lengths

    windows = read_parquet_columns(windows_path, ["chrom", "start", "end", "split"])
    cts = list(read_json(summary_path)["cell_types"])
    test = (windows["split"] == "test").to_numpy()
    tw = windows[test].reset_index(drop=True)
    settings = {k: params[k] for k in SETTINGS if k in params}
    test_chroms = list(params.get("test_chroms") or sorted(set(tw["chrom"])))
    pk = test_peaks(peaks, test_chroms, windows_path, cts)
    lengths = fasta_lengths(fasta)
    ids = list(sets["variant_id"]) + (list(strata_sets["variant_id"]) if strata_sets is not None else [])
    max_shift = max([abs(int(s)) for s in params.get("score_shifts", [0])] + [1])
    iv = needed_intervals(tw, pk, ids, int(params["window_size"]), int(params["target_bin"]), max_shift, lengths)
    seqs = sequences_table(fasta, iv)
    tables = {"windows.parquet": _windows_table(windows_path, test),
              "peaks.parquet": pk, "variant_sets.parquet": sets.reset_index(drop=True),
              "variant_sets_stratum_matched.parquet": None if strata_sets is None else strata_sets.reset_index(drop=True),
              "sequences.parquet": seqs}
    with atomic_path(dest, is_dir=True) as tmp:
        files = {}
        for name, t in tables.items():
            if t is None:
                continue
            path = Path(tmp) / name
            if name == "windows.parquet":
                import pyarrow.parquet as pq

                pq.write_table(t, path)
            else:
                write_parquet(t, path)
            files[name] = {"sha256": sha256(path), "bytes": path.stat().st_size, "rows": int(t.num_rows if
                           hasattr(t, "num_rows") else len(t))}
        manifest = _manifest(cts, settings, tw, pk, sets, strata_sets, seqs, lengths, files)
        write_json(manifest, Path(tmp) / "manifest.json")
    log.info("benchmark bundle: %d test windows, %d test peaks, %d variants, %s bp of sequence in %s",
             len(tw), 0 if pk is None else len(pk), manifest["counts"]["variants"],
             f"{manifest['counts']['sequence_bp']:,}", Path(dest).name)
    return manifest


def read_parquet_columns(path, columns) -> pd.DataFrame:
    """Some columns of a Parquet file (windows.parquet without its targets lists)."""
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise InputError(path, "windows.parquet not found", "run the build_dataset step first")
    return pq.read_table(path, columns=list(columns)).to_pandas()


def _windows_table(windows_path, test: np.ndarray):
    """The test rows of windows.parquet, as stored (its schema and metadata kept)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(windows_path)
    return table.filter(pa.array(test))


def _manifest(cts, settings, tw, pk, sets, strata_sets, seqs, lengths, files) -> dict:
    strata = sorted({str(s) for s in sets.get("stratum", pd.Series(dtype=object)).dropna()} |
                    ({str(s) for s in strata_sets["stratum"].dropna()} if strata_sets is not None else set()))
    used = sorted(set(seqs["chrom"]))
    counts = {"cell_types": len(cts), "test_windows": int(len(tw)), "test_peaks": 0 if pk is None else int(len(pk)),
              "variant_set_rows": int(len(sets)), "variants": int(sets["variant_id"].nunique()),
              "positives": int((sets["set"] == "positive").sum()) if "set" in sets else 0,
              "stratum_matched_rows": 0 if strata_sets is None else int(len(strata_sets)),
              "sequence_stretches": int(len(seqs)),
              "sequence_bp": int((seqs["end"] - seqs["start"]).sum())}
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "caveat_version": __version__,
            "cell_types": list(cts), "window_size": int(settings.get("window_size", 1344)),
            "target_bin": int(settings.get("target_bin", 192)),
            "max_seq_len": int(settings.get("window_size", 1344)),
            "strata": strata, "counts": counts, "settings": settings,
            "contigs": {c: int(lengths[c]) for c in used}, "files": files}


# ---------------------------------------------------------------- reading


def read_bundle(path) -> Bundle:
    """Read and check a bundle: manifest format, every file present with its recorded SHA-256."""
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise InputError(path, "no manifest.json: not a benchmark bundle",
                         f"pass the {BUNDLE_DIR}/ folder a caveat run writes (beside metrics.parquet)")
    man = read_json(mpath)
    if man.get("format") != FORMAT or int(man.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(mpath, f"format {man.get('format')!r} version {man.get('format_version')!r} is not "
                                f"{FORMAT} ≤ {FORMAT_VERSION}", "use a bundle written by this caveat version or older")
    for name, rec in man["files"].items():
        f = path / name
        if not f.is_file():
            raise InputError(f, "bundle file missing", "copy the whole bundle folder")
        if sha256(f) != rec["sha256"]:
            raise InputError(f, "content differs from the manifest's SHA-256 (changed or truncated)",
                             "copy the bundle again from the run's outdir")
    windows, targets = _read_windows(path / "windows.parquet")
    cts = list(man["cell_types"])
    if targets.shape[1] != len(cts):
        raise InputError(path / "windows.parquet", f"{targets.shape[1]} targets per window, {len(cts)} cell types "
                                                   "in the manifest", "copy the bundle again")
    opt = {n: (read_parquet(path / n) if n in man["files"] else None)
           for n in ("peaks.parquet", "variant_sets_stratum_matched.parquet")}
    lengths = {c: int(n) for c, n in man["contigs"].items()}
    return Bundle(windows, targets, cts, opt["peaks.parquet"], read_parquet(path / "variant_sets.parquet"),
                  opt["variant_sets_stratum_matched.parquet"], sparse_genome(read_parquet(path / "sequences.parquet"),
                                                                             lengths), lengths, man)


def _read_windows(path) -> tuple[pd.DataFrame, np.ndarray]:
    """The bundle's windows.parquet → (windows without targets, targets (W, C) float32)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    col = table.column("targets").combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return table.drop_columns(["targets"]).to_pandas(), flat.reshape(len(table), -1)


def sparse_genome(seqs: pd.DataFrame, lengths: dict) -> dict:
    """contig → (length,) uint8 codes: N everywhere but the stored stretches."""
    genome = {c: np.full(n, 4, np.uint8) for c, n in lengths.items()}
    for c, s, e, q in zip(seqs["chrom"], seqs["start"], seqs["end"], seqs["sequence"]):
        genome[c][int(s):int(e)] = encode(q)
    return genome


__all__ = ["BUNDLE_DIR", "Bundle", "FORMAT", "FORMAT_VERSION", "read_bundle", "write_bundle"]
