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


# ---------------------------------------------------------------- channel values (symbolic)
#
# A small abstract interpreter of the channel expressions this repo writes, for the runtime
# rules the language server does not check: which files reach each workflow output (and so
# where Nextflow publishes them), and which channels are value channels. It follows the
# Nextflow 25.10 rules it encodes:
#
# - a process's output channels are value channels when every input is a value (a value
#   channel or a plain value) and no input is `each` (ProcessDef.run: `singleton =
#   allScalarInputs && !hasEachParams`, then `CH.create(singleton)`);
# - `channel.value`, `collect`, `toList`, `toSortedList`, `first`, `last`, `count`, `sum`,
#   `reduce`, `min`, `max` give value channels; `map`/`filter` keep the source's kind
#   (MapOp: `CH.createBy(source)`); `mix`, `combine`, `join`, `groupTuple`, `flatMap`,
#   `collectFile` … give queue channels.

@dataclass(frozen=True)
class FileOut:
    """A file (or folder) a process output declares, by its path relative to the task dir."""

    process: str
    pattern: str


@dataclass(frozen=True)
class ListOf:
    """A list value (e.g. after ``toSortedList`` or ``groupTuple``) of these items."""

    items: frozenset


@dataclass
class Chan:
    value: bool                       # a value channel (or a plain value)
    shapes: frozenset                 # possible elements: tuples of FileOut | ListOf | None


PLAIN = Chan(True, frozenset({(None,)}))
VALUE_OPS = {"value", "collect", "toList", "toSortedList", "first", "last", "count", "sum", "reduce", "min", "max"}
KEEP_OPS = {"map", "filter", "unique", "distinct", "view", "dump", "ifEmpty", "branch", "multiMap", "set", "tap"}
LIST_OPS = {"collect", "toList", "toSortedList"}


def _flat_items(shapes) -> frozenset:
    out = set()
    for shape in shapes:
        for item in shape:
            if isinstance(item, ListOf):
                out |= item.items
            else:
                out.add(item)
    return frozenset(out)


def chain_segments(expr: str) -> list[tuple[str, str | None, str | None]]:
    """``a.b(x){c}.d`` → [(a, None, None), (b, 'x', 'c'), (d, None, None)] (top level only)."""
    segs, i, text = [], 0, expr.strip()
    while i < len(text):
        while i < len(text) and text[i] in " \t\n.":
            i += 1
        if i >= len(text):
            break
        m = re.match(r"[A-Za-z_]\w*", text[i:])
        if m is None:   # a literal or something else: one opaque segment
            segs.append(("<expr>", text[i:], None))
            break
        name, i = m.group(0), i + m.end()
        args = clos = None
        j = i
        while j < len(text) and text[j] in " \t":
            j += 1
        if j < len(text) and text[j] == "(":
            k = matching(text, j, "(", ")")
            args, i = text[j + 1:k - 1], k
            j = i
            while j < len(text) and text[j] in " \t":
                j += 1
        if j < len(text) and text[j] == "{":
            k = matching(text, j)
            clos, i = text[j + 1:k - 1], k
        segs.append((name, args, clos))
        rest = text[i:].lstrip()
        if rest and not rest.startswith("."):
            # an operator or something else follows (ternary, arithmetic): stop here
            segs.append(("<expr>", rest, None))
            break
    return segs


def process_outputs(proc: Process) -> dict[str, tuple]:
    """Emit name → the declared output's items (FileOut for path(...), None otherwise)."""
    out = {}
    for line in proc.output.splitlines():
        m = re.search(r"\bemit:\s*(\w+)", line)
        if not m:
            continue
        decl = line[:line.find("emit:")]
        items = []
        body = decl.strip().rstrip(",")
        body = body[len("tuple"):].strip() if body.startswith("tuple") else body
        for part in split_args(body):
            pm = re.match(r"path\s*\(?\s*([\"'])(.*?)\1", part)
            items.append(FileOut(proc.name, pm.group(2)) if pm else None)
        out[m.group(1)] = tuple(items)
    return out


def _close_params(clos: str) -> tuple[list[str], str]:
    if "->" not in clos:
        return ["it"], clos
    head, body = clos.split("->", 1)
    return [p.strip().split()[-1] for p in head.split(",") if p.strip()], body.strip()


