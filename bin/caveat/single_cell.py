"""Single-cell ATAC libraries in the samplesheet: reading, checking, and the pseudobulk samples.

A single-cell row of the samplesheet names one 10x-like library (``docs/single_cell.md``):
``sample`` (the library id), ``bam`` (Cell Ranger ATAC's ``possorted_bam.bam``, reads tagged
``CB:Z``), ``fragments`` (its ``fragments.tsv.gz`` with ``.tbi``) and ``barcodes`` (a CSV/TSV
``barcode,cell_type[,donor]``: the lab's cell annotation and, for pooled donors, the
demultiplexing). ``donor`` is filled only for a one-donor library whose table has no donor
column; ``cell_type`` stays empty.

Downstream steps treat each donor × cell type of the kept barcodes as one sample, named
``<donor>_<cell_type>`` as the simulator names bulk samples (:func:`pseudobulk_samples`).
Barcodes whose donor is empty or one of the demultiplexers' words ``unassigned``, ``doublet``,
``negative`` (vireo, demuxlet), or whose cell type is empty, are dropped and counted.

Checks (each an :class:`~caveat.errors.InputError` naming the file, the record and the fix):
columns, library files (``.tbi`` beside the fragments), ``CB`` tags in the BAM's first
records, the barcode suffix convention of the table against the BAM and the fragments (Cell
Ranger's ``-1`` GEM-group suffix), barcodes present in the library's reads (sampled from the
fragments file: none present is an error, some absent a warning with their count), cell types
left without barcodes, donors absent from the VCF, and name collisions with bulk rows.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError
from .log import get_logger
from .samplesheet import check_name, is_library_row, read_samplesheet, read_table, resolve

log = get_logger("single_cell")

#: donor labels of barcodes a demultiplexer could not give one donor (vireo: unassigned,
#: doublet; demuxlet/souporcell-style: negative, doublet); compared lower-case
DROP_DONORS = frozenset({"unassigned", "doublet", "negative"})
#: BAM records read to find ``CB`` tags and the barcode suffix style
PROBE_RECORDS = 10_000
#: fragments-file lines read to find which table barcodes have reads (whole file when shorter)
PROBE_FRAGMENTS = 2_000_000
TABLE_COLUMNS = ("barcode", "cell_type", "donor")
_CORE = re.compile(r"([ACGTN]{6,})(-\d+)?$")


def read_libraries(samplesheet_path, vcf_donors=None, *, check_reads: bool = True,
                   probe_records: int = PROBE_RECORDS, probe_fragments: int = PROBE_FRAGMENTS
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The samplesheet's single-cell libraries and their kept barcodes.

    Parameters
    ----------
    samplesheet_path : str or Path
    vcf_donors : iterable of str or None
        The VCF's samples; every kept donor must be one of them (None: not checked).
    check_reads : bool
        Open the BAM and fragments (CB tags, suffixes, barcodes present); False checks the
        tables only (a process that does not read the library's reads).

    Returns
    -------
    libraries : DataFrame (n_libraries rows)
        ``library, bam, fragments, barcodes_path`` (absolute paths), then ``donor`` (the row's
        donor, often empty), ``cells`` (barcodes kept) and ``dropped`` (rows dropped).
    barcodes : DataFrame (n_barcodes rows)
        ``library, barcode, donor, cell_type``, one row per kept barcode of each library.
    """
    path = Path(samplesheet_path)
    df = read_table(path)
    mask = is_library_row(df).to_numpy()
    rows, bulk = df[mask], df[~mask]
    libs, tables = [], []
    for i, row in rows.iterrows():
        lib, bcs = _read_library(path, int(i) + 2, row, vcf_donors, check_reads, probe_records, probe_fragments)
        libs.append(lib)
        tables.append(bcs)
    cols = ["library", "bam", "fragments", "barcodes_path", "donor", "cells", "dropped"]
    libraries = pd.DataFrame(libs, columns=cols)
    barcodes = (pd.concat(tables, ignore_index=True) if tables
                else pd.DataFrame(columns=["library", "barcode", "donor", "cell_type"]))
    _check_names_across(path, df, mask, libraries, barcodes, bulk)
    return libraries, barcodes


