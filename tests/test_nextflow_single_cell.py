"""The Nextflow pipeline on single-cell library rows (issue 19.5), checked without Nextflow.

* the samples table PREPARE_INPUTS has WASP_REMAP_STUDY write (``wasp_remap.py --study``): what
  read_study gives, with the staged relative paths, read back unchanged;
* the CLI pieces the new modules run: WASP_REMAP's ``--barcodes`` keeps the table's kept rows only
  (as the local engine), COUNT_ALLELES_MERGE's ``--merge`` refuses tables of two groups;
* the Groovy helpers of PREPARE_INPUTS (``libraryDonors``) run with Groovy against read_study;
* the wiring, parsed (tests/nf_parse.py);
* on the tiny single-cell study (``-m slow``), the command lines the modules' ``script:`` blocks
  run (WASP_REMAP per library × contig group, WASP_REMAP_GATHER, COUNT_ALLELES_LIBRARY,
  COUNT_ALLELES_MERGE, INSERTIONS_FRAGMENTS, INSERTIONS_PSEUDOBULK and the summaries) give the
  local engine's WASP BAMs and stats, counts tables, tracks and summaries.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import nf_lsp
import nf_parse
from caveat.errors import InputError
from test_engine_summary_parity import _run, wasp_unit
from caveat.single_cell import read_study, write_samples_table

REPO = Path(__file__).resolve().parents[1]
SUB = REPO / "subworkflows" / "local"

BC = ["AAACGAAAGAAAGGGT-1", "AAACGAAAGAAACCAT-1", "AAACGAAAGAAAGCGC-1", "AAACGAAAGAAATACC-1",
      "AAACGAAAGAAATGGG-1", "AAACGAAAGAACAAAG-1"]


@pytest.fixture
def mixed_sheet(tmp_path):
    """A bulk row (with peaks) and two libraries: lib1 pools D2 and D3 (a doublet and an
    unassigned row among its barcodes), lib2 is a one-donor library of D2 (donor on its row)."""
    (tmp_path / "peaks").mkdir()
    (tmp_path / "peaks" / "ctA.bed").write_text("chr1\t10\t20\n")
    (tmp_path / "lib1.barcodes.csv").write_text(
        "barcode,cell_type,donor\n"
        f"{BC[0]},ctA,D2\n{BC[1]},ctB,D3\n{BC[2]},ctA,D3\n{BC[3]},ctA,doublet\n{BC[4]},ctB,unassigned\n")
    (tmp_path / "lib2.barcodes.tsv").write_text(f"barcode\tcell_type\n{BC[0]}\tctB\n{BC[5]}\tctA\n")
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("sample,donor,cell_type,bam,peaks,fragments,barcodes\n"
                     "D1_ctA,D1,ctA,bams/D1_ctA.bam,peaks/ctA.bed,,\n"
                     "lib1,,,lib1.bam,,lib1.fragments.tsv.gz,lib1.barcodes.csv\n"
                     "lib2,D2,,lib2.bam,,lib2.fragments.tsv.gz,lib2.barcodes.tsv\n")
    return sheet


# ---------------------------------------------------------------- samples table

def test_samples_table_round_trip(mixed_sheet, tmp_path):
    """write_samples_table → read_study: the same samples (bulk row first, then the groups by
    donor and cell type, each with the libraries holding its cells)."""
    study = read_study(mixed_sheet, check_files=False)
    assert list(study.samples["sample"]) == ["D1_ctA", "D2_ctA", "D2_ctB", "D3_ctA", "D3_ctB"]
    table = tmp_path / "samples.csv"
    write_samples_table(study, table)
    back = read_study(table).samples
    pd.testing.assert_frame_equal(back.reset_index(drop=True), study.samples.reset_index(drop=True))
    assert back.loc[back["sample"] == "D2_ctA", "libraries"].item() == ["lib1", "lib2"]


def test_study_cli_writes_paths_relative_to_the_sheet(mixed_sheet, tmp_path):
    """WASP_REMAP_STUDY's table names the peaks as the staged samplesheet does (relative), so a
    task reading it from its own folder (CLUSTER_PEAKS: input_peaks/<i>/<name>) finds them."""
    from caveat.wasp_remap import main

    out = tmp_path / "samples.csv"
    assert main(["--study", str(mixed_sheet), "--out-samples", str(out)]) == 0
    t = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(t["peaks"]) == ["peaks/ctA.bed", "", "", "", ""]
    assert list(t["bam"]) == ["bams/D1_ctA.bam", "", "", "", ""]
    elsewhere = tmp_path / "task"
    (elsewhere / "peaks").mkdir(parents=True)
    shutil.copy(out, elsewhere / "samples.csv")
    got = read_study(elsewhere / "samples.csv").samples
    assert got["peaks"].iloc[0] == str((elsewhere / "peaks" / "ctA.bed").resolve())
    want = read_study(mixed_sheet, check_files=False).samples
    pd.testing.assert_frame_equal(got.drop(columns=["bam", "peaks"]), want.drop(columns=["bam", "peaks"]))


def test_wasp_cli_keeps_the_tables_kept_barcodes_only(mixed_sheet):
    """The doublet and unassigned rows are dropped (read_barcode_table), as the local engine's
    library job passes study.barcodes; read_barcode_list would keep them."""
    import argparse

    from caveat import barcodes as bcs
    from caveat.wasp_remap import _kept_barcodes

    d = mixed_sheet.parent
    a = argparse.Namespace(barcodes=str(d / "lib1.barcodes.csv"), sample="lib1", table_donor="")
    assert _kept_barcodes(a) == set(BC[:3])
    assert set(bcs.read_barcode_list(d / "lib1.barcodes.csv")) == set(BC[:5])
    study = read_study(mixed_sheet, check_files=False)
    for lib, table, donor in (("lib1", "lib1.barcodes.csv", ""), ("lib2", "lib2.barcodes.tsv", "D2")):
        a = argparse.Namespace(barcodes=str(d / table), sample=lib, table_donor=donor)
        assert _kept_barcodes(a) == set(study.barcodes.loc[study.barcodes["library"] == lib, "barcode"])


def test_wasp_cli_takes_several_donors_only_for_a_library(tmp_path):
    from caveat.wasp_remap import main

    with pytest.raises(SystemExit):
        main(["--bam", "x.bam", "--sample", "s", "--donor", "D1", "D2", "--het-snps", "h.parquet",
              "--aligner-index", "idx", "--out-bam", "o.bam", "--out-stats", "o.json"])


def test_merge_refuses_tables_of_two_groups(tmp_path):
    from caveat.count_alleles import main

    for name, donor in (("a", "D1"), ("b", "D2")):
        pd.DataFrame({"sample": [f"{donor}_ctA"], "donor": [donor], "cell_type": ["ctA"], "variant_id": ["v"],
                      "ref_count": [1], "alt_count": [1], "other_count": [0], "conflict_count": [0]}
                     ).to_parquet(tmp_path / f"{name}.parquet")
    with pytest.raises(InputError, match="2 groups"):
        main(["--merge", str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"), "--out", str(tmp_path / "o.parquet")])
    assert not (tmp_path / "o.parquet").exists()


# ---------------------------------------------------------------- Groovy helpers

def _function(path: Path, name: str) -> str:
    text = path.read_text()
    m = re.search(rf"^def\s+{name}\s*\([^)]*\)\s*\{{", text, re.M)
    assert m, f"{path}: no function {name}"
    return text[m.start():nf_parse.matching(text, m.end() - 1)]


@pytest.mark.skipif(shutil.which("java") is None, reason="Java >= 17 not installed: running Groovy needs it")
def test_library_donors_are_read_studys(mixed_sheet, tmp_path):
    """PREPARE_INPUTS.libraryDonors on the samples table's rows (maps, '' for empty cells, as
    Path.splitCsv gives them) = Study.library_donors, sorted."""
    from caveat.wasp_remap import main

    if nf_lsp.find_jar() is None:
        pytest.skip("no language-server jar (scripts/fetch_nextflow_ls.sh)")
    table = tmp_path / "samples.csv"
    main(["--study", str(mixed_sheet), "--out-samples", str(table)])
    rows = pd.read_csv(table, dtype=str, keep_default_na=False).to_dict("records")
    script = ("import groovy.json.JsonOutput\n" + _function(SUB / "prepare_inputs" / "main.nf", "libraryDonors")
              + f"\nprintln JsonOutput.toJson(libraryDonors(new groovy.json.JsonSlurper().parseText('{json.dumps(rows)}')))\n")
    got = json.loads(nf_lsp.run_groovy(script, jar=nf_lsp.find_jar()))
    study = read_study(mixed_sheet, check_files=False)
    assert sorted(map(tuple, [(lib, tuple(d)) for lib, d in got])) == [
        (lib, tuple(sorted(study.library_donors(lib)))) for lib in ("lib1", "lib2")]


# ---------------------------------------------------------------- wiring

def test_prepare_inputs_splits_rows_and_writes_the_samples_table():
    text = nf_parse.strip_comments((SUB / "prepare_inputs" / "main.nf").read_text())
    rows = _function(SUB / "prepare_inputs" / "main.nf", "samplesheetRows")
    # the schema's column order: [meta, bam, peaks, fragments, barcodes]
    assert "collect { meta, bam, peaks, fragments, barcodes ->" in rows
    assert re.search(r"samplesheetFile\(fragments, sheet_dir", rows) and re.search(r"samplesheetFile\(barcodes, sheet_dir", rows)
    assert "siblingFile(fragments, '.tbi', \"tabix -p bed" in text
    # the staged sheet names the i-th library's files as WASP_REMAP_STUDY stages them
    stage = dict(re.findall(r"path\((\w+), stageAs: '([^']+)'\)", nf_parse.modules()["WASP_REMAP_STUDY"].input))
    assert stage == {"barcodes": "barcodes/?/*", **{k: "libraries/?/*" for k in ("bams", "bais", "fragments", "tbis")}}
    assert "stagedSheetLine(meta, bam, peaks, fragments, barcodes, peak_files, ids)" in text
    assert "samplesheet = ch_samples_table" in text
    assert "sample,donor,cell_type,bam,peaks,fragments,barcodes" in text


def test_libraries_are_filtered_counted_merged_and_tracked():
    counts = nf_parse.strip_comments((SUB / "allele_counts" / "main.nf").read_text())
    assert "WASP_REMAP_PLAN(ch_plan_in" in counts and "ch_plan_in = ch_filter_in" in counts
    assert "ch_units = ch_filter_in" in counts
    assert "meta + [donors: names]" in counts
    merge = counts[counts.index("ch_merge_in = "):counts.index("COUNT_ALLELES_MERGE(ch_merge_in)")]
    assert "groupKey(meta, n_libraries)" in merge and ".combine(groups, by: 0)" in merge
    assert "COUNT_ALLELES.out.counts.mix(COUNT_ALLELES_MERGE.out.counts)" in counts
    tracks = nf_parse.strip_comments((SUB / "tracks" / "main.nf").read_text())
    assert "INSERTIONS_FRAGMENTS(ch_fragments_in, fasta)" in tracks
    assert ".mix(ch_group_tracks)" in tracks and ".mix(ch_group_stats, INSERTIONS_PSEUDOBULK.out.stats)" in tracks
    assert "wasp_bam.filter { row -> !row[0].library }" in tracks
    wf = nf_parse.strip_comments((REPO / "workflows" / "caveat.nf").read_text())
    assert "cellTypePeakFiles(params.cell_type_peaks)" in wf
    peaks = nf_parse.modules()["CLUSTER_PEAKS"]
    assert "stageAs: 'cell_type_peaks/*'" in peaks.input and "--cell-type-peaks 'cell_type_peaks/*'" in peaks.script


# ---------------------------------------------------------------- the module commands on tiny-sc

def _cases(sim: Path, work: Path, p: dict) -> dict[str, list[list[str]]]:
    """The command lines (caveat argv) of the first stages: het sites, samples table, plan."""
    study = read_study(sim / "samplesheet.csv", check_files=False)
    donors = sorted(set(study.samples["donor"]))
    libs = study.libraries
    return {"sites": [
        ["wasp_remap", "--vcf", p["vcf"], "--fasta", p["fasta"], "--donor", *donors,
         "--out-het-snps", str(work / "het_snps.parquet"), "--out-het-indels", str(work / "het_indels.parquet"),
         "--out-summary", str(work / "het_sites.summary.json"),
         "--vcf-pass-only" if p["vcf_pass_only"] else "--no-vcf-pass-only"],
        ["wasp_remap", "--study", str(sim / "samplesheet.csv"), "--check-reads", "--out-samples", str(work / "samples.csv")],
        ["wasp_remap", "--plan-groups", *sorted(libs["bam"]), "--fai", f"{p['fasta']}.fai",
         "--out-groups", str(work / "wasp_groups.tsv"), "--wasp-group-bp", str(p["wasp_group_bp"])]]}


def _wasp_cases(sim: Path, work: Path, p: dict) -> tuple[list, list]:
    """WASP_REMAP per library × group (the library's donors from the samples table), then the gather."""
    from caveat.contig_groups import read_plan

    plan = read_plan(work / "wasp_groups.tsv")
    table = read_study(work / "samples.csv")
    study = read_study(sim / "samplesheet.csv", check_files=False)
    filters, gathers = [], []
    for lib in study.libraries.itertuples():
        select = ["--donor", *sorted(table.library_donors(lib.library)), "--barcode-tag", "CB",
                  "--barcodes", lib.barcodes_path]
        parts, gather = wasp_unit(lib.library, lib.bam, select, plan, work, p)
        filters += parts
        gathers.append(gather)
    return filters, gathers


def _count_and_track_cases(sim: Path, work: Path, p: dict) -> list[list[list[str]]]:
    """COUNT_ALLELES_LIBRARY and INSERTIONS_FRAGMENTS; then COUNT_ALLELES_MERGE per group and
    INSERTIONS_PSEUDOBULK per cell type; then the summaries."""
    study = read_study(sim / "samplesheet.csv", check_files=False)
    table = read_study(work / "samples.csv").samples
    libs = study.libraries
    conc = ["--concordance-min-reads", str(p["concordance_min_reads"]), "--concordance-min-both-alleles",
            str(p["concordance_min_both_alleles"]), "--concordance-min-sites", str(p["concordance_min_sites"])]
    first = [["count_alleles", "--bam", str(work / "wasp" / f"{lib.library}.bam"), "--het-snps",
              str(work / "het_snps.parquet"), "--sample", lib.library, "--barcodes", lib.barcodes_path,
              "--out-dir", str(work / "groups" / lib.library), "--min-mapq", str(p["min_mapq"]),
              "--min-base-quality", str(p["min_base_quality"])] for lib in libs.itertuples()]
    first.append(["insertions", "--fasta", p["fasta"], "--fragments", *libs["fragments"],
                  "--barcodes", *libs["barcodes_path"], "--libraries", *libs["library"],
                  "--no-pseudobulk", "--group-stats", "--out-dir", str(work / "ins")])
    second = [["count_alleles", "--merge", *(str(work / "groups" / lib / f"{r.sample}.parquet") for lib in r.libraries),
               "--out", str(work / "counts" / f"{r.sample}.parquet"), *conc] for r in table.itertuples()]
    cts = list(dict.fromkeys(table["cell_type"]))
    second += [["insertions", "--fasta", p["fasta"], "--pseudobulk",
                *sorted(str(work / "ins" / f"{s}.bw") for s in table.loc[table["cell_type"] == ct, "sample"]),
                "--out-bw", str(work / "ins" / f"{ct}.pseudobulk.bw"), "--stats", str(work / "ins" / f"{ct}.pseudobulk.json")]
               for ct in cts]
    summaries = [
        ["wasp_remap", "--summarize", "--part-stats", *sorted(str(work / "wasp" / f"{lib}.stats.json") for lib in libs["library"]),
         "--sites-summary", str(work / "het_sites.summary.json"), "--out-summary", str(work / "wasp_remap.summary.json")],
        ["count_alleles", "--summarize", *sorted(str(work / "counts" / f"{s}.parquet") for s in table["sample"]),
         "--out", str(work / "count_alleles.summary.json"), "--concordance-min-reads", str(p["concordance_min_reads"])],
        ["insertions", "--summarize", *sorted([*(str(work / "ins" / f"{s}.insertions.json") for s in table["sample"]),
                                               *(str(work / "ins" / f"{ct}.pseudobulk.json") for ct in cts)]),
         "--input", str(work / "samples.csv"), "--out-summary", str(work / "insertions.summary.json"),
         "--insertions-source", p["insertions_source"], "--insertions-min-mapq", str(p["insertions_min_mapq"])],
    ]
    return [first, second, summaries]


@pytest.fixture(scope="module")
def nextflow_sc(tiny_sc_sim, tiny_sc_run, tmp_path_factory):
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    p = load_params(tiny_sc_sim / "params.yaml", {"outdir": str(tiny_sc_run)}, pipeline_steps())
    p = {**p, "wasp_group_bp": 40_000}  # several multi-contig groups, as the bulk parity test
    work = tmp_path_factory.mktemp("nf_sc")
    for sub in ("groups", "counts", "ins", "parts", "wasp"):
        (work / sub).mkdir()
    _run(_cases(tiny_sc_sim, work, p)["sites"], work, 0)
    filters, gathers = _wasp_cases(tiny_sc_sim, work, p)
    _run(filters, work, 1)
    _run(gathers, work, 2)
    for n, stage in enumerate(_count_and_track_cases(tiny_sc_sim, work, p), start=3):
        _run(stage, work, n)
    return work


@pytest.mark.slow
def test_wasp_outputs_are_the_local_engines(nextflow_sc, tiny_sc_run):
    """Each library's gathered BAM (+ index) and stats, the het sites and the run's WASP summary:
    the local engine's bytes (the filter once per library, kept barcodes only, every pooled donor)."""
    for lib in ("lib1", "lib2"):
        for name in (f"{lib}.bam", f"{lib}.bam.bai", f"{lib}.stats.json"):
            assert (nextflow_sc / "wasp" / name).read_bytes() == (tiny_sc_run / "wasp" / name).read_bytes(), name
    assert (nextflow_sc / "het_snps.parquet").read_bytes() == (tiny_sc_run / "het_snps.parquet").read_bytes()
    assert (nextflow_sc / "wasp_remap.summary.json").read_bytes() == (tiny_sc_run / "wasp_remap.summary.json").read_bytes()


@pytest.mark.slow
def test_group_counts_are_the_local_engines(nextflow_sc, tiny_sc_run):
    """Every group's counts table (per library, then summed across libraries) and the summary."""
    got = sorted(p.name for p in (nextflow_sc / "counts").iterdir())
    assert got == sorted(p.name for p in (tiny_sc_run / "counts").glob("*.parquet")) and len(got) == 9
    for name in got:
        assert (nextflow_sc / "counts" / name).read_bytes() == (tiny_sc_run / "counts" / name).read_bytes(), name
    name = "count_alleles.summary.json"
    assert (nextflow_sc / name).read_bytes() == (tiny_sc_run / name).read_bytes()


@pytest.mark.slow
def test_tracks_and_insertions_summary_are_the_local_engines(nextflow_sc, tiny_sc_run):
    """Group tracks from the fragments files and the pseudobulk over them: the same values per
    contig; insertions.summary.json the same (source `fragments` for the groups)."""
    import pyBigWig

    local = sorted(p.name for p in (tiny_sc_run / "insertions").glob("*.bw"))
    assert sorted(p.name for p in (nextflow_sc / "ins").glob("*.bw")) == local
    for name in local:
        with pyBigWig.open(str(nextflow_sc / "ins" / name)) as a, pyBigWig.open(str(tiny_sc_run / "insertions" / name)) as b:
            assert a.chroms() == b.chroms()
            for c, n in a.chroms().items():
                assert a.intervals(c, 0, n) == b.intervals(c, 0, n), (name, c)
    nf = json.loads((nextflow_sc / "insertions.summary.json").read_text())
    assert nf == json.loads((tiny_sc_run / "insertions.summary.json").read_text())
    assert {s["source"] for s in nf["samples"].values()} == {"fragments"}


@pytest.mark.skipif(shutil.which("java") is None, reason="Java >= 17 not installed: running Groovy needs it")
def test_study_stub_writes_the_bulk_sheets_table(tmp_path):
    """-stub: WASP_REMAP_STUDY's stub (awk over the staged sheet) writes, for a bulk sheet as
    PREPARE_INPUTS stages it, the table `wasp_remap.py --study` writes."""
    import subprocess

    from caveat.wasp_remap import main

    if nf_lsp.find_jar() is None:
        pytest.skip("no language-server jar (scripts/fetch_nextflow_ls.sh)")
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("sample,donor,cell_type,bam,peaks,fragments,barcodes\n"
                     "D1_ctA,D1,ctA,D1_ctA.bam,input_peaks/1/ctA.bed,,\nD2_ctA,D2,ctA,D2_ctA.bam,,,\n"
                     "D1_ctB,D1,ctB,D1_ctB.bam,input_peaks/2/ctB.bed,,\n")
    stub = nf_parse.modules()["WASP_REMAP_STUDY"].stub
    body = stub[stub.index('"""') + 3:stub.rindex('"""')]
    shell = nf_lsp.run_groovy(f'def samplesheet = "samplesheet.csv"\nprint """{body}"""\n', jar=nf_lsp.find_jar())
    subprocess.run(["bash", "-euo", "pipefail", "-c", shell], cwd=tmp_path, check=True)
    assert main(["--study", str(sheet), "--out-samples", str(tmp_path / "real.csv")]) == 0
    assert (tmp_path / "samples.csv").read_text() == (tmp_path / "real.csv").read_text()


def test_study_cli_probes_the_libraries_reads_when_asked(mixed_sheet, tmp_path):
    """--check-reads (WASP_REMAP_STUDY passes it): the libraries' BAM and fragments are opened as
    `caveat run`'s validate opens them; here lib1's BAM is missing, which the table-only read allows."""
    from caveat.wasp_remap import main

    assert main(["--study", str(mixed_sheet), "--out-samples", str(tmp_path / "a.csv")]) == 0
    with pytest.raises(InputError, match="lib1.bam"):
        main(["--study", str(mixed_sheet), "--check-reads", "--out-samples", str(tmp_path / "b.csv")])
    assert not (tmp_path / "b.csv").exists()



@pytest.mark.skipif(shutil.which("java") is None, reason="Java >= 17 not installed: running Groovy needs it")
def test_staged_sheet_names_the_files_where_the_task_stages_them(mixed_sheet, tmp_path):
    """PREPARE_INPUTS.stagedSheetLine (run with Groovy) on the rows samplesheetRows gives for the
    mixed sheet; the files laid out as WASP_REMAP_STUDY and CLUSTER_PEAKS stage them
    (libraries/<i>/, barcodes/<i>/, input_peaks/<i>/: Nextflow TaskInputResolver.expandWildcards0);
    `wasp_remap.py --study` there gives read_study's samples of the user's sheet, its peaks the
    user's file."""
    import os

    from caveat.wasp_remap import main

    if nf_lsp.find_jar() is None:
        pytest.skip("no language-server jar (scripts/fetch_nextflow_ls.sh)")
    d = mixed_sheet.parent
    rows = [  # [meta, bam, peaks, fragments, barcodes] as samplesheetRows makes them ([] for empty)
        ("[id: 'D1_ctA', donor: 'D1', cell_type: 'ctA']", "bams/D1_ctA.bam", "peaks/ctA.bed", None, None),
        ("[id: 'lib1', library: true, table_donor: '']", "lib1.bam", None, "lib1.fragments.tsv.gz", "lib1.barcodes.csv"),
        ("[id: 'lib2', library: true, table_donor: 'D2']", "lib2.bam", None, "lib2.fragments.tsv.gz", "lib2.barcodes.tsv")]

    def path(v):
        return f"java.nio.file.Paths.get('{d / v}')" if v else "[]"

    # Path.name is Nextflow's extension (nextflow.extension.FilesEx.getName(Path)): given here
    script = ("ExpandoMetaClass.enableGlobally()\n"
              "java.nio.file.Path.metaClass.getName = { -> ((java.nio.file.Path) delegate).getFileName().toString() }\n"
              + _function(SUB / "prepare_inputs" / "main.nf", "stagedSheetLine")
              + f"\ndef peak_files = [{path('peaks/ctA.bed')}]\ndef ids = ['lib1', 'lib2']\n"
              + "".join(f"println stagedSheetLine({m}, {', '.join(path(v) for v in vs)}, peak_files, ids)\n"
                        for m, *vs in rows))
    lines = nf_lsp.run_groovy(script, jar=nf_lsp.find_jar()).splitlines()
    task = tmp_path / "task"
    task.mkdir()
    (task / "samplesheet.csv").write_text("sample,donor,cell_type,bam,peaks,fragments,barcodes\n" + "\n".join(lines) + "\n")
    for staged, src in (("input_peaks/1/ctA.bed", "peaks/ctA.bed"), ("barcodes/1/lib1.barcodes.csv", "lib1.barcodes.csv"),
                        ("barcodes/2/lib2.barcodes.tsv", "lib2.barcodes.tsv")):
        (task / staged).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(d / src, task / staged)
    assert lines[1] == "lib1,,,libraries/1/lib1.bam,,libraries/1/lib1.fragments.tsv.gz,barcodes/1/lib1.barcodes.csv"
    assert main(["--study", str(task / "samplesheet.csv"), "--out-samples", str(task / "samples.csv")]) == 0
    got = read_study(task / "samples.csv").samples
    want = read_study(mixed_sheet, check_files=False).samples
    pd.testing.assert_frame_equal(got.drop(columns=["bam"]), want.drop(columns=["bam"]))


@pytest.mark.slow
def test_cluster_peaks_on_the_samples_table_and_staged_peaks_is_the_local_engines(nextflow_sc, tiny_sc_sim,
                                                                                    tiny_sc_run, tmp_path):
    """CLUSTER_PEAKS as its task runs it: the samples table as --input, the group tracks and
    pseudobulks under insertions/, params.cell_type_peaks' files under cell_type_peaks/ (the
    tiny-sc params give peaks/*.bed: a library row has none), the blacklist under blacklist/, the
    options conf/modules.config passes: peaks.parquet, the donor counts and the summary are the
    local engine's bytes."""
    import os

    from caveat.cluster_peaks import main
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    p = load_params(tiny_sc_sim / "params.yaml", {"outdir": str(tiny_sc_run)}, pipeline_steps())
    assert p["cell_type_peaks"] and p["blacklist"]
    for sub, files in (("insertions", (nextflow_sc / "ins").glob("*.bw")),
                       ("cell_type_peaks", (tiny_sc_sim / "peaks").glob("*.bed")), ("blacklist", [p["blacklist"]])):
        (tmp_path / sub).mkdir()
        for f in files:
            os.symlink(f, tmp_path / sub / Path(f).name)
    shutil.copy(nextflow_sc / "samples.csv", tmp_path / "samplesheet.task.csv")
    ext = []
    for opt in nf_parse.ext_args()["CLUSTER_PEAKS"]:
        value = p[opt[2:].replace("-", "_")]
        ext += [opt, str(value)] if value is not None else []
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the task's folder: the staged globs are relative
    try:
        assert main(["--input", "samplesheet.task.csv", "--fasta", p["fasta"], "--insertions", "insertions",
                     "--blacklist", f"blacklist/{Path(p['blacklist']).name}", "--cell-type-peaks", "cell_type_peaks/*",
                     "--outdir", ".", *ext]) == 0
    finally:
        os.chdir(cwd)
    for name in ("peaks.parquet", "peaks_donor_counts.parquet", "cluster_peaks.summary.json"):
        assert (tmp_path / name).read_bytes() == (tiny_sc_run / name).read_bytes(), name
