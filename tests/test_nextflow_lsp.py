"""The Nextflow code passes the Nextflow language server, offline.

One server run (one JVM start) over two workspace folders: the repo itself
(zero errors required) and a temp copy with injected mistakes (the check must
be able to fail). The jar comes from ``scripts/fetch_nextflow_ls.sh``; the
tests skip only when Java is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import nf_lsp

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("java") is None,
                                reason="Java >= 17 not installed: the Nextflow language-server check needs it")

MISSING_INCLUDE = "include { NOT_A_MODULE } from '../modules/local/not_a_module/main'\n"
UNDEFINED = "    ch_oops = channel.of(undefined_thing_xyz)\n"
# (in another file: the type-checking phase runs only on files that resolve)
_MN = "MATCH_NEGATIVES(CALL_IMBALANCE.out.imbalance, peaks.map { _meta, parquet -> parquet }"
WRONG_ARITY = (_MN + ")", _MN + ", peaks)")


def _copy_nextflow_tree(dst: Path) -> None:
    """Copy the pipeline's scripts (not the configs: the injections are in scripts, and
    fewer files keep the one server run short) and the schemas main.nf reads."""
    scripts = [f for f in nf_lsp.nextflow_files(REPO) if f.suffix == ".nf"]
    for f in scripts + [REPO / "nextflow_schema.json", REPO / "assets" / "schema_input.json"]:
        if f.exists():
            t = dst / f.relative_to(REPO)
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, t)


def _inject(root: Path) -> None:
    """An include of a file that does not exist and a variable never defined (in the
    workflow), and a process called with one argument too many (in a subworkflow)."""
    wf = root / "workflows" / "caveat.nf"
    head, body = wf.read_text().split("workflow CAVEAT {", 1)
    before, after = body.split("main:\n", 1)
    wf.write_text(MISSING_INCLUDE + head + "workflow CAVEAT {" + before + "main:\n" + UNDEFINED + after)
    sub = root / "subworkflows" / "local" / "imbalance" / "main.nf"
    text = sub.read_text()
    assert WRONG_ARITY[0] in text
    sub.write_text(text.replace(WRONG_ARITY[0], WRONG_ARITY[1]))


def _line_of(path: Path, snippet: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if snippet in line)


@pytest.fixture(scope="module")
def lsp_results(tmp_path_factory):
    """Diagnostics of the repo and of a broken copy, from one server run."""
    if nf_lsp.find_jar() is None:
        subprocess.run([str(REPO / "scripts" / "fetch_nextflow_ls.sh")], check=True, timeout=600)
    assert nf_lsp.find_jar() is not None, "scripts/fetch_nextflow_ls.sh did not produce the jar"
    broken = tmp_path_factory.mktemp("nf_broken")
    _copy_nextflow_tree(broken)
    _inject(broken)
    res = nf_lsp.check_many([REPO, broken])
    return res[REPO.resolve()], res[broken.resolve()], broken


def test_repo_has_nextflow_files():
    rels = {f.relative_to(REPO).as_posix() for f in nf_lsp.nextflow_files(REPO)}
    assert {"main.nf", "nextflow.config", "workflows/caveat.nf", "conf/base.config",
            "conf/modules.config", "conf/test.config"} <= rels
    assert not any(r.startswith((".venv/", ".tools/", "work/")) for r in rels)


def test_language_server_reports_no_errors_on_repo(lsp_results):
    repo_diags, _, _ = lsp_results
    errs = nf_lsp.errors(repo_diags)
    assert not errs, "Nextflow language server errors:\n" + "\n".join(map(str, errs))


def test_every_repo_file_was_checked(lsp_results):
    """Files with no diagnostics are indistinguishable from files never analysed, so
    the broken copy's error must appear: done in the next test. Here: no warnings
    beyond the documented ones either."""
    repo_diags, _, _ = lsp_results
    assert not repo_diags, "Nextflow language server warnings:\n" + "\n".join(map(str, repo_diags))


def test_language_server_catches_injected_errors(lsp_results):
    _, broken, root = lsp_results
    errs = nf_lsp.errors(broken)
    wf, sub = "workflows/caveat.nf", "subworkflows/local/imbalance/main.nf"
    # exactly the three injected mistakes, each found on its own line, nothing else
    found = {(d.path, d.line, key) for d in errs
             for key in ("not_a_module", "undefined_thing_xyz", "MATCH_NEGATIVES") if key in d.message}
    assert found == {(wf, 1, "not_a_module"),
                     (wf, _line_of(root / wf, "undefined_thing_xyz"), "undefined_thing_xyz"),
                     (sub, _line_of(root / sub, WRONG_ARITY[1]), "MATCH_NEGATIVES")}, errs
    assert len(errs) == 3, errs


def test_client_fails_when_jar_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="fetch_nextflow_ls"):
        nf_lsp.check_many([tmp_path], jar=tmp_path / "missing.jar")


# ---------------------------------------------------------------- nf-test files (Groovy)

def _nf_test_files() -> list[Path]:
    files = [f for f in REPO.rglob("*.nf.test") if not set(f.relative_to(REPO).parts) & nf_lsp.EXCLUDE_DIRS]
    return sorted(files) + [REPO / "nf-test.config"]


def test_nf_test_files_parse_as_groovy(tmp_path):
    """The language server does not read nf-test's files; nf-test compiles them as Groovy
    scripts. Every ``.nf.test`` file and ``nf-test.config`` must parse (the Groovy 4 parser of
    the server's jar, to AST conversion), and a file with a syntax error must not (checked in
    the same JVM run)."""
    if nf_lsp.find_jar() is None:
        subprocess.run([str(REPO / "scripts" / "fetch_nextflow_ls.sh")], check=True, timeout=600)
    files = _nf_test_files()
    assert len(files) > 2 and (REPO / "tests" / "main.nf.test") in files
    broken = tmp_path / "broken.nf.test"
    broken.write_text((REPO / "tests" / "main.nf.test").read_text().replace("{ assert workflow.success },",
                                                                           "{ assert (workflow.success },", 1))
    res = nf_lsp.parse_groovy([*files, broken])
    bad = {str(p): msg for p, msg in res.items() if msg and p != broken.resolve()}
    assert not bad, bad
    assert res[broken.resolve()], "a syntax error was not reported"