def _read_library(path: Path, line: int, row, vcf_donors, check_reads: bool, probe_records: int,
                  probe_fragments: int) -> tuple[dict, pd.DataFrame]:
    """One library row: its files, its barcode table (kept rows) and the checks against its reads."""
    name = row["sample"]
    check_name(path, line, "sample", name)
    if row["cell_type"]:
        raise InputError(path, f"line {line}: library {name} has cell_type {row['cell_type']!r}",
                         "leave cell_type empty on a single-cell row: the barcodes table gives each cell's type")
    base = path.resolve().parent
    files = {c: resolve(base, row[c]) for c in ("bam", "fragments", "barcodes")}
    for col, f in files.items():
        if not f:
            raise InputError(path, f"line {line}: library {name} has no {col}",
                             "a single-cell row needs bam (possorted_bam.bam), fragments (fragments.tsv.gz) "
                             "and barcodes (barcode,cell_type[,donor] table)")
        if (check_reads or col == "barcodes") and not Path(f).exists():
            raise InputError(path, f"line {line}: {col} file {f} of library {name} not found",
                             "fix the path (relative paths are relative to the samplesheet)")
    if check_reads and not Path(files["fragments"] + ".tbi").exists():
        raise InputError(files["fragments"], f"library {name} (samplesheet line {line}): fragments file has no "
                         "tabix index beside it (.tbi)",
                         f"index it: tabix -p bed {files['fragments']} (the file must be bgzip-compressed and sorted)")
    bcs, counts = read_barcode_table(files["barcodes"], name, row["donor"], path, line)
    if vcf_donors is not None:
        _check_vcf_donors(files["barcodes"], name, bcs, counts["lines"], set(vcf_donors))
    if check_reads:
        check_against_reads(files, name, bcs, counts, probe_records, probe_fragments)
    lib = {"library": name, "bam": files["bam"], "fragments": files["fragments"], "barcodes_path": files["barcodes"],
           "donor": row["donor"], "cells": len(bcs), "dropped": counts["dropped"]}
    return lib, bcs.drop(columns="line")


def read_barcode_table(path, library: str, row_donor: str = "", sheet=None, sheet_line: int | None = None
                       ) -> tuple[pd.DataFrame, dict]:
    """A library's barcode table, checked, with the unassigned rows dropped.

    Parameters
    ----------
    path : CSV or TSV (``.tsv``/``.txt``, or a tab in the header), header ``barcode,cell_type[,donor]``
    row_donor : the samplesheet row's donor (for a one-donor table without a donor column)

    Returns
    -------
    barcodes : DataFrame ``library, barcode, donor, cell_type, line`` (kept rows; ``line`` is the
        table's line number)
    counts : dict ``rows``, ``kept``, ``dropped``, ``dropped_unassigned`` (donor word),
        ``dropped_unlabelled`` (empty donor or cell type), ``repeated`` (a row repeating an earlier
        one exactly), ``cell_types`` (every cell type named, kept or not), ``lines`` (all rows)
    """
    path = Path(path)
    t = _read_raw_table(path)
    where = f"library {library}" + (f" (samplesheet {sheet} line {sheet_line})" if sheet else "")
    if "donor" in t.columns and row_donor:
        raise InputError(path, f"{where}: the table has a donor column and the samplesheet row gives donor "
                         f"{row_donor!r}",
                         "give the donor in one place: empty the row's donor, or drop the table's donor column")
    if "donor" not in t.columns:
        if not row_donor:
            raise InputError(path, f"{where}: no donor column, and the samplesheet row gives no donor",
                             "add a donor column (pooled donors: the demultiplexing), or fill the row's donor "
                             "for a one-donor library")
        t["donor"] = row_donor
    t["line"] = np.arange(len(t)) + 2
    t = _drop_repeats(path, t)
    repeated = int(t.attrs.get("repeated", 0))
    word = t["donor"].str.lower().isin(DROP_DONORS)
    unlabelled = ~word & ((t["donor"] == "") | (t["cell_type"] == ""))
    kept = t[~word & ~unlabelled]
    for c in ("donor", "cell_type"):
        for v, ln in zip(kept[c], kept["line"]):
            check_name(path, int(ln), c, v)
    _check_cell_types_kept(path, where, t, kept)
    counts = {"rows": len(t) + repeated, "kept": len(kept), "dropped": int(word.sum() + unlabelled.sum()),
              "dropped_unassigned": int(word.sum()), "dropped_unlabelled": int(unlabelled.sum()),
              "repeated": repeated, "lines": t}
    if counts["dropped"]:
        log.info("%s: %s: kept %d barcodes, dropped %d (%d unassigned/doublet/negative, %d without donor or "
                 "cell type)", library, path.name, counts["kept"], counts["dropped"], counts["dropped_unassigned"],
                 counts["dropped_unlabelled"])
    out = kept.assign(library=library)[["library", "barcode", "donor", "cell_type", "line"]]
    return out.reset_index(drop=True), counts


