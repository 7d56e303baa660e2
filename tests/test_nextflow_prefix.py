"""``task.ext.prefix``: modules name their per-sample (per-cell-type, per-model) outputs after it.

nf-core convention: a module names its outputs ``${prefix}…`` with
``prefix = task.ext.prefix ?: "${meta.id}"`` assigned in ``script:`` *and* ``stub:`` (the stub runs
instead of the script under ``-stub``), *without* ``def``, so that the output declarations can
read it (nf-core/sarek ``modules/nf-core/samtools/merge/main.nf``: ``prefix = task.ext.prefix ?:
"${meta.id}"`` in both blocks, ``path("${prefix}.bam")`` in ``output:``). Nextflow resolves an
output file name from "variables in the input section or in the script global context"
(nextflow-io/nextflow ``docs/process.mdx``, "Dynamic output file names"); the language server
accepts the assignment because "in processes and workflows, variables can be declared without
`def` and are treated as variables scoped to the process" (nf-lang
``VariableScopeVisitor.checkImplicitDeclaration``), and it visits ``script``/``stub`` before the
outputs (``visitProcessV1``). A ``def prefix`` would be local to the script closure: the output
declaration would not see it.

The tests evaluate each module's ``script:``/``stub:`` and output patterns with Groovy (the
runtime inside the language-server jar), once with ``ext.prefix`` unset and once set, and check
that every declared output file is a file the block writes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import nf_lsp
import nf_parse

REPO = Path(__file__).resolve().parents[1]
ASSIGN = 'prefix = task.ext.prefix ?: "${meta.id}"'
#: Processes whose files a later task looks up by name (not through the channel): the pipeline's
#: config must leave their prefix at meta.id. CLUSTER_PEAKS reads insertions/<sample>.bw and
#: <cell type>.pseudobulk.bw (cluster_peaks.py, --insertions); INSERTIONS_SUMMARY reads
#: <sample>.insertions.json and <cell type>.pseudobulk.json (insertions.py summarize).
READ_BY_NAME = ("INSERTIONS", "INSERTIONS_PSEUDOBULK")

needs_java = pytest.mark.skipif(shutil.which("java") is None,
                                reason="Java >= 17 not installed: running Groovy needs it")


def output_patterns(proc: nf_parse.Process) -> list[str]:
    """The file names the ``output:`` section declares (``path("…")``), as written."""
    return re.findall(r"\bpath\(\s*\"([^\"]+)\"", proc.output)


def prefix_problems(proc: nf_parse.Process) -> list[str]:
    """Where a module names outputs after meta.id instead of the prefix, or sets the prefix wrong."""
    out = []
    pats = output_patterns(proc)
    for p in pats:
        if "${meta.id}" in p:
            out.append(f"{proc.name}: output {p!r} named after meta.id, not ${{prefix}}")
    if any("${prefix}" in p for p in pats):
        for name, block in (("script", proc.script), ("stub", proc.stub)):
            if not re.search(r"^[ \t]*" + re.escape(ASSIGN), block, re.M):
                out.append(f"{proc.name}: {name}: no `{ASSIGN}`")
            if re.search(r"\bdef\s+prefix\b", block):
                out.append(f"{proc.name}: {name}: `def prefix` is local: the outputs cannot see it")
    return out


def test_every_module_names_its_outputs_after_the_prefix():
    mods = nf_parse.modules()
    assert [p for m in mods.values() for p in prefix_problems(m)] == []
    users = sorted(n for n, m in mods.items() if any("${prefix}" in p for p in output_patterns(m)))
    # SCORE_VARIANTS_MERGE writes the run's variant_scores.parquet / score_variants.summary.json: fixed names
    assert users == ["COUNT_ALLELES", "COUNT_ALLELES_MERGE", "INSERTIONS", "INSERTIONS_PSEUDOBULK", "SCORE_VARIANTS",
                     "TRAIN", "WASP_REMAP", "WASP_REMAP_GATHER"]


def test_prefix_check_fails_on_meta_id_outputs_and_on_def(tmp_path):
    src = (REPO / "modules" / "local" / "count_alleles" / "main.nf").read_text()
    broken = tmp_path / "main.nf"
    broken.write_text(src.replace('path("${prefix}.parquet")', 'path("${meta.id}.parquet")'))
    assert prefix_problems(nf_parse.read_process(broken)) == [
        "COUNT_ALLELES: output '${meta.id}.parquet' named after meta.id, not ${prefix}"]
    broken.write_text(src.replace("    stub:\n    prefix =", "    stub:\n    def prefix ="))
    probs = prefix_problems(nf_parse.read_process(broken))
    assert probs == ["COUNT_ALLELES: stub: no `prefix = task.ext.prefix ?: \"${meta.id}\"`",
                     "COUNT_ALLELES: stub: `def prefix` is local: the outputs cannot see it"], probs


def test_the_pipeline_config_keeps_the_name_read_outputs_at_meta_id():
    text = nf_parse.strip_comments((REPO / "conf" / "modules.config").read_text())
    for m in re.finditer(r"withName:\s*'([A-Z0-9_:|]+)'\s*\{", text):
        names = {n.split(":")[-1] for n in m.group(1).split("|")}
        if names & set(READ_BY_NAME):
            assert "ext.prefix" not in nf_parse.block(text, m), m.group(1)


# ---------------------------------------------------------------- what the blocks write, with Groovy

#: Unknown variables (the process inputs) evaluate to their own name, so `${x}`, `x.join(' ')`
#: and `x ? … : …` (true: optional inputs given) work.
_GROOVY = r"""
import groovy.json.*
class Name {
    String n
    Name(String n) { this.n = n }
    String toString() { n }
    String join(String sep) { n }
    boolean asBoolean() { true }
}
class Inputs extends Binding {
    Object getVariable(String n) { hasVariable(n) ? super.getVariable(n) : new Name(n) }
}
def cases = new JsonSlurper().parseText(new File(args[0]).text)
def out = [:]
cases.each { key, c ->
    def b = new Inputs()
    b.setVariable('meta', c.meta)
    b.setVariable('task', [ext: [prefix: c.prefix], cpus: 2, process: 'P', accelerator: null])
    def shell = new GroovyShell(b)
    def text = shell.evaluate(c.block).toString()
    def names = c.outputs.collect { p -> shell.evaluate('"' + p + '"').toString() }
    out[key] = [text: text, outputs: names, patterns: c.outputs]
}
println JsonOutput.toJson(out)
"""

META = {"id": "S1", "donor": "D1", "cell_type": "ctA", "regime": "multitask", "model_path": "multitask",
        "summary": "s.summary.json"}


def written(text: str, name: str) -> bool:
    """Whether the block's text names ``name`` as a whole word (an option value, a touch, an echo target)."""
    return re.search(r"(?:^|[\s>])" + re.escape(name) + r"(?:$|\s)", text, re.M) is not None


