"""Single-cell presets (``tiny-sc``, ``demo-sc``): the bulk study's fragments, given to cells of
10x-like libraries that pool every donor.

The study (genome, donors, elements, faults, truth) and each donor × cell type's fragments and
reads are those of the bulk preset with the same seed (the same generators, drawn in the same
order); what is added uses its own generator (:func:`sc_rng`):

* cells: ``Preset.sc_cells_per_sample`` per donor × cell type, each with a depth weight
  (log-normal) and a library (round robin over ``Preset.sc_libraries``); each library draws its
  barcodes, 16-mers with Cell Ranger's GEM-group suffix ``-1``, from a fixed whitelist
  (:func:`whitelist`), so a sequence may recur in another library (a barcode is a cell only
  within its library);
* in each library, ``sc_doublet_fraction`` of the cells share their barcode with a cell of
  another donor (a doublet; labelled ``doublet`` in the table) and ``sc_unassigned_fraction``
  are labelled ``unassigned`` (the demultiplexer could not tell the donor); both are real
  reads the pipeline must drop;
* ``sc_ambient_fraction`` of the fragments go to ambient barcodes (not cells, absent from the
  table, as in a Cell Ranger BAM);
* each PCR duplicate of the bulk draw stays in its original's cell (a duplicate is one
  molecule, read twice);
* the planted fault: ``sc_twin_fraction`` of the fragments of strong elements (top decile of
  accessibility in that cell type) in a cell get a twin, a fragment with the same two ends in
  another cell of the same donor × cell type and library, its haplotype drawn from the
  element's share (an independent molecule, not a duplicate: a dedup by position alone, as in
  bulk, wrongly removes it; ``truth/cross_cell_twins.parquet``). Twins get their own reads
  (their own generator), after the sample's bulk reads, so the sample's bulk reads and their
  alignments stay those of the bulk preset.

Each donor × cell type is aligned as in bulk; :func:`write_libraries` then writes per library
``libraries/<lib>.bam`` (coordinate-sorted, ``CB:Z``/``CR:Z``/``RG:Z`` tags, PCR duplicates
flagged 0x400 per barcode), ``<lib>.fragments.tsv.gz`` (+ ``.tbi``) and ``<lib>.barcodes.csv``.

Duplicates and fragments follow Cell Ranger ATAC's fragments-file definition (10x Genomics,
"Cell Ranger ATAC count: Fragments File",
https://support.10xgenomics.com/single-cell-atac/software/pipelines/latest/output/fragments):
one line per unique fragment *of a barcode* (column 4 is the CB tag), duplicate read pairs
collapsed into it with their number in column 5; 0-based half-open BED interval "obtained by
adjusting the BAM alignment interval of the sequenced read-pair. The start of the interval is
moved forward by 4 bp from a left-most alignment position and backward 5 bp from the
right-most alignment position"; a record for every "non-chimeric read pair alignment with
mapping quality > 30" (Cell Ranger ARC 1.0 page, same format); bgzip + ``tabix --preset=bed``;
``#`` header lines. So: ``start = leftmost mate's reference_start + 4``, ``end = rightmost
mate's reference_end - 5``, over read pairs whose mates both have MAPQ > 30.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..log import get_logger

log = get_logger("simulate")

#: Cell Ranger's Tn5 adjustment of the fragment interval (+4 at the left end, -5 at the right)
TN5_LEFT, TN5_RIGHT = 4, -5
#: fragments-file filter: both mates' MAPQ strictly above this (Cell Ranger: "mapping quality > 30")
FRAGMENT_MIN_MAPQ = 30
#: whitelist size and seed: fixed, so every study draws barcodes from the same list
WHITELIST_SIZE, WHITELIST_SEED = 200_000, 0x10C5
SUFFIX = "-1"
#: elements whose accessibility (both haplotypes) is in this top quantile count as strong peaks
STRONG_QUANTILE = 0.9


def sc_rng(seed: int) -> np.random.Generator:
    """The single-cell draws' generator: independent of the bulk study's 14 streams."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(19,)))


