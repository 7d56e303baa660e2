"""Union peaks, the peak × cell type accessibility matrix, and ubiquitous vs specific clusters.

Rules (stated so users know what they get)
------------------------------------------
* **Peaks per cell type**: the BED file(s) the samplesheet gives for the cell
  type (the union of its rows' files). A cell type whose rows give none gets
  peaks called with MACS3 on its pseudobulk insertion sites (ENCODE ATAC
  settings, see :func:`call_peaks_macs3`). A cell type with an *empty* peak
  file contributes no peaks to the union (logged); its accessibility is still
  measured on every union peak. ``cell_type_peaks`` (a glob such as ``peaks/*.bed``, one
  ``<cell_type>.bed``/``.narrowPeak`` (``.gz``) per cell type) gives the peak sets of cell types
  whose rows give none: single-cell libraries, whose row holds many cell types
  (``docs/single_cell.md``); a cell type neither names is called with MACS3.
* **Union** (``peak_merge``): ``summit`` — every peak becomes a fixed-width
  interval (``peak_width`` bp) centred on its summit; overlapping ones are
  resolved by iterative overlap removal (most significant first, as Corces et
  al. 2018 and ArchR do), so peaks stay fixed-width and centred. ``merge`` —
  overlapping intervals of all cell types are merged (``bedtools merge``).
  ``auto`` (default) uses ``summit`` when every non-empty peak set has summits
  (narrowPeak column 10), else ``merge``.
* **Accessibility**: Tn5 insertions per peak per cell type (pseudobulk = sum over
  donors), CPM over the insertions falling in union peaks (so FRiP differences
  between cell types do not shift every peak), then ``acc = log2(CPM + 1)``;
  the same per donor × cell type in ``peaks_donor_counts.parquet``.
  Peaks without a single insertion in any cell type are dropped (logged).
* **Own peaks** (``called_<cell type>``): a union peak is a cell type's own peak when it
  overlaps (≥ 1 bp) a peak of that cell type's set above (samplesheet BED or MACS3), also
  with user ``cluster_assignments``. ``call_imbalance`` tests, per cell type, only the
  sites in its own peaks, as the study tested each cell type's sites in its own peak
  file.
* **Artefact regions** (``blacklist``): union peaks overlapping a region of the BED are
  dropped (counted in the summary).
* **Peak values** (``value_<cell type>`` in ``peaks.parquet``, ``value`` per sample in
  ``peaks_donor_counts.parquet``): insertions under the study's peak rule
  (``predict_peak_value``; default ``centre``: summed over the centred
  ``target_bin`` = 192 bp site, see :mod:`caveat.peak_sites`), from the
  pseudobulk and the per-sample tracks: the reference-accuracy targets and the
  inter-donor bound on one scale.
* **Specificity**: tau (Yanai et al. 2005) on ``acc``: 0 = equal in all cell
  types, 1 = in one only.
* **Clusters**: k-means (fixed seed, 10 starts) on row-standardised profiles:
  each peak's CPM across cell types divided by its maximum (values in [0, 1];
  shape, not height, decides the cluster; a peak open everywhere sits near
  (1, …, 1), a specific one near a corner). Scaling linear CPM, rather than
  centring log CPM, keeps the Poisson noise of near-zero counts in closed cell
  types from splitting clusters. ``k`` is ``cluster_k`` or, when null, the k
  in 2…``cluster_k_max`` with the best silhouette. The cluster with the lowest
  mean tau is the ``ubiquitous`` cluster (id 0); every other cluster is named
  by its dominant cell type(s): those whose mean profile is ≥ half the
  cluster's top one (``ctA``, ``ctA+ctB``). One dominant in every cell type
  joins the ubiquitous cluster (k-means may split broadly open peaks by level);
  the rest are ``specific``. Users may instead give ``cluster_assignments``
  (BED: chrom, start, end, cluster label; one label must be ``ubiquitous``; a
  specific cluster's label names its cell type(s) joined by ``+``, e.g.
  ``PT`` or ``DT+LOH``, which is what makes it a cell type's own cluster),
  as the study reused published clusters.
"""

from __future__ import annotations

import argparse
import bisect
import glob
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .engine import Step, StepContext
from .errors import InputError
from .genome import fasta_lengths, read_contig_map
from .intervals import merge_intervals, overlaps, read_bed, sort_intervals
from .io import atomic_path, write_json, write_parquet
from .ldsc import export_ldsc
from .log import Progress, get_logger
from .parallel import map_jobs
from .peak_sites import check_rule, peak_track_values, track_sums
from .regions import intervals_in_regions, read_regions
from .samplesheet import cell_types
from .single_cell import read_study
from .step_cli import add_param_options, params_from_args
from .strata import SPECIFIC, UBIQUITOUS, cluster_members
from .tracks import read_runs, runs_to_sites

