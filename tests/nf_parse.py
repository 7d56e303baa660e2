"""Static reading of the pipeline's Nextflow code, for the contract tests.

Not a Nextflow parser: it reads the subset of the language this repo writes
(strict syntax, one process per module, named workflows with take/main/emit)
well enough to answer two questions without Nextflow:

- which entry script each process's ``script:`` runs, with which ``--options``
  (including those ``conf/modules.config`` passes through ``task.ext.args``);
- the dataflow between processes: which process consumes (directly or through
  channels, operators and subworkflows) the outputs of which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OPTION = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")
CALL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s*\(")
ASSIGN = re.compile(r"^[ \t]*(?:def[ \t]+)?([a-z_]\w*)[ \t]*=(?!=)", re.M)
PROCESS = re.compile(r"^process\s+([A-Z][A-Z0-9_]*)\s*\{", re.M)
WORKFLOW = re.compile(r"^workflow(?:\s+([A-Z][A-Z0-9_]*))?\s*\{", re.M)
INCLUDE = re.compile(r"^include\s*\{([^}]*)\}\s*from\s*'([^']+)'", re.M)


# ---------------------------------------------------------------- text helpers

def strip_comments(text: str) -> str:
    """Drop ``/* */`` and ``//`` comments outside string literals (line breaks kept)."""
    out, i, quote = [], 0, None
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                out.append(text[i:i + 2])
                i += 2
                continue
            if text.startswith(quote, i):
                out.append(quote)
                i += len(quote)
                quote = None
                continue
            out.append(c)
        elif text.startswith('"""', i) or text.startswith("'''", i):
            quote = text[i:i + 3]
            out.append(quote)
            i += 3
            continue
        elif c in "'\"":
            quote = c
            out.append(c)
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
            continue
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = len(text) if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def matching(text: str, start: int, open_ch: str = "{", close_ch: str = "}") -> int:
    """Index just past the bracket closing the one at ``start``; strings are skipped."""
    depth, i, quote = 0, start, None
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif text.startswith(quote, i):
                i += len(quote) - 1
                quote = None
        elif text.startswith('"""', i) or text.startswith("'''", i):
            quote = text[i:i + 3]
            i += 2
        elif c in "'\"":
            quote = c
        elif c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {open_ch}{close_ch} from offset {start}")


def block(text: str, m: re.Match) -> str:
    """The body of the ``{`` block whose opening brace ends match ``m``."""
    start = m.end() - 1
    return text[start + 1:matching(text, start) - 1]


def sections(body: str, names: tuple[str, ...]) -> dict[str, str]:
    """Split a process/workflow body into its ``name:`` sections."""
    rx = re.compile(r"^[ \t]*(" + "|".join(names) + r"):[ \t]*$", re.M)
    out, marks = {}, list(rx.finditer(body))
    for m, nxt in zip(marks, marks[1:] + [None]):
        out[m.group(1)] = body[m.end():nxt.start() if nxt else len(body)]
    if not marks:
        out["main"] = body
    return out