def whitelist(n: int = WHITELIST_SIZE) -> np.ndarray:
    """``n`` distinct 16-mers (str array, no suffix) from a fixed generator: the barcode list
    every simulated library draws from (as Cell Ranger's whitelist)."""
    rng = np.random.default_rng(WHITELIST_SEED)
    codes = np.unique(rng.integers(0, 4 ** 16, int(n * 1.01) + 16, dtype=np.int64))[:n]
    digits = (codes[:, None] >> (2 * np.arange(15, -1, -1))) & 3
    letters = np.frombuffer(b"ACGT", np.uint8)[digits]
    return letters.view("S16").ravel().astype(str)


@dataclass
class Cells:
    """Every cell and barcode of the study.

    Attributes
    ----------
    cell_sample, cell_library, cell_barcode : int (n_cells,) sample index, library index, barcode id
    cell_weight : float (n_cells,) relative depth
    bc_string : str (n_barcodes,) with suffix ; bc_library : int (n_barcodes,)
    bc_kind : str (n_barcodes,) ``cell``, ``unassigned``, ``doublet``, ``ambient``
    ambient : list (per library) of barcode ids
    frag_barcode : dict sample -> int (n_fragments + n_twins,) barcode id of each read pair
    twins : list of DataFrames sample, twin, source (fragment indices), element
    """

    cell_sample: np.ndarray
    cell_library: np.ndarray
    cell_barcode: np.ndarray
    cell_weight: np.ndarray
    bc_string: np.ndarray
    bc_library: np.ndarray
    bc_kind: np.ndarray
    ambient: list
    frag_barcode: dict = field(default_factory=dict)
    twins: list = field(default_factory=list)


def plan_cells(rng, p, samples: list) -> Cells:
    """Cells per donor × cell type, their libraries, barcodes, doublets and unassigned cells."""
    n_s, c = len(samples), p.sc_cells_per_sample
    n = n_s * c
    cell_sample = np.repeat(np.arange(n_s), c)
    cell_library = np.arange(n) % p.sc_libraries
    weight = rng.lognormal(0.0, 0.5, n)
    donor = np.array([samples[s][1] for s in cell_sample])
    cell_barcode = np.arange(n)
    kind = np.full(n, "cell", dtype=object)
    for lib in range(p.sc_libraries):
        cells = np.flatnonzero(cell_library == lib)
        _doublets(rng, cells, donor, cell_barcode, kind, int(round(p.sc_doublet_fraction * len(cells))))
        single = cells[kind[cells] == "cell"]
        kind[rng.choice(single, int(round(p.sc_unassigned_fraction * len(cells))), replace=False)] = "unassigned"
    ids, cell_barcode = np.unique(cell_barcode, return_inverse=True)
    bc_kind = kind[ids].astype(str)
    bc_library = cell_library[ids]
    n_amb = [max(8, int((cell_library == lib).sum())) for lib in range(p.sc_libraries)]
    bc_kind = np.concatenate([bc_kind, np.full(sum(n_amb), "ambient")])
    bc_library = np.concatenate([bc_library, np.repeat(np.arange(p.sc_libraries), n_amb)])
    ambient = np.split(np.arange(len(ids), len(bc_kind)), np.cumsum(n_amb)[:-1])
    wl = whitelist()
    bc_string = np.empty(len(bc_kind), dtype=object)
    for lib in range(p.sc_libraries):  # distinct within a library, drawn independently per library
        mine = np.flatnonzero(bc_library == lib)
        bc_string[mine] = [s + SUFFIX for s in wl[np.sort(rng.choice(len(wl), len(mine), replace=False))]]
    return Cells(cell_sample, cell_library, cell_barcode, weight, bc_string.astype(str), bc_library, bc_kind,
                 [list(a) for a in ambient])