log = get_logger("cluster_peaks")



# ---------------------------------------------------------------- peaks per cell type
def call_peaks_macs3(pseudobulk_bw: str | Path, lengths: Mapping[str, int], out_narrowpeak: str | Path, *,
                     name: str, qvalue: float = 0.01, gsize: int | None = None) -> pd.DataFrame:
    """Call peaks with MACS3 on a pseudobulk insertion track (ENCODE ATAC settings).

    Every Tn5 insertion becomes a 1 bp "+" strand tag; MACS3 runs with
    ``-f BED --nomodel --shift -75 --extsize 150 --keep-dup all --call-summits``,
    i.e. a 150 bp window centred on each insertion, the convention of the ENCODE
    and nf-core ATAC pipelines. (With ``-f BAMPE`` MACS3 ignores shift/extsize
    and piles up whole fragments, which blurs the insertion signal; the
    insertion tags are already the pseudobulk, so no BAM merging is needed.)

    Returns
    -------
    pandas.DataFrame
        The narrowPeak records read back with :func:`caveat.intervals.read_bed`.
    """
    import pyBigWig

    macs3 = shutil.which("macs3") or str(Path(__import__("sys").executable).parent / "macs3")
    if not Path(macs3).exists():
        raise InputError("macs3", "MACS3 is not installed", "pip install macs3 (or give peaks in the samplesheet)")
    gsize = int(gsize or sum(lengths.values()))
    with tempfile.TemporaryDirectory(prefix="caveat-macs3-") as tmp:
        tags = Path(tmp) / "insertions.bed"
        n = 0
        with pyBigWig.open(str(pseudobulk_bw)) as bw, open(tags, "w") as fh:
            for chrom in lengths:
                pos, cnt = runs_to_sites(*read_runs(bw, chrom))
                if pos.size == 0:
                    continue
                tag = np.repeat(pos, cnt)  # --keep-dup all: one tag per insertion
                n += tag.size
                pd.DataFrame({"c": chrom, "s": tag, "e": tag + 1, "n": ".", "v": 0, "str": "+"}).to_csv(
                    fh, sep="\t", header=False, index=False)
        if n == 0:
            raise InputError(pseudobulk_bw, f"no insertions in the pseudobulk of {name}: cannot call peaks",
                             "check the cell type's BAMs, or give its peaks in the samplesheet")
        cmd = [macs3, "callpeak", "-t", str(tags), "-f", "BED", "-g", str(gsize), "-n", name,
               "--outdir", tmp, "--nomodel", "--shift", "-75", "--extsize", "150", "--keep-dup", "all",
               "--call-summits", "-q", str(qvalue)]
        log.info("%s: MACS3 on %d insertions: %s", name, n, " ".join(cmd[1:]).replace(tmp, "<tmp>"))
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise InputError(pseudobulk_bw, f"MACS3 failed for {name}: {res.stderr.strip()[-500:]}",
                             "check the MACS3 installation or give peaks in the samplesheet")
        produced = Path(tmp) / f"{name}_peaks.narrowPeak"
        with atomic_path(out_narrowpeak) as dst:
            shutil.copyfile(produced, dst)
    peaks = read_bed(out_narrowpeak, lengths, allow_empty=True)
    log.info("%s: MACS3 called %d peaks (q < %g)", name, len(peaks), qvalue)
    return peaks


