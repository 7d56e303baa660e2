"""Contracts between the Nextflow code and the Python steps, checked without Nextflow.

1. Every module's ``script:`` calls an existing ``bin/<step>.py`` entry script, and
   every ``--option`` it passes (in the script and through ``task.ext.args`` in
   conf/modules.config) is one that step's ``build_parser()`` accepts; options the
   parser requires are passed.
2. Every process has a tag, a standard label, a ``stub:`` block and emits its
   versions to the ``versions`` topic; GPU steps carry ``process_gpu`` and pick a
   CUDA container when ``task.accelerator`` is set.
3. ``main.nf`` runs the same steps as the local engine, in the same dependency
   order: the same upstream steps for every step, and each engine's order is a
   valid order for the other's graph.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

import nf_parse
from caveat.engine import Step, order_steps
from caveat.pipeline import STEP_NAMES, pipeline_steps

REPO = Path(__file__).resolve().parents[1]
STANDARD_LABELS = {"process_single", "process_low", "process_medium", "process_high", "process_gpu"}
GPU_STEPS = {"train", "predict", "score_variants"}
# helper processes that run a tool, not a caveat step (and so have no entry script)
TOOL_PROCESSES = {"ALIGNER_INDEX"}
# helper processes that run a caveat command which is not a pipeline step: process → its entry script
HELPER_SCRIPTS = {"SIMULATE": "simulate"}

MODULES = nf_parse.modules()
EXT_ARGS = nf_parse.ext_args()


def parser_options(step: str) -> tuple[set[str], set[str], set[str]] | None:
    """(all option strings, required ones, ones taking several values) of
    ``caveat.<step>.build_parser()``, or None when the step (or its build_parser)
    has not landed yet."""
    if importlib.util.find_spec(f"caveat.{step}") is None:
        return None
    mod = importlib.import_module(f"caveat.{step}")
    if not hasattr(mod, "build_parser"):
        return None
    actions = mod.build_parser()._actions
    every = {o for a in actions for o in a.option_strings}
    required = {a.option_strings[0] for a in actions if a.required and a.option_strings}
    many = {o for a in actions if a.nargs in ("+", "*") or (isinstance(a.nargs, int) and a.nargs > 1)
            for o in a.option_strings}
    return every, required, many


def contract_problems(proc: nf_parse.Process, ext_options: list[str]) -> list[str]:
    """What is wrong with one process's calls of entry scripts (empty: nothing)."""
    problems = []
    invocations = nf_parse.script_invocations(proc)
    if not invocations:
        return [f"{proc.name}: script calls no bin/<step>.py entry script"]
    for inv in invocations:
        if not (REPO / "bin" / f"{inv.script}.py").is_file():
            problems.append(f"{proc.name}: bin/{inv.script}.py does not exist")
            continue
        opts = parser_options(inv.script)
        if opts is None:
            problems.append(f"{proc.name}: caveat.{inv.script} has no build_parser()")
            continue
        every, required, many = opts
        passed = set(inv.options) | set(ext_options)
        # an input staging several files, given after an option that takes one value
        for o, value in inv.values.items():
            m = re.match(r"\$\{(\w+)\}", value)
            if m and m.group(1) in proc.collection_inputs and o in every and o not in many:
                problems.append(f"{proc.name}: {o} gets the file collection {m.group(1)}, "
                                f"but {inv.script}.py takes one value there")
        for o in sorted(passed - every - {"--version"}):
            where = "conf/modules.config ext.args" if o in ext_options and o not in inv.options else "script:"
            problems.append(f"{proc.name} ({where}): {inv.script}.py does not accept {o}")
        for o in sorted(required - passed):
            problems.append(f"{proc.name}: {inv.script}.py requires {o}, which the module does not pass")
    return problems


def _landed(proc: nf_parse.Process) -> bool:
    return all(parser_options(inv.script) is not None and (REPO / "bin" / f"{inv.script}.py").is_file()
               for inv in nf_parse.script_invocations(proc))


# ---------------------------------------------------------------- 1. options

@pytest.mark.parametrize("name", sorted(set(MODULES) - TOOL_PROCESSES))
def test_module_calls_entry_script_with_accepted_options(name):
    proc = MODULES[name]
    if not _landed(proc):
        pytest.skip(f"{name}: its step's entry script / build_parser() has not landed yet")
    assert contract_problems(proc, EXT_ARGS.get(name, [])) == []


def test_every_step_has_a_module():
    steps_with_module = {nf_parse.step_of(n, STEP_NAMES) for n in MODULES}
    assert set(STEP_NAMES) <= steps_with_module, sorted(set(STEP_NAMES) - steps_with_module)
    for n, proc in MODULES.items():
        if n in TOOL_PROCESSES:
            continue
        scripts = {inv.script for inv in nf_parse.script_invocations(proc)}
        assert scripts == {HELPER_SCRIPTS.get(n) or nf_parse.step_of(n, STEP_NAMES)}, (n, scripts)


