"""COUNT_ALLELES: REF/ALT/other counts per het SNP from the WASP-filtered BAM, each fragment once.

Per chromosome, records are streamed as raw bytes and every (read, SNP)
observation over an aligned base is decoded by a numba kernel. Mates of a
fragment that both cover a site count once: when they agree, with their
qualities summed (capped at 200) against ``min_base_quality``; when they
disagree, as a ``conflict`` (neither REF nor ALT). This is htslib's
overlapping-pair rule (``bcftools mpileup``, overlap detection on) except that
a disagreement is not resolved in favour of the higher-quality mate.
Unmapped, secondary, supplementary, QC-fail, duplicate and improper-pair
records and reads under ``min_mapq`` are not counted.

Output: ``counts/<sample>.parquet`` (sample, donor, cell_type, variant_id,
chrom, pos, ref, alt, ref_count, alt_count, other_count, conflict_count) and
``count_alleles.summary.json``. Each sample's genotype concordance (share of
covered het sites showing both alleles, :mod:`caveat.concordance`) is checked
before any table is written and recorded in the summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import __version__
from . import bam_records as br
from . import concordance
from .engine import Step, StepContext
from .errors import InputError
from .barcodes import CELL_BARCODE_TAG, BarcodeLookup, check_tag_present
from .genome import CODE
from .io import read_parquet, write_json, write_parquet
from .log import Progress, get_logger
from .parallel import map_jobs, map_ordered
from .single_cell import read_study
from .step_cli import add_param_options, params_from_args

log = get_logger("count_alleles")

PARAMS = {"min_mapq": 10, "min_base_quality": 20, **concordance.PARAMS}
EXCLUDE = br.UNMAP | br.SECONDARY | br.QCFAIL | br.DUP | br.SUPPLEMENTARY
COUNT_COLUMNS = ["ref_count", "alt_count", "other_count", "conflict_count"]


def countable(ch: br.Chunk, min_mapq: int) -> np.ndarray:
    """Records that may be counted, shape (n_records,)."""
    f = ch.flag
    improper = ((f & br.PAIRED) != 0) & ((f & br.PROPER) == 0)
    return ((f & EXCLUDE) == 0) & ~improper & (ch.mapq >= min_mapq)


def fragment_calls(snp: np.ndarray, frag: np.ndarray, base: np.ndarray, qual: np.ndarray,
                   min_bq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One call per (site, fragment).

    Parameters
    ----------
    snp, frag : int arrays, shape (n_obs,)
        Site index and fragment id (read-name hash) of each observation.
    base : int array, shape (n_obs,)
        Base code A0 C1 G2 T3 N4.
    qual : int array, shape (n_obs,)

    Returns
    -------
    site : int64 array, shape (n_calls,)
    call : int64 array, shape (n_calls,)
        The base called for the fragment (0–4), or -1 for mates that disagree.
    ok : bool array, shape (n_calls,)
        Passes ``min_bq`` (conflicts always pass: they are counted as such).
    """
    if len(snp) == 0:
        e = np.empty(0, np.int64)
        return e, e, np.empty(0, bool)
    order = np.lexsort((frag, snp))
    s, f, b, q = snp[order], frag[order], base[order], qual[order]
    first = np.r_[True, (s[1:] != s[:-1]) | (f[1:] != f[:-1])]
    start = np.flatnonzero(first)
    size = np.diff(np.r_[start, len(s)])
    b0, q0 = b[start], q[start]
    two = size >= 2
    b1 = np.where(two, b[np.minimum(start + 1, len(s) - 1)], b0)
    q1 = np.where(two, q[np.minimum(start + 1, len(s) - 1)], 0)
    agree = b0 == b1
    call = np.where(agree, b0, -1)
    qsum = np.where(two, np.minimum(q0 + q1, 200), q0)
    ok = np.where(agree, qsum >= min_bq, True)
    return s[start], call, ok


