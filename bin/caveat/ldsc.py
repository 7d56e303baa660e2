"""LDSC-ready export of peak clusters (the study's partitioned heritability, Fig. 2).

Writes, below ``ldsc/``:

* ``<cluster_label>.bed`` — one BED per cluster (chrom, start, end, peak_id), FASTA order;
* with a PLINK ``.bim`` (one file, or a per-chromosome prefix as ldsc's
  ``--bfile``/``1000G.EUR.QC.{chr}`` convention): ``caveat.<chr>.annot.gz`` per
  chromosome — *thin* annotation files (ldsc ``--thin-annot``): a header with one
  column per cluster, one row per ``.bim`` SNP in ``.bim`` order, 0/1 values
  (1 = the SNP lies in a peak of that cluster; ``.bim`` positions are 1-based);
* ``run_ldsc.sh`` — the exact ``ldsc.py --l2`` (per chromosome) then
  ``ldsc.py --h2 … --overlap-annot`` commands, with the user's reference files
  (baseline model, weights, frequencies, HapMap3 SNPs, summary statistics) as
  variables at the top. ldsc itself is not run (it is Python 2-era software users
  install themselves).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .intervals import contains_points
from .io import atomic_path, write_text
from .log import get_logger

log = get_logger("ldsc")

ANNOT_PREFIX = "caveat"


def safe_name(label: str) -> str:
    """A cluster label as a file/column name (letters, digits, . _ + -)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", label)


def bim_files(bim: str | Path) -> dict[str, Path]:
    """``.bim`` files of a path or prefix: chromosome token → file.

    A path to an existing ``.bim`` gives that file (token: its chromosomes are
    split when it is read); a prefix ``P`` gives every ``P<token>.bim``.
    """
    p = Path(bim)
    if p.suffix == ".bim" and p.exists():
        return {"": p}
    found = sorted(p.parent.glob(p.name + "*.bim")) if p.parent.exists() else []
    if not found:
        raise InputError(bim, "no PLINK .bim file at this path or prefix",
                         "give a .bim file or the per-chromosome prefix (e.g. 1000G.EUR.QC.)")
    return {f.name[len(p.name):-4]: f for f in found}


def read_bim(path: Path) -> pd.DataFrame:
    """PLINK .bim → ``CHR, SNP, CM, BP`` in file order."""
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype={0: str, 1: str},
                         usecols=[0, 1, 2, 3], names=["CHR", "SNP", "CM", "BP"])
    except (ValueError, pd.errors.ParserError) as e:
        raise InputError(path, f"not a PLINK .bim file: {e}", "give the .bim of a PLINK fileset (6 columns)") from None
    bp = pd.to_numeric(df["BP"], errors="coerce")
    bad = np.flatnonzero(bp.isna().to_numpy() | (bp.to_numpy() % 1 != 0))
    if bad.size:
        raise InputError(path, f"line {bad[0] + 1}: column 4 (bp position) {df['BP'].iloc[bad[0]]!r} is not an integer",
                         "give a valid PLINK .bim (chr, SNP, cM, bp, A1, A2)")
    return df.assign(BP=bp.astype(np.int64))


def _to_peak_contig(chrom: pd.Series, contigs: set[str]) -> pd.Series:
    """Map .bim chromosome names (``1``) to peak contig names (``chr1``) and back."""
    def one(c: str) -> str:
        if c in contigs:
            return c
        if "chr" + c in contigs:
            return "chr" + c
        if c.startswith("chr") and c[3:] in contigs:
            return c[3:]
        return c
    uniq = {c: one(c) for c in chrom.unique()}
    return chrom.map(uniq)