def cell_type_peaks(sheet: pd.DataFrame, lengths: Mapping[str, int], outdir: Path, params: dict,
                    tracks: Mapping[str, Path], threads: int = 1) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Each cell type's peak set: the samplesheet's BED(s), else MACS3 on its pseudobulk (the
    cell types without BEDs up to ``threads`` at once, :func:`caveat.parallel.map_jobs`).

    Returns
    -------
    peaks : dict
        cell type → peaks DataFrame (may be empty).
    source : dict
        cell type → "given", "macs3" or "empty".
    """
    cmap = read_contig_map(params.get("contig_map"))
    peaks, source = {}, {}
    given = {ct: list(dict.fromkeys(f for f in sheet.loc[sheet["cell_type"] == ct, "peaks"] if f))
             for ct in cell_types(sheet)}
    for ct, f in glob_peaks(params.get("cell_type_peaks"), list(given)).items():
        given[ct] = given[ct] or [f]  # a samplesheet BED wins over the glob
    to_call = [ct for ct, files in given.items() if not files]

    def macs3(ct: str, _threads: int) -> pd.DataFrame:
        return call_peaks_macs3(tracks[ct], lengths, outdir / "peaks" / f"{ct}.macs3.narrowPeak", name=ct,
                                qvalue=float(params["peak_macs3_qvalue"]), gsize=params["peak_macs3_gsize"])

    called = dict(zip(to_call, map_jobs(macs3, to_call, threads, what="cell type")))
    for ct, files in given.items():
        if files:
            parts = [read_bed(f, lengths, contig_map=cmap, allow_empty=True) for f in files]
            df = pd.concat(parts, ignore_index=True)
            source[ct] = "given"
        else:
            df = called[ct]
            source[ct] = "macs3"
        if df.empty:
            log.warning("%s: empty peak set (%s); it adds no peaks to the union, its accessibility is still "
                        "measured on the others' peaks", ct, ", ".join(Path(f).name for f in files) or "MACS3")
            source[ct] = "empty"
        peaks[ct] = df
    if all(df.empty for df in peaks.values()):
        raise InputError(params.get("input"), "every cell type's peak set is empty",
                         "give non-empty peak BED files, or leave `peaks` empty to call them with MACS3")
    return peaks, source


#: suffixes stripped from a ``cell_type_peaks`` file's name to give its cell type
PEAK_SUFFIXES = (".narrowPeak.gz", ".narrowPeak", ".bed.gz", ".bed")


def glob_peaks(pattern: str | None, names: list[str]) -> dict[str, str]:
    """The ``cell_type_peaks`` glob: cell type → its peak file (``<cell_type>.bed`` …).

    Raises
    ------
    InputError
        The glob matches nothing, a file's name has no peak suffix, or names a cell type of no sample.
    """
    if not pattern:
        return {}
    files = sorted(glob.glob(str(pattern)))
    if not files:
        raise InputError("cell_type_peaks", f"{pattern} matches no file",
                         "give a glob of per-cell-type peak files, e.g. peaks/*.bed (relative to the params file)")
    out = {}
    for f in files:
        name = Path(f).name
        ct = next((name[: -len(s)] for s in PEAK_SUFFIXES if name.endswith(s)), None)
        if ct is None or ct not in names:
            what = (f"names cell type {ct!r}, which no sample has" if ct is not None
                    else f"does not end in {', '.join(PEAK_SUFFIXES)}")
            raise InputError(f, f"cell_type_peaks file {what}",
                             f"name each file <cell_type>.bed (or .narrowPeak) after one of: {', '.join(names)}")
        out[ct] = f
    return out


# ---------------------------------------------------------------- union
def union_peaks(peak_sets: Mapping[str, pd.DataFrame], lengths: Mapping[str, int], *,
                mode: str = "auto", width: int = 500) -> tuple[pd.DataFrame, str]:
    """Union of the cell types' peak sets (rule in the module docstring).

    Returns
    -------
    peaks : pandas.DataFrame
        ``peak_id, chrom, start, end``, sorted in FASTA order, disjoint.
    rule : str
        "summit" or "merge" (the rule applied).
    """
    sets = [df for df in peak_sets.values() if not df.empty]
    allp = pd.concat(sets, ignore_index=True)
    if mode not in ("auto", "summit", "merge"):
        raise InputError("peak_merge", f"unknown value {mode!r}", "use auto, summit or merge")
    has_summits = all((df["summit"] >= 0).all() for df in sets)
    if mode == "summit" and not has_summits:
        raise InputError("peak_merge", "peak_merge = summit but some peak sets have no summits (narrowPeak column 10)",
                         "use peak_merge: merge, or give narrowPeak files")
    rule = "summit" if (mode == "summit" or (mode == "auto" and has_summits)) else "merge"
    order = list(lengths)
    if rule == "merge":
        u = merge_intervals(allp, order)
    else:
        u = _iterative_overlap(allp, lengths, width)
    u = sort_intervals(u[["chrom", "start", "end"]], order)
    u.insert(0, "peak_id", u["chrom"] + ":" + u["start"].astype(str) + "-" + u["end"].astype(str))
    return u, rule


def _iterative_overlap(allp: pd.DataFrame, lengths: Mapping[str, int], width: int) -> pd.DataFrame:
    """Fixed-width summit-centred peaks; keep the most significant of any overlapping group."""
    half = width // 2
    ln = allp["chrom"].map(lengths).to_numpy()
    start = np.clip(allp["summit"].to_numpy() - half, 0, None)
    end = np.minimum(start + width, ln)
    start = np.maximum(end - width, 0)
    df = pd.DataFrame({"chrom": allp["chrom"].to_numpy(), "start": start, "end": end,
                       "score": allp["score"].fillna(0).to_numpy()})
    keep_rows = []
    for chrom, g in df.groupby("chrom", sort=False):
        g = g.sort_values(["score", "start"], ascending=[False, True], kind="stable")
        kept_s, kept_e = [], []  # sorted by start; equal widths, so checking neighbours suffices
        for s, e in zip(g["start"].tolist(), g["end"].tolist()):
            i = bisect.bisect_left(kept_s, s)
            if (i < len(kept_s) and kept_s[i] < e) or (i > 0 and kept_e[i - 1] > s):
                continue
            kept_s.insert(i, s)
            kept_e.insert(i, e)
        keep_rows.append(pd.DataFrame({"chrom": chrom, "start": kept_s, "end": kept_e}))
    return pd.concat(keep_rows, ignore_index=True)


def own_peaks(peaks: pd.DataFrame, peak_sets: Mapping[str, pd.DataFrame], names: Sequence[str]) -> np.ndarray:
    """Which union peaks are each cell type's own: they overlap a peak of its set by ≥ 1 bp.

    Parameters
    ----------
    peaks : pandas.DataFrame
        Union peaks ``chrom, start, end`` (n_peaks rows).
    peak_sets : dict
        cell type → its peaks (:func:`cell_type_peaks`).
    names : sequence of str
        Cell types, in column order.

    Returns
    -------
    numpy.ndarray of bool, shape (n_peaks, n_cell_types)
    """
    out = np.zeros((len(peaks), len(names)), dtype=bool)
    for j, ct in enumerate(names):
        own = peak_sets.get(ct)
        if own is not None and len(own):
            out[:, j] = overlaps(peaks, own)
    return out


def drop_blacklisted(peaks: pd.DataFrame, blacklist: str | Path | None) -> np.ndarray:
    """Which union peaks overlap the ``blacklist`` BED (:mod:`caveat.regions`); all False without one.

    Returns
    -------
    numpy.ndarray of bool, shape (n_peaks,)
    """
    if not blacklist:
        return np.zeros(len(peaks), dtype=bool)
    black = intervals_in_regions(read_regions(blacklist), peaks)
    log.info("blacklist %s: %d of %d union peaks overlap it and are dropped", Path(blacklist).name,
             int(black.sum()), len(peaks))
    return black


# ---------------------------------------------------------------- counts per peak
def peak_insertions(bw_path: str | Path, peaks: pd.DataFrame) -> np.ndarray:
    """Tn5 insertions inside each peak, from a bigWig track (:func:`caveat.peak_sites.track_sums`).

    Parameters
    ----------
    bw_path : path
    peaks : pandas.DataFrame
        ``chrom, start, end``.

    Returns
    -------
    numpy.ndarray of int64, shape (n_peaks,)
    """
    sums = track_sums(bw_path, peaks["chrom"].to_numpy(object), peaks["start"].to_numpy(np.int64),
                      peaks["end"].to_numpy(np.int64))
    return sums.round().astype(np.int64)


def log_cpm(counts: np.ndarray) -> np.ndarray:
    """log2(CPM + 1), CPM over each column's total in peaks.

    Parameters
    ----------
    counts : numpy.ndarray, shape (n_peaks, n_columns)

    Returns
    -------
    numpy.ndarray of float64, shape (n_peaks, n_columns)
    """
    tot = counts.sum(axis=0, keepdims=True).astype(float)
    return np.log2(counts / np.where(tot > 0, tot, 1.0) * 1e6 + 1.0)


def tau(x: np.ndarray) -> np.ndarray:
    """Tissue-specificity index tau per row (Yanai et al. 2005).

    Parameters
    ----------
    x : numpy.ndarray, shape (n_peaks, n_cell_types), non-negative

    Returns
    -------
    numpy.ndarray, shape (n_peaks,), in [0, 1] (0 for all-zero rows or one cell type)
    """
    n = x.shape[1]
    mx = x.max(axis=1, keepdims=True)
    if n < 2:
        return np.zeros(x.shape[0])
    return np.where(mx[:, 0] > 0, (1 - x / np.where(mx > 0, mx, 1)).sum(axis=1) / (n - 1), 0.0)


# ---------------------------------------------------------------- clustering
def profiles(acc: np.ndarray) -> np.ndarray:
    """Row-standardised profiles: CPM / row maximum, shape (n_peaks, n_cell_types), in [0, 1]."""
    cpm = np.exp2(acc) - 1.0
    mx = cpm.max(axis=1, keepdims=True)
    return cpm / np.where(mx > 0, mx, 1.0)


def choose_k_and_cluster(acc: np.ndarray, *, k: int | None, k_max: int, seed: int
                         ) -> tuple[np.ndarray, int, dict[int, float]]:
    """k-means on row-standardised profiles (:func:`profiles`); k fixed or chosen by silhouette.

    Parameters
    ----------
    acc : numpy.ndarray, shape (n_peaks, n_cell_types)
        log2(CPM + 1).

    Returns
    -------
    labels : numpy.ndarray of int64, shape (n_peaks,)
    k : int
    silhouette : dict
        k → silhouette (on up to 5,000 peaks, fixed seed); empty when k was fixed.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    X = profiles(acc)
    n = X.shape[0]

    def fit(kk: int) -> np.ndarray:
        return KMeans(n_clusters=kk, n_init=10, random_state=seed).fit_predict(X).astype(np.int64)

    if k is not None:
        if not 1 <= k <= n:
            raise InputError("cluster_k", f"cluster_k = {k} but there are {n} peaks", "use 2 ≤ cluster_k ≤ peaks")
        return fit(k), k, {}
    sil: dict[int, float] = {}
    fits: dict[int, np.ndarray] = {}
    for kk in range(2, min(k_max, n - 1) + 1):
        lab = fits[kk] = fit(kk)
        if np.unique(lab).size < 2:
            continue
        sil[kk] = float(silhouette_score(X, lab, sample_size=min(n, 5000), random_state=seed))
    if not sil:
        return np.zeros(n, np.int64), 1, {}
    best = max(sil, key=lambda kk: (round(sil[kk], 6), -kk))
    log.info("k by silhouette: %s → k = %d", ", ".join(f"{kk}:{s:.3f}" for kk, s in sil.items()), best)
    return fits[best], best, sil