def _doublets(rng, cells, donor, cell_barcode, kind, n: int) -> None:
    """Give ``n`` pairs of cells of different donors one barcode each (in place)."""
    order = rng.permutation(cells)
    used: set = set()
    made = 0
    for a in order:
        if made == n:
            break
        if a in used:
            continue
        other = [b for b in order if b not in used and b != a and donor[b] != donor[a]]
        if not other:
            continue
        b = other[int(rng.integers(len(other)))]
        cell_barcode[b] = cell_barcode[a]
        kind[a] = kind[b] = "doublet"
        used.update((a, b))
        made += 1


def assign(rng, cells: Cells, p, s: int, f, acc: np.ndarray, g) -> "TwinDraw | None":
    """Give each fragment of sample ``s`` a barcode and plant its cross-cell twins.

    Parameters
    ----------
    f : fragments.Fragments (n,) the sample's bulk draw
    acc : float (2, n_elements) the sample's haplotype accessibilities (as drawn from)

    Returns the twins to read (``TwinDraw``), or None when none was planted; sets
    ``cells.frag_barcode[s]`` (n + n_twins,)."""
    mine = np.flatnonzero(cells.cell_sample == s)
    n = len(f.start)
    w = cells.cell_weight[mine]
    cell = mine[rng.choice(len(mine), n, p=w / w.sum())]
    bc = cells.cell_barcode[cell].copy()
    amb = rng.random(n) < p.sc_ambient_fraction
    for i in np.flatnonzero(amb):
        pool = cells.ambient[int(cells.cell_library[cell[i]])]
        bc[i] = pool[int(rng.integers(len(pool)))]
    _same_cell_duplicates(f, bc)
    cell[amb] = -1
    twins = _plant_twins(rng, cells, p, s, f, acc, g, cell, bc)
    cells.frag_barcode[s] = np.concatenate([bc, twins.barcode]) if twins else bc
    return twins


def _same_cell_duplicates(f, bc: np.ndarray) -> None:
    """Each PCR duplicate takes the barcode of a non-duplicate fragment with its ends and haplotype."""
    orig = pd.DataFrame({"start": f.start, "end": f.end, "hap": f.hap, "bc": bc})
    first = orig[~f.duplicate].drop_duplicates(["start", "end", "hap"])
    dup = orig[f.duplicate].reset_index().merge(first, on=["start", "end", "hap"], suffixes=("", "_orig"))
    bc[dup["index"].to_numpy()] = dup["bc_orig"].to_numpy()


@dataclass
class TwinDraw:
    """Cross-cell twins of one sample: fragments (m,) to read, their barcodes and sources."""

    frags: object
    barcode: np.ndarray
    source: np.ndarray
    element: np.ndarray
    rng: np.random.Generator

    def __bool__(self) -> bool:
        return len(self.barcode) > 0


