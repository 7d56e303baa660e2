"""Runtime rules of Nextflow / nf-schema / nf-test that the language server does not check.

Each test encodes one rule of the runtime (the source it follows is cited beside it) and is
checked on this repo's code; most also show, on a broken copy, that they can fail. Nextflow
itself cannot run here: the rules are applied to the code statically, or by running the
Groovy pieces (functions, config closures) with the Groovy runtime inside the language-server
jar (tests/nf_lsp.py ``run_groovy``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import nf_lsp
import nf_parse

REPO = Path(__file__).resolve().parents[1]
MAIN_NF = REPO / "main.nf"

needs_java = pytest.mark.skipif(shutil.which("java") is None,
                                reason="Java >= 17 not installed: running Groovy needs it")


@pytest.fixture(scope="module")
def groovy_jar():
    if nf_lsp.find_jar() is None:
        subprocess.run([str(REPO / "scripts" / "fetch_nextflow_ls.sh")], check=True, timeout=600)
    return nf_lsp.find_jar()


def _workflow_files(root: Path = REPO) -> list[Path]:
    return [root / "main.nf", *sorted(root.glob("workflows/*.nf")), *sorted(root.glob("subworkflows/local/*/main.nf"))]


def _function(path: Path, name: str) -> str:
    """The text of the top-level Groovy function ``def name(...) { ... }`` of a .nf file."""
    text = path.read_text()
    m = re.search(rf"^def\s+{name}\s*\([^)]*\)\s*\{{", text, re.M)
    assert m, f"{path}: no function {name}"
    return text[m.start():nf_parse.matching(text, m.end() - 1)]


def _copy_tree(dst: Path) -> Path:
    for sub in ("main.nf", "workflows", "subworkflows", "modules", "conf", "nextflow.config"):
        src = REPO / sub
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / sub)
    return dst


# ---------------------------------------------------------------- defect 2: emits shadowed by `def`
#
# Nextflow 25.10 turns each `emit: name = expr` into an assignment appended to the workflow
# body (nf-lang ScriptToGroovyVisitor.visitWorkflowEmits) and then reads `name` from the
# workflow's binding (WorkflowDef.collectOutputs: "Missing workflow output parameter"). A
# `def name` in the body makes that assignment go to the local variable: the binding never
# gets it, and the workflow fails when it is called.

def shadowed_emits(root: Path = REPO) -> list[str]:
    out = []
    for f in _workflow_files(root):
        for wf in nf_parse.read_workflows(f).values():
            local = set(re.findall(r"^\s*def\s+(\w+)\s*=", wf.main, re.M))
            out += [f"{f.relative_to(root)}: {wf.name}: emit {e} is also `def {e}`" for e in sorted(set(wf.emit) & local)]
    return out


def test_no_workflow_declares_an_emitted_name_with_def():
    assert shadowed_emits() == []


def test_shadowed_emit_check_fails_on_a_def_of_an_emitted_name(tmp_path):
    root = _copy_tree(tmp_path)
    sub = root / "subworkflows" / "local" / "prepare_inputs" / "main.nf"
    text = sub.read_text()
    assert "    main:\n" in text
    sub.write_text(text.replace("    main:\n", "    main:\n    def cell_types = []\n", 1))
    assert shadowed_emits(root) == ["subworkflows/local/prepare_inputs/main.nf: PREPARE_INPUTS: "
                                    "emit cell_types is also `def cell_types`"]


# ---------------------------------------------------------------- defect 3: arity of file collections
#
# A `path(x)` input given one file binds x to that Path, not to a one-element list, unless
# its arity allows more than one file (Nextflow 25.10 TaskInputResolver.singleItemOrList:
# `items.size() == 1 && single`, with ArityParam.isSingle(): `!arity || arity.max == 1`).
# A Path is Iterable over its name components, so `x.join(' ')` on one model folder gives
# "trained_1 multitask". Every input the script treats as a list must declare arity '1..*'.

LIST_USE = r"\b{name}\s*(?:\.(?:join|collect|each|eachWithIndex|size|sort|findAll|first|last|withIndex)\b|\[)"


def list_inputs_without_arity(procs) -> list[str]:
    out = []
    for proc in procs:
        code = proc.script + proc.stub
        for m in re.finditer(r"\bpath\s*\(\s*(\w+)\s*(,[^)]*)?\)", proc.input):
            name, opts = m.group(1), m.group(2) or ""
            if not re.search(LIST_USE.format(name=name), code):
                continue
            am = re.search(r"arity:\s*'(\d+)(?:\.\.(\d+|\*))?'", opts)
            if am is None or (am.group(2) or am.group(1)) == "1":
                out.append(f"{proc.name}: input {name} is used as a list but has no arity '1..*'")
    return out


def test_process_inputs_used_as_lists_declare_arity():
    assert list_inputs_without_arity(nf_parse.modules().values()) == []


def test_arity_check_fails_without_arity(tmp_path):
    src = REPO / "modules" / "local" / "predict" / "main.nf"
    broken = tmp_path / "main.nf"
    broken.write_text(src.read_text().replace("arity: '1..*', ", ""))
    assert list_inputs_without_arity([nf_parse.read_process(broken)]) == [
        "PREDICT: input model_dirs is used as a list but has no arity '1..*'"]


# ---------------------------------------------------------------- defect 5: published layout
#
# A workflow output publishes each file of its channel's values at
# `<outputDir>/<path>/<the file's path relative to its task directory>` (Nextflow 25.10
# PublishOp.onNext → PublishDir.apply(files, sourceDir) → apply1: `sourceDir.relativize(source)`
# resolved against the target; PublishOp.getTaskDir: the task dir is work/xx/yyyy…, or
# work/tmp/xx/yyyy… for collectFile). So `path("models/${meta.model_path}")` published with
# `path 'models'` lands in models/models/<regime>.

# The local engine's layout (docs/CONVENTIONS.md "Output layout"), as the paths it writes for
# the tiny study (samples D1_ctA …, cell types ctA, ctB), optional outputs included (MACS3
# peaks, LDSC annotations, user-VCF scores); test_layout_is_what_caveat_run_writes checks the
# published layout against a real `caveat run` as well.
LOCAL_LAYOUT = [
    "het_snps.parquet", "het_indels.parquet",
    "wasp/D1_ctA.bam", "wasp/D1_ctA.bam.bai", "wasp/D1_ctA.stats.json",
    "counts/D1_ctA.parquet",
    "insertions/D1_ctA.bw", "insertions/ctA.pseudobulk.bw",
    "imbalance.parquet", "variant_sets.parquet", "variant_sets_stratum_matched.parquet",
    "peaks.parquet", "peaks_donor_counts.parquet", "peaks/ctA.macs3.narrowPeak", "ldsc", "ldsc/ctA.annot.gz",
    "windows.parquet",
    "models/multitask", "models/multitask/model.pt", "models/multitask/history.parquet",
    "models/single_task/ctA", "models/single_task/ctA/model.pt", "models/single_task/ctA/history.parquet",
    # the k-mer baseline (train_baseline), an in-run outside model
    "models/kmer_baseline", *(f"models/kmer_baseline/{f}" for f in ("model.ts", "outside.json", "coefficients.parquet",
                                                                  "fit_grid.parquet")),
    "predictions.parquet", "variant_scores.parquet", "vcf_scores.parquet", "metrics.parquet", "report.html",
    # the benchmark bundle (caveat.bundle), written by evaluate
    "benchmark_bundle", *(f"benchmark_bundle/{f}" for f in ("manifest.json", "windows.parquet", "peaks.parquet",
                                                            "variant_sets.parquet", "sequences.parquet",
                                                            "variant_sets_stratum_matched.parquet")),
    *(f"{s}.summary.json" for s in ("wasp_remap", "count_alleles", "insertions", "call_imbalance", "match_negatives",
                                    "cluster_peaks", "build_dataset", "train_baseline", "predict", "score_variants",
                                    "evaluate", "report")),
    # Nextflow writes one training summary per task (docs/nextflow.md "Where outputs go")
    "train.multitask.summary.json", "train.single_task.ctA.summary.json",
]
LAYOUT_OPTIONAL = ["peaks/ctA.macs3.narrowPeak", "ldsc", "ldsc/ctA.annot.gz", "vcf_scores.parquet"]
#: Files Nextflow writes differently, as docs/nextflow.md "Where outputs go" says.
NEXTFLOW_DIFFERS = {"train.summary.json"}
#: The local engine's own bookkeeping (resume markers, logs), not pipeline outputs.
LOCAL_ONLY = re.compile(r"^pipeline_info(/|$)|\.log$")


def _template_regex(rel: str) -> str:
    """A process output path (relative to the task dir) as a regex of the paths it may name:
    `${...}` any text (a value may hold a '/': model_path single_task/<cell type>), glob
    `*`/`?` within one name."""
    out, i = "", 0
    while i < len(rel):
        if rel.startswith("${", i):
            j = nf_parse.matching(rel, i + 1)
            out += ".+"
            i = j
        elif rel[i] == "*":
            out, i = out + "[^/]+", i + 1
        elif rel[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(rel[i]), i + 1
    return out


def published_templates(main_nf: Path = MAIN_NF) -> dict[str, list[tuple[str, str]]]:
    """Workflow output → [(published path regex, 'PROCESS: declared path')]."""
    paths = nf_parse.output_paths(main_nf)
    out = {}
    for name, files in nf_parse.published_files(main_nf).items():
        base = paths.get(name, ".").strip("/")
        prefix = "" if base in ("", ".") else re.escape(base) + "/"
        out[name] = sorted((prefix + _template_regex(f.pattern), f"{f.process}: {f.pattern}") for f in files)
    return out


def layout_problems(templates: dict, local_paths: list[str]) -> list[str]:
    """Templates that name no path of the local layout, and local paths no template names."""
    problems = []
    flat = [(name, rx, src) for name, items in templates.items() for rx, src in items]
    for name, rx, src in flat:
        if name in ("versions", "params_dump"):
            continue   # pipeline_info/: Nextflow's own
        if not any(re.fullmatch(rx, p) for p in local_paths):
            problems.append(f"output {name} ({src}) publishes {rx}, not a path of the local engine's layout")
    literal = [(rx, src) for _, rx, src in flat if re.sub(r"\.\+|\[\^/\]\+?", "", rx)]
    # an output named only by a value (SCORE_VARIANTS_MERGE's `${meta.summary}`) covers the
    # names the pipeline's code gives that value as string literals
    code = "".join(nf_parse.strip_comments(f.read_text()) for f in REPO.glob("**/*.nf") if ".nf-test" not in f.parts)
    valued = [rx for _, rx, _ in flat if not re.sub(r"\.\+|\[\^/\]\+?", "", rx)]
    for p in local_paths:
        if any(re.fullmatch(rx, p) or re.match(rx + "/", p) for rx, _ in literal):
            continue
        if "/" not in p and f"'{p}'" in code and any(re.fullmatch(rx, p) for rx in valued):
            continue
        if any(p.startswith(q + "/") for q in local_paths if any(re.fullmatch(rx, q) for rx, _ in literal)):
            continue
        problems.append(f"{p}: written by the local engine, published by no workflow output")
    return problems


def test_every_published_path_is_in_the_local_layout_and_back():
    assert layout_problems(published_templates(), LOCAL_LAYOUT) == []


def test_layout_check_fails_on_a_folder_published_twice(tmp_path):
    root = _copy_tree(tmp_path)
    text = (root / "main.nf").read_text()
    text = re.sub(r"(models \{\s*path )'\.'", r"\1'models'", text)
    text = re.sub(r"(called_peaks \{\s*path )'\.'", r"\1'peaks'", text)
    (root / "main.nf").write_text(text)
    problems = layout_problems(published_templates(root / "main.nf"), LOCAL_LAYOUT)
    assert any(p.startswith("output models (TRAIN: models/${meta.model_path}) publishes models/models/") for p in problems), problems
    assert any(p.startswith("output called_peaks (CLUSTER_PEAKS: peaks/*) publishes peaks/peaks/") for p in problems), problems
    assert any(p.startswith("models/multitask: written by the local engine, published by no") for p in problems), problems


@pytest.mark.slow
def test_layout_is_what_caveat_run_writes(tiny_run):
    """The published layout against a real `caveat run` on the tiny study (slow: the whole
    local pipeline): every path it writes is published, every published output names one."""
    local = sorted(p.relative_to(tiny_run).as_posix() for p in tiny_run.rglob("*"))
    local = [p for p in local if not LOCAL_ONLY.search(p) and p not in NEXTFLOW_DIFFERS]
    nextflow_only = [p for p in LOCAL_LAYOUT if p.startswith("train.")]
    assert layout_problems(published_templates(), local + LAYOUT_OPTIONAL + nextflow_only) == []


# ---------------------------------------------------------------- defect 6: nf-test profile
#
# nf-test runs Nextflow with `-profile <profile of nf-test.config>`; with `profile ""` no
# profile is applied, so `validateParameters()` stops on the params nextflow_schema.json
# requires ("Missing required parameter(s): input, vcf, fasta"). nf-schema validates the params
# map with null values dropped (ParameterValidator.validateParametersMap: `excludeNulls()`)
# against the whole schema, so the schema's `if: {required: [simulate]}` / `else: {required:
# [input, fasta, vcf]}` needs the inputs only when the test profile's `simulate` is unset.

def config_params(path: Path) -> dict:
    """The literal `key = value` params of a config file's `params {}` block (Groovy literals)."""
    import ast

    text = nf_parse.strip_comments(path.read_text())
    m = re.search(r"^params\s*\{", text, re.M)
    out = {}
    for key, value in re.findall(r"^\s*(\w+)\s*=\s*(.+?)\s*$", nf_parse.block(text, m), re.M):
        try:
            out[key] = ast.literal_eval(value.replace("true", "True").replace("false", "False").replace("null", "None"))
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def validate_profile_params(profile_params: dict | None = None) -> None:
    """The params of `-profile test` (defaults, then conf/test.config) pass nextflow_schema.json
    as nf-schema sees them (nulls dropped); without `simulate` they miss the inputs."""
    import jsonschema

    from caveat.params import defaults

    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    params = {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in defaults().items()},
              **(profile_params or config_params(REPO / "conf" / "test.config"))}
    as_seen = {k: v for k, v in params.items() if v is not None}
    jsonschema.Draft202012Validator(schema).validate(as_seen)
    unset = {k: v for k, v in as_seen.items() if k != "simulate"}
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(unset)]
    assert any("'input' is a required property" in e for e in errors), errors


