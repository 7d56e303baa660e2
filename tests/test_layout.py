"""Package layout rules (docs/CONVENTIONS.md, issue 14 "one definition per step"): no step
module imports another step module; what several steps share lives in neutral modules
(``caveat.regimes``, ``caveat.device``, ``caveat.tracks``, ``caveat.dataset_io``, …)."""

from __future__ import annotations

import ast
from pathlib import Path

from caveat.pipeline import STEP_NAMES

PKG = Path(__file__).resolve().parents[1] / "bin" / "caveat"


def imported_modules(path: Path, package: str = "caveat") -> set[str]:
    """Every ``caveat.*`` module a top-level module of the package imports (at the top or
    inside functions), as absolute names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = [package]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            out.add(mod)
            # `from . import train` / `from caveat import train` name modules too
            out.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in out if m == package or m.startswith(package + ".")}


def step_imports(pkg: Path = PKG) -> list[str]:
    steps = {f"caveat.{n}" for n in STEP_NAMES}
    bad = []
    for name in STEP_NAMES:
        path = pkg / f"{name}.py"
        if not path.exists():
            continue
        for mod in imported_modules(path):
            bad += [f"caveat.{name} imports {s}" for s in steps - {f"caveat.{name}"}
                    if mod == s or mod.startswith(s + ".")]
    return sorted(set(bad))


def test_no_step_module_imports_another_step():
    assert step_imports() == []


def test_step_import_check_sees_relative_absolute_and_function_level_imports(tmp_path):
    pkg = tmp_path / "caveat"
    pkg.mkdir()
    (pkg / "predict.py").write_text("from .train import resolve_device\nimport numpy\nfrom .io import write_json\n")
    (pkg / "report.py").write_text("def f():\n    from caveat import evaluate\n    return evaluate\n")
    (pkg / "evaluate.py").write_text("from . import metrics as M\nimport caveat.score_variants\n")
    assert step_imports(pkg) == ["caveat.evaluate imports caveat.score_variants",
                                 "caveat.predict imports caveat.train",
                                 "caveat.report imports caveat.evaluate"]