def _plant_twins(rng, cells: Cells, p, s: int, f, acc: np.ndarray, g, cell: np.ndarray, bc: np.ndarray):
    """Twins of ``sc_twin_fraction`` of the strong-element fragments of assigned singlet cells."""
    from .fragments import Fragments

    centre = g.elements.center.to_numpy()
    order = np.argsort(centre)
    mid = (f.start + f.end) // 2
    k = np.clip(np.searchsorted(centre[order], mid), 1, len(order) - 1)
    near = np.where(np.abs(centre[order][k - 1] - mid) <= np.abs(centre[order][k] - mid), order[k - 1], order[k])
    tot = acc.sum(axis=0)
    strong = tot[near] >= np.quantile(tot, STRONG_QUANTILE)
    single = np.zeros(len(bc), bool)
    ok = cell >= 0
    single[ok] = cells.bc_kind[bc[ok]] == "cell"
    eligible = np.flatnonzero(f.from_element & ~f.duplicate & strong & single)
    src = np.sort(rng.choice(eligible, int(round(p.sc_twin_fraction * len(eligible))), replace=False))
    twin_bc, keep = [], []
    for i in src:
        pool = np.flatnonzero((cells.cell_sample == s) & (cells.cell_library == cells.cell_library[cell[i]]))
        pool = pool[(cells.bc_kind[cells.cell_barcode[pool]] == "cell") & (pool != cell[i])]
        if len(pool):
            twin_bc.append(cells.cell_barcode[pool[int(rng.integers(len(pool)))]])
            keep.append(i)
    src = np.array(keep, dtype=np.int64)
    e = near[src]
    share0 = acc[0, e] / np.maximum(acc[0, e] + acc[1, e], 1e-12)
    hap = (rng.random(len(src)) >= share0).astype(np.int8)
    fr = Fragments(f.start[src], f.end[src], hap, np.ones(len(src), bool), np.zeros(len(src), bool),
                   np.zeros(len(src), bool))
    cells.twins.append(pd.DataFrame({"sample": s, "twin": len(f.start) + np.arange(len(src)), "source": src,
                                     "element": g.elements.element.to_numpy()[e]}))
    return TwinDraw(fr, np.array(twin_bc, dtype=np.int64), src, e, np.random.default_rng(rng.integers(2 ** 63)))


def library_names(p) -> list[str]:
    return [f"lib{i + 1}" for i in range(p.sc_libraries)]


def write_libraries(d: Path, p, samples: list, cells: Cells, threads: int) -> dict:
    """Turn ``bams/<sample>.bam`` (removed after) into the libraries' BAMs, fragments files and
    barcode tables under ``libraries/``; write the single-cell truth. Returns summary counts."""
    import shutil

    from ..io import write_json, write_parquet

    libs = library_names(p)
    (d / "libraries").mkdir()
    pairs = pd.concat([_pair_table(d / "bams" / f"{sm}.bam", s, cells) for s, (sm, _, _) in enumerate(samples)],
                      ignore_index=True)
    pairs = _mark_duplicates(pairs, cells)
    log.info("libraries %s: %s aligned read pairs, %s flagged duplicates (per barcode)", ", ".join(libs),
             f"{len(pairs):,}", f"{int(pairs.dup.sum()):,}")
    dup = {(int(s), int(i)) for s, i in zip(pairs["sample"][pairs.dup], pairs["idx"][pairs.dup])}
    _write_bams(d, libs, samples, cells, dup, threads)
    with __import__("pysam").AlignmentFile(str(d / "libraries" / f"{libs[0]}.bam")) as bam:
        chroms = list(bam.references)
    frag_rows = {lib: _write_fragments(d / "libraries" / f"{lib}.fragments.tsv.gz", lib, pairs[pairs.library == k],
                                       cells, chroms) for k, lib in enumerate(libs)}
    log.info("libraries: BAMs written; fragments files: %s rows", frag_rows)
    table = barcode_truth(cells, samples, libs)
    for k, lib in enumerate(libs):
        _write_table(d / "libraries" / f"{lib}.barcodes.csv", table[(table.library == lib) & table.in_table])
    shutil.rmtree(d / "bams")
    write_parquet(table, d / "truth" / "barcodes.parquet")
    twins = _twin_truth(cells, samples, libs)
    write_parquet(twins, d / "truth" / "cross_cell_twins.parquet")
    collapse = position_collapse(pairs, cells, samples, libs)
    truth = {"libraries": libs, "suffix": SUFFIX, "fragment_min_mapq_exclusive": FRAGMENT_MIN_MAPQ,
             "tn5_shift": [TN5_LEFT, TN5_RIGHT], "barcodes_by_kind": table.groupby("kind").size().to_dict(),
             "cross_cell_twins_planted": {samples[s][0]: int((twins["sample"] == samples[s][0]).sum())
                                          for s in range(len(samples))},
             "position_collapse_nonduplicate_pairs": collapse,
             "duplicate_pairs": int(pairs.dup.sum()), "read_pairs": len(pairs), "fragments_file_rows": frag_rows}
    write_json(truth, d / "truth" / "single_cell.json")
    return truth