def label_clusters(acc: np.ndarray, spec: np.ndarray, raw: np.ndarray, names: Sequence[str]
                   ) -> tuple[np.ndarray, list[str]]:
    """Renumber clusters: 0 = ubiquitous, then specific ones by label.

    The ubiquitous cluster is the one of lowest mean tau, joined by any other
    cluster whose mean profile is dominant (≥ half its maximum) in every cell
    type: k-means may split the broadly open peaks by level, and a cluster
    open everywhere is not specific to anything.

    Parameters
    ----------
    acc : numpy.ndarray, shape (n_peaks, n_cell_types)
    spec : numpy.ndarray, shape (n_peaks,)
        tau.
    raw : numpy.ndarray of int, shape (n_peaks,)
        Cluster labels from the clustering.
    names : sequence of str
        Cell types, in column order.

    Returns
    -------
    cluster : numpy.ndarray of int32, shape (n_peaks,)
    labels : list of str
        Label of cluster id i at position i.
    """
    ids = np.unique(raw)
    prof_all = profiles(acc)
    mean_tau = {c: spec[raw == c].mean() for c in ids}
    ubi = min(ids, key=lambda c: (mean_tau[c], c))
    named, remap = [], {ubi: 0}
    for c in ids:
        if c == ubi:
            continue
        prof = prof_all[raw == c].mean(axis=0)
        dom = [names[j] for j in np.flatnonzero(prof >= 0.5 * prof.max())]
        if len(dom) == len(names):
            remap[c] = 0
        else:
            named.append(("+".join(dom), c))
    named.sort()
    labels, seen = [UBIQUITOUS], {}
    for i, (lab, c) in enumerate(named, 1):
        seen[lab] = seen.get(lab, 0) + 1
        labels.append(lab if seen[lab] == 1 else f"{lab}_{seen[lab]}")
        remap[c] = i
    return np.vectorize(remap.get, otypes=[np.int32])(raw), labels