def test_nf_test_config_runs_the_test_profile_which_sets_every_required_param():
    text = nf_parse.strip_comments((REPO / "nf-test.config").read_text())
    m = re.search(r"^\s*profile\s+[\"']([^\"']*)[\"']", text, re.M)
    assert m and "test" in m.group(1).split(","), f"nf-test.config: profile {m and m.group(1)!r} (want 'test')"
    config = nf_parse.strip_comments((REPO / "nextflow.config").read_text())
    assert re.search(r"^\s*test\s*\{\s*includeConfig\s+'conf/test\.config'", config, re.M)
    assert config_params(REPO / "conf" / "test.config").get("simulate") == "tiny"
    validate_profile_params()


def test_profile_check_fails_when_the_test_profile_sets_no_study():
    broken = {k: v for k, v in config_params(REPO / "conf" / "test.config").items() if k != "simulate"}
    import jsonschema

    with pytest.raises(jsonschema.ValidationError, match="'input' is a required property"):
        validate_profile_params(broken)


# ---------------------------------------------------------------- defect 1: samplesheet paths
#
# nf-schema 2.5.1 turns a `format: file-path` value into `Nextflow.file(value)`
# (SamplesheetConverter.processValue) and checks `exists` the same way (ExistsEvaluator):
# a relative path resolves against the launch directory. `caveat run` resolves it against
# the samplesheet's folder (caveat.samplesheet.read_samplesheet). So the schema leaves bam and
# peaks plain strings and PREPARE_INPUTS resolves them (samplesheetFile) as the local engine.