def _read_raw_table(path: Path) -> pd.DataFrame:
    """The table as stripped strings with lower-case column names; column checks."""
    name = path.name.lower().removesuffix(".gz")
    try:
        if name.endswith((".tsv", ".txt")):
            sep = "\t"
        else:
            head = pd.read_csv(path, sep=None, engine="python", nrows=0, dtype=str)
            sep = "\t" if len(head.columns) == 1 and "\t" in head.columns[0] else ","
        t = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise InputError(path, f"cannot read the barcode table ({e})",
                         "write it as CSV or TSV with a header barcode,cell_type[,donor]") from None
    t.columns = [str(c).strip().lower() for c in t.columns]
    missing = [c for c in ("barcode", "cell_type") if c not in t.columns]
    extra = [c for c in t.columns if c not in TABLE_COLUMNS]
    if missing or extra:
        what = "; ".join(x for x in (f"missing column(s) {', '.join(missing)}" if missing else "",
                                     f"unknown column(s) {', '.join(extra)}" if extra else "") if x)
        raise InputError(path, f"header {','.join(t.columns)}: {what}",
                         "the header must be barcode,cell_type[,donor] (one row per cell barcode)")
    for c in t.columns:
        t[c] = t[c].str.strip()
    if t.empty:
        raise InputError(path, "the barcode table has no rows", "list one row per cell barcode")
    empty = t["barcode"] == ""
    if empty.any():
        raise InputError(path, f"line {int(np.flatnonzero(empty)[0]) + 2}: empty barcode",
                         "give every row its cell barcode (as in the BAM's CB tag)")
    return t


def _drop_repeats(path: Path, t: pd.DataFrame) -> pd.DataFrame:
    """Rows repeating a barcode: identical labels are dropped (counted in ``attrs["repeated"]``),
    different labels are an error naming both lines."""
    dup = t["barcode"].duplicated(keep=False)
    if not dup.any():
        return t
    first: dict[str, tuple] = {}
    for bc, ct, dn, ln in zip(t["barcode"][dup], t["cell_type"][dup], t["donor"][dup], t["line"][dup]):
        if bc in first and first[bc][:2] != (ct, dn):
            c0, d0, l0 = first[bc]
            raise InputError(path, f"barcode {bc} is listed twice with different labels: line {l0} "
                             f"(cell_type {c0!r}, donor {d0!r}) and line {ln} (cell_type {ct!r}, donor {dn!r})",
                             "keep one row per barcode (a cell has one type and one donor; mark doublets "
                             "with donor 'doublet')")
        first.setdefault(bc, (ct, dn, ln))
    out = t[~t["barcode"].duplicated(keep="first")].copy()
    out.attrs["repeated"] = int(len(t) - len(out))
    return out


def _check_cell_types_kept(path: Path, where: str, t: pd.DataFrame, kept: pd.DataFrame) -> None:
    """A cell type whose every barcode was dropped (unassigned, doublet, no donor) has no cells."""
    named = [c for c in dict.fromkeys(t["cell_type"]) if c]
    left = set(kept["cell_type"])
    for ct in named:
        if ct not in left:
            lines = t["line"][t["cell_type"] == ct].tolist()
            raise InputError(path, f"{where}: cell type {ct!r} has no barcodes left: its {len(lines)} row(s) "
                             f"(line {', '.join(map(str, lines[:5]))}{', ...' if len(lines) > 5 else ''}) all have "
                             "no donor or an unassigned/doublet/negative donor",
                             "give those cells their donors (the demultiplexing), or remove the cell type's rows")


