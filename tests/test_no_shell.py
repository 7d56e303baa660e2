"""No user-supplied string reaches a shell: static rules over the package, and a whole run with shell
metacharacters in every free-text param and every path."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "bin" / "caveat"
META = '$(touch PWNED_{k});`touch PWNED_{k}b`;"\'|&<>'


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def test_no_shell_anywhere_in_the_package():
    """No shell=True, os.system or os.popen; every subprocess call passes an argument list."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node, owner, name in _calls(tree):
            where = f"{path.relative_to(PKG)}:{node.lineno}"
            if owner == "os" and name in ("system", "popen"):
                bad.append(f"{where} os.{name}")
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                bad.append(f"{where} shell=")
            if owner == "subprocess" and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
                bad.append(f"{where} subprocess.{name} with a command string")
    assert not bad, bad


def test_the_rule_catches_a_shell_call(tmp_path):
    tree = ast.parse("import subprocess, os\nsubprocess.run('ls ' + x, shell=True)\nos.system(f'ls {x}')\n")
    found = [(owner, name, [k.arg for k in node.keywords]) for node, owner, name in _calls(tree)]
    assert ("subprocess", "run", ["shell"]) in found and ("os", "system", []) in found


def test_a_run_with_metacharacters_in_every_string_param_and_path(tiny_sim, tiny_run, tmp_path):
    """The tiny study copied below a folder named with shell metacharacters, an outdir named with them and
    a report title full of them: the run completes and no injected command ran."""
    from caveat.engine import run_pipeline
    from caveat.params import load_params
    from caveat.pipeline import pipeline_steps

    home = tmp_path / META.format(k="dir")
    study = home / "study"
    shutil.copytree(tiny_sim, study)
    out = home / META.format(k="out")
    steps = pipeline_steps()
    params = load_params(study / "params.yaml", {"outdir": str(out), "report_title": META.format(k="title")}, steps)
    run_pipeline(steps, params, out, threads=2)
    # the same study in another folder: every output byte-identical (the report and its summary differ by the title only)
    files = sorted(p.relative_to(tiny_run).as_posix() for p in tiny_run.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    differ = [f for f in files if (tiny_run / f).read_bytes() != (out / f).read_bytes()]
    assert differ == ["pipeline_info/steps/report.json", "report.html", "report.summary.json"], differ
    page = (out / "report.html").read_text()
    assert "PWNED_title" in page and META.format(k="title") not in page  # shown, HTML-escaped
    leaked = [p for p in tmp_path.parent.rglob("PWNED*")] + [p for p in Path.cwd().glob("PWNED*")]
    assert not leaked, leaked
    from caveat.aligner import parse_aligner_args
    from caveat.errors import InputError

    with pytest.raises(InputError, match="aligner_args"):  # refused, never run (tests/test_aligner.py runs it)
        parse_aligner_args(META.format(k="args"))