def count_chromosome(bam: str | Path, chrom: str, snp_pos: np.ndarray, ref: np.ndarray, alt: np.ndarray,
                     min_mapq: int = 10, min_bq: int = 20, ref_id: int | None = None,
                     groups: tuple | None = None, dropped: dict | None = None) -> np.ndarray:
    """Counts at one chromosome's sites.

    Parameters
    ----------
    snp_pos : int64 array, shape (n_snps,), sorted
    ref, alt : uint8 arrays, shape (n_snps,)
        Allele codes.
    groups : (BarcodeLookup, tag), optional
        A single-cell library: each read's group is the code of its barcode
        (:class:`caveat.barcodes.BarcodeLookup`), counts are kept per group; reads without the
        tag or with a barcode outside the table are not counted (tallied into ``dropped``:
        ``no_barcode``, ``barcode_not_in_table``, countable records only).

    Returns
    -------
    int64 array, shape (n_snps, 4), or (n_groups, n_snps, 4) with ``groups``
        ref_count, alt_count, other_count, conflict_count.
    """
    n_groups = 1 if groups is None else groups[0].n_groups
    counts = np.zeros((n_groups, len(snp_pos), 4), np.int64)
    pend = [np.empty(0, np.int64)] * 5
    for ch, final in _with_last(br.stream_chunks(bam, chrom, ref_id=ref_id)):
        if ch is not None and len(ch):
            keep = countable(ch, min_mapq)
            code = np.zeros(len(ch), np.int64)
            if groups is not None:
                code, has = groups[0].record_codes(ch.buf, ch.offs, groups[1], bam)
                if dropped is not None:
                    dropped["no_barcode"] = dropped.get("no_barcode", 0) + int((keep & ~has).sum())
                    dropped["barcode_not_in_table"] = (dropped.get("barcode_not_in_table", 0)
                                                       + int((keep & has & (code < 0)).sum()))
                keep &= code >= 0
            rec, snp, base, qual, _ = br.observe_snps(ch.buf, ch.offs, ch.pos, ch.end, keep, snp_pos)
            new = [snp, ch.name_hash[rec].view(np.int64), br.NT16_TO_CODE[base].astype(np.int64), qual, code[rec]]
            pend = [np.concatenate([p, n]) for p, n in zip(pend, new)]
            done = np.ones(len(pend[0]), bool) if final else snp_pos[pend[0]] < ch.pos[-1]
        else:
            done = np.ones(len(pend[0]), bool)
        _tally(counts, [p[done] for p in pend], ref, alt, min_bq)
        pend = [p[~done] for p in pend]
    return counts[0] if groups is None else counts


def _with_last(it):
    prev = None
    for x in it:
        if prev is not None:
            yield prev, False
        prev = x
    yield prev, True


def _tally(counts: np.ndarray, obs: list[np.ndarray], ref: np.ndarray, alt: np.ndarray, min_bq: int) -> None:
    """Add the observations' fragment calls to ``counts`` (shape (n_groups, n_snps, 4)); ``obs``:
    site, fragment id, base, quality and group of each observation (a fragment is one per group)."""
    snp, frag, base, qual, group = obs
    n_snps = counts.shape[1]
    key, call, ok = fragment_calls(group * n_snps + snp, frag, base, qual, min_bq)
    key, call = key[ok], call[ok]
    g, site = np.divmod(key, n_snps) if n_snps else (key, key)
    kind = np.where(call < 0, 3, np.where(call == ref[site], 0, np.where(call == alt[site], 1, 2)))
    keep = call != 4  # an N is no allele
    np.add.at(counts, (g[keep], site[keep], kind[keep]), 1)