def _check_vcf_donors(path, library: str, bcs: pd.DataFrame, lines: pd.DataFrame, vcf: set) -> None:
    for dn in dict.fromkeys(bcs["donor"]):
        if dn not in vcf:
            ln = int(bcs["line"][bcs["donor"] == dn].iloc[0])
            raise InputError(path, f"line {ln}: library {library}: donor {dn!r} is not a sample of the VCF "
                             f"({', '.join(sorted(vcf)[:10])}{', ...' if len(vcf) > 10 else ''})",
                             "name each donor as its VCF sample (or add the donor's genotypes to the VCF)")


def check_against_reads(files: dict, library: str, bcs: pd.DataFrame, counts: dict,
                        probe_records: int = PROBE_RECORDS, probe_fragments: int = PROBE_FRAGMENTS) -> dict:
    """Check a library's table against its reads: CB tags in the BAM, one barcode form (suffix,
    prefix) on all three files, and table barcodes present in the fragments.

    Returns the counts of the check (``table_barcodes_seen``, ``table_barcodes_absent``,
    ``fragments_complete``: whether the whole fragments file was read)."""
    bam_bcs = bam_barcodes(files["bam"], library, probe_records)
    frag_bcs, complete = fragment_barcodes(files["fragments"], library, probe_fragments)
    _check_forms(files["fragments"], library, frag_bcs, files["bam"], bam_bcs, table=False)
    table = counts["lines"]["barcode"]
    _check_forms(files["barcodes"], library, set(table), files["bam"], bam_bcs | frag_bcs, table=True)
    seen = bam_bcs | frag_bcs
    present = bcs["barcode"].isin(seen)
    what = "in its fragments file" if complete else f"in the first {probe_fragments:,} fragments"
    if not present.any():
        raise InputError(files["barcodes"], f"library {library}: none of the table's {len(bcs)} kept barcodes "
                         f"(e.g. {bcs['barcode'].iloc[0]}) has reads {what} or the BAM's first records",
                         "give this library's own barcode table (the cells called in this Cell Ranger run)")
    absent = int((~present).sum())
    if absent:
        log.warning("%s: %d of %d table barcodes have no reads %s (%s)", library, absent, len(bcs), what,
                    Path(files["barcodes"]).name)
        if complete:
            _check_cell_types_seen(files["barcodes"], library, bcs, present)
    return {"table_barcodes_seen": int(present.sum()), "table_barcodes_absent": absent, "fragments_complete": complete}


def _check_cell_types_seen(path, library: str, bcs: pd.DataFrame, present: pd.Series) -> None:
    """With the whole fragments file read: a cell type none of whose barcodes has a fragment."""
    for ct, p in present.groupby(bcs["cell_type"]):
        if not p.any():
            raise InputError(path, f"library {library}: no barcode of cell type {ct!r} ({len(p)} in the table) "
                             "has a fragment in the library",
                             "check that this table belongs to this library, or remove the cell type's rows")


def bam_barcodes(bam, library: str, n: int = PROBE_RECORDS) -> set:
    """``CB`` values of the BAM's first ``n`` records; an error when none carries the tag."""
    import pysam

    seen, k, first = set(), 0, ""
    try:
        with pysam.AlignmentFile(str(bam), "rb", check_sq=False) as fh:
            for r in fh.fetch(until_eof=True):
                k += 1
                if k == 1:
                    first = f" (the first, {r.query_name}, at {r.reference_name}:{r.reference_start + 1})"
                if r.has_tag("CB"):
                    seen.add(r.get_tag("CB"))
                if k >= n:
                    break
    except (ValueError, OSError) as e:
        raise InputError(bam, f"library {library}: cannot read the BAM ({e})",
                         "give Cell Ranger ATAC's possorted_bam.bam for this library") from None
    if not seen:
        raise InputError(bam, f"library {library}: none of the first {k:,} records{first} has a CB:Z tag "
                         "(cell barcode)",
                         "give Cell Ranger ATAC's possorted_bam.bam (reads tagged CB:Z); a bulk BAM belongs "
                         "in a bulk row (sample,donor,cell_type,bam)")
    return seen


