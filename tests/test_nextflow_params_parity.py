"""Every step param reaches its entry script and its Nextflow process (issue 14, "one
definition per step, both engines").

For every step of ``caveat.pipeline.pipeline_steps()`` and every key of ``step.params``
(minus the common file params and the path params, which the workflow stages as files):

(a) the step's ``build_parser()`` has the option ``--`` + key with ``_`` → ``-`` (one rule,
    ``caveat.step_cli.flag``) and its default is the step's declared default;
(b) ``conf/modules.config`` passes it: the ``ext.args`` closures of the step's processes
    (``nf_parse.step_of``: ``WASP_REMAP*``, ``INSERTIONS*``, …) are evaluated with Groovy (the
    runtime inside the language-server jar, as tests/test_nextflow_runtime.py does), once with
    the defaults and once per param with a different value; the words bash makes of the result
    hold the canonical flag and, parsed with the step's parser, give the param that value.

A param that legitimately reaches no ``ext.args`` is listed in ``NOT_IN_EXT_ARGS`` with the
reason and with the text of the Nextflow file that carries it instead; a param whose entry
script takes one unit of it per call (one regime) is in ``NO_OPTION``.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import nf_lsp
import nf_parse
from caveat.params import COMMON_PATH_PARAMS
from caveat.pipeline import pipeline_steps
from caveat.step_cli import flag

REPO = Path(__file__).resolve().parents[1]

#: Common params that the modules pass as staged files (or that name the output folder).
FILE_PARAMS = {"input", "fasta", "vcf", "outdir", "contig_map", *COMMON_PATH_PARAMS}

#: (step, param) → (why it is not in that step's ext.args, (file, text) that carries it instead).
NOT_IN_EXT_ARGS = {
    ("train", "regimes"): ("TRAIN runs one task per regime (× cell type for single_task): the workflow fans out "
                           "over listParam(params.regimes) and the module passes --regime from meta",
                           ("subworkflows/local/models/main.nf", "regimes.collectMany { regime ->")),
    ("predict", "regimes"): ("PREDICT gets the trained regimes in meta (the same list as TRAIN's fan-out) and its "
                             "script passes --regimes from it",
                             ("modules/local/predict/main.nf", "--regimes ${regimes}")),
    ("score_variants", "regimes"): ("SCORE_VARIANTS runs one task per trained model: the fan-out is TRAIN's, the "
                                    "module passes --regime from meta",
                                    ("modules/local/score_variants/main.nf", "--regime ")),
}

#: (step, param) → why the step's entry script has no option for it (one task per unit of the param).
NO_OPTION = {
    ("train", "regimes"): "train.py trains one regime per call (--regime); the workflow fans out over the list",
    ("score_variants", "regimes"): "score_variants.py scores one model per call (--model, --regime)",
}

needs_java = pytest.mark.skipif(shutil.which("java") is None,
                                reason="Java >= 17 not installed: evaluating the ext.args closures needs Groovy")


def _steps():
    return {s.name: s for s in pipeline_steps()}


def _value_params(step) -> list[str]:
    """The step's params passed as values (not staged files)."""
    return [k for k in step.params if k not in FILE_PARAMS and k not in step.path_params]


def _parser(step_name: str) -> argparse.ArgumentParser:
    """The step's parser with no option required (ext.args alone carry no input files)."""
    ap = importlib.import_module(f"caveat.{step_name}").build_parser()
    for a in ap._actions:
        a.required = False
    return ap


def _action(ap: argparse.ArgumentParser, option: str):
    return ap._option_string_actions.get(option)


def _norm(v):
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v


# ---------------------------------------------------------------- (a) the entry script

def parser_gaps(steps) -> list[str]:
    gaps = []
    for name, step in steps.items():
        ap = _parser(name)
        defaults = vars(ap.parse_args([]))
        for key in _value_params(step):
            act = _action(ap, flag(key))
            if (name, key) in NO_OPTION:
                assert (name, key) in NOT_IN_EXT_ARGS, f"{name}.{key}: no option, so no ext.args either"
                continue
            if act is None:
                gaps.append(f"{name}: build_parser() has no {flag(key)} for param {key}")
            elif _norm(defaults[act.dest]) != _norm(step.params[key]):
                gaps.append(f"{name}: {flag(key)} defaults to {defaults[act.dest]!r}, the step declares "
                            f"{key}={step.params[key]!r}")
    return gaps


def test_every_step_param_has_its_option_in_the_entry_script():
    assert parser_gaps(_steps()) == []


def test_path_params_are_staged_by_the_workflow():
    """Path params (aligner_index, blacklist, …) reach their process as staged files."""
    text = "\n".join(nf_parse.strip_comments(p.read_text()) for p in [REPO / "main.nf", *REPO.glob("workflows/*.nf"),
                                                                      *REPO.glob("subworkflows/local/*/main.nf")])
    missing = [f"{s.name}: {k}" for s in _steps().values() for k in s.path_params
               if not re.search(rf"params\.{k}\b", text)]
    assert missing == []