def test_modules_config_names_only_existing_processes():
    assert set(EXT_ARGS) <= set(MODULES), sorted(set(EXT_ARGS) - set(MODULES))


def test_contract_check_fails_on_an_option_the_script_does_not_accept(tmp_path):
    """The check can fail: a module passing an unknown option (in its script, or via
    ext.args) is reported, and so is a required option it stops passing."""
    landed = [n for n in sorted(set(MODULES) - TOOL_PROCESSES) if _landed(MODULES[n])]
    if not landed:
        pytest.skip("no step with build_parser() has landed yet")
    name = landed[0]
    proc = MODULES[name]
    inv = nf_parse.script_invocations(proc)[0]
    broken = tmp_path / "main.nf"
    broken.write_text(re.sub(rf"^(\s*){inv.script}\.py ", rf"\g<1>{inv.script}.py --no-such-option 3 ",
                             proc.path.read_text(), count=1, flags=re.M))
    problems = contract_problems(nf_parse.read_process(broken), EXT_ARGS.get(name, []))
    assert any("--no-such-option" in p and "script:" in p for p in problems), problems
    problems = contract_problems(proc, EXT_ARGS.get(name, []) + ["--bogus-ext-arg"])
    assert any("--bogus-ext-arg" in p and "ext.args" in p for p in problems), problems
    _, required, _ = parser_options(inv.script)
    if required:
        opt = sorted(required)[0]
        text = proc.path.read_text()
        stripped = "\n".join(line for line in text.splitlines() if not line.strip().startswith(opt + " "))
        broken.write_text(stripped)
        problems = contract_problems(nf_parse.read_process(broken), EXT_ARGS.get(name, []))
        assert any(f"requires {opt}" in p for p in problems), problems


# ---------------------------------------------------------------- 2. process conventions

@pytest.mark.parametrize("name", sorted(MODULES))
def test_process_has_tag_label_stub_and_versions(name):
    proc = MODULES[name]
    assert proc.tag, f"{name}: no tag"
    assert set(proc.labels) & STANDARD_LABELS, f"{name}: labels {proc.labels} (want one of {sorted(STANDARD_LABELS)})"
    assert proc.stub.strip(), f"{name}: no stub: block"
    assert "topic: versions" in proc.output and "val(\"${task.process}\")" in proc.output, f"{name}: no versions topic"
    assert "publishDir" not in proc.body, f"{name}: publishDir in a module (publish in main.nf's output block)"
    assert proc.container, f"{name}: no container"
    # nf-core convention: a config can switch a process off (ext.when = false)
    assert re.search(r"^\s*when:\s*\n\s*task\.ext\.when == null \|\| task\.ext\.when\s*$", proc.body, re.M), f"{name}: no when:"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_gpu_steps_use_gpu_label_and_cuda_container(name):
    proc = MODULES[name]
    # the step's own process; its helpers (SCORE_VARIANTS_MERGE) run on CPU
    is_gpu = name.lower() in GPU_STEPS
    assert ("process_gpu" in proc.labels) == is_gpu, (name, proc.labels)
    if is_gpu:
        assert "task.accelerator" in proc.container and "gpu" in proc.container, proc.container


def test_strict_syntax_idioms():
    """Lowercase `channel`, no implicit `it` closures, no publishDir, outputs in main.nf."""
    for f in [REPO / "main.nf", *REPO.glob("workflows/*.nf"), *REPO.glob("subworkflows/local/*/main.nf"),
              *REPO.glob("modules/local/*/main.nf")]:
        text = nf_parse.strip_comments(f.read_text())
        assert not re.search(r"\bChannel\.", text), f"{f}: use lowercase `channel`"
        assert not re.search(r"\bit\b(?!')", re.sub(r"(\"\"\".*?\"\"\"|'[^'\n]*'|\"[^\"\n]*\")", "", text, flags=re.S)), \
            f"{f}: implicit `it`"
        assert "publishDir" not in text, f
    assert re.search(r"^output\s*\{", (REPO / "main.nf").read_text(), re.M)


# ---------------------------------------------------------------- 3. same steps, same order

def _nextflow_step_graph() -> tuple[dict[str, set[str]], list[str]]:
    """Step → its upstream steps (transitively), and the steps in call order, from main.nf."""
    g = nf_parse.dataflow(REPO / "main.nf")
    steps: dict[str, set[str]] = {}
    order: list[str] = []
    for proc in g.order:
        step = nf_parse.step_of(proc, STEP_NAMES)
        if step is None:
            continue
        ups = {nf_parse.step_of(a, STEP_NAMES) for a in g.ancestors(proc)} - {None, step}
        steps.setdefault(step, set()).update(ups)
        if step not in order:
            order.append(step)
    return steps, order


