"""Each step's ``<step>.summary.json`` is the same under both engines.

The local engine writes it inside the step; under Nextflow per-sample tasks write their figures
and a summary task calls the entry script with ``--summarize``. This test runs, on the tiny
study, the command lines the modules' ``script:`` blocks run (the per-sample commands, then the
summary), with the options of ``conf/modules.config`` for the study's params, and compares the
JSON with the local engine's (the ``tiny_run`` fixture). A guard test checks that the options used
here are the ones the modules pass, so the two cannot drift apart.

Steps covered: wasp_remap (WASP_REMAP_SITES and WASP_REMAP_PLAN once, WASP_REMAP per sample ×
contig group with a ``wasp_group_bp`` that splits the tiny genome into several multi-contig groups,
WASP_REMAP_GATHER per sample — whose BAM and stats must be the local engine's byte for byte —
then WASP_REMAP_SUMMARY from the gathered stats), count_alleles (COUNT_ALLELES per sample, on the
gathered BAMs → COUNT_ALLELES_SUMMARY), insertions (INSERTIONS per
sample, INSERTIONS_PSEUDOBULK per cell type → INSERTIONS_SUMMARY), score_variants (SCORE_VARIANTS
per trained model → SCORE_VARIANTS_MERGE, which also gives the local variant_scores.parquet). No
field is dropped from the comparison.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import nf_parse

HERE = Path(__file__).resolve().parent

#: module → the options its script block passes (besides ext.args), as this test builds them
OPTIONS = {
    "WASP_REMAP_SITES": {"--vcf", "--fasta", "--contig-map", "--donor", "--out-het-snps", "--out-het-indels",
                         "--out-summary", "--vcf-pass-only", "--no-vcf-pass-only"},
    "WASP_REMAP_PLAN": {"--plan-groups", "--fai", "--out-groups", "--wasp-group-bp"},
    "WASP_REMAP": {"--bam", "--het-snps", "--het-indels", "--sample", "--donor", "--chrom", "--aligner-index",
                   "--threads", "--out-bam", "--out-stats", "--aligner", "--aligner-args", "--wasp-max-snps-per-read",
                   "--wasp-max-versions", "--min-mapq", "--seed",
                   # a single-cell library (meta.library): tests/test_nextflow_single_cell.py runs them
                   "--barcode-tag", "--barcodes", "--table-donor"},
    "WASP_REMAP_STUDY": {"--study", "--check-reads", "--out-samples"},
    "WASP_REMAP_GATHER": {"--gather", "--part-stats", "--sample", "--out-bam", "--out-stats"},
    "WASP_REMAP_SUMMARY": {"--summarize", "--part-stats", "--sites-summary", "--out-summary"},
    "COUNT_ALLELES": {"--bam", "--het-snps", "--sample", "--donor", "--cell-type", "--threads", "--out",
                      "--min-mapq", "--min-base-quality", "--concordance-min-reads", "--concordance-min-both-alleles",
                      "--concordance-min-sites"},
    "COUNT_ALLELES_SUMMARY": {"--summarize", "--out", "--concordance-min-reads"},
    "COUNT_ALLELES_LIBRARY": {"--bam", "--het-snps", "--sample", "--barcodes", "--donor", "--out-dir", "--min-mapq",
                              "--min-base-quality"},
    "COUNT_ALLELES_MERGE": {"--merge", "--out", "--concordance-min-reads", "--concordance-min-both-alleles",
                            "--concordance-min-sites"},
    "INSERTIONS_FRAGMENTS": {"--fasta", "--fragments", "--barcodes", "--libraries", "--table-donor", "--no-pseudobulk",
                             "--group-stats", "--out-dir"},
    "INSERTIONS": {"--fasta", "--bam", "--sample", "--out-bw", "--stats", "--insertions-min-mapq"},
    "INSERTIONS_PSEUDOBULK": {"--fasta", "--pseudobulk", "--out-bw", "--stats"},
    "INSERTIONS_SUMMARY": {"--summarize", "--input", "--out-summary", "--insertions-source", "--insertions-min-mapq"},
    "SCORE_VARIANTS": {"--model", "--regime", "--replicate", "--train-replicates", "--cell-type", "--fasta", "--variant-sets", "--vcf", "--contig-map",
                       "--out-vcf", "--threads", "--out", "--summary", "--score-rc", "--no-score-rc", "--score-shifts",
                       "--score-batch-size", "--score-device", "--score-fast-ism", "--no-score-fast-ism",
                       # an outside model's task map and input length (meta.outside); the trained
                       # models compared here do not pass them
                       "--task-names", "--seq-len"},
    "SCORE_VARIANTS_MERGE": {"--merge", "--merge-vcf", "--out-vcf", "--model-summaries", "--out", "--summary"},
}


def test_the_commands_here_are_the_modules_commands():
    mods = nf_parse.modules()
    ext = nf_parse.ext_args()
    for name, opts in OPTIONS.items():
        inv = nf_parse.script_invocations(mods[name])
        used = {o for i in inv for o in i.options} | set(ext.get(name, []))
        assert used <= opts, (name, sorted(used - opts))
        assert {o for o in opts if not o.startswith("--no-")} - {"--vcf-pass-only"} <= used | {"--vcf-pass-only"}, name


def _cases(sim: Path, run: Path, work: Path, p: dict) -> list[list[list[str]]]:
    """The command lines (caveat argv), in stages that depend on the previous ones."""
    import pandas as pd

    sheet = pd.read_csv(sim / "samplesheet.csv")
    bam = {r.sample: str(sim / r.bam) for r in sheet.itertuples()}
    donors = sorted(set(sheet["donor"]))
    cts = sorted(set(sheet["cell_type"]))
    fasta = p["fasta"]
    sites = [
        ["wasp_remap", "--vcf", p["vcf"], "--fasta", fasta, *(["--contig-map", p["contig_map"]] if p.get("contig_map") else []),
         "--donor", *donors, "--out-het-snps", str(work / "het_snps.parquet"), "--out-het-indels",
         str(work / "het_indels.parquet"), "--out-summary", str(work / "het_sites.summary.json"),
         "--vcf-pass-only" if p["vcf_pass_only"] else "--no-vcf-pass-only"],
        ["wasp_remap", "--plan-groups", *(bam[s] for s in sorted(bam)), "--fai", f"{fasta}.fai",
         "--out-groups", str(work / "wasp_groups.tsv"), "--wasp-group-bp", str(p["wasp_group_bp"])]]
    count = [["count_alleles", "--bam", str(work / "wasp" / f"{r.sample}.bam"), "--het-snps", str(work / "het_snps.parquet"),
              "--sample", r.sample, "--donor", r.donor, "--cell-type", r.cell_type, "--threads", "1",
              "--out", str(work / "counts" / f"{r.sample}.parquet"), "--min-mapq", str(p["min_mapq"]),
              "--min-base-quality", str(p["min_base_quality"]), "--concordance-min-reads", str(p["concordance_min_reads"]),
              "--concordance-min-both-alleles", str(p["concordance_min_both_alleles"]),
              "--concordance-min-sites", str(p["concordance_min_sites"])] for r in sheet.itertuples()]
    tracks = [["insertions", "--fasta", fasta, "--bam", bam[r.sample], "--sample", r.sample,
               "--out-bw", str(work / "ins" / f"{r.sample}.bw"), "--stats", str(work / "ins" / f"{r.sample}.insertions.json"),
               "--insertions-min-mapq", str(p["insertions_min_mapq"])] for r in sheet.itertuples()]
    pseudo = [["insertions", "--fasta", fasta, "--pseudobulk",
               *sorted(str(work / "ins" / f"{s}.bw") for s in sheet.loc[sheet["cell_type"] == ct, "sample"]),
               "--out-bw", str(work / "ins" / f"{ct}.pseudobulk.bw"), "--stats", str(work / "ins" / f"{ct}.pseudobulk.json")]
              for ct in cts]
    summaries = [
        ["wasp_remap", "--summarize", "--part-stats", *sorted((str(work / "wasp" / f"{s}.stats.json")
                                                               for s in sheet["sample"]), reverse=True),
         "--sites-summary", str(work / "het_sites.summary.json"), "--out-summary", str(work / "wasp_remap.summary.json")],
        ["count_alleles", "--summarize", *sorted(str(work / "counts" / f"{s}.parquet") for s in sheet["sample"]),
         "--out", str(work / "count_alleles.summary.json"), "--concordance-min-reads", str(p["concordance_min_reads"])],
        ["insertions", "--summarize", *sorted([*(str(work / "ins" / f"{s}.insertions.json") for s in sheet["sample"]),
                                               *(str(work / "ins" / f"{ct}.pseudobulk.json") for ct in cts)]), "--input",
         str(sim / "samplesheet.csv"), "--out-summary", str(work / "insertions.summary.json"),
         "--insertions-source", p["insertions_source"], "--insertions-min-mapq", str(p["insertions_min_mapq"])],
    ]
    score, merge = _score_cases(run, work, p)
    return [sites + tracks + score, WASP_STAGES, count + pseudo, summaries + merge]


#: placeholder for the WASP filter and gather stages, built from the plan stage 0 writes
WASP_STAGES: list = []


def _wasp_cases(sim: Path, work: Path, p: dict) -> tuple[list[list[str]], list[list[str]]]:
    """WASP_REMAP per sample × group of the plan (with WASP_REMAP's ext.args), then
    WASP_REMAP_GATHER per sample, as the modules' script blocks run them."""
    import pandas as pd

    from caveat.contig_groups import read_plan

    plan = read_plan(work / "wasp_groups.tsv")
    filters, gathers = [], []
    for r in pd.read_csv(sim / "samplesheet.csv").itertuples():
        parts, gather = wasp_unit(r.sample, str(sim / r.bam), ["--donor", r.donor], plan, work, p)
        filters += parts
        gathers.append(gather)
    return filters, gathers


def wasp_unit(name: str, bam: str, select: list[str], plan: dict, work: Path, p: dict
              ) -> tuple[list[list[str]], list[str]]:
    """WASP_REMAP's command lines for one sample or library (``select``: its ``--donor`` and, for a
    library, barcode options) per contig group of ``plan``, with WASP_REMAP's ext.args; and its
    WASP_REMAP_GATHER command (→ ``work/wasp/<name>.bam``)."""
    ext = ["--aligner", p["aligner"], f"--aligner-args={p['aligner_args']}", "--wasp-max-snps-per-read",
           str(p["wasp_max_snps_per_read"]), "--wasp-max-versions", str(p["wasp_max_versions"]),
           "--min-mapq", str(p["min_mapq"]), "--seed", str(p["seed"])]
    parts = [work / "parts" / f"{name}.{gid}" for gid in plan]
    filters = [["wasp_remap", "--bam", bam, "--het-snps", str(work / "het_snps.parquet"),
                "--het-indels", str(work / "het_indels.parquet"), "--sample", name, *select,
                *(w for c in contigs for w in ("--chrom", c)), "--aligner-index", p["aligner_index"],
                "--threads", "1", "--out-bam", f"{part}.bam", "--out-stats", f"{part}.stats.json", *ext]
               for part, contigs in zip(parts, plan.values())]
    gather = ["wasp_remap", "--gather", *(f"{x}.bam" for x in parts), "--part-stats",
              *(f"{x}.stats.json" for x in parts), "--sample", name,
              "--out-bam", str(work / "wasp" / f"{name}.bam"), "--out-stats", str(work / "wasp" / f"{name}.stats.json")]
    return filters, gather


def _score_cases(run: Path, work: Path, p: dict) -> tuple[list[list[str]], list[list[str]]]:
    """SCORE_VARIANTS per trained model (TRAIN's fan-out: a regime, single_task per cell type), then
    SCORE_VARIANTS_MERGE, with SCORE_VARIANTS' ext.args for the study's params."""
    ext = ["--score-rc" if p["score_rc"] else "--no-score-rc", "--score-shifts", *map(str, p["score_shifts"]),
           "--score-batch-size", str(p["score_batch_size"]), "--score-device", p["score_device"],
           "--score-fast-ism" if p["score_fast_ism"] else "--no-score-fast-ism"]
    tables = [str(run / "variant_sets.parquet"), str(run / "variant_sets_stratum_matched.parquet")]
    score, vcf_tables = [], []
    for model in sorted((run / "models").glob("**/model.pt")):
        unit = model.parent.relative_to(run / "models").parts     # (regime,) or (single_task, cell type)
        name = "_".join(unit)
        vcf = []
        if p.get("score_vcf"):
            vcf_tables.append(str(work / "scores" / f"vcf_scores.{name}.parquet"))
            vcf = ["--vcf", p["score_vcf"], *(["--contig-map", p["contig_map"]] if p.get("contig_map") else []),
                   "--out-vcf", vcf_tables[-1]]
        score.append(["score_variants", "--model", str(model), "--regime", unit[0],
                      *(["--cell-type", unit[1]] if len(unit) > 1 else []), "--fasta", p["fasta"], "--variant-sets",
                      *tables, *vcf, "--threads", "1", "--out", str(work / "scores" / f"variant_scores.{name}.parquet"),
                      "--summary", str(work / "scores" / f"variant_scores.{name}.summary.json"), *ext])
    names = ["_".join(m.parent.relative_to(run / "models").parts) for m in (run / "models").glob("**/model.pt")]
    merge = [["score_variants", "--merge", *sorted(str(work / "scores" / f"variant_scores.{n}.parquet") for n in names),
              *(["--merge-vcf", *sorted(vcf_tables), "--out-vcf", str(work / "vcf_scores.parquet")] if vcf_tables else []),
              "--model-summaries", *sorted(str(work / "scores" / f"variant_scores.{n}.summary.json") for n in names),
              "--out", str(work / "variant_scores.parquet"), "--summary", str(work / "score_variants.summary.json")]]
    return score, merge


def _run(stage: list[list[str]], work: Path, n: int) -> None:
    spec = [{"id": str(i), "argv": argv, "cwd": str(work), "stdout": str(work / f"{n}.{i}.out"),
             "stderr": str(work / f"{n}.{i}.err")} for i, argv in enumerate(stage)]
    (work / f"cases{n}.json").write_text(json.dumps(spec))
    subprocess.run([sys.executable, str(HERE / "cli_forkserver.py"), str(work / f"cases{n}.json"),
                    str(work / f"results{n}.json")], check=True, timeout=900, cwd=work)
    codes = json.loads((work / f"results{n}.json").read_text())
    failed = {" ".join(stage[int(i)][:2]): (work / f"{n}.{i}.err").read_text()[-800:] for i, c in codes.items() if c}
    assert not failed, failed


@pytest.fixture(scope="module")
def nextflow_summaries(tiny_sim, tiny_run, tmp_path_factory):
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    p = load_params(tiny_sim / "params.yaml", {"outdir": str(tiny_run)}, pipeline_steps())
    # a user's wasp_group_bp small enough to cut the tiny genome (22 contigs, 260 kb) into
    # several groups of several contigs each: the gather then joins multi-contig parts
    p = {**p, "wasp_group_bp": 40_000}
    work = tmp_path_factory.mktemp("nf_summaries")
    for sub in ("counts", "ins", "scores", "parts", "wasp"):
        (work / sub).mkdir()
    n = 0
    for stage in _cases(tiny_sim, tiny_run, work, p):
        for sub in _wasp_cases(tiny_sim, work, p) if stage is WASP_STAGES else [stage]:
            _run(sub, work, n)
            n += 1
    return work


@pytest.mark.slow
@pytest.mark.parametrize("step", ["wasp_remap", "count_alleles", "insertions", "score_variants"])
def test_summary_equals_the_local_engines(step, nextflow_summaries, tiny_run):
    nf = json.loads((nextflow_summaries / f"{step}.summary.json").read_text())
    local = json.loads((tiny_run / f"{step}.summary.json").read_text())
    assert nf == local


@pytest.mark.slow
@pytest.mark.parametrize("step", ["wasp_remap", "count_alleles", "score_variants"])
def test_summary_files_are_identical(step, nextflow_summaries, tiny_run):
    """One function per step (``run_summary``), samples sorted: the very same bytes, whatever order
    the per-sample files came in (wasp_remap's stats are passed in reverse order here)."""
    name = f"{step}.summary.json"
    assert (nextflow_summaries / name).read_bytes() == (tiny_run / name).read_bytes()


@pytest.mark.slow
def test_group_scatter_gathers_to_the_local_wasp_outputs(nextflow_summaries, tiny_run):
    """WASP_REMAP per sample × contig group, then WASP_REMAP_GATHER: each sample's BAM (+ index)
    and stats are the local engine's byte for byte, with several multi-contig groups."""
    from caveat.contig_groups import read_plan

    plan = read_plan(nextflow_summaries / "wasp_groups.tsv")
    assert len(plan) >= 3 and max(len(c) for c in plan.values()) >= 2, plan
    gathered = sorted((nextflow_summaries / "wasp").iterdir())
    assert len(gathered) == 3 * len(list((tiny_run / "wasp").glob("*.bam")))
    for f in gathered:
        assert f.read_bytes() == (tiny_run / "wasp" / f.name).read_bytes(), f.name


@pytest.mark.slow
def test_merged_score_tables_are_the_local_ones(nextflow_summaries, tiny_run):
    """SCORE_VARIANTS_MERGE's table is the local variant_scores.parquet byte for byte (every task ×
    every cell type's variants; the scores do not depend on the thread count)."""
    for name in ("variant_scores.parquet", *(["vcf_scores.parquet"] if (tiny_run / "vcf_scores.parquet").exists() else [])):
        assert (nextflow_summaries / name).read_bytes() == (tiny_run / name).read_bytes(), name


def test_count_alleles_summary_follows_concordance_min_reads(tmp_path):
    """--summarize uses the run's concordance_min_reads (it used the default before)."""
    import pandas as pd

    from caveat.count_alleles import main

    t = pd.DataFrame({"sample": "S", "donor": "D", "cell_type": "c", "variant_id": ["a", "b", "c"],
                      "chrom": "chr1", "pos": [1, 2, 3], "ref": "A", "alt": "G", "ref_count": [3, 6, 1],
                      "alt_count": [0, 4, 1], "other_count": 0, "conflict_count": 0})
    t.to_parquet(tmp_path / "S.parquet")
    shares = {}
    for n in (2, 8):
        out = tmp_path / f"s{n}.json"
        assert main(["--summarize", str(tmp_path / "S.parquet"), "--out", str(out), "--concordance-min-reads", str(n)]) == 0
        s = json.loads(out.read_text())["per_sample"]["S"]
        shares[n] = (s["both_alleles_share"], s["concordance_sites"])
    # min 2 reads: all three sites covered, two show both alleles; min 8: only b (10 reads), which does
    assert shares[2][1] == 3 and shares[8][1] == 1
    assert shares[8][0] == 1.0 and abs(shares[2][0] - 2 / 3) < 1e-3
