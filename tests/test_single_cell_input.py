"""Single-cell samplesheet rows (issue 19, part 1): reading the libraries and their barcode
tables, the pooled-donor split into pseudobulk samples, and every promised error on bad input
(hand-built tiny BAM / fragments / tables)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pysam
import pytest

from caveat.errors import InputError
from caveat.samplesheet import read_samplesheet
from caveat.single_cell import barcode_group_codes, pseudobulk_samples, read_barcode_table, read_libraries

CELLS = {  # barcode (as in the BAM) -> (cell type, donor)
    "AAACGAAAGAAAGGGT-1": ("ctA", "D1"), "AAACGAAAGAACAGGA-1": ("ctA", "D2"),
    "AAACGAAAGACCATAA-1": ("ctB", "D1"), "AAACGAACAAGGTCGA-1": ("ctB", "D2"),
    "AAACGAACACTCAGAT-1": ("ctA", "D1"), "AAACTCGAGGCTAACG-1": ("ctB", "D3"),
}


def _bam(path: Path, barcodes, tag: str = "CB") -> Path:
    """Coordinate-sorted BAM: one read pair per barcode per 100 bp on chr1."""
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chr1", "LN": 100_000}]}
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, bc in enumerate(sorted(barcodes) * 3):
            for mate, (pos, rev) in enumerate(((1000 * i, False), (1000 * i + 150, True))):
                a = pysam.AlignedSegment()
                a.query_name, a.reference_id, a.reference_start = f"r{i}", 0, pos
                a.query_sequence, a.query_qualities = "A" * 50, pysam.qualitystring_to_array("I" * 50)
                a.cigarstring, a.mapping_quality = "50M", 60
                a.flag = 1 | 2 | (16 if rev else 32) | (64 if mate == 0 else 128)
                a.next_reference_id, a.next_reference_start = 0, 1000 * i + (150 if mate == 0 else 0)
                a.template_length = 200 if mate == 0 else -200
                if tag:
                    a.set_tag(tag, bc)
                out.write(a)
    pysam.index(str(path))
    return path


def _fragments(path: Path, barcodes, index: bool = True) -> Path:
    lines = [f"chr1\t{1000 * i + 4}\t{1000 * i + 195}\t{bc}\t1" for i, bc in enumerate(sorted(barcodes) * 3)]
    plain = path.with_suffix("")
    plain.write_text("# id=lib\n" + "\n".join(lines) + "\n")
    pysam.tabix_compress(str(plain), str(path), force=True)
    plain.unlink()
    if index:
        pysam.tabix_index(str(path), preset="bed", force=True)
    return path


def _table(path: Path, rows, header: str = "barcode,cell_type,donor", sep: str = ",") -> Path:
    path.write_text(header.replace(",", sep) + "\n" + "".join(sep.join(r) + "\n" for r in rows))
    return path


def _library(d: Path, name: str = "lib1", cells=CELLS, table_rows=None, **kw) -> dict:
    """A library's files; ``table_rows`` defaults to every cell with its labels."""
    bam = _bam(d / f"{name}.bam", cells, tag=kw.get("tag", "CB"))
    frag = _fragments(d / f"{name}.fragments.tsv.gz", kw.get("frag_cells", cells), index=kw.get("index", True))
    rows = table_rows if table_rows is not None else [(bc, ct, dn) for bc, (ct, dn) in cells.items()]
    table = _table(d / f"{name}.barcodes.csv", rows, header=kw.get("header", "barcode,cell_type,donor"))
    return {"bam": bam.name, "fragments": frag.name, "barcodes": table.name}


def _sheet(d: Path, libs: dict, bulk: str = "", donor: dict | None = None) -> Path:
    text = "sample,donor,cell_type,bam,peaks,fragments,barcodes\n" + bulk
    for name, f in libs.items():
        text += f"{name},{(donor or {}).get(name, '')},,{f['bam']},,{f['fragments']},{f['barcodes']}\n"
    p = d / "samplesheet.csv"
    p.write_text(text)
    return p


def test_pooled_donors_are_split_into_pseudobulk_samples(tmp_path):
    sheet = _sheet(tmp_path, {"lib1": _library(tmp_path)})
    libs, bcs = read_libraries(sheet, vcf_donors=["D1", "D2", "D3"])
    assert list(libs.columns[:4]) == ["library", "bam", "fragments", "barcodes_path"]
    assert libs.loc[0, "bam"] == str(tmp_path / "lib1.bam") and libs.loc[0, "cells"] == 6
    assert list(bcs.columns) == ["library", "barcode", "donor", "cell_type"]
    assert dict(zip(bcs.barcode, zip(bcs.cell_type, bcs.donor))) == CELLS
    pb = pseudobulk_samples(bcs)
    assert list(pb["sample"]) == ["D1_ctA", "D1_ctB", "D2_ctA", "D2_ctB", "D3_ctB"]
    assert list(pb["cells"]) == [2, 1, 1, 1, 1] and all(x == ["lib1"] for x in pb["library"])
    codes, groups = barcode_group_codes(bcs, "lib1")
    assert groups == list(zip(pb.donor, pb.cell_type))
    assert {bc: groups[k] for bc, k in codes.items()} == {bc: (dn, ct) for bc, (ct, dn) in CELLS.items()}