def _pair_table(bam_path: Path, s: int, cells: Cells) -> pd.DataFrame:
    """One row per aligned read pair of a sample BAM: sample, idx, barcode, library, ref,
    start (leftmost mate's reference_start), end (rightmost mate's reference_end), mapq (min of
    mates), and the pair's dedup key beside ``ref, start`` (:data:`DEDUP_KEY`): ``hi`` (rightmost
    mate's reference_start), ``lo_rev, hi_rev`` (the strand of the read at each end)."""
    import pysam

    idx, ref, start, end, hi, lo_rev, hi_rev, mq1 = [], [], [], [], [], [], [], []
    mq2: dict = {}
    with pysam.AlignmentFile(str(bam_path)) as bam:
        for r in bam.fetch(until_eof=True):
            if r.is_unmapped or r.is_secondary or r.is_supplementary or not r.is_proper_pair:
                continue
            i = int(r.query_name.rsplit(":", 1)[1])
            if r.is_read1:
                idx.append(i)
                ref.append(r.reference_id)
                left = min(r.reference_start, r.next_reference_start)
                start.append(left)
                end.append(left + abs(r.template_length))
                hi.append(max(r.reference_start, r.next_reference_start))
                strands = end_strands(r.reference_start, r.next_reference_start, r.is_reverse, r.mate_is_reverse)
                lo_rev.append(strands[0])
                hi_rev.append(strands[1])
                mq1.append(r.mapping_quality)
            else:
                mq2[i] = r.mapping_quality
    idx_a = np.array(idx, dtype=np.int64)
    bc = cells.frag_barcode[s][idx_a]
    return pd.DataFrame({"sample": s, "idx": idx_a, "barcode": bc, "library": cells.bc_library[bc],
                         "ref": np.array(ref, dtype=np.int32), "start": np.array(start, dtype=np.int64),
                         "end": np.array(end, dtype=np.int64), "hi": np.array(hi, dtype=np.int64),
                         "lo_rev": np.array(lo_rev, dtype=bool), "hi_rev": np.array(hi_rev, dtype=bool),
                         "mapq": np.minimum(mq1, [mq2.get(i, 0) for i in idx]).astype(np.int16)})


#: a read pair's duplicate key without the barcode, as the WASP step's dedup
#: (:func:`caveat.wasp_remap._dedup_keep`) keys it: both mates' starts and the strand of the read
#: at each end (not the fragment's interval: the rightmost mate's reference span, its end minus its
#: start, differs between two alignments of one fragment when one of them has a gap)
DEDUP_KEY = ["ref", "start", "hi", "lo_rev", "hi_rev"]


def end_strands(pos: int, mate_pos: int, reverse: bool, mate_reverse: bool) -> tuple[bool, bool]:
    """Whether the read at the pair's lower and upper start is reverse (mates starting together:
    reverse last), as :func:`caveat.wasp_remap._dedup_keep` orders them."""
    if pos != mate_pos:
        return (reverse, mate_reverse) if pos < mate_pos else (mate_reverse, reverse)
    return reverse and mate_reverse, reverse or mate_reverse


def _mark_duplicates(pairs: pd.DataFrame, cells: Cells) -> pd.DataFrame:
    """Per barcode, every read pair after the first (sample order, then read index) with one
    (barcode, :data:`DEDUP_KEY`) is a duplicate: the pairs the WASP step's per-barcode dedup
    collapses (Cell Ranger: one fragment per barcode and interval; the fragments file keeps that)."""
    key = ["barcode", *DEDUP_KEY]
    pairs = pairs.sort_values([*key, "sample", "idx"], kind="stable").reset_index(drop=True)
    pairs["dup"] = pairs.duplicated(key)
    return pairs