NF_SCHEMA_PATH_FORMATS = {"file-path", "path", "directory-path", "file-path-pattern"}


def test_samplesheet_schema_leaves_file_columns_to_the_pipeline():
    props = json.loads((REPO / "assets" / "schema_input.json").read_text())["items"]["properties"]
    for col in ("bam", "peaks"):
        assert props[col].get("format") not in NF_SCHEMA_PATH_FORMATS, f"{col}: nf-schema would resolve it against the launch dir"
        assert "exists" not in props[col], f"{col}: nf-schema's exists checks it relative to the launch dir"
    sub = (REPO / "subworkflows" / "local" / "prepare_inputs" / "main.nf").read_text()
    rows = _function(REPO / "subworkflows/local/prepare_inputs/main.nf", "samplesheetRows")
    assert "def sheet_dir = sheet.parent" in rows
    assert re.search(r"samplesheetFile\(bam, sheet_dir", rows) and re.search(r"samplesheetFile\(peaks, sheet_dir", rows)
    # every samplesheet is read through it (the user's, and the one SIMULATE writes)
    assert re.search(r"ch_sheet\.map \{ sheet -> samplesheetRows\(sheet,", sub)


_HARNESS_STUBS = r"""
ExpandoMetaClass.enableGlobally()
java.nio.file.Path.metaClass.exists = { -> java.nio.file.Files.exists((java.nio.file.Path) delegate) }
java.nio.file.Path.metaClass.getName = { -> ((java.nio.file.Path) delegate).getFileName().toString() }
// Nextflow's file(): a local path string → Path (relative to the launch dir), a URL → a
// remote path (here a stand-in that exists and prints as the URL)
def file(String s) {
    s.matches('^[A-Za-z][A-Za-z0-9+.-]*://.*') ? new Expando(exists: { -> true }, toString: { -> s }) : java.nio.file.Paths.get(s).toAbsolutePath()
}
def error(String m) { throw new IllegalStateException(m) }
"""