def user_clusters(path: str | Path, lengths: Mapping[str, int], contig_map: Mapping[str, str]
                  ) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Peaks and clusters from a user BED (chrom, start, end, cluster label).

    Returns
    -------
    peaks : pandas.DataFrame
        ``peak_id, chrom, start, end`` sorted in FASTA order.
    cluster : numpy.ndarray of int32, shape (n_peaks,)
    labels : list of str
        0 = ubiquitous, then the other labels sorted.
    """
    df = read_bed(path, lengths, contig_map=contig_map, what="cluster assignment")
    lab = df["name"].astype(str).str.strip()
    if (lab == "").any():
        raise InputError(path, "column 4 (cluster label) is missing or empty", "write chrom, start, end, cluster label")
    is_ubi = lab.str.lower() == UBIQUITOUS
    if not is_ubi.any():
        raise InputError(path, f"no cluster is labelled {UBIQUITOUS!r} (labels: {', '.join(sorted(lab.unique())[:6])})",
                         f"rename the ubiquitous cluster to {UBIQUITOUS!r}")
    lab = lab.where(~is_ubi, UBIQUITOUS)
    labels = [UBIQUITOUS] + sorted(set(lab) - {UBIQUITOUS})
    df = df.assign(label=lab)
    df = sort_intervals(df, list(lengths))
    ends = df.groupby("chrom", sort=False)["end"].shift()
    if (df["start"] < ends).any():
        i = int(np.flatnonzero((df["start"] < ends).to_numpy())[0])
        raise InputError(path, f"peaks overlap, e.g. {df['chrom'][i]}:{df['start'][i]}-{df['end'][i]}",
                         "give disjoint peaks (one cluster per peak)")
    peaks = df[["chrom", "start", "end"]].copy()
    peaks.insert(0, "peak_id", peaks["chrom"] + ":" + peaks["start"].astype(str) + "-" + peaks["end"].astype(str))
    cluster = df["label"].map({l: i for i, l in enumerate(labels)}).to_numpy(dtype=np.int32)
    return peaks, cluster, labels


# ---------------------------------------------------------------- the whole step
def cluster_peaks(sheet: pd.DataFrame, lengths: Mapping[str, int], tracks_dir: Path, outdir: Path,
                  params: dict, threads: int = 1) -> dict:
    """Everything the step does, from insertion tracks to ``peaks.parquet``; returns the summary.
    ``threads``: MACS3 runs at once (cell types without peak BEDs)."""
    names = cell_types(sheet)
    pseudo = {ct: tracks_dir / f"{ct}.pseudobulk.bw" for ct in names}
    cmap = read_contig_map(params.get("contig_map"))
    summary: dict = {"cell_types": names}
    sets, src = cell_type_peaks(sheet, lengths, outdir, params, pseudo, threads)
    if params.get("cluster_assignments"):
        peaks, cluster, labels = user_clusters(params["cluster_assignments"], lengths, cmap)
        orphan = [lab for lab in labels[1:] if not cluster_members(lab, names)]
        if orphan:
            log.warning("cluster label(s) %s name no cell type of the samplesheet: no cell type counts them as its "
                        "own specific cluster (only in specific_any); name cell types joined by '+'",
                        ", ".join(orphan[:5]))
        summary.update(peak_source="cluster_assignments", union_rule="user", own_peak_source=src)
    else:
        peaks, rule = union_peaks(sets, lengths, mode=params["peak_merge"], width=int(params["peak_width"]))
        summary.update(peak_source=src, union_rule=rule)
        cluster = None
    summary["peaks_per_cell_type"] = {ct: len(d) for ct, d in sets.items()}
    log.info("%d union peaks (%s)", len(peaks), summary["union_rule"])
    black = drop_blacklisted(peaks, params.get("blacklist"))
    peaks = peaks[~black].reset_index(drop=True)
    cluster = None if cluster is None else cluster[~black]
    if peaks.empty:
        raise InputError(params["blacklist"], "every union peak overlaps the blacklist",
                         "check that the blacklist BED is of this genome build")
    called = own_peaks(peaks, sets, names)

    donor_counts = np.zeros((len(peaks), len(sheet)), dtype=np.int64)
    prog = Progress(log, "tracks", total=len(sheet))
    for j, s in enumerate(sheet["sample"]):
        donor_counts[:, j] = peak_insertions(tracks_dir / f"{s}.bw", peaks)
        prog.update()
    prog.close()
    counts = np.stack([donor_counts[:, (sheet["cell_type"] == ct).to_numpy()].sum(axis=1) for ct in names], axis=1)

    empty = counts.sum(axis=1) == 0
    if empty.any():
        log.warning("dropped %d peak(s) without a single insertion in any cell type", int(empty.sum()))
    keep = ~empty
    if not keep.any():
        raise InputError(tracks_dir, "no insertion falls in any peak", "check that the peaks and BAMs use the same genome")
    peaks, counts, donor_counts = peaks[keep].reset_index(drop=True), counts[keep], donor_counts[keep]
    called = called[keep]
    values, donor_values = peak_values(sheet, names, tracks_dir, peaks, params)
    acc = log_cpm(counts)
    spec = tau(acc)
    if cluster is None:
        raw, k, sil = choose_k_and_cluster(acc, k=params["cluster_k"], k_max=int(params["cluster_k_max"]),
                                           seed=int(params["seed"]))
        cluster, labels = label_clusters(acc, spec, raw, names)
        summary.update(k=k, k_criterion="fixed" if params["cluster_k"] is not None else "silhouette",
                       silhouette={str(kk): v for kk, v in sil.items()})
    else:
        cluster = cluster[keep]
    table = _peaks_table(peaks, names, acc, counts, spec, cluster, labels, values, called)
    write_parquet(table, outdir / "peaks.parquet")
    write_parquet(_donor_table(peaks, sheet, donor_counts, donor_values), outdir / "peaks_donor_counts.parquet")
    summary["peak_value_rule"] = params.get("predict_peak_value", "centre")
    summary.update(_cluster_summary(table, names, labels), peaks_dropped_no_insertions=int(empty.sum()),
                   peaks_dropped_blacklist=int(black.sum()),
                   own_peaks_per_cell_type={ct: int(called[:, j].sum()) for j, ct in enumerate(names)})
    with atomic_path(outdir / "ldsc", is_dir=True) as tmp:  # replaces a previous run's files as a whole
        summary["ldsc"] = export_ldsc(table, tmp, bim=params.get("ldsc_bim"))
    write_json(summary, outdir / "cluster_peaks.summary.json")
    return summary


def peak_values(sheet: pd.DataFrame, names: Sequence[str], tracks_dir: Path, peaks: pd.DataFrame,
                params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Peak values under the study's peak rule (``predict_peak_value``, :mod:`caveat.peak_sites`).

    Returns
    -------
    values : numpy.ndarray, shape (n_peaks, n_cell_types)
        From each cell type's pseudobulk track: the reference-accuracy targets.
    donor_values : numpy.ndarray, shape (n_peaks, n_samples)
        From each sample's track: the inter-donor bound on the same scale.
    """
    rule = check_rule(params.get("predict_peak_value", "centre"))
    kw = dict(window_size=int(params.get("window_size", 1344)), window_stride=int(params.get("window_stride", 192)),
              target_bin=int(params.get("target_bin", 192)))
    values = np.stack([peak_track_values(tracks_dir / f"{ct}.pseudobulk.bw", peaks, rule, **kw) for ct in names],
                      axis=1) if names else np.zeros((len(peaks), 0))
    donor_values = np.stack([peak_track_values(tracks_dir / f"{s}.bw", peaks, rule, **kw) for s in sheet["sample"]],
                            axis=1) if len(sheet) else np.zeros((len(peaks), 0))
    log.info("peak values (rule %s, %d bp site) from %d pseudobulk and %d sample tracks", rule, kw["target_bin"],
             len(names), len(sheet))
    return values, donor_values


