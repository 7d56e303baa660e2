"""A module's channel shapes, as its ``main.nf`` declares them and as its ``meta.yml`` documents them.

nf-core's module ``meta.yml`` (nf-core/tools ``modules/meta-schema.json``; the drep_compare
example of the nf-core module docs): ``input`` is a list with one entry per input channel, a
list of one-key maps for a ``tuple``, one one-key map otherwise; ``output`` maps each ``emit``
name to a list holding its channel the same way; a ``topic: versions`` output is listed under
``output`` as ``versions_<tool>`` and again under ``topics.versions``. Keys are the input
variable names, the output file patterns as written (``${meta.id}.parquet``), ``meta``,
``${task.process}``, the tool name and the ``eval`` command.
"""

from __future__ import annotations

import re
from pathlib import Path

import nf_parse

#: (declaration kind, name or pattern) of one element of a channel
Element = tuple[str, str]

_ITEM = re.compile(r"^(val|path|eval|env)\s*\(\s*(.*)\)$|^(val|path|eval|env)\s+(.*)$", re.S)


def _element(decl: str) -> Element:
    """``path(bam)`` / ``path bam`` / ``val("${task.process}")`` / ``eval('x --version')`` → (kind, name)."""
    m = _ITEM.match(decl.strip())
    if m is None:
        raise ValueError(f"cannot read channel element {decl!r}")
    kind, arg = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    first = nf_parse.split_args(arg)[0].strip()
    if first[:1] in "\"'":
        first = first[1:-1]
    return kind, first


def _channels(section: str, with_emit: bool) -> list[tuple[str | None, bool, list[Element]]]:
    """Each declaration line of an input/output section → (emit, is_tuple, elements)."""
    out = []
    for line in section.splitlines():
        line = line.strip()
        if not line:
            continue
        emit = None
        m = re.search(r",\s*emit:\s*(\w+)", line)
        if m:
            emit = m.group(1)
        decl = re.split(r",\s*(?:emit|topic|optional):", line)[0].strip()
        if decl.startswith("tuple"):
            out.append((emit, True, [_element(x) for x in nf_parse.split_args(decl[len("tuple"):].strip())]))
        else:
            out.append((emit, False, [_element(decl)]))
    if with_emit and any(e is None for e, _, _ in out):
        raise ValueError("an output without emit:")
    return out


def process_shapes(main_nf: Path) -> dict:
    """{'input': [[elements]…], 'output': {emit: [elements]}, 'topics': [[elements]…]} of a module."""
    proc = nf_parse.read_process(main_nf)
    inputs = [els for _, _, els in _channels(proc.input, False)]
    outputs, topics = {}, []
    for line, (emit, _, els) in zip([x for x in proc.output.splitlines() if x.strip()], _channels(proc.output, True)):
        outputs[emit] = els
        if re.search(r"topic:\s*versions", line):
            topics.append(els)
    return {"name": proc.name, "input": inputs, "output": outputs, "topics": topics}


def _keys(channel) -> list[str]:
    """The element keys of one documented channel (a list of one-key maps, or one map)."""
    items = channel if isinstance(channel, list) else [channel]
    keys = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            raise ValueError(f"channel element {item!r} is not a one-key map")
        keys.append(str(next(iter(item))))
    return keys


def _types(channel) -> list[str]:
    items = channel if isinstance(channel, list) else [channel]
    return [str((next(iter(item.values())) or {}).get("type")) for item in items]


#: meta.yml `type` values each declaration kind may have
KIND_TYPES = {"path": {"file", "directory"}, "eval": {"eval"}, "env": {"string"},
              "val": {"map", "string", "integer", "boolean", "list", "number"}}


def meta_problems(meta: dict, shapes: dict) -> list[str]:
    """Where a module's meta.yml disagrees with its main.nf (empty: nowhere)."""
    where = shapes["name"]
    problems = []
    if meta.get("name") != shapes["name"].lower():
        problems.append(f"{where}: name {meta.get('name')!r} (want {shapes['name'].lower()!r})")
    for key in ("description", "keywords", "tools", "authors", "maintainers"):
        if not meta.get(key):
            problems.append(f"{where}: no {key}")
    documented = meta.get("input") or []
    if len(documented) != len(shapes["input"]):
        problems.append(f"{where}: {len(documented)} input channels documented, main.nf declares {len(shapes['input'])}")
    for i, (doc, els) in enumerate(zip(documented, shapes["input"]), 1):
        problems += _channel_problems(f"{where}: input {i}", doc, els)
    outs = meta.get("output") or {}
    if list(outs) != list(shapes["output"]):
        problems.append(f"{where}: outputs {list(outs)} documented, main.nf emits {list(shapes['output'])}")
    for emit, els in shapes["output"].items():
        if emit in outs:
            doc = outs[emit]
            if not isinstance(doc, list) or len(doc) != 1:
                problems.append(f"{where}: output {emit}: want a list holding one channel")
                continue
            problems += _channel_problems(f"{where}: output {emit}", doc[0], els)
    topics = (meta.get("topics") or {}).get("versions") or []
    if len(topics) != len(shapes["topics"]):
        problems.append(f"{where}: {len(topics)} topics.versions entries, main.nf sends {len(shapes['topics'])}")
    for doc, els in zip(topics, shapes["topics"]):
        problems += _channel_problems(f"{where}: topics.versions", doc, els)
    return problems