@needs_java
def test_samplesheet_paths_resolve_as_the_local_engine_resolves_them(tmp_path, groovy_jar):
    from caveat.samplesheet import read_samplesheet

    sheets, elsewhere = tmp_path / "sheets", tmp_path / "launch"
    for f in ("sheets/a.bam", "sheets/sub/b.bam", "bams/c.bam", "abs.bam", "launch/d.bam"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"")
    local_cases = ["a.bam", "./a.bam", "sub/b.bam", "../bams/c.bam", str(tmp_path / "abs.bam")]
    script = (_HARNESS_STUBS + _function(REPO / "subworkflows/local/prepare_inputs/main.nf", "samplesheetFile") + r"""
def base = file(args[0]).parent
for (v in args[1..-1]) {
    try { println "OK\t${v}\t${samplesheetFile(v, base, 'S1')}" }
    catch (IllegalStateException e) { println "ERR\t${v}\t${e.message}" }
}
""")
    # launched from another folder: where Nextflow runs must not matter
    got = {}
    for line in nf_lsp.run_groovy(script, [sheets / "samplesheet.csv", *local_cases, "s3://bucket/x.bam",
                                           "d.bam", "missing.bam"], cwd=elsewhere, jar=groovy_jar).splitlines():
        kind, value, result = line.split("\t", 2)
        got[value] = (kind, result)
    assert got["s3://bucket/x.bam"] == ("OK", "s3://bucket/x.bam")
    assert got["missing.bam"][0] == "ERR" and "relative to the samplesheet" in got["missing.bam"][1]
    assert got["d.bam"][0] == "ERR", "resolved against the launch dir"
    # the local engine, on a samplesheet with the same value (one sheet each: a.bam and ./a.bam are one BAM,
    # which a single samplesheet refuses)
    sheet = sheets / "samplesheet.csv"
    local = []
    for v in local_cases:
        sheet.write_text(f"sample,donor,cell_type,bam\nS0,D0,ct,{v}\n")
        local += list(read_samplesheet(sheet)["bam"])
    assert [got[v] for v in local_cases] == [("OK", p) for p in local]