def test_two_libraries_share_codes_and_a_barcode_sequence_stays_per_library(tmp_path):
    other = {"AAACGAAAGAAAGGGT-1": ("ctB", "D3"), "TTTCGAAAGAAAGGGT-1": ("ctA", "D2")}
    (tmp_path / "b").mkdir()
    sheet = _sheet(tmp_path, {"lib1": _library(tmp_path),
                              "lib2": {k: f"b/{v}" for k, v in _library(tmp_path / "b", "lib2", other).items()}})
    _, bcs = read_libraries(sheet)
    pb = pseudobulk_samples(bcs)
    assert pb.set_index("sample").loc["D3_ctB", "library"] == ["lib1", "lib2"]
    c1, groups = barcode_group_codes(bcs, "lib1")
    c2, groups2 = barcode_group_codes(bcs, "lib2")
    assert groups == groups2 and len(c2) == 2
    assert groups[c1["AAACGAAAGAAAGGGT-1"]] == ("D1", "ctA") and groups[c2["AAACGAAAGAAAGGGT-1"]] == ("D3", "ctB")


def test_unassigned_doublet_negative_and_unlabelled_rows_are_dropped_and_counted(tmp_path):
    rows = [(bc, ct, dn) for bc, (ct, dn) in CELLS.items()]
    extra = {"AAACGAAAGTTTGGGT-1": ("ctA", "unassigned"), "AAACGAAAGTTTAAAA-1": ("ctB", "Doublet"),
             "AAACGAAAGTTTCCCC-1": ("ctA", "negative"), "AAACGAAAGTTTGGGG-1": ("", "D1"),
             "AAACGAAAGTTTACGT-1": ("ctB", "")}
    rows += [(bc, ct, dn) for bc, (ct, dn) in extra.items()]
    f = _library(tmp_path, cells={**CELLS, **extra}, table_rows=rows + rows[:1])  # a repeated row is fine
    libs, bcs = read_libraries(_sheet(tmp_path, {"lib1": f}))
    assert set(bcs.barcode) == set(CELLS) and libs.loc[0, "dropped"] == 5
    t, counts = read_barcode_table(tmp_path / f["barcodes"], "lib1")
    assert (counts["dropped_unassigned"], counts["dropped_unlabelled"], counts["repeated"]) == (3, 2, 1)


def test_one_donor_library_takes_the_rows_donor_and_tsv_tables_are_read(tmp_path):
    cells = {bc: v for bc, v in CELLS.items() if v[1] == "D1"}
    f = _library(tmp_path, cells=cells, table_rows=[])
    _table(tmp_path / "lib1.barcodes.tsv", [(bc, ct) for bc, (ct, _) in cells.items()], "barcode,cell_type", sep="\t")
    f["barcodes"] = "lib1.barcodes.tsv"
    _, bcs = read_libraries(_sheet(tmp_path, {"lib1": f}, donor={"lib1": "D1"}))
    assert set(bcs.donor) == {"D1"} and len(bcs) == 3


def test_bulk_and_single_cell_rows_in_one_sheet(tmp_path):
    (tmp_path / "bulk.bam").write_bytes(b"")
    sheet = _sheet(tmp_path, {"lib1": _library(tmp_path)}, bulk="D9_ctA,D9,ctA,bulk.bam,,,\n")
    bulk = read_samplesheet(sheet, libraries="skip")
    assert list(bulk["sample"]) == ["D9_ctA"] and list(bulk.columns) == ["sample", "donor", "cell_type", "bam", "peaks"]
    with pytest.raises(InputError, match="line 3: 'lib1' is a single-cell library"):
        read_samplesheet(sheet)
    libs, _ = read_libraries(sheet)
    assert list(libs["library"]) == ["lib1"]
    clash = _sheet(tmp_path, {"lib1": _library(tmp_path)}, bulk="X,D1,ctA,bulk.bam,,,\n")
    with pytest.raises(InputError, match="donor D1 × cell type ctA .* both in a bulk row and in a single-cell"):
        read_libraries(clash)


ROWS = [(bc, ct, dn) for bc, (ct, dn) in CELLS.items()]


