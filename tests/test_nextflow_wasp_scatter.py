"""The Nextflow WASP scatter (issue 17 point 5): one WASP_REMAP task per sample × contig group.

Offline, in the style of tests/test_nextflow_runtime.py: the module and subworkflow texts are
read with nf_parse, and the Groovy they run (the ``--chrom`` options, the fan-out closure, the
plan's stub) is run with the Groovy inside the language-server jar, then parsed with bash and
the entry script's own parser.

Nextflow rules relied on (cited where used in the .nf files):
- ``groupTuple`` emits a group as soon as it holds ``size`` items, and with a ``groupKey(key, n)``
  key the size is ``n`` (nextflow-io/nextflow GroupTupleOp.collect ``final sz = size ?:
  sizeBy(key)``; GroupKey.getGroupSize); ``GroupKey.getGroupTarget`` gives the key back;
- a ``?`` in a ``stageAs`` folder is the file's 1-based index in its list
  (TaskInputResolver.expandWildcards0), so ``bams/?/*`` puts the i-th BAM and the i-th index in
  one folder.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import nf_lsp
import nf_parse
from caveat import contig_groups as cg
from caveat import wasp_remap as wr
from test_nextflow_runtime import groovy_jar, needs_java  # noqa: F401  (a fixture, and its skip mark)

REPO = Path(__file__).resolve().parents[1]
SUB = REPO / "subworkflows" / "local" / "allele_counts" / "main.nf"


def _closure_after(text: str, anchor: str) -> str:
    """The ``{ … }`` closure that follows ``anchor`` in ``text``."""
    i = text.index(anchor) + len(anchor) - 1
    assert text[i] == "{", anchor
    return text[i:nf_parse.matching(text, i) + 1]


def test_wasp_remap_takes_a_group_and_stages_no_fasta():
    mods = nf_parse.modules()
    proc = mods["WASP_REMAP"]
    assert "val(group_id), val(contigs)" in proc.input
    assert not re.search(r"\bfasta\b|\bfai\b", proc.input) and "--fasta" not in proc.script
    # outputs named by group; both carry the group id, so the gather can join them per part
    assert 'path("${prefix}.${group_id}.bam")' in proc.output
    assert re.search(r"val\(meta\), val\(group_id\), path\(\"\$\{prefix\}\.\$\{group_id\}\.stats\.json\"\)", proc.output)
    # the aligner index is staged by alignerIndexGlob's files only (not "${prefix}*": no FASTA)
    prep = (REPO / "subworkflows" / "local" / "prepare_inputs" / "main.nf").read_text()
    assert "files(alignerIndexGlob(aligner, aligner_index)" in prep and 'files("${aligner_index}*")' not in prep


def test_plan_stages_each_index_beside_its_bam_and_reads_the_fai():
    plan = nf_parse.modules()["WASP_REMAP_PLAN"]
    stage = re.findall(r"path\((bams|bais), stageAs: '([^']+)'\)", plan.input)
    assert dict(stage) == {"bams": "bams/?/*", "bais": "bams/?/*"}
    inv = nf_parse.script_invocations(plan)[0]
    assert inv.script == "wasp_remap" and {"--plan-groups", "--fai", "--out-groups"} <= set(inv.options)
    assert nf_parse.ext_args()["WASP_REMAP_PLAN"] == ["--wasp-group-bp"]


def test_subworkflow_scatters_over_the_plan_and_gathers_with_group_keys():
    text = nf_parse.strip_comments(SUB.read_text())
    # the plan: every sample's BAM and index in one task, with the FASTA's .fai
    assert "WASP_REMAP_PLAN(ch_plan_in, fasta.map { _fa, fai -> fai })" in text
    assert re.search(r"ch_groups = WASP_REMAP_PLAN\.out\.groups[\s\S]*?\.splitCsv\(sep: '\\t', header: true\)"
                     r"[\s\S]*?\.toList\(\)", text)
    # one task per sample × group; no per-contig channel left
    assert "WASP_REMAP(ch_units, ch_sites, index)" in text and "chroms" not in text
    # gather: parts joined per (sample, group), keyed by groupKey(meta, number of groups), unwrapped
    gather = text[text.index("ch_gather = "):text.index("WASP_REMAP_GATHER(ch_gather)")]
    assert ".join(WASP_REMAP.out.stats, by: [0, 1])" in gather
    assert ".combine(ch_groups.map { contig_groups -> contig_groups.size() })" in gather
    assert "groupKey(meta, n_groups)" in gather and ".groupTuple(sort: true)" in gather
    assert "key.getGroupTarget()" in gather


@needs_java
def test_fan_out_and_chrom_options_with_groovy(groovy_jar, tmp_path):
    """The subworkflow's flatMap closure makes one [meta, bam, bai, barcodes, group_id, contigs] per
    group (barcodes: a library's table, [] for a bulk sample), and WASP_REMAP's `def chrom_args`
    gives each contig to wasp_remap.py's --chrom as one word."""
    fan_out = _closure_after(SUB.read_text(), ".flatMap {")
    chrom_def = re.search(r"^\s*def chrom_args = (.*)$", nf_parse.modules()["WASP_REMAP"].script, re.M).group(1)
    contigs = ["chr1", "chrUn_KI270302v1", "HLA-A*01:01:01:01", "chrEBV|x"]
    script = f"""
import groovy.json.JsonOutput
def fanOut = {fan_out}
def units = fanOut(['id': 'S1'], 'S1.bam', 'S1.bam.bai', [], [['g001', ['chr1']], ['g002', {json.dumps(contigs[1:])}]])
def contigs = {json.dumps(contigs)}
def chromArgs = {chrom_def}
println JsonOutput.toJson([units: units, chrom_args: chromArgs])
"""
    out = json.loads(nf_lsp.run_groovy(script, jar=groovy_jar))
    assert out["units"] == [[{"id": "S1"}, "S1.bam", "S1.bam.bai", [], "g001", ["chr1"]],
                            [{"id": "S1"}, "S1.bam", "S1.bam.bai", [], "g002", contigs[1:]]]
    words = nf_parse.bash_words(out["chrom_args"])
    assert wr.build_parser().parse_args(words).chrom == contigs


@needs_java
def test_plan_stub_writes_a_plan_the_subworkflow_can_read(groovy_jar, tmp_path):
    """-stub: WASP_REMAP_PLAN's stub writes one group of every .fai contig, in the TSV form."""
    stub = nf_parse.modules()["WASP_REMAP_PLAN"].stub
    body = stub[stub.index('"""') + 3:stub.rindex('"""')]
    shell = nf_lsp.run_groovy(f'def fai = "genome.fa.fai"\nprint """{body}"""\n', jar=groovy_jar)
    (tmp_path / "genome.fa.fai").write_text("chr1\t100\t6\t60\t61\nchr2\t50\t120\t60\t61\n")
    subprocess.run(["bash", "-euo", "pipefail", "-c", shell], cwd=tmp_path, check=True)
    assert cg.read_plan(tmp_path / "wasp_groups.tsv") == {"g001": ["chr1", "chr2"]}