def _peaks_table(peaks, names, acc, counts, spec, cluster, labels, values, called) -> pd.DataFrame:
    t = peaks.copy()
    for j, ct in enumerate(names):
        t[f"acc_{ct}"] = acc[:, j].astype(np.float32)
    for j, ct in enumerate(names):
        t[f"count_{ct}"] = counts[:, j]
    for j, ct in enumerate(names):
        t[f"value_{ct}"] = values[:, j].astype(np.float32)
    for j, ct in enumerate(names):
        t[f"called_{ct}"] = called[:, j]
    t["cluster"] = cluster.astype(np.int32)
    t["cluster_label"] = np.array(labels, dtype=object)[cluster]
    t["kind"] = np.where(cluster == 0, UBIQUITOUS, SPECIFIC)
    t["specificity"] = spec.astype(np.float32)
    return t


def _donor_table(peaks: pd.DataFrame, sheet: pd.DataFrame, donor_counts: np.ndarray,
                 donor_values: np.ndarray) -> pd.DataFrame:
    """Long table: one row per peak × sample (donor × cell type); ``value`` under the peak rule."""
    n, m = donor_counts.shape
    lc = log_cpm(donor_counts)
    return pd.DataFrame({
        "peak_id": np.repeat(peaks["peak_id"].to_numpy(), m),
        "sample": np.tile(sheet["sample"].to_numpy(), n),
        "donor": np.tile(sheet["donor"].to_numpy(), n),
        "cell_type": np.tile(sheet["cell_type"].to_numpy(), n),
        "count": donor_counts.reshape(-1),
        "log_cpm": lc.reshape(-1).astype(np.float32),
        "value": donor_values.reshape(-1).astype(np.float32),
    })