def fragment_barcodes(fragments, library: str, n: int = PROBE_FRAGMENTS) -> tuple[set, bool]:
    """Barcodes (4th column) of the fragments file's first ``n`` lines, and whether that was
    the whole file. ``#`` lines are Cell Ranger's header."""
    try:
        col = pd.read_csv(fragments, sep="\t", header=None, comment="#", usecols=[3], nrows=n + 1,
                          dtype=str, compression="gzip")[3]
    except (pd.errors.ParserError, ValueError, OSError, EOFError) as e:
        raise InputError(fragments, f"library {library}: cannot read the fragments file ({e})",
                         "give Cell Ranger's fragments.tsv.gz (bgzip TSV: chrom, start, end, barcode, count)") from None
    return set(col[:n].dropna()), len(col) <= n


def _form(bc: str) -> tuple[str, str] | None:
    """(prefix, suffix) around the barcode's nucleotide core, or None without a core."""
    m = _CORE.search(bc)
    return None if m is None else (bc[:m.start()], m.group(2) or "")


def _check_forms(path, library: str, mine: set, bam, bam_bcs: set, table: bool) -> None:
    """``mine`` (table or fragments barcodes) must be written as the BAM's CB (Cell Ranger's
    ``AAAC...-1``): when no barcode matches but the nucleotide cores do, name the difference."""
    if mine & bam_bcs:
        return
    cores = {_CORE.search(b).group(1): b for b in bam_bcs if _CORE.search(b)}
    pairs = [(b, cores[m.group(1)]) for b in sorted(mine) if (m := _CORE.search(b)) and m.group(1) in cores]
    if not pairs:
        ours, theirs = Counter(_form(b)[1] for b in mine if _form(b)), Counter(_form(b)[1] for b in bam_bcs if _form(b))
        if not ours or not theirs or set(ours) & set(theirs):
            return  # no shared cells in the sample and one suffix style: the presence check decides
        pairs = [(next(b for b in sorted(mine) if _form(b)), next(b for b in sorted(bam_bcs) if _form(b)))]
    a, b = pairs[0]
    (pa, sa), (pb, sb) = _form(a), _form(b)
    diffs = []
    if pa != pb:
        diffs.append(f"prefix {pa!r} where the BAM has {pb!r}")
    if sa != sb:
        diffs.append(f"suffix {sa!r} where the BAM has {sb!r}" if sa else f"no suffix where the BAM has {sb!r}")
    if table:
        fix = (f"fix the barcode table (the BAM is Cell Ranger's): write its barcodes as the BAM's CB tag, "
               f"e.g. {a} -> {b}" + (" (Cell Ranger's GEM-group suffix -1)" if sb == "-1" and sa != sb else ""))
    else:
        fix = "fix the samplesheet row: give the fragments.tsv.gz written by the same cellranger-atac run as the BAM"
    raise InputError(path, f"library {library}: barcodes are written {a} but the BAM's CB tag is {b} "
                     f"({'; '.join(diffs) or 'different form'})", fix)


def _check_names_across(path: Path, df: pd.DataFrame, mask: np.ndarray, libraries: pd.DataFrame,
                        barcodes: pd.DataFrame, bulk: pd.DataFrame) -> None:
    """Library ids unique and distinct from bulk samples; pseudobulk samples distinct from bulk ones."""
    lines = np.flatnonzero(mask) + 2
    names = list(libraries["library"])
    for k, nm in enumerate(names):
        if nm in names[:k]:
            raise InputError(path, f"line {lines[k]}: library {nm!r} appears more than once",
                             "library ids (the sample column of single-cell rows) must be unique")
        if nm in set(bulk["sample"]):
            raise InputError(path, f"line {lines[k]}: library {nm!r} has the name of a bulk sample",
                             "rename the library or the bulk sample")
    pb = pseudobulk_samples(barcodes)
    clash = pb["sample"][pb["sample"].duplicated()]
    if len(clash):
        raise InputError(path, f"two donor × cell type groups are both named {clash.iloc[0]!r} (<donor>_<cell_type>)",
                         "rename a donor or cell type so that no two groups share a name")
    bulk_pairs = set(zip(bulk["donor"], bulk["cell_type"]))
    for s, d, c in zip(pb["sample"], pb["donor"], pb["cell_type"]):
        if (d, c) in bulk_pairs or s in set(bulk["sample"]):
            raise InputError(path, f"donor {d} × cell type {c} (pseudobulk sample {s}) is both in a bulk row and "
                             "in a single-cell library",
                             "keep one source per donor × cell type (or rename the cell type of one of them)")