def count_sample(bam: str | Path, snps: pd.DataFrame, *, min_mapq: int = 10, min_bq: int = 20,
                 threads: int = 1) -> pd.DataFrame:
    """Allele counts of one sample at its donor's het SNPs (every site, zeros included).

    Returns
    -------
    DataFrame
        ``snps``' columns (variant_id, chrom, pos, ref, alt) + ref_count, alt_count,
        other_count, conflict_count, in the order of ``snps``.
    """
    br.check_bam(bam)
    _, names, _ = br.read_header(bam)
    from .genome import check_contigs

    check_contigs(set(snps["chrom"]), names, what="het-SNP", file=bam, reference_file=f"the BAM header of {Path(bam).name}")
    snps = snps.reset_index(drop=True)
    out = np.zeros((len(snps), 4), np.int64)
    jobs = []
    for chrom, idx in snps.groupby("chrom", sort=False).indices.items():
        idx = idx[np.argsort(snps["pos"].to_numpy()[idx], kind="stable")]
        sub = snps.iloc[idx]
        jobs.append((str(bam), chrom, sub["pos"].to_numpy(np.int64), _codes(sub["ref"]), _codes(sub["alt"]),
                     min_mapq, min_bq, names.index(chrom), idx))
    prog = Progress(log, "chromosomes", total=len(jobs), label=Path(bam).name)
    for (*_, idx), c in zip(jobs, _map_jobs(jobs, threads)):
        out[idx] = c
        prog.update()
    prog.close()
    res = snps[["variant_id", "chrom", "pos", "ref", "alt"]].copy()
    for i, col in enumerate(COUNT_COLUMNS):
        res[col] = out[:, i]
    return res


def count_groups(bam: str | Path, snps: pd.DataFrame, codes: Mapping[str, int],
                 groups: Sequence[tuple[str, str]], *, tag: str = CELL_BARCODE_TAG, min_mapq: int = 10,
                 min_bq: int = 20, library: str = "") -> tuple[dict[str, pd.DataFrame], dict]:
    """Allele counts of a single-cell library per (donor, cell type) group, in one pass over its BAM.

    Each read's group is looked up from its barcode (``tag``); counts are accumulated per group
    at the union of the groups' donors' het SNPs, then each group keeps its donor's sites. No
    per-group BAM is written. A fragment counts once per site as in :func:`count_sample`.

    Parameters
    ----------
    bam : path
        The library's (WASP-filtered) BAM, reads tagged with their cell barcode.
    snps : DataFrame
        ``het_snps.parquet`` rows (variant_id, chrom, pos, ref, alt, donor) of every donor.
    codes : mapping
        barcode → group code (``single_cell.barcode_group_codes``); codes index ``groups``.
    groups : sequence of (donor, cell_type), length n_groups

    Returns
    -------
    tables : dict
        ``<donor>_<cell_type>`` → :func:`counts_table` (sample = that name), in ``groups`` order,
        for the groups with a barcode in ``codes`` (``groups`` may list every library's groups).
    dropped : dict
        Countable records not counted: ``no_barcode``, ``barcode_not_in_table``.

    Raises
    ------
    InputError
        No barcode tags in the BAM, a group's donor without het SNPs, codes outside ``groups``.
    """
    lookup = BarcodeLookup(codes, library or None)
    if lookup.n_groups > len(groups):
        raise InputError(library or None, f"barcode group code {lookup.n_groups - 1} but only {len(groups)} groups",
                         "pass the groups list that barcode_group_codes returned with the codes")
    br.check_bam(bam)
    check_tag_present(bam, tag)
    present = sorted(set(int(c) for c in codes.values()))
    donors = list(dict.fromkeys(groups[g][0] for g in present))
    for d in donors:
        if not (snps["donor"] == d).any():
            raise InputError(bam, f"donor {d!r} of the barcode table has no het SNPs",
                             "check the donor names of the barcode table against the VCF samples")
    union = snps[snps["donor"].isin(donors)].drop_duplicates("variant_id").reset_index(drop=True)
    _, names, _ = br.read_header(bam)
    from .genome import check_contigs

    check_contigs(set(union["chrom"]), names, what="het-SNP", file=bam, reference_file=f"the BAM header of {Path(bam).name}")
    out = np.zeros((len(groups), len(union), 4), np.int64)
    dropped: dict = {"no_barcode": 0, "barcode_not_in_table": 0}
    for chrom, idx in union.groupby("chrom", sort=False).indices.items():
        idx = idx[np.argsort(union["pos"].to_numpy()[idx], kind="stable")]
        sub = union.iloc[idx]
        c = count_chromosome(bam, chrom, sub["pos"].to_numpy(np.int64), _codes(sub["ref"]), _codes(sub["alt"]),
                             min_mapq, min_bq, names.index(chrom), groups=(lookup, tag), dropped=dropped)
        out[:c.shape[0], idx] = c
    row_of = pd.Series(np.arange(len(union)), index=union["variant_id"])
    tables = {}
    for g in present:
        donor, cell_type = groups[g]
        mine = snps[snps["donor"] == donor].reset_index(drop=True)
        res = mine[["variant_id", "chrom", "pos", "ref", "alt"]].copy()
        rows = row_of[mine["variant_id"]].to_numpy()
        for i, col in enumerate(COUNT_COLUMNS):
            res[col] = out[g, rows, i]
        sample = f"{donor}_{cell_type}"
        tables[sample] = counts_table(res, sample, donor, cell_type)
    log.info("%s: counted %d groups at %d het SNPs; not counted: %d records without a %s tag, %d of barcodes "
             "outside the table", library or Path(bam).name, len(present), len(union), dropped["no_barcode"], tag,
             dropped["barcode_not_in_table"])
    return tables, dropped