def annotate_snps(bim: pd.DataFrame, peaks: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """0/1 annotation of each .bim SNP per cluster.

    Parameters
    ----------
    bim : pandas.DataFrame
        ``CHR, BP`` (1-based).
    peaks : pandas.DataFrame
        ``chrom, start, end, cluster_label``; disjoint.

    Returns
    -------
    numpy.ndarray of uint8, shape (n_snps, n_clusters)
    """
    chrom = _to_peak_contig(bim["CHR"].astype(str), set(peaks["chrom"])).to_numpy()
    pos0 = bim["BP"].to_numpy(dtype=np.int64) - 1
    out = np.zeros((len(bim), len(labels)), dtype=np.uint8)
    for j, lab in enumerate(labels):
        sub = peaks[peaks["cluster_label"] == lab].sort_values(["chrom", "start"]).reset_index(drop=True)
        out[:, j] = contains_points(sub, chrom, pos0) >= 0
    return out


def write_thin_annot(annot: np.ndarray, names: list[str], path: Path) -> None:
    """Thin .annot.gz: header of annotation names, one 0/1 row per SNP (gzip mtime 0: deterministic)."""
    body = "\t".join(names) + "\n"
    if annot.size:
        body += "\n".join("\t".join(r) for r in annot.astype(str).tolist()) + "\n"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            gz.write(body.encode())


def export_ldsc(table: pd.DataFrame, outdir: str | Path, *, bim: str | Path | None = None) -> dict:
    """Per-cluster BEDs, and thin annotations + ldsc script when ``bim`` is given.

    Parameters
    ----------
    table : pandas.DataFrame
        ``peaks.parquet`` content (``peak_id, chrom, start, end, cluster, cluster_label``), FASTA order.
    outdir : path
        The ``ldsc/`` folder.
    bim : path, optional

    Returns
    -------
    dict
        ``beds`` (file names), ``annot`` (chromosome → SNPs, annotated SNPs per cluster), ``script``.
    """
    outdir = Path(outdir)
    order = table.drop_duplicates("cluster").sort_values("cluster")["cluster_label"].tolist()
    names = [safe_name(x) for x in order]
    beds = []
    for lab, name in zip(order, names):
        sub = table.loc[table["cluster_label"] == lab, ["chrom", "start", "end", "peak_id"]]
        write_text(sub.to_csv(sep="\t", header=False, index=False), outdir / f"{name}.bed")
        beds.append(f"{name}.bed")
    res: dict = {"beds": beds, "annotations": names}
    if not bim:
        return res
    annot_info = {}
    for token, f in bim_files(bim).items():
        df = read_bim(f)
        groups = [(token, df)] if token else list(df.groupby("CHR", sort=False))
        for tok, part in groups:
            a = annotate_snps(part, table, order)
            write_thin_annot(a, names, outdir / f"{ANNOT_PREFIX}.{tok}.annot.gz")
            annot_info[str(tok)] = {"snps": len(part), "in_cluster": dict(zip(names, a.sum(axis=0).tolist()))}
    if sum(v["snps"] for v in annot_info.values()) and not any(sum(v["in_cluster"].values()) for v in annot_info.values()):
        log.warning("no .bim SNP falls in any peak: check that the .bim and the peaks use the same genome build")
    res["annot"] = annot_info
    script = _script(sorted(annot_info, key=_chrom_key), Path(bim), single=("" in bim_files(bim)))
    write_text(script, outdir / "run_ldsc.sh")
    res["script"] = "run_ldsc.sh"
    log.info("LDSC annotations for %d chromosome(s), %d clusters", len(annot_info), len(names))
    return res


def _chrom_key(c: str):
    c2 = c[3:] if c.startswith("chr") else c
    return (0, int(c2), "") if c2.isdigit() else (1, 0, c2)


def _script(chroms: list[str], bim: Path, single: bool) -> str:
    """The ldsc commands; paths of the user's reference files are variables (no absolute paths)."""
    given = bim.name
    lines = [
        "#!/usr/bin/env bash",
        "# Partitioned heritability of the caveat peak clusters with ldsc (Finucane et al. 2015).",
        "# Written by caveat cluster_peaks; ldsc is not run by caveat. Set the reference files:",
        "set -euo pipefail",
        'LDSC=${LDSC:-ldsc.py}   # ldsc.py of github.com/bulik/ldsc',
        f'BFILE=${{BFILE:?PLINK per-chromosome fileset prefix (the .bim given to caveat: {given})}}',
        'HM3_SNPS=${HM3_SNPS:?HapMap3 SNP list (one rsID a line)}',
        'BASELINE=${BASELINE:?prefix of the baseline-LD model LD scores, e.g. baselineLD.}',
        'WEIGHTS=${WEIGHTS:?prefix of the regression weights, e.g. weights.hm3_noMHC.}',
        'FRQ=${FRQ:?prefix of the allele frequency files, e.g. 1000G.EUR.QC.}',
        'SUMSTATS=${SUMSTATS:?munged GWAS summary statistics (.sumstats.gz)}',
        'OUT=${OUT:-trait}',
        'cd "$(dirname "$0")"',
        "",
        f"for chr in {' '.join(chroms)}; do",
        '  "$LDSC" --l2 --bfile "${BFILE}${chr}" --ld-wind-cm 1 --thin-annot \\',
        f'    --annot {ANNOT_PREFIX}.${{chr}}.annot.gz --out {ANNOT_PREFIX}.${{chr}} --print-snps "$HM3_SNPS"',
        "done",
        "",
        f'"$LDSC" --h2 "$SUMSTATS" --ref-ld-chr "$BASELINE",{ANNOT_PREFIX}. --w-ld-chr "$WEIGHTS" \\',
        '  --overlap-annot --frqfile-chr "$FRQ" --print-coefficients --out "$OUT"',
        "",
    ]
    if single:
        lines.insert(3, "# NOTE: one .bim for all chromosomes was given; ldsc --l2 wants one PLINK fileset per "
                        "chromosome: split it (plink --chr N --make-bed --out PREFIX.N).")
    return "\n".join(lines)