def pseudobulk_samples(barcodes: pd.DataFrame) -> pd.DataFrame:
    """The donor × cell type groups of the kept barcodes: the samples downstream steps see.

    Parameters
    ----------
    barcodes : DataFrame ``library, barcode, donor, cell_type`` (from :func:`read_libraries`)

    Returns
    -------
    DataFrame, one row per group, sorted by donor then cell type
        ``sample`` (``<donor>_<cell_type>``), ``donor``, ``cell_type``, ``library`` (list of the
        library ids holding its cells, in order of first appearance), ``cells`` (barcodes).
    """
    cols = ["sample", "donor", "cell_type", "library", "cells"]
    if barcodes.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (d, c), g in barcodes.groupby(["donor", "cell_type"], sort=True):
        rows.append((f"{d}_{c}", d, c, list(dict.fromkeys(g["library"])), len(g)))
    return pd.DataFrame(rows, columns=cols)


def barcode_group_codes(barcodes: pd.DataFrame, library: str) -> tuple[dict, list]:
    """Barcode → group code of one library, for a lookup per read while streaming its BAM.

    Codes index :func:`pseudobulk_samples` (all libraries), so one code means the same
    donor × cell type in every library.

    Returns
    -------
    codes : dict str -> int
        Each kept barcode of ``library`` to its group's code (barcodes absent: not a cell,
        or dropped: the read belongs to no sample).
    groups : list of (donor, cell_type)
        ``groups[code]``; the same for every library.
    """
    pb = pseudobulk_samples(barcodes)
    groups = list(zip(pb["donor"], pb["cell_type"]))
    index = {g: k for k, g in enumerate(groups)}
    mine = barcodes[barcodes["library"] == library]
    return {b: index[(d, c)] for b, d, c in zip(mine["barcode"], mine["donor"], mine["cell_type"])}, groups


@dataclass(frozen=True)
class Study:
    """Every sample of a run, whatever the samplesheet row that brings it.

    Attributes
    ----------
    samples : DataFrame (n_samples rows)
        ``sample, donor, cell_type, bam, peaks, source, libraries``: the bulk rows (``source``
        ``"bulk"``, in sheet order; ``libraries`` empty) then the libraries' pseudobulk groups
        (``source`` ``"library"``, by donor then cell type; ``bam`` and ``peaks`` empty,
        ``libraries`` the ids of the libraries holding the group's cells). Steps that need the
        samples, donors or cell types of a run read this, never the raw sheet.
    libraries : DataFrame
        :func:`read_libraries`' libraries (empty without library rows).
    barcodes : DataFrame
        :func:`read_libraries`' kept barcodes.
    """

    samples: pd.DataFrame
    libraries: pd.DataFrame
    barcodes: pd.DataFrame

    def bulk(self) -> pd.DataFrame:
        """The bulk rows (``sample, donor, cell_type, bam, peaks``), as :func:`read_samplesheet` reads them."""
        return self.samples[self.samples["source"] == "bulk"][list(SAMPLE_COLUMNS)].reset_index(drop=True)

    def library_donors(self, library: str) -> list[str]:
        """Donors with kept barcodes in ``library``, in sample order."""
        pb = self.samples[self.samples["source"] == "library"]
        return list(dict.fromkeys(d for d, libs in zip(pb["donor"], pb["libraries"]) if library in libs))

    def barcodes_file(self, library: str) -> str:
        """The barcode table of ``library`` (the file that labels its cells, named in errors)."""
        return str(self.libraries.loc[self.libraries["library"] == library, "barcodes_path"].iloc[0])


SAMPLE_COLUMNS = ("sample", "donor", "cell_type", "bam", "peaks")