def _cluster_summary(t: pd.DataFrame, names: Sequence[str], labels: Sequence[str]) -> dict:
    acc_cols = [f"acc_{ct}" for ct in names]
    clusters = {}
    for i, lab in enumerate(labels):
        sub = t[t["cluster"] == i]
        clusters[lab] = {"id": i, "kind": UBIQUITOUS if i == 0 else SPECIFIC, "n_peaks": len(sub),
                         "mean_profile": dict(zip(names, sub[acc_cols].mean().round(4).tolist())),
                         "mean_tau": round(float(sub["specificity"].mean()), 4) if len(sub) else None}
    hist, edges = np.histogram(t["specificity"], bins=20, range=(0, 1))
    return {"n_peaks": len(t), "clusters": clusters,
            "tau": {"quantiles": dict(zip(["5%", "25%", "50%", "75%", "95%"],
                                          np.quantile(t["specificity"], [.05, .25, .5, .75, .95]).round(4).tolist())),
                    "histogram": {"edges": edges.round(3).tolist(), "counts": hist.tolist()}}}


def run_step(ctx: StepContext) -> dict:
    p = ctx.params
    sheet = read_study(p["input"], check_files=False).samples  # reads are read by `insertions`, not here
    lengths = fasta_lengths(p["fasta"])
    s = cluster_peaks(sheet, lengths, ctx.outdir / "insertions", ctx.outdir, p, ctx.threads)
    return {"peaks": s["n_peaks"], "clusters": len(s["clusters"]),
            "ubiquitous": s["clusters"][UBIQUITOUS]["n_peaks"], "rule": s["union_rule"]}