def statement_end(text: str, start: int) -> int:
    """End of the statement starting at ``start``: brackets balanced, and the next
    line does not continue it with ``.operator``."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "\n" and depth <= 0:
            rest = text[i + 1:].lstrip()
            if not rest.startswith(".") and not rest.startswith("?") and not rest.startswith(":"):
                return i
        i += 1
    return len(text)


def split_args(text: str) -> list[str]:
    """Top-level comma-separated arguments."""
    args, depth, cur = [], 0, []
    for c in text:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            args.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    if "".join(cur).strip():
        args.append("".join(cur))
    return [a.strip() for a in args]


# ---------------------------------------------------------------- modules

@dataclass
class Process:
    """One process of a module file."""

    name: str
    path: Path
    body: str
    directives: str = ""
    script: str = ""
    stub: str = ""
    output: str = ""
    input: str = ""

    @property
    def collection_inputs(self) -> set[str]:
        """Inputs that stage several files (``path(x, stageAs: 'dir/*')``)."""
        return set(re.findall(r"path\((\w+),\s*stageAs:\s*'[^']*[*?][^']*'\)", self.body))

    @property
    def labels(self) -> list[str]:
        return re.findall(r"^\s*label\s+'([^']+)'", self.directives, re.M)

    @property
    def tag(self) -> str | None:
        m = re.search(r"^\s*tag\s+(.+)$", self.directives, re.M)
        return m.group(1).strip() if m else None

    @property
    def container(self) -> str | None:
        m = re.search(r"^\s*container\s+(.+)$", self.directives, re.M)
        return m.group(1).strip() if m else None


def read_process(path: Path) -> Process:
    text = strip_comments(path.read_text())
    m = PROCESS.search(text)
    if m is None:
        raise ValueError(f"{path}: no process")
    body = block(text, m)
    sec = sections(body, ("input", "output", "when", "script", "stub", "exec"))
    first = re.search(r"^[ \t]*(input|output|when|script|stub|exec):", body, re.M)
    return Process(m.group(1), path, body, body[:first.start()] if first else body,
                   sec.get("script", ""), sec.get("stub", ""), sec.get("output", ""), sec.get("input", ""))


def modules(root: Path = REPO) -> dict[str, Process]:
    """Process name → Process, for every ``modules/local/*/main.nf``."""
    out = {}
    for path in sorted((root / "modules" / "local").glob("*/main.nf")):
        p = read_process(path)
        out[p.name] = p
    return out


@dataclass
class Invocation:
    """An entry script called by a process, and the options passed to it."""

    script: str                                      # e.g. "wasp_remap" for wasp_remap.py
    options: list[str] = field(default_factory=list)  # in the script: block
    ext_options: list[str] = field(default_factory=list)  # from conf/modules.config ext.args
    values: dict[str, str] = field(default_factory=dict)  # option → the text after it


def script_invocations(proc: Process) -> list[Invocation]:
    """Entry scripts (``NAME.py``) run by the process's script block, with their options."""
    text = proc.script
    out = []
    for m in re.finditer(r"^[ \t]*([a-z_][a-z0-9_]*)\.py\b", text, re.M):
        # the command runs to the first line not continued with a backslash
        end = m.end()
        while True:
            nl = text.find("\n", end)
            if nl < 0:
                end = len(text)
                break
            if text[end:nl].rstrip().endswith("\\"):
                end = nl + 1
                continue
            end = nl
            break
        cmd = text[m.end():end]
        inv = Invocation(m.group(1), OPTION.findall(cmd))
        # options built in Groovy before the command: `def vcf = x ? "--vcf ${x}" : ''`
        for dm in re.finditer(r"^[ \t]*def[ \t]+(\w+)[ \t]*=(.*)$", text, re.M):
            if dm.group(1) != "args" and "${" + dm.group(1) + "}" in cmd:
                inv.options += OPTION.findall(dm.group(2))
        for om in OPTION.finditer(cmd):
            rest = cmd[om.end():].split("\\\n")[0]
            inv.values[om.group(0)] = rest.strip()
        out.append(inv)
    return out


def ext_args(config: Path = REPO / "conf" / "modules.config") -> dict[str, list[str]]:
    """Process name → the ``--options`` of its ``ext.args`` in conf/modules.config."""
    text = strip_comments(config.read_text())
    out: dict[str, list[str]] = {}
    for m in re.finditer(r"withName:\s*'([A-Z0-9_:|]+)'\s*\{", text):
        body = block(text, m)
        am = re.search(r"ext\.args\s*=", body)
        if am is None:
            continue
        for name in m.group(1).split("|"):
            out.setdefault(name.split(":")[-1], []).extend(OPTION.findall(body[am.end():]))
    return out


# ---------------------------------------------------------------- dataflow

@dataclass
class Workflow:
    name: str          # "" for the entry workflow
    path: Path
    take: list[str]
    main: str
    emit: dict[str, str]
    includes: dict[str, Path]


def _resolve_include(src: Path, target: str) -> Path:
    p = (src.parent / target).resolve()
    for cand in (p.with_name(p.name + ".nf"), p / "main.nf", p):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{src}: include '{target}' not found")