def test_not_in_ext_args_exceptions_still_hold():
    steps = _steps()
    for (step, key), (_why, (path, text)) in NOT_IN_EXT_ARGS.items():
        assert key in steps[step].params, f"{step} no longer declares {key}: drop the exception"
        assert text in (REPO / path).read_text(), f"{step}.{key}: {path} no longer carries it ({text!r})"


# ---------------------------------------------------------------- (b) the Nextflow process

def _sentinel(key: str, default, act):
    """A value of the param's type that differs from its default (a valid choice when it has some)."""
    if act is not None and act.choices:
        pick = [c for c in act.choices if c != default]
        return pick[:1] if act.nargs == "+" else pick[0]
    if isinstance(default, bool):
        return not default
    if isinstance(default, (list, tuple)) or (act is not None and act.nargs == "+"):
        if default and isinstance(default[0], int):
            return [-2, 2]
        return ["chrS1", "chrS2"]
    if isinstance(default, float) or (default is None and act is not None and act.type is float):
        return 0.375 if default != 0.375 else 0.625
    if isinstance(default, int) or (default is None and act is not None and act.type is int):
        return (default or 0) + 7
    return "sentinel"


def ext_args_gaps(steps, config: Path = REPO / "conf" / "modules.config", jar: Path | None = None) -> list[str]:
    from caveat.params import defaults

    base = {k: _norm(v) for k, v in defaults().items()}
    procs = sorted(nf_parse.modules())
    by_step = {name: [p for p in procs if nf_parse.step_of(p, steps) == name] for name in steps}
    scenarios, wanted = {"defaults": base}, {}
    for name, step in steps.items():
        ap = _parser(name)
        for key in _value_params(step):
            if (name, key) in NOT_IN_EXT_ARGS:
                continue
            value = _norm(_sentinel(key, step.params[key], _action(ap, flag(key))))
            scenarios[f"{name}.{key}"] = {**base, key: value}
            wanted[f"{name}.{key}"] = (name, key, value)
    got = nf_lsp.eval_closures(nf_parse.ext_args_closures(config), scenarios, jar=jar)
    gaps = []
    for scen, (name, key, value) in wanted.items():
        ap = _parser(name)
        act = _action(ap, flag(key))
        if act is None:
            gaps.append(f"{name}: {key}: the parser has no {flag(key)}")
            continue
        canon = {flag(key), "--no-" + flag(key)[2:]}
        reached = []
        for proc in by_step[name]:
            args = got[scen].get(proc)
            if args is None or args == got["defaults"].get(proc):
                continue
            words = nf_parse.bash_words(args)
            if not canon & {w.split("=", 1)[0] for w in words}:
                gaps.append(f"{proc}: {key} passed without its flag {flag(key)}: {args}")
                continue
            try:
                ns = ap.parse_args(words)
            except SystemExit:
                gaps.append(f"{proc}: the parser of {name} refuses ext.args {args!r}")
                continue
            if _norm(getattr(ns, act.dest)) != value:
                gaps.append(f"{proc}: params.{key} = {value!r} reaches {flag(key)} as {getattr(ns, act.dest)!r}")
                continue
            reached.append(proc)
        if not reached and not any(g.startswith(tuple(by_step[name])) and f" {key} " in g for g in gaps):
            gaps.append(f"{name}: params.{key} reaches none of {', '.join(by_step[name])} (conf/modules.config)")
    return gaps


@pytest.fixture(scope="module")
def groovy_jar():
    if nf_lsp.find_jar() is None:
        subprocess.run([str(REPO / "scripts" / "fetch_nextflow_ls.sh")], check=True, timeout=600)
    return nf_lsp.find_jar()


@needs_java
def test_every_step_param_reaches_its_nextflow_process(groovy_jar):
    assert ext_args_gaps(_steps(), jar=groovy_jar) == []


@needs_java
def test_parity_check_fails_on_a_dropped_or_renamed_param(tmp_path, groovy_jar):
    text = (REPO / "conf" / "modules.config").read_text()
    broken = tmp_path / "modules.config"
    line = re.search(r'^.*"--evaluate-bootstrap \$\{params\.evaluate_bootstrap\}",\n', text, re.M)
    assert line, "modules.config must pass --evaluate-bootstrap ${params.evaluate_bootstrap}"
    broken.write_text(text.replace(line.group(0), "").replace('"--evaluate-ci-level ${params.evaluate_ci_level}"',
                                                              '"--ci-level ${params.evaluate_ci_level}"'))
    steps = {"evaluate": _steps()["evaluate"]}
    gaps = ext_args_gaps(steps, broken, jar=groovy_jar)
    assert "evaluate: params.evaluate_bootstrap reaches none of EVALUATE (conf/modules.config)" in gaps
    assert any("evaluate_ci_level passed without its flag --evaluate-ci-level" in g for g in gaps)


def test_parser_check_fails_on_a_missing_option(monkeypatch):
    import caveat.report as report

    orig = report.build_parser

    def without_title():
        ap = argparse.ArgumentParser()
        ap.add_argument("--metrics")
        return ap

    monkeypatch.setattr(report, "build_parser", without_title)
    assert parser_gaps({"report": _steps()["report"]}) == [
        "report: build_parser() has no --report-title for param report_title"]
    monkeypatch.setattr(report, "build_parser", orig)