def _codes(col: pd.Series) -> np.ndarray:
    return CODE[np.frombuffer("".join(col).encode(), np.uint8)] if len(col) else np.empty(0, np.uint8)


def _job(args):
    bam, chrom, pos, ref, alt, min_mapq, min_bq, ref_id, _ = args
    return count_chromosome(bam, chrom, pos, ref, alt, min_mapq, min_bq, ref_id)


def _map_jobs(jobs, threads):
    # threads: the numba kernel and BGZF decompression release the GIL
    return map_ordered(_job, jobs, threads)


def counts_table(counts: pd.DataFrame, sample: str, donor: str, cell_type: str) -> pd.DataFrame:
    """The ``counts/<sample>.parquet`` contract columns."""
    head = pd.DataFrame({"sample": sample, "donor": donor, "cell_type": cell_type}, index=counts.index)
    return pd.concat([head, counts], axis=1)


def run_step(ctx: StepContext) -> dict:
    """Local engine: counts of every bulk sample and of every library's donor × cell type groups."""
    p = ctx.params
    study = read_study(p["input"])
    sheet = study.bulk()
    snps = read_parquet(ctx.outdir / "het_snps.parquet")
    donors = list(dict.fromkeys(study.samples["donor"]))
    rows = list(sheet.itertuples())

    def one(row, threads: int) -> pd.DataFrame:
        return _count_checked(ctx.outdir / "wasp" / f"{row.sample}.bam", snps, row.sample, row.donor, p,
                              p["input"], donors, threads)

    # every sample is counted and checked (concurrently, ctx.threads split among them) before any
    # table is written: a mix-up leaves no counts
    counted = dict(zip([r.sample for r in rows], map_jobs(one, rows, ctx.threads, names=[r.sample for r in rows])))
    counted.update(count_libraries(study, snps, ctx.outdir / "wasp", p, donors, ctx.threads))
    tables = {}
    for row in study.samples.itertuples():
        c = counted[row.sample]
        tables[row.sample] = counts_table(c, row.sample, row.donor, row.cell_type)
        fig = _summary(c, p)
        ctx.log.info("%s: %d het SNPs, %d covered; %d REF, %d ALT, %d other, %d conflicting-mate calls; "
                     "%s of %d well-covered sites show both alleles", row.sample, len(c),
                     fig["covered"], fig["ref"], fig["alt"],
                     fig["other"], fig["conflict"], fig["both_alleles_share"],
                     fig["concordance_sites"])
    for sample, t in tables.items():
        write_parquet(t, ctx.out("counts", f"{sample}.parquet"))
    summary = run_summary(tables.values(), p)
    write_json(summary, ctx.out("count_alleles.summary.json"))
    per = summary["per_sample"]
    return {"samples": len(tables), "sites": int(sum(v["sites"] for v in per.values())),
            "ref_fraction": _ref_fraction(per)}