def _sheet_with(d: Path, rows) -> Path:
    """A one-library sheet whose table has ``rows``."""
    return _sheet(d, {"lib1": _library(d, table_rows=rows)})


def _raises(sheet, match: str, file: str | None = None, **kw):
    with pytest.raises(InputError, match=match) as e:
        read_libraries(sheet, **kw)
    if file:
        assert e.value.file.endswith(file), e.value.file
    assert e.value.fix
    return e.value


@pytest.mark.parametrize("header, match", [("barcode,celltype,donor", "missing column.*cell_type"),
                                           ("barcode,cell_type,donor,score", "unknown column.*score")])
def test_table_columns_are_checked(tmp_path, header, match):
    rows = [(bc, ct, dn, "1")[:len(header.split(","))] for bc, (ct, dn) in CELLS.items()]
    f = _library(tmp_path, table_rows=rows, header=header)
    _raises(_sheet(tmp_path, {"lib1": f}), match, "lib1.barcodes.csv")


def test_unknown_samplesheet_column_and_missing_library_file(tmp_path):
    f = _library(tmp_path)
    p = tmp_path / "s.csv"
    p.write_text(f"sample,bam,fragments,barcodes,cells\nlib1,{f['bam']},{f['fragments']},{f['barcodes']},3\n")
    _raises(p, "unknown column.*cells", "s.csv")
    p.write_text(f"sample,bam,fragments,barcodes\nlib1,{f['bam']},,{f['barcodes']}\n")
    _raises(p, "line 2: library lib1 has no fragments", "s.csv")
    p.write_text(f"sample,bam,fragments,barcodes\nlib1,{f['bam']},nope.tsv.gz,{f['barcodes']}\n")
    _raises(p, "fragments file .*nope.tsv.gz of library lib1 not found")


def test_bam_without_cb_tags(tmp_path):
    e = _raises(_sheet(tmp_path, {"lib1": _library(tmp_path, tag="")}),
                "none of the first 36 records \\(the first, r0, at chr1:1\\) has a CB:Z tag",
                "lib1.bam")
    assert "possorted_bam.bam" in e.fix


def test_fragments_without_index(tmp_path):
    e = _raises(_sheet(tmp_path, {"lib1": _library(tmp_path, index=False)}), "no tabix index", "fragments.tsv.gz")
    assert "tabix -p bed" in e.fix


def test_table_naming_no_barcode_of_the_library(tmp_path):
    rows = [("TTTTTTTTTTTTTTTT-1", "ctA", "D1"), ("GGGGGGGGGGGGGGGG-1", "ctB", "D2")]
    e = _raises(_sheet_with(tmp_path, rows), "none of the table's 2 kept barcodes",
                "lib1.barcodes.csv")
    assert "this library's own barcode table" in e.fix


def test_some_table_barcodes_absent_is_a_warning_with_the_count(tmp_path, caplog):
    rows = ROWS + [("TTTTTTTTTTTTTTTT-1", "ctA", "D1")]
    with caplog.at_level("WARNING"):
        _, bcs = read_libraries(_sheet_with(tmp_path, rows))
    assert len(bcs) == 7 and "1 of 7 table barcodes have no reads in its fragments file" in caplog.text


@pytest.mark.parametrize("transform, problem, fix", [
    (lambda b: b[:-2], "no suffix where the BAM has '-1'", "AAACGAAAGAAAGGGT -> AAACGAAAGAAAGGGT-1"),
    (lambda b: b[:-2] + "-2", "suffix '-2' where the BAM has '-1'", "-> AAACGAAAGAAAGGGT-1"),
    (lambda b: "pbmc#" + b, "prefix 'pbmc#'", "pbmc#AAACGAAAGAAAGGGT-1 -> AAACGAAAGAAAGGGT-1"),
])
def test_barcode_suffix_mismatch_says_which_side_to_fix(tmp_path, transform, problem, fix):
    rows = [(transform(bc), ct, dn) for bc, (ct, dn) in CELLS.items()]
    e = _raises(_sheet_with(tmp_path, rows), problem, "lib1.barcodes.csv")
    assert "fix the barcode table" in e.fix and fix in e.fix


def test_fragments_with_another_suffix_than_the_bam(tmp_path):
    f = _library(tmp_path, frag_cells={bc[:-2]: v for bc, v in CELLS.items()})
    e = _raises(_sheet(tmp_path, {"lib1": f}), "no suffix where the BAM has '-1'", "fragments.tsv.gz")
    assert "same cellranger-atac run" in e.fix