def _input_files(params: dict) -> list[str]:
    files = [params[k] for k in ("fasta", "cluster_assignments", "blacklist") if params.get(k)]
    if params.get("input") and Path(params["input"]).exists():
        files += [f for f in read_study(params["input"], check_files=False).samples["peaks"] if f]
    if params.get("cell_type_peaks"):
        files += sorted(glob.glob(str(params["cell_type_peaks"])))
    return files


STEP = Step(
    name="cluster_peaks",
    run=run_step,
    needs=("insertions",),
    params={"peak_merge": "auto", "peak_width": 500, "peak_macs3_qvalue": 0.01, "peak_macs3_gsize": None,
            "cluster_k": None, "cluster_k_max": 12, "cluster_assignments": None, "ldsc_bim": None,
            "cell_type_peaks": None,  # glob of <cell_type>.bed files for cell types without samplesheet peaks
            "blacklist": None,  # BED of artefact regions: union peaks overlapping it are dropped
            # the peak rule (caveat.peak_sites), shared with build_dataset and predict
            "predict_peak_value": "centre", "window_size": 1344, "window_stride": 192, "target_bin": 192},
    input_files=_input_files,
    path_params=("cluster_assignments", "ldsc_bim", "blacklist", "cell_type_peaks"),
    doc="union peaks (blacklist dropped, own peaks per cell type), accessibility matrix, ubiquitous vs cell-type "
        "specific clusters, LDSC export",
)


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="caveat cluster_peaks", description=__doc__.splitlines()[0])
    ap.add_argument("--input", required=True, help="samplesheet CSV")
    ap.add_argument("--fasta", required=True)
    ap.add_argument("--insertions", required=True, help="folder with <sample>.bw and <cell_type>.pseudobulk.bw")
    ap.add_argument("--outdir", default=".", help="writes peaks.parquet, peaks_donor_counts.parquet, peaks/, ldsc/")
    add_param_options(ap, STEP.params, aliases={"predict_peak_value": ["--peak-value"]},
                      types={"peak_macs3_gsize": int, "cluster_k": int},
                      helps={"cluster_assignments": "BED: chrom, start, end, cluster",
                             "cell_type_peaks": "glob of <cell_type>.bed/.narrowPeak files: peaks of cell types "
                                                "whose samplesheet rows give none (single-cell libraries)",
                             "ldsc_bim": "PLINK .bim file or per-chromosome prefix",
                             "blacklist": "BED of artefact regions: union peaks overlapping it are dropped",
                             "predict_peak_value": "peak value rule (centre: insertions summed over the centred "
                                                   "target_bin site, the study's)"})
    ap.add_argument("--contig-map", default=None)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    params = {**params_from_args(a, STEP.params), "input": a.input, "contig_map": a.contig_map, "seed": a.seed}
    sheet = read_study(a.input, check_files=False).samples  # a samplesheet or samples table; no reads read here
    cluster_peaks(sheet, fasta_lengths(a.fasta), Path(a.insertions), Path(a.outdir), params)
    return 0