class ChannelEval:
    """Evaluates the entry workflow of ``main_nf``: publish targets and `first` misuse."""

    def __init__(self, main_nf: Path = REPO / "main.nf"):
        self.modules = modules(main_nf.parent)
        self.useless_first: list[str] = []     # "file: workflow: expression" where `first` gets a value channel
        self.entry = read_workflows(main_nf)[""]
        self.publish = self._run(self.entry, [], publish=True)

    # -- workflows
    def _run(self, wf: Workflow, args: list[Chan], publish: bool = False) -> dict[str, Chan]:
        env: dict[str, Chan] = dict(zip(wf.take, args))
        calls: dict[str, dict[str, Chan]] = {}
        body = wf.main
        events = sorted([(m.start(), "assign", m) for m in ASSIGN.finditer(body)] +
                        [(m.start(1), "call", m) for m in CALL.finditer(body) if m.group(1) in wf.includes])
        done_to = -1
        for pos, kind, m in events:
            if pos < done_to:
                continue
            if kind == "assign":
                end = statement_end(body, m.end())
                env[m.group(1)] = self.eval(body[m.end():end], env, calls, wf)
                done_to = end
                continue
            name = m.group(1)
            close = matching(body, m.end() - 1, "(", ")")
            chans = [self.eval(a, env, calls, wf) for a in split_args(body[m.end():close - 1])]
            target = wf.includes[name]
            wfs = read_workflows(target)
            if name in wfs:
                calls[name] = self._run(wfs[name], chans)
            else:
                proc = self.modules.get(name) or read_process(target)
                value = all(c.value for c in chans)
                calls[name] = {k: Chan(value, frozenset({v})) for k, v in process_outputs(proc).items()}
        emits = dict(wf.emit)
        if publish:
            pub = sections(wf_body(wf), ("take", "main", "emit", "publish")).get("publish", "")
            for am in ASSIGN.finditer(pub):
                emits[am.group(1)] = pub[am.end():statement_end(pub, am.end())]
        return {k: self.eval(v, env, calls, wf) for k, v in emits.items()}

    # -- expressions
    def eval(self, expr: str, env: dict, calls: dict, wf: Workflow) -> Chan:
        segs = chain_segments(expr)
        if not segs:
            return PLAIN
        name, args, clos = segs[0]
        rest = segs[1:]
        if name in calls and rest and rest[0][0] == "out":
            outs = calls[name]
            if len(rest) > 1 and rest[1][0] in outs:
                chan, rest = outs[rest[1][0]], rest[2:]
            else:
                chan = Chan(all(c.value for c in outs.values()),
                            frozenset().union(*(c.shapes for c in outs.values())))
                rest = rest[1:]
        elif name == "channel" and rest:
            op = rest[0][0]
            chan = Chan(op == "value", frozenset({(None,)}))
            rest = rest[1:]
        elif name in env and args is None:
            chan = env[name]
        else:
            return PLAIN
        for op, a, c in rest:
            chan = self._apply(op, a, c, chan, env, calls, wf, expr)
        return chan

    def _apply(self, op, args, clos, chan: Chan, env, calls, wf, expr) -> Chan:
        if op == "first" and chan.value:
            self.useless_first.append(f"{wf.path.relative_to(REPO) if wf.path.is_relative_to(REPO) else wf.path}: "
                                      f"{wf.name or '<entry>'}: {' '.join(expr.split())[:120]}")
        if op == "map" and clos is not None:
            return Chan(chan.value, frozenset(self._map(clos, s) for s in chan.shapes))
        if op in LIST_OPS:
            return Chan(True, frozenset({(ListOf(_flat_items(chan.shapes)),)}))
        if op in VALUE_OPS:
            return Chan(True, chan.shapes)
        if op == "mix":
            others = [self.eval(a, env, calls, wf) for a in split_args(args or "")]
            return Chan(False, chan.shapes.union(*(o.shapes for o in others)))
        if op == "combine":
            others = [self.eval(a, env, calls, wf) for a in split_args(args or "") if ":" not in a]
            shapes = chan.shapes
            for o in others:
                shapes = frozenset(s + t for s in shapes for t in o.shapes)
            return Chan(False, shapes)
        if op == "join":
            others = [self.eval(a, env, calls, wf) for a in split_args(args or "") if ":" not in a]
            shapes = chan.shapes
            for o in others:
                shapes = frozenset(s + t[1:] for s in shapes for t in o.shapes)
            return Chan(False, shapes)
        if op == "groupTuple":
            return Chan(False, frozenset(s[:1] + tuple(ListOf(frozenset({x})) for x in s[1:]) for s in chan.shapes))
        if op == "collectFile":
            nm = re.search(r"name:\s*([\"'])(.*?)\1", args or "")
            return Chan(False, frozenset({(FileOut("collectFile", nm.group(2) if nm else "*"),)}))
        if op in KEEP_OPS:
            return chan
        if op in ("flatMap", "flatten", "splitCsv", "splitText", "transpose"):
            return Chan(False, frozenset({(None,)}))
        # a property of a branch/multiMap result (`.variant`) or an unknown operator
        return chan

    def _map(self, clos: str, shape: tuple) -> tuple:
        params, body = _close_params(clos)
        if len(params) == 1 and len(shape) != 1:
            bound = {params[0]: ListOf(frozenset(shape))}
        else:
            bound = {p: (shape[i] if i < len(shape) else None) for i, p in enumerate(params)}
        body = body.strip()
        if re.fullmatch(r"\w+", body):
            return (bound.get(body),)
        if body.startswith("[") and matching(body, 0, "[", "]") == len(body):
            out = []
            for el in split_args(body[1:-1]):
                if re.fullmatch(r"\w+", el):
                    out.append(bound.get(el))
                elif el.startswith("[") and re.fullmatch(r"\[\s*\w+\s*\]", el):
                    inner = bound.get(el.strip("[] "))
                    out.append(ListOf(frozenset({inner})) if inner is not None else None)
                else:
                    out.append(None)
            return tuple(out)
        # any other body: the files it names
        named = [bound[n] for n in re.findall(r"(?<![.\w])([a-z_]\w*)\b", body) if bound.get(n) is not None]
        return tuple(named) or (None,)