def count_libraries(study, snps: pd.DataFrame, wasp_dir: Path, p: dict, donors: list[str],
                    threads: int) -> dict[str, pd.DataFrame]:
    """Counts of every donor × cell type group of the study's libraries, summed over the libraries
    holding its cells, genotype concordance checked per group.

    Each library's WASP-filtered BAM (``wasp_dir/<library>.bam``) is read once
    (:func:`count_groups`); libraries run concurrently.

    Returns
    -------
    dict
        sample (``<donor>_<cell_type>``) → count columns at its donor's het SNPs (as :func:`count_sample`).
    """
    from .single_cell import barcode_group_codes

    libs = list(study.libraries["library"])
    if not libs:
        return {}
    coded = {lib: barcode_group_codes(study.barcodes, lib) for lib in libs}

    def one(lib: str, _threads: int) -> dict:
        codes, groups = coded[lib]
        return count_groups(wasp_dir / f"{lib}.bam", snps, codes, groups, min_mapq=p["min_mapq"],
                            min_bq=p["min_base_quality"], library=lib)[0]

    per_lib = dict(zip(libs, map_jobs(one, libs, threads, names=libs, what="library")))
    out = {}
    for row in study.samples[study.samples["source"] == "library"].itertuples():
        parts = [per_lib[lib][row.sample] for lib in row.libraries]
        c = sum_counts([t.drop(columns=["sample", "donor", "cell_type"]) for t in parts])

        def recount(other: str, row=row) -> pd.DataFrame:
            return _recount_group(row, other, coded, snps, wasp_dir, p)

        concordance.check_sample(c, row.sample, row.donor, p, study.barcodes_file(row.libraries[0]), recount,
                                 [d for d in donors if d != row.donor])
        out[row.sample] = c
    return out