# ---------------------------------------------------------------- defect 8: pipeline_info per launch
#
# Nextflow 25.10 opens the timeline/report/trace/DAG file with CREATE_NEW unless `overwrite`
# is set (TraceHelper.openOptions / newFileWriter: "file already exists … enable the
# 'overwrite' option"), so a relaunch into the same outdir keeps the first run's files. The
# nf-core template names them with `params.trace_report_suffix` (the launch time) and the
# pipeline dumps its params beside them.

def test_pipeline_info_files_are_named_per_launch_and_overwritable():
    config = nf_parse.strip_comments((REPO / "nextflow.config").read_text())
    assert re.search(r"^\s*trace_report_suffix\s*=\s*new java\.util\.Date\(\)\.format\(", config, re.M)
    for scope in ("timeline", "report", "trace", "dag"):
        m = re.search(rf"^{scope}\s*\{{", config, re.M)
        assert m, scope
        body = nf_parse.block(config, m)
        assert re.search(r"^\s*overwrite\s*=\s*true", body, re.M), f"{scope}: no overwrite = true"
        assert re.search(r"file\s*=\s*\"\$\{params\.outdir\}/pipeline_info/\w+_\$\{params\.trace_report_suffix\}\.\w+\"",
                         body), f"{scope}: file not named with params.trace_report_suffix"
    assert nf_parse.output_paths().get("params_dump") == "pipeline_info"
    dump = nf_parse.published_files()["params_dump"]
    assert [f.pattern for f in dump] == ["params_${params.trace_report_suffix}.json"]
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    assert "trace_report_suffix" in schema["$defs"]["generic_options"]["properties"]