@pytest.mark.parametrize("extra, problem, fix", [
    ([("AAACGAAAGAACAGGA-1", "ctB", "D2")],  # a barcode listed twice with different labels
     "AAACGAAAGAACAGGA-1 is listed twice with different labels: line 3 .*ctA.* and line 8 .*ctB", "one row per barcode"),
    ([("AAACGAAAGTTTGGGT-1", "ctC", "doublet"), ("AAACGAAAGTTTAAAA-1", "ctC", "")],  # a cell type with no barcodes
     "cell type 'ctC' has no barcodes left: its 2 row\\(s\\) \\(line 8, 9\\)", "remove the cell type's rows"),
    ([("TTTTTTTTTTTTTTTT-1", "ctC", "D1")],  # a cell type none of whose barcodes has reads
     "no barcode of cell type 'ctC' \\(1 in the table\\) has a fragment", "remove the cell type's rows"),
])
def test_bad_table_rows_are_named(tmp_path, extra, problem, fix):
    e = _raises(_sheet_with(tmp_path, ROWS + extra), problem, "lib1.barcodes.csv")
    assert fix in e.fix


def test_donor_not_in_the_vcf(tmp_path):
    e = _raises(_sheet(tmp_path, {"lib1": _library(tmp_path)}),
                "line 7: library lib1: donor 'D3' is not a sample of the VCF",
                "lib1.barcodes.csv", vcf_donors=["D1", "D2"])
    assert "VCF sample" in e.fix


def test_validate_names_the_table_line_of_a_donor_missing_from_the_vcf(tiny_sc_sim, tmp_path):
    # validate reads the VCF's samples before the libraries: the barcode table's line is named, not
    # the VCF (whose check, given the pseudobulk samples' donors, would otherwise fire first)
    import shutil

    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps
    from caveat.validate import validate_inputs

    study = Path(shutil.copytree(tiny_sc_sim, tmp_path / "study"))
    table = study / "libraries" / "lib1.barcodes.csv"
    lines = table.read_text().splitlines()
    bc, ct, _ = lines[2].split(",")
    lines[2] = f"{bc},{ct},D9"
    table.write_text("\n".join(lines) + "\n")
    steps = pipeline_steps()
    params = load_params(study / "params.yaml", {"outdir": str(tmp_path / "out")}, steps)
    with pytest.raises(InputError, match="line 3: library lib1: donor 'D9' is not a sample of the VCF") as e:
        validate_inputs(params, steps)
    assert e.value.file.endswith("lib1.barcodes.csv") and "VCF sample" in e.value.fix


def test_donor_in_row_and_table_or_nowhere(tmp_path):
    f = _library(tmp_path)
    _raises(_sheet(tmp_path, {"lib1": f}, donor={"lib1": "D1"}), "the table has a donor column and the samplesheet row")
    f = _library(tmp_path, table_rows=[(bc, ct) for bc, (ct, _) in CELLS.items()], header="barcode,cell_type")
    _raises(_sheet(tmp_path, {"lib1": f}), "no donor column, and the samplesheet row gives no donor")


def test_duplicate_library_ids_and_bad_names(tmp_path):
    f = _library(tmp_path)
    p = tmp_path / "s.csv"
    p.write_text("sample,bam,fragments,barcodes\n" + f"lib1,{f['bam']},{f['fragments']},{f['barcodes']}\n" * 2)
    _raises(p, "line 3: library 'lib1' appears more than once")
    rows = [(bc, "ct A" if ct == "ctA" else ct, dn) for bc, (ct, dn) in CELLS.items()]
    _raises(_sheet_with(tmp_path, rows), "line 2: cell_type 'ct A'")


def test_nothing_is_written(tmp_path):
    """Validation only reads: a failed check leaves the folder as it was."""
    _library(tmp_path, index=False)
    sheet = _sheet(tmp_path, {"lib1": _library(tmp_path, index=False)})
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InputError):
        read_libraries(sheet)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_pseudobulk_of_no_barcodes_is_empty():
    assert list(pseudobulk_samples(pd.DataFrame(columns=["library", "barcode", "donor", "cell_type"])).columns) == \
        ["sample", "donor", "cell_type", "library", "cells"]


def test_tables_only_when_reads_are_not_checked(tmp_path):
    """``check_reads=False`` (a process that does not read the library's reads) needs only the tables."""
    _table(tmp_path / "t.csv", ROWS)
    p = tmp_path / "s.csv"
    p.write_text("sample,bam,fragments,barcodes\nlib1,absent.bam,absent.tsv.gz,t.csv\n")
    libs, bcs = read_libraries(p, check_reads=False)
    assert libs.loc[0, "bam"] == str(tmp_path / "absent.bam") and len(bcs) == len(CELLS)
    _raises(p, "bam file .*absent.bam of library lib1 not found")