def sum_counts(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One group's counts summed over libraries (each part: the same sites in the same order)."""
    out = parts[0].copy()
    for t in parts[1:]:
        if not out["variant_id"].equals(t["variant_id"]):
            raise ValueError("counts of one group from two libraries list different sites")
        for col in COUNT_COLUMNS:
            out[col] = out[col].to_numpy() + t[col].to_numpy()
    return out


def _recount_group(row, other: str, coded: dict, snps: pd.DataFrame, wasp_dir: Path, p: dict) -> pd.DataFrame:
    """A group's reads counted at another donor's het SNPs (only when its concordance check fails)."""
    parts = []
    for lib in row.libraries:
        codes, groups = coded[lib]
        g = groups.index((row.donor, row.cell_type))
        mine = {b: 0 for b, k in codes.items() if k == g}
        t = count_groups(wasp_dir / f"{lib}.bam", snps, mine, [(other, row.cell_type)], min_mapq=p["min_mapq"],
                         min_bq=p["min_base_quality"], library=lib)[0]
        parts.append(t[f"{other}_{row.cell_type}"].drop(columns=["sample", "donor", "cell_type"]))
    return sum_counts(parts)


def run_summary(tables, params: dict) -> dict:
    """``count_alleles.summary.json``, for both engines: the local step (its tables in memory) and
    ``count_alleles.py --summarize`` (Nextflow's COUNT_ALLELES_SUMMARY, the tables read back).

    Parameters
    ----------
    tables : iterable of DataFrame
        Each sample's ``counts/<sample>.parquet`` table (:func:`counts_table` columns), any order.
    params : dict
        ``concordance_min_reads`` (the covered-site threshold of the both-allele share).

    Returns
    -------
    dict
        ``samples`` and ``per_sample`` (sample → :func:`_summary` figures), samples sorted by name
        so that the file does not depend on the order the tables came in.
    """
    per = {}
    for t in tables:
        sample = str(t["sample"].iloc[0]) if len(t) else str(t.attrs.get("sample", ""))
        if sample in per:
            raise InputError(t.attrs.get("path"), f"sample {sample!r} given twice", "pass each sample's counts once")
        per[sample] = _summary(t, params)
    return {"samples": len(per), "per_sample": dict(sorted(per.items()))}


def _count_checked(bam, snps: pd.DataFrame, sample: str, donor: str, p: dict, file, donors: list[str],
                   threads: int) -> pd.DataFrame:
    """Counts of one sample at its donor's het sites, genotype concordance checked."""
    def recount(other: str) -> pd.DataFrame:
        return count_sample(bam, snps[snps["donor"] == other], min_mapq=p["min_mapq"],
                            min_bq=p["min_base_quality"], threads=threads)

    c = recount(donor)
    concordance.check_sample(c, sample, donor, p, file, recount, [d for d in donors if d != donor])
    return c


def _summary(c: pd.DataFrame, params: dict | None = None) -> dict:
    tot = c["ref_count"] + c["alt_count"]
    min_reads = (params or PARAMS)["concordance_min_reads"]
    share, n = concordance.both_allele_share(c, min_reads)
    return {"sites": len(c), "covered": int((tot > 0).sum()), "ref": int(c["ref_count"].sum()),
            "alt": int(c["alt_count"].sum()), "other": int(c["other_count"].sum()),
            "conflict": int(c["conflict_count"].sum()), "both_alleles_share": share, "concordance_sites": n}


def _ref_fraction(per: dict) -> float:
    r = sum(v["ref"] for v in per.values())
    a = sum(v["alt"] for v in per.values())
    return round(r / (r + a), 4) if r + a else float("nan")


STEP = Step(name="count_alleles", run=run_step, needs=("wasp_remap",), params=PARAMS,
            doc=__doc__.splitlines()[0])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="count_alleles", description=__doc__.splitlines()[0],
        epilog="Count (default): --bam --het-snps --sample --donor --cell-type --out. "
               "Summarize (--summarize): the run's count_alleles.summary.json from every sample's counts table. "
               "Merge (--merge): one donor x cell type's counts from each library (--barcodes --out-dir) summed into "
               "--out, its concordance with its donor checked.")
    ap.add_argument("--version", action="version", version=f"caveat {__version__}")
    ap.add_argument("--bam", help="the sample's WASP-filtered BAM (wasp/<sample>.bam)")
    ap.add_argument("--het-snps", help="het_snps.parquet")
    ap.add_argument("--sample")
    ap.add_argument("--donor")
    ap.add_argument("--cell-type")
    add_param_options(ap, PARAMS, helps={
        "concordance_min_reads": "REF+ALT reads for a het site to count as covered (also with --summarize)",
        "concordance_min_both_alleles": "least share of covered het sites showing both alleles (else the sample's "
                                        "donor is wrong)"})
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="counts/<sample>.parquet; with --summarize: count_alleles.summary.json")
    ap.add_argument("--barcodes", help="the --bam is a single-cell library: its barcode table (barcode,cell_type"
                                       "[,donor]); counts per donor x cell type go to --out-dir/<donor>_<cell_type>"
                                       ".parquet (--sample: the library id; --donor: a one-donor table's donor)")
    ap.add_argument("--barcode-tag", default=CELL_BARCODE_TAG, help="with --barcodes: the tag holding each read's "
                                                                    "barcode (default CB, Cell Ranger's)")
    ap.add_argument("--out-dir", help="with --barcodes: where the groups' counts tables are written")
    ap.add_argument("--summarize", nargs="+", metavar="COUNTS",
                    help="instead of counting: summarize these counts/<sample>.parquet tables into --out")
    ap.add_argument("--merge", nargs="+", metavar="GROUP_COUNTS",
                    help="instead of counting: one donor x cell type group's tables from several libraries (each "
                         "library's --out-dir/<donor>_<cell_type>.parquet) summed into --out (counts/<sample>.parquet)")
    return ap