# ---------------------------------------------------------------- defect 11
#
# `first` on a value channel only warns "The operator `first` is useless …" (Nextflow 25.10
# OperatorImpl.first: `source instanceof DataflowExpression`). Which channels are values:
# see nf_parse.ChannelEval.

def test_first_is_never_applied_to_a_value_channel():
    assert nf_parse.ChannelEval().useless_first == []


def test_useless_first_check_fails_on_first_of_a_process_with_value_inputs(tmp_path):
    root = _copy_tree(tmp_path)
    sub = root / "subworkflows" / "local" / "allele_counts" / "main.nf"
    sub.write_text(sub.read_text().replace(".map { _meta, snps, indels -> [snps, indels] }\n",
                                           ".map { _meta, snps, indels -> [snps, indels] }\n        .first()\n"))
    found = nf_parse.ChannelEval(root / "main.nf").useless_first
    assert len(found) == 1 and "ALLELE_COUNTS: WASP_REMAP_SITES.out.sites" in found[0], found


@needs_java
def test_aligner_index_glob_matches_the_index_and_not_the_fasta(tmp_path, groovy_jar):
    """Nextflow's files() matches a glob with the JDK's glob PathMatcher (FileHelper.visitFiles):
    the same matcher is applied here to what the function returns."""
    names = {"bowtie2": ["genome.1.bt2", "genome.2.bt2", "genome.3.bt2", "genome.4.bt2", "genome.rev.1.bt2",
                         "genome.rev.2.bt2"],
             "bwa": ["genome.amb", "genome.ann", "genome.bwt", "genome.pac", "genome.sa"]}
    others = ["genome.fa", "genome.fa.fai", "genome.dict", "genotypes.vcf.gz", "genome2.1.bt2"]
    script = _function(REPO / "subworkflows/local/prepare_inputs/main.nf", "alignerIndexGlob") + r"""
for (aligner in ['bowtie2', 'bwa']) {
    def glob = alignerIndexGlob(aligner, args[0] + '/genome').toString()
    def matcher = java.nio.file.FileSystems.default.getPathMatcher('glob:' + glob)
    for (f in args[1..-1]) {
        if (matcher.matches(java.nio.file.Paths.get(args[0], f))) println "${aligner}\t${f}"
    }
}
"""
    out = nf_lsp.run_groovy(script, [tmp_path, *names["bowtie2"], *names["bwa"], *others], jar=groovy_jar)
    got = {}
    for line in out.splitlines():
        a, f = line.split("\t")
        got.setdefault(a, []).append(f)
    assert got == names


def test_files_beside_a_path_keep_its_file_system():
    """`file("${bam}.bai")` interpolates Path.toString(), which for an S3/GS path (nf-amazon
    S3Path, nf-google CloudStoragePath) has no scheme: the index is then looked up on the local
    disk. Only string inputs (`take:` documented as string) may be interpolated into file()."""
    problems = []
    for f in _workflow_files():
        for wf in nf_parse.read_workflows(f).values():
            # the take: section with its comments: they say which inputs are strings
            tm = re.search(rf"^workflow\s+{wf.name}\s*\{{\s*take:(.*?)^\s*main:", f.read_text(), re.M | re.S)
            take_sec = tm.group(1) if tm and wf.name else ""
            strings = set(re.findall(r"^\s*(\w+)\s*//\s*string", take_sec, re.M))
            for fm in re.finditer(r"\bfiles?\(\s*\"\$\{(\w+)(?:\.\w+)?\}", wf.main):
                if fm.group(1) not in strings and fm.group(1) != "params":
                    problems.append(f"{f.relative_to(REPO)}: {wf.name}: file(\"${{{fm.group(1)}}}…\") of a Path")
    assert problems == []
    sibling = _function(REPO / "subworkflows/local/prepare_inputs/main.nf", "siblingFile")
    assert "resolveSibling" in sibling