def _write_bams(d: Path, libs: list, samples: list, cells: Cells, dup: set, threads: int) -> None:
    """Tag every record (CB, CR, RG; 0x400 for duplicates) into its library's BAM, then sort and index."""
    import pysam

    first = d / "bams" / f"{samples[0][0]}.bam"
    with pysam.AlignmentFile(str(first)) as bam:
        hdr = bam.header.to_dict()
    hdr["HD"] = {"VN": hdr.get("HD", {}).get("VN", "1.6"), "SO": "unsorted"}
    pg = [dict(x, CL=x["CL"].split(" -1 ")[0] + " -1 R1.fq -2 R2.fq") if "CL" in x else x for x in hdr.get("PG", [])]
    outs = []
    for lib in libs:
        h = dict(hdr, RG=[{"ID": lib, "SM": lib, "LB": lib, "PL": "ILLUMINA"}], PG=pg)
        outs.append(pysam.AlignmentFile(str(d / "libraries" / f"{lib}.unsorted.bam"), "wb", header=h))
    try:
        for s, (sm, _, _) in enumerate(samples):
            fb = cells.frag_barcode[s]
            with pysam.AlignmentFile(str(d / "bams" / f"{sm}.bam")) as bam:
                for r in bam.fetch(until_eof=True):
                    i = int(r.query_name.rsplit(":", 1)[1])
                    b = fb[i]
                    bcs = cells.bc_string[b]
                    r.set_tag("RG", libs[cells.bc_library[b]], "Z")
                    r.set_tag("CB", bcs, "Z")
                    r.set_tag("CR", bcs[:-len(SUFFIX)], "Z")
                    if (s, i) in dup:
                        r.flag |= 0x400
                    outs[cells.bc_library[b]].write(r)
    finally:
        for o in outs:
            o.close()
    for lib in libs:
        tmp, out = d / "libraries" / f"{lib}.unsorted.bam", d / "libraries" / f"{lib}.bam"
        pysam.sort("--no-PG", "-@", str(max(0, threads - 1)), "-m", "512M", "-l", "6", "-T", str(out) + ".sorttmp",
                   "-o", str(out), str(tmp))
        tmp.unlink()
        pysam.index(str(out))


def _write_fragments(path: Path, lib: str, pairs: pd.DataFrame, cells: Cells, chroms: list) -> int:
    """Cell Ranger's fragments file of one library (bgzip + tabix). Returns its rows."""
    import pysam

    ok = pairs[pairs.mapq > FRAGMENT_MIN_MAPQ]
    fr = ok.groupby(["ref", "start", "end", "barcode"], sort=False).size().rename("count").reset_index()
    fr["chrom"] = np.array(chroms, dtype=object)[fr["ref"].to_numpy()]
    fr["s"] = fr["start"] + TN5_LEFT
    fr["e"] = fr["end"] + TN5_RIGHT
    fr["bc"] = cells.bc_string[fr["barcode"].to_numpy()]
    fr = fr.sort_values(["ref", "s", "e", "bc"], kind="stable")
    head = [f"# id={lib}", "# description=caveat simulate (10x-like library)", "# pipeline_name=caveat simulate",
            *[f"# primary_contig={c}" for c in chroms]]
    body = fr[["chrom", "s", "e", "bc", "count"]].to_csv(sep="\t", header=False, index=False)
    plain = path.with_suffix("")
    plain.write_text("\n".join(head) + "\n" + body)
    pysam.tabix_compress(str(plain), str(path), force=True)
    plain.unlink()
    pysam.tabix_index(str(path), preset="bed", force=True)
    return len(fr)