def summarize(counts: list[str | Path], out: str | Path, params: dict | None = None) -> dict:
    """``count_alleles.summary.json`` as the local engine writes it (:func:`run_summary`), from the
    samples' tables (a table without rows is named by its file: ``<sample>.parquet``)."""
    tables = []
    for p in counts:
        c = read_parquet(p)
        c.attrs.update(path=str(p), sample=Path(p).name.removesuffix(".parquet"))
        tables.append(c)
    summary = run_summary(tables, {**PARAMS, **(params or {})})
    write_json(summary, out)
    return summary


def _count_library(ap: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    """CLI: one library's counts per donor x cell type (:func:`count_groups`), every table written
    only once all are counted."""
    from .single_cell import barcode_group_codes, read_barcode_table

    missing = [o for o in ("bam", "het_snps", "sample", "out_dir") if getattr(a, o) is None]
    if missing:
        ap.error("library counting needs " + ", ".join("--" + o.replace("_", "-") for o in missing))
    table, _ = read_barcode_table(a.barcodes, a.sample, row_donor=a.donor or "")
    codes, groups = barcode_group_codes(table, a.sample)
    p = params_from_args(a, PARAMS)
    tables, _ = count_groups(a.bam, read_parquet(a.het_snps), codes, groups, tag=a.barcode_tag,
                             min_mapq=p["min_mapq"], min_bq=p["min_base_quality"], library=a.sample)
    for sample, t in tables.items():
        write_parquet(t, Path(a.out_dir) / f"{sample}.parquet")
    return 0


def merge_groups(parts: Sequence[str | Path], out: str | Path, params: dict) -> pd.DataFrame:
    """One group's counts table from its per-library tables, as the local engine's
    :func:`count_libraries` makes it: summed (:func:`sum_counts`), concordance with its donor
    checked (without the recount that names the donor the reads fit: a task here has no BAM).

    Raises
    ------
    InputError
        The tables name different groups; the group's reads do not fit its donor.
    """
    tables = [read_parquet(p) for p in parts]
    labels = {tuple(t[c].iloc[0] for c in ("sample", "donor", "cell_type")) for t in tables if len(t)}
    if len(labels) != 1:
        raise InputError(parts[0], f"--merge tables of {len(labels)} groups ({sorted(labels)})",
                         "merge the tables of one donor x cell type (one file name across libraries)")
    sample, donor, cell_type = labels.pop()
    c = sum_counts([t.drop(columns=["sample", "donor", "cell_type"]) for t in tables])
    concordance.check_sample(c, sample, donor, params, parts[0])
    table = counts_table(c, sample, donor, cell_type)
    write_parquet(table, out)
    return table


def main(argv=None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.merge:
        if not a.out:
            ap.error("--merge needs --out")
        merge_groups(a.merge, a.out, params_from_args(a, PARAMS))
        return 0
    if a.summarize:
        if not a.out:
            ap.error("--summarize needs --out")
        summarize(a.summarize, a.out, params_from_args(a, PARAMS))
        return 0
    if a.barcodes:
        return _count_library(ap, a)
    missing = [o for o in ("bam", "het_snps", "sample", "donor", "cell_type", "out") if getattr(a, o) is None]
    if missing:
        ap.error("counting needs " + ", ".join("--" + o.replace("_", "-") for o in missing))
    snps = read_parquet(a.het_snps)
    if not (snps["donor"] == a.donor).any():
        raise InputError(a.het_snps, f"donor {a.donor!r} has no het SNPs in this table",
                         "check the donor name against the VCF sample names")
    p = params_from_args(a, PARAMS)
    donors = list(dict.fromkeys(snps["donor"]))
    c = _count_checked(a.bam, snps, a.sample, a.donor, p, a.bam, donors, a.threads)
    write_parquet(counts_table(c, a.sample, a.donor, a.cell_type), a.out)
    return 0