def _runs_on_gpu_profile_only(config: str) -> tuple[str, str]:
    m = re.search(r"^\s*gpu\s*\{", config, re.M)
    return nf_parse.block(config, m), config[:m.start()] + config[nf_parse.matching(config, m.end() - 1):]


def test_gpu_devices_go_to_gpu_tasks_only():
    """Engine `runOptions` apply to every task's container; per-task `containerOptions` only to
    the processes they are set for (Nextflow docs, process.containerOptions; nf-core/modules
    parabricks: `containerOptions { workflow.containerEngine == 'singularity' ? '--nv' : '--gpus all' }`)."""
    config = nf_parse.strip_comments((REPO / "nextflow.config").read_text())
    gpu, _ = _runs_on_gpu_profile_only(config)
    for line in config.splitlines():
        if "runOptions" in line:
            assert "--gpus" not in line and "--nv" not in line, line
    m = re.search(r"withLabel:\s*'process_gpu'\s*\{", gpu)
    assert m, "gpu profile: no withLabel: 'process_gpu'"
    body = nf_parse.block(gpu, m)
    assert re.search(r"containerOptions\s*=\s*\{.*'--gpus all'.*'--nv'", body), body
    assert "containerOptions" not in gpu.replace(body, ""), "containerOptions outside process_gpu"


def _stage_name(pattern: str, name: str, index: int, size: int) -> str:
    """Nextflow 25.10 TaskInputResolver.expandWildcards0: the staged path of the index-th
    (1-based) of `size` files named `name` for a `stageAs` pattern."""
    parent, _, base = pattern.rpartition("/")
    if base in ("*", ""):
        base = name
    else:
        base = re.sub(r"\?+", lambda m: str(index).zfill(len(m.group(0))), base.replace("*", "" if size <= 1 else str(index)))
    if parent:
        parent = re.sub(r"\?+", lambda m: str(index).zfill(len(m.group(0))), parent.replace("*", str(index)))
        return f"{parent}/{base}"
    return base


def test_peak_beds_with_the_same_name_stage_apart_and_the_samplesheet_names_them():
    """Two cell types' peaks files may share a name (ctA/peaks.bed, ctB/peaks.bed); staged as
    `input_peaks/*` they collide (Nextflow: "input file name collision"). CLUSTER_PEAKS stages
    the i-th as input_peaks/<i>/<name>, and the samplesheet the task reads names them so."""
    proc = nf_parse.modules()["CLUSTER_PEAKS"]
    m = re.search(r"path\(peak_beds,[^)]*stageAs:\s*'([^']+)'", proc.input)
    assert m, proc.input
    staged = [_stage_name(m.group(1), "peaks.bed", i, 2) for i in (1, 2)]
    assert len(set(staged)) == 2, staged
    sub = (REPO / "subworkflows" / "local" / "prepare_inputs" / "main.nf").read_text()
    row = re.search(r"input_peaks/\$\{peak_files\.indexOf\(peaks\) \+ 1\}/\$\{peaks\.name\}", sub)
    assert row, "the samplesheet rows must name the peaks as staged: input_peaks/<index>/<name>"
    assert m.group(1) == "input_peaks/?/*"
    tracks = (REPO / "subworkflows" / "local" / "tracks" / "main.nf").read_text()
    assert "peak_beds.map { beds -> [beds] }" in tracks   # the same list, in the same order