@pytest.fixture(scope="module")
def evaluated():
    if nf_lsp.find_jar() is None:
        subprocess.run([str(REPO / "scripts" / "fetch_nextflow_ls.sh")], check=True, timeout=600)
    cases = {}
    for name, proc in nf_parse.modules().items():
        pats = output_patterns(proc)
        if not any("${prefix}" in p for p in pats):
            continue
        for block in ("script", "stub"):
            for prefix in (None, "PFX"):
                cases[f"{name}|{block}|{prefix}"] = {"meta": META, "prefix": prefix, "outputs": pats,
                                                     "block": getattr(proc, block)}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cases, f)
    try:
        return json.loads(nf_lsp.run_groovy(_GROOVY, [f.name]))
    finally:
        Path(f.name).unlink()


@needs_java
def test_declared_outputs_are_the_files_script_and_stub_write(evaluated):
    """With ext.prefix unset the files are named after meta.id (S1), with it set after the prefix
    (PFX), and each block writes every declared output: the output globs still match."""
    assert evaluated
    missing = []
    for key, res in evaluated.items():
        proc, block, prefix = key.split("|")
        want = "PFX" if prefix == "PFX" else "S1"
        for pat, out in zip(res["patterns"], res["outputs"]):
            if "${prefix}" in pat and (want not in out or (prefix == "PFX" and "S1" in out)):
                missing.append(f"{key}: output {out!r} not named after {want}")
            # SCORE_VARIANTS' stub leaves out its optional vcf_scores table; train.py names its
            # summary train.<meta.id>.summary.json itself (the task moves it only for a prefix)
            optional = proc == "SCORE_VARIANTS" and block == "stub" and out.startswith("vcf_scores.")
            by_script = key == "TRAIN|script|None" and out == "train.S1.summary.json"
            if ("${prefix}" in pat and not (optional or by_script) and not written(res["text"], out)
                    # the entry script indexes the BAM it writes: <bam>.bai follows <bam>
                    and not (block == "script" and out.endswith(".bam.bai") and written(res["text"], out[:-4]))):
                missing.append(f"{key}: output {out!r} is not written by the {block}")
    assert missing == []


@needs_java
def test_train_renames_the_summary_train_py_names(evaluated):
    """train.py names its summary train.<meta.id>.summary.json itself: with a prefix, the task moves it."""
    text = evaluated["TRAIN|script|PFX"]["text"]
    assert "mv train.S1.summary.json train.PFX.summary.json" in text
    assert "mv " not in evaluated["TRAIN|script|None"]["text"]