def read_study(samplesheet_path, *, check_files: bool = True, check_reads: bool = False,
               vcf_donors=None) -> Study:
    """The run's samples: bulk rows and the single-cell libraries' donor × cell type groups.

    Parameters
    ----------
    check_files : bool
        Bulk rows: their BAM/peaks files must exist (as :func:`read_samplesheet`).
    check_reads : bool
        Libraries: open the BAM and fragments (``CB`` tags, suffixes, barcodes with reads);
        the step that first reads a library's reads checks them (``wasp_remap``), the others
        read the tables only.
    vcf_donors : iterable of str, optional
        The VCF's samples (libraries' donors checked against them).
    """
    if is_samples_table(samplesheet_path):
        return read_samples_table(samplesheet_path)
    bulk = read_samplesheet(samplesheet_path, check_files=check_files, libraries="skip")
    libraries, barcodes = read_libraries(samplesheet_path, vcf_donors, check_reads=check_reads)
    pb = pseudobulk_samples(barcodes)
    rows = bulk.assign(source="bulk", libraries=[[] for _ in range(len(bulk))])
    groups = pd.DataFrame({"sample": pb["sample"], "donor": pb["donor"], "cell_type": pb["cell_type"],
                           "bam": "", "peaks": "", "source": "library", "libraries": pb["library"]})
    samples = pd.concat([rows, groups], ignore_index=True) if len(groups) else rows.reset_index(drop=True)
    return Study(samples=samples, libraries=libraries, barcodes=barcodes)


#: header of a samples table (:func:`write_samples_table`)
SAMPLES_TABLE_COLUMNS = (*SAMPLE_COLUMNS, "source", "libraries")


def is_samples_table(path) -> bool:
    """Whether ``path`` is a samples table (its header has ``source``), not a samplesheet."""
    try:
        with open(path) as f:
            return "source" in [c.strip() for c in f.readline().rstrip("\n").split(",")]
    except OSError:
        return False


def write_samples_table(study: Study, path) -> None:
    """The study's samples as a CSV (``SAMPLES_TABLE_COLUMNS``; ``libraries`` joined by ``;``).

    It is what a Nextflow task that needs the run's samples, donors or cell types reads in place
    of the samplesheet (``--input``): a library row's barcode table is read once, where the
    libraries are staged, and the task reading the table needs no library file.
    """
    from .io import write_text

    t = study.samples.assign(libraries=[";".join(v) for v in study.samples["libraries"]])
    write_text(t[list(SAMPLES_TABLE_COLUMNS)].to_csv(index=False), path)


def read_samples_table(path) -> Study:
    """A samples table (:func:`write_samples_table`) as a :class:`Study` without libraries.

    ``peaks`` paths are resolved against the table's folder; ``bam`` is kept as written (a
    task reading the table reads no BAM).
    """
    path = Path(path)
    t = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in SAMPLES_TABLE_COLUMNS if c not in t.columns]
    if missing:
        raise InputError(path, f"samples table without column(s) {', '.join(missing)}",
                         f"write the header {','.join(SAMPLES_TABLE_COLUMNS)}")
    for i, row in t.iterrows():
        for col in ("sample", "donor", "cell_type"):
            check_name(path, int(i) + 2, col, row[col])
        if row["source"] not in ("bulk", "library"):
            raise InputError(path, f"line {int(i) + 2}: source {row['source']!r}", "use bulk or library")
    base = path.resolve().parent
    t["peaks"] = [resolve(base, v) for v in t["peaks"]]
    t["libraries"] = [[x for x in v.split(";") if x] for v in t["libraries"]]
    empty_libs = pd.DataFrame(columns=["library", "bam", "fragments", "barcodes_path", "donor", "cells", "dropped"])
    empty_bcs = pd.DataFrame(columns=["library", "barcode", "donor", "cell_type"])
    return Study(samples=t[list(SAMPLES_TABLE_COLUMNS)], libraries=empty_libs, barcodes=empty_bcs)


def study_input_files(samplesheet_path, *, fragments: bool = False) -> list[str]:
    """The files a step reads through the samplesheet, for the engine's fingerprint: bulk BAMs and
    the libraries' BAMs and barcode tables (and fragments files when the step reads them).
    Empty when the sheet cannot be read yet (the step then fails with the real error)."""
    try:
        study = read_study(samplesheet_path, check_files=False)
    except InputError:
        return []
    files = [b for b in study.samples["bam"] if b]
    for lib in study.libraries.itertuples():
        files += [lib.bam, lib.barcodes_path] + ([lib.fragments] if fragments else [])
    return files