@pytest.fixture(scope="module")
def ext_args_eval(groovy_jar):
    """conf/modules.config's ext.args closures evaluated with Groovy for several params sets:
    {scenario: {process: args string}}."""
    from caveat.params import defaults

    base = {k: (list(v) if isinstance(v, tuple) else v) for k, v in defaults().items()}
    scenarios = {
        "defaults": base,
        "command_line": {**base, "valid_chroms": "chr7,chr14", "test_chroms": "chr4", "dataset_chroms": "chr4, chr7",
                         "score_shifts": "-1,0,1", "regimes": "multitask"},
        "quotes": {**base, "report_title": "it's \"mine\" $HOME `id`; echo x", "aligner_args": "--rg 'SM:a b' -X 2000"},
    }
    return scenarios, nf_lsp.eval_closures(nf_parse.ext_args_closures(), scenarios, jar=groovy_jar)


_bash_words = nf_parse.bash_words


def _option_values(words: list[str], opt: str) -> list[str]:
    for i, w in enumerate(words):
        if w == opt:
            vals = []
            for v in words[i + 1:]:
                if v.startswith("--"):
                    break
                vals.append(v)
            return vals
        if w.startswith(opt + "="):
            return [w.split("=", 1)[1]]
    raise AssertionError(f"{opt} not in {words}")


@needs_java
def test_free_text_params_reach_the_script_as_one_word(ext_args_eval):
    scenarios, got = ext_args_eval
    p = scenarios["quotes"]
    assert _option_values(_bash_words(got["quotes"]["REPORT"]), "--report-title") == [p["report_title"]]
    assert _option_values(_bash_words(got["quotes"]["WASP_REMAP"]), "--aligner-args") == [p["aligner_args"]]


@needs_java
def test_list_params_from_the_command_line_give_the_same_options(ext_args_eval):
    _, got = ext_args_eval
    words = _bash_words(got["command_line"]["BUILD_DATASET"])
    assert _option_values(words, "--valid-chroms") == ["chr7", "chr14"]
    assert _option_values(words, "--test-chroms") == ["chr4"]
    assert _option_values(words, "--dataset-chroms") == ["chr4", "chr7"]
    assert _option_values(_bash_words(got["command_line"]["SCORE_VARIANTS"]), "--score-shifts") == ["-1", "0", "1"]
    default_words = _bash_words(got["defaults"]["SCORE_VARIANTS"])
    assert _option_values(default_words, "--score-shifts") == ["-1", "0", "1"]
    # every list param used in a .nf file goes through the workflow's listParam()
    for f in REPO.glob("**/*.nf"):
        if ".nf-test" in f.parts:
            continue
        for name in ("regimes", "valid_chroms", "test_chroms", "dataset_chroms", "score_shifts"):
            for m in re.finditer(rf"params\.{name}\b", nf_parse.strip_comments(f.read_text())):
                ctx = nf_parse.strip_comments(f.read_text())[max(0, m.start() - len("listParam(")):m.start()]
                assert "listParam(" in ctx, f"{f.relative_to(REPO)}: params.{name} used without listParam()"


@needs_java
def test_list_param_function_splits_command_line_strings(groovy_jar):
    script = _function(REPO / "workflows" / "caveat.nf", "listParam") + r"""
println groovy.json.JsonOutput.toJson([listParam('multitask,single_task'), listParam(['a', 'b']), listParam('x'),
                                       listParam(null), listParam(0), listParam('-1, 0,1')])
"""
    assert json.loads(nf_lsp.run_groovy(script, jar=groovy_jar)) == [
        ["multitask", "single_task"], ["a", "b"], ["x"], [], ["0"], ["-1", "0", "1"]]


def test_list_params_accept_a_comma_separated_string_in_the_schema():
    """nf-schema validates `--regimes multitask` (a string) against the param's type
    (LenientTypeEvaluator: a string passes only where the type lists "string")."""
    import jsonschema

    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    props = {k: v for g in schema["$defs"].values() for k, v in g["properties"].items()}
    for k in ("regimes", "valid_chroms", "test_chroms", "dataset_chroms", "score_shifts"):
        assert "string" in props[k]["type"] and "array" in props[k]["type"], k
    v = jsonschema.Draft202012Validator(props["regimes"])
    assert v.is_valid("multitask,single_task") and v.is_valid(["multitask"])
    assert not v.is_valid("multitask,nope") and not v.is_valid(["nope"])
    assert jsonschema.Draft202012Validator(props["score_shifts"]).is_valid("-1,0,1")