def read_workflows(path: Path) -> dict[str, Workflow]:
    text = strip_comments(path.read_text())
    includes = {}
    for m in INCLUDE.finditer(text):
        if m.group(2).startswith("plugin/"):
            continue
        target = _resolve_include(path, m.group(2))
        for name in re.split(r"[;\s]+", m.group(1).strip()):
            if name:
                includes[name] = target
    out = {}
    for m in WORKFLOW.finditer(text):
        body = block(text, m)
        sec = sections(body, ("take", "main", "emit", "publish"))
        take = [t.strip() for t in sec.get("take", "").splitlines() if t.strip()]
        emit = {}
        em = sec.get("emit", "")
        for am in ASSIGN.finditer(em):
            emit[am.group(1)] = em[am.end():statement_end(em, am.end())]
        out[m.group(1) or ""] = Workflow(m.group(1) or "", path, take, sec.get("main", ""), emit, includes)
    return out


@dataclass
class Graph:
    """Process-level dataflow: ``edges[p]`` are the processes whose outputs ``p`` reads."""

    edges: dict[str, set[str]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)   # process calls in text order (subworkflows inlined)

    def ancestors(self, p: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.edges.get(p, ()))
        while stack:
            q = stack.pop()
            if q not in seen:
                seen.add(q)
                stack.extend(self.edges.get(q, ()))
        return seen


def dataflow(main_nf: Path = REPO / "main.nf") -> Graph:
    """The process graph of the pipeline's entry workflow."""
    g = Graph()
    entry = read_workflows(main_nf)[""]
    _analyse(entry, [], g)
    return g


def _analyse(wf: Workflow, arg_deps: list[set[str]], g: Graph) -> dict[str, set[str]]:
    """Walk one workflow body; returns emit name → processes feeding it."""
    env: dict[str, set[str]] = {name: deps for name, deps in zip(wf.take, arg_deps)}
    called: dict[str, dict[str, set[str]] | set[str]] = {}   # call name → its outputs' deps
    body = wf.main
    events = sorted([(m.start(), "assign", m) for m in ASSIGN.finditer(body)] +
                    [(m.start(1), "call", m) for m in CALL.finditer(body) if m.group(1) in wf.includes])

    def refs(text: str) -> set[str]:
        out: set[str] = set()
        for m in re.finditer(r"\b([A-Z][A-Z0-9_]*)\.out\b(?:\.(\w+))?", text):
            name, emit = m.group(1), m.group(2)
            outs = called.get(name)
            if isinstance(outs, dict):   # a subworkflow: one emit, or all of them
                out |= outs.get(emit, set()) if emit else set().union(*outs.values())
            elif outs is not None:       # a process: itself
                out |= outs
        text_wo = re.sub(r"\b[A-Z][A-Z0-9_]*\.out(\.\w+)?", " ", text)
        for ident in set(re.findall(r"(?<![.\w])([a-z_]\w*)\b", text_wo)):
            out |= env.get(ident, set())
        return out

    for _, kind, m in events:
        if kind == "assign":
            end = statement_end(body, m.end())
            env[m.group(1)] = refs(body[m.end():end])
            continue
        name = m.group(1)
        close = matching(body, m.end() - 1, "(", ")")
        args = split_args(body[m.end():close - 1])
        deps = [refs(a) for a in args]
        target = wf.includes[name]
        wfs = read_workflows(target)
        if name in wfs:
            called[name] = _analyse(wfs[name], deps, g)
        else:
            g.edges.setdefault(name, set()).update(set().union(*deps) if deps else set())
            g.order.append(name)
            called[name] = {name}
    return {k: refs(v) for k, v in wf.emit.items()}


def step_of(process: str, step_names) -> str | None:
    """The pipeline step a process belongs to: its name, or the longest step name
    it starts with (``INSERTIONS_PSEUDOBULK`` → insertions); None for helpers."""
    low = process.lower()
    best = None
    for s in step_names:
        if (low == s or low.startswith(s + "_")) and (best is None or len(s) > len(best)):
            best = s
    return best