def _local_step_graph(steps: list[Step]) -> dict[str, set[str]]:
    by_name = {s.name: s for s in steps}
    out = {}
    for s in steps:
        seen, stack = set(), [s.name]
        while stack:
            for d in (*by_name[stack[-1]].needs, *by_name[stack.pop()].optional_needs):
                if d in by_name and d not in seen:
                    seen.add(d)
                    stack.append(d)
        out[s.name] = seen
    return out


def test_nextflow_runs_every_step_once_in_pipeline_order():
    _, order = _nextflow_step_graph()
    assert sorted(order) == sorted(STEP_NAMES)


def test_nextflow_and_local_engine_have_the_same_dependencies():
    nf, nf_order = _nextflow_step_graph()
    steps = pipeline_steps()
    avail = {s.name for s in steps}
    # steps whose local upstream steps have all landed can be compared exactly
    complete = [s for s in steps if all(d in avail for d in s.needs)]
    local = _local_step_graph(complete)
    compared = []
    for s in complete:
        if not _upstream_complete(s.name, steps, avail):
            continue
        assert nf[s.name] & avail == local[s.name], (
            f"{s.name}: Nextflow reads {sorted(nf[s.name] & avail)}, local engine {sorted(local[s.name])}")
        compared.append(s.name)
    if set(avail) == set(STEP_NAMES):
        assert sorted(compared) == sorted(STEP_NAMES)
        # each engine's order is a valid order of the other's graph
        local_order = [s.name for s in order_steps(steps)]
        for order, graph in ((local_order, nf), (nf_order, local)):
            pos = {n: i for i, n in enumerate(order)}
            for n, ups in graph.items():
                assert all(pos[u] < pos[n] for u in ups), (n, order)
    elif not compared:
        pytest.skip("no step with all its upstream steps landed yet")


def _upstream_complete(name: str, steps: list[Step], avail: set[str]) -> bool:
    by_name = {s.name: s for s in steps}
    stack, seen = [name], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n not in by_name or any(d not in avail for d in by_name[n].needs):
            return False
        stack.extend(d for d in (*by_name[n].needs, *by_name[n].optional_needs) if d in avail)
    return True


def test_order_check_fails_when_a_dependency_is_missing(tmp_path):
    """The graph comparison can fail: rewire EVALUATE so it no longer reads the variant
    scores and the Nextflow graph loses score_variants upstream of evaluate."""
    import shutil

    for sub in ("main.nf", "workflows", "subworkflows", "modules"):
        src = REPO / sub
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp_path / sub)
    wf = tmp_path / "workflows" / "caveat.nf"
    text = wf.read_text()
    line = ".combine(MODELS.out.scores.map { _meta, parquet -> parquet })"
    assert line in text
    wf.write_text(text.replace(line, ""))
    g = nf_parse.dataflow(tmp_path / "main.nf")
    ups = {nf_parse.step_of(a, STEP_NAMES) for a in g.edges["EVALUATE"]}
    assert "score_variants" not in ups
    g0 = nf_parse.dataflow(REPO / "main.nf")
    assert "SCORE_VARIANTS_MERGE" in g0.edges["EVALUATE"]


def test_contract_check_fails_when_a_file_collection_meets_a_one_value_option(tmp_path):
    """WASP_REMAP_GATHER stages one BAM per chromosome and passes them to `--gather`,
    which takes several; passing the collection to a one-value option must be reported."""
    proc = MODULES["WASP_REMAP_GATHER"]
    assert "bams" in proc.collection_inputs
    assert contract_problems(proc, EXT_ARGS.get("WASP_REMAP_GATHER", [])) == []
    broken = tmp_path / "main.nf"
    broken.write_text(proc.path.read_text().replace("--sample ${meta.id} ", "--sample ${bams} "))
    problems = contract_problems(nf_parse.read_process(broken), EXT_ARGS.get("WASP_REMAP_GATHER", []))
    assert any("--sample gets the file collection bams" in p for p in problems), problems


def test_entry_scripts_answer_version(monkeypatch, capsys):
    import sys

    from caveat import __version__
    from caveat.cli import run_entry

    uses = {inv for p in MODULES.values() for inv in re.findall(r"eval\('(\w+)\.py --version'\)", p.output)}
    assert uses, "no module reports its version with <step>.py --version"
    monkeypatch.setattr(sys, "argv", ["train.py", "--version"])
    assert run_entry(lambda argv: pytest.fail("main ran instead of --version")) == 0
    assert capsys.readouterr().out.strip() == __version__