def _channel_problems(where: str, doc, els: list[Element]) -> list[str]:
    try:
        keys, types = _keys(doc), _types(doc)
    except (ValueError, AttributeError) as e:
        return [f"{where}: {e}"]
    want = [name for _, name in els]
    if keys != want:
        return [f"{where}: documented {keys}, main.nf declares {want}"]
    out = []
    for (kind, name), t in zip(els, types):
        allowed = {"map"} if (kind, name) == ("val", "meta") else KIND_TYPES[kind]
        if t not in allowed:
            out.append(f"{where}: {name} has type {t} (a {kind}: want one of {sorted(allowed)})")
    return out


# ---------------------------------------------------------------- what a module needs

#: import name → conda package (containers/environment.yml)
IMPORT_PACKAGES = {"numpy": "numpy", "pandas": "pandas", "polars": "polars", "pyarrow": "pyarrow", "pysam": "pysam",
                   "pyBigWig": "pybigwig", "pyfaidx": "pyfaidx", "scipy": "scipy", "statsmodels": "statsmodels",
                   "sklearn": "scikit-learn", "numba": "numba", "yaml": "pyyaml", "matplotlib": "matplotlib",
                   "isal": "python-isal", "MACS3": "macs3", "torch": "torch"}
#: command-line tools a caveat module may run → conda package
TOOL_PACKAGES = {"bowtie2": "bowtie2", "bowtie2-build": "bowtie2", "bwa": "bwa", "samtools": "samtools",
                 "bcftools": "bcftools", "macs3": "macs3"}


def import_closure(module: str, package_dir: Path) -> tuple[set[str], list[Path]]:
    """Top-level third-party names imported (anywhere, function-level included) by ``caveat.<module>``
    and every caveat module it imports, transitively; and those modules' files."""
    import ast

    seen, todo, third, files = set(), [module], set(), []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        rel = name.split(".")
        path = package_dir.joinpath(*rel).with_suffix(".py")
        if not path.is_file():
            path = package_dir.joinpath(*rel, "__init__.py")
        if not path.is_file():
            continue
        files.append(path)
        pkg = rel if path.name == "__init__.py" else rel[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(a.name, 0) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                targets = [(base, node.level)] + [(f"{base}.{a.name}" if base else a.name, node.level) for a in node.names]
            else:
                continue
            for target, level in targets:
                if level:
                    parts = (pkg[:len(pkg) - level + 1] if level > 1 else pkg) + ([target] if target else [])
                    todo.append(".".join(p for p in ".".join(parts).split(".") if p))
                elif target.split(".")[0] == "caveat":
                    todo.append(".".join(target.split(".")[1:]))
                else:
                    third.add(target.split(".")[0])
    return third, files


def module_needs(main_nf: Path, package_dir: Path) -> set[str]:
    """The conda packages a module's task needs: the imports of the caveat entry scripts its
    script runs, and the tools it calls (in its script, or through the caveat code it runs)."""
    proc = nf_parse.read_process(main_nf)
    code = proc.script
    needs = {"python"}
    for script in set(re.findall(r"^\s*([a-z_]+)\.py\b", code, re.M)):
        names, files = import_closure(script, package_dir)
        needs |= {IMPORT_PACKAGES[n] for n in names if n in IMPORT_PACKAGES}
        # tools the caveat code runs: their names as string literals ("samtools", 'bowtie2-build')
        code += "\n".join(re.findall(r"[\"']([a-z][\w-]*)[\"']", "".join(f.read_text() for f in files)))
    for tool, pkg in TOOL_PACKAGES.items():
        if re.search(rf"(?<![\w.-]){re.escape(tool)}(?![\w.-])", code):
            needs.add(pkg)
    if "python" in needs and not re.search(r"^\s*[a-z_]+\.py\b", code, re.M):
        needs.discard("python")
    return needs
