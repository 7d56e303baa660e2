"""Task start-up (defect 12): what a Nextflow task pays before its work.

Each task starts Python and imports its step; a numba kernel compiled without a cache costs
~20 s more (measured on the tiny study: count_alleles on one sample 21.6 s with an empty
NUMBA_CACHE_DIR, 4.7 s with the cache filled; docs/nextflow.md "Task start-up"). The tests
keep the light steps free of torch and every kernel cached, and the cache folder set for tasks;
every entry script answers ``--version`` (asked in every task for the versions topic) before it
imports its step (~2.3 s of torch/numba/pandas imports per task saved).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "bin" / "caveat"
#: steps whose tasks run on every sample (or chromosome): they must not import torch
LIGHT = ("caveat.cli", "caveat.count_alleles", "caveat.wasp_remap", "caveat.insertions", "caveat.call_imbalance",
         "caveat.match_negatives")


def _imported(module: str) -> set[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=PKG.parent, capture_output=True, text=True, check=True,
                         timeout=300)
    return set(json.loads(out.stdout))


def test_light_steps_do_not_import_torch():
    heavy = {m: sorted(x for x in _imported(m) if x == "torch" or x.startswith("torch.")) for m in LIGHT}
    assert {m: v[:3] for m, v in heavy.items() if v} == {}


def test_the_check_sees_torch_where_it_is_imported():
    assert "torch" in _imported("caveat.model_adapter")


def njit_without_cache(root: Path = PKG) -> list[str]:
    """``numba.njit``/``jit`` decorators in the package that do not pass ``cache=True``."""
    out = []
    for f in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for d in node.decorator_list:
                call = d if isinstance(d, ast.Call) else None
                fn = call.func if call else d
                name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                if name not in ("njit", "jit"):
                    continue
                cached = call is not None and any(k.arg == "cache" and getattr(k.value, "value", None) is True
                                                  for k in call.keywords)
                if not cached:
                    out.append(f"{f.relative_to(root)}:{node.lineno} {node.name}")
    return out


def test_every_numba_kernel_is_cached(tmp_path):
    assert njit_without_cache() == []
    (tmp_path / "k.py").write_text("import numba as nb\n@nb.njit(nogil=True)\ndef f(x):\n    return x\n")
    assert njit_without_cache(tmp_path) == ["k.py:3 f"]


def test_tasks_share_a_numba_cache_folder():
    """nextflow.config's env {} gives every task NUMBA_CACHE_DIR, a folder that outlives the task
    (below projectDir, not the task's own work dir)."""
    text = (REPO / "nextflow.config").read_text()
    env = re.search(r"^env\s*\{(.*?)^\}", text, re.M | re.S)
    assert env, "no env {} block"
    m = re.search(r"^\s*NUMBA_CACHE_DIR\s*=\s*\"([^\"]+)\"", env.group(1), re.M)
    assert m and m.group(1).startswith("${projectDir}/"), m


#: runs an entry script as ``__main__`` and reports (on stderr) its exit code and the heavy modules it imported
_WRAP = """
import json, runpy, sys
path, args = sys.argv[1], sys.argv[2:]
sys.argv = [path, *args]
code = 0
try:
    runpy.run_path(path, run_name="__main__")
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("torch", "numba", "pandas", "polars") if m in sys.modules)
sys.stderr.write("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


def _run_shim(shim: Path, *args: str) -> tuple[str, dict]:
    out = subprocess.run([sys.executable, "-c", _WRAP, str(shim), *args], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    return out.stdout, json.loads(out.stderr.strip().splitlines()[-1])


def test_every_entry_script_answers_version_before_importing_its_step():
    """Nextflow's versions topic runs ``<step>.py --version`` in every task: the answer (the
    package version, one line, as before) comes without importing torch, numba, pandas or polars."""
    from caveat import __version__

    shims = sorted((REPO / "bin").glob("*.py"))
    assert len(shims) >= 13, shims
    got = {s.name: _run_shim(s, "--version") for s in shims}
    assert {k: out for k, (out, _) in got.items() if out != f"{__version__}\n"} == {}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
    assert {k: r for k, (_, r) in got.items() if r != {"code": 0, "heavy": []}} == {}


def test_the_version_check_sees_a_step_import_and_help_still_answers():
    """Anything but ``--version`` alone imports the step: ``--help`` prints the step's own usage
    (numba and pandas loaded, which the check above would see)."""
    out, r = _run_shim(REPO / "bin" / "count_alleles.py", "--help")
    assert out.startswith("usage: count_alleles") and "--concordance-min-reads" in out
    assert r["code"] == 0 and {"numba", "pandas"} <= set(r["heavy"])