def wf_body(wf: Workflow) -> str:
    text = strip_comments(wf.path.read_text())
    for m in WORKFLOW.finditer(text):
        if (m.group(1) or "") == wf.name:
            return block(text, m)
    raise ValueError(wf.name)


def output_paths(main_nf: Path = REPO / "main.nf") -> dict[str, str]:
    """The ``output {}`` block of main.nf: output name → its ``path``."""
    text = strip_comments(main_nf.read_text())
    m = re.search(r"^output\s*\{", text, re.M)
    out = {}
    if m is None:
        return out
    body = block(text, m)
    for om in re.finditer(r"^\s*(\w+)\s*\{", body, re.M):
        inner = block(body, om)
        pm = re.search(r"^\s*path\s+([\"'])(.*?)\1", inner, re.M)
        out[om.group(1)] = pm.group(2) if pm else "."
    return out


def published_files(main_nf: Path = REPO / "main.nf") -> dict[str, set[FileOut]]:
    """Workflow output name → the process output files that reach it."""
    ev = ChannelEval(main_nf)
    return {k: {i for i in _flat_items(c.shapes) if isinstance(i, FileOut)} for k, c in ev.publish.items()}


# ---------------------------------------------------------------- ext.args as the task sees them

def ext_args_closures(config: Path = REPO / "conf" / "modules.config") -> dict[str, str]:
    """Process name → the Groovy text of its ``ext.args = { … }`` closure in conf/modules.config
    (evaluated by ``nf_lsp.eval_closures``)."""
    text = strip_comments(config.read_text())
    out = {}
    for m in re.finditer(r"withName:\s*'([A-Z0-9_:|]+)'\s*\{", text):
        body = block(text, m)
        am = re.search(r"ext\.args\s*=\s*\{", body)
        if am:
            clos = body[am.end() - 1:matching(body, am.end() - 1)]
            for name in m.group(1).split("|"):
                out[name.split(":")[-1]] = clos
    return out


def bash_words(args: str) -> list[str]:
    """The words bash makes of ``args`` pasted into a script line, as in a task's .command.sh."""
    import subprocess

    res = subprocess.run(["bash", "-c", "printf '%s\\0' " + args], capture_output=True, timeout=10)
    if res.returncode != 0:
        raise ValueError(f"bash cannot parse {args!r}: {res.stderr.decode()}")
    return res.stdout.decode().split("\0")[:-1]