def barcode_truth(cells: Cells, samples: list, libs: list) -> pd.DataFrame:
    """One row per barcode: library, barcode, kind, the donor/cell type of its cell(s) (doublets:
    donor2/cell_type2 too), the labels its table row gives, and its read pairs."""
    rows = []
    n_pairs = np.zeros(len(cells.bc_string), np.int64)
    for fb in cells.frag_barcode.values():
        n_pairs += np.bincount(fb, minlength=len(n_pairs))
    for b in range(len(cells.bc_string)):
        mine = np.flatnonzero(cells.cell_barcode == b)
        who = [samples[cells.cell_sample[c]] for c in mine]
        kind = cells.bc_kind[b]
        d1, c1 = (who[0][1], who[0][2]) if who else ("", "")
        d2, c2 = (who[1][1], who[1][2]) if len(who) > 1 else ("", "")
        label = {"cell": d1, "unassigned": "unassigned", "doublet": "doublet"}.get(kind, "")
        rows.append((libs[cells.bc_library[b]], cells.bc_string[b], kind, d1, c1, d2, c2, kind != "ambient",
                     label, c1 if kind != "ambient" else "", int(n_pairs[b])))
    t = pd.DataFrame(rows, columns=["library", "barcode", "kind", "donor", "cell_type", "donor2", "cell_type2",
                                    "in_table", "table_donor", "table_cell_type", "read_pairs"])
    return t.sort_values(["library", "barcode"], kind="stable").reset_index(drop=True)


def _write_table(path: Path, t: pd.DataFrame) -> None:
    from ..io import write_text

    out = t[["barcode", "table_cell_type", "table_donor"]].rename(columns={"table_cell_type": "cell_type",
                                                                          "table_donor": "donor"})
    write_text(out.to_csv(index=False), path)


def _twin_truth(cells: Cells, samples: list, libs: list) -> pd.DataFrame:
    """The planted cross-cell twins: read names of twin and source, element, library, both barcodes."""
    t = pd.concat(cells.twins, ignore_index=True)
    names = np.array([s[0] for s in samples], dtype=object)[t["sample"].to_numpy()]
    tb = np.array([cells.frag_barcode[s][i] for s, i in zip(t["sample"], t["twin"])], dtype=np.int64)
    sb = np.array([cells.frag_barcode[s][i] for s, i in zip(t["sample"], t["source"])], dtype=np.int64)
    return pd.DataFrame({"sample": names, "library": np.array(libs, dtype=object)[cells.bc_library[tb]],
                         "twin_read": [f"{n}:{i:09d}" for n, i in zip(names, t["twin"])],
                         "source_read": [f"{n}:{i:09d}" for n, i in zip(names, t["source"])],
                         "element": t["element"].to_numpy(), "twin_barcode": cells.bc_string[tb],
                         "source_barcode": cells.bc_string[sb]})


def position_collapse(pairs: pd.DataFrame, cells: Cells, samples: list, libs: list) -> dict:
    """Per library and table-labelled donor × cell type: the non-duplicate read pairs a dedup by
    position alone (:data:`DEDUP_KEY`; barcodes ignored, as in bulk) would remove. Keys ``<lib>/<sample>``."""
    lab = {}
    for c in range(len(cells.cell_sample)):
        b = cells.cell_barcode[c]
        if cells.bc_kind[b] == "cell":
            lab[b] = samples[cells.cell_sample[c]][0]
    nd = pairs[~pairs.dup]
    name = nd["barcode"].map(lab)
    nd = nd[name.notna()].assign(name=name[name.notna()])
    out = {}
    for (lib, sm), g in nd.groupby(["library", "name"]):
        out[f"{libs[lib]}/{sm}"] = int(len(g) - len(g.drop_duplicates(DEDUP_KEY)))
    return out


def sheet_lines(p) -> list[str]:
    """The single-cell samplesheet: header (the union of bulk and library columns) and one row per library."""
    rows = ["sample,donor,cell_type,bam,peaks,fragments,barcodes"]
    rows += [f"{lib},,,libraries/{lib}.bam,,libraries/{lib}.fragments.tsv.gz,libraries/{lib}.barcodes.csv"
             for lib in library_names(p)]
    return rows
