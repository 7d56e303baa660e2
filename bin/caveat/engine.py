"""The local engine: the pipeline's steps, in dependency order, in one process.

It is not a workflow engine (Nextflow is): no scheduler, no executors. It runs
each step once, in order, and records a fingerprint of what the step read
(its params, its input files, the code, its upstream steps' fingerprints) in
``<outdir>/pipeline_info/steps/<step>.json``, with the size and content digest
of every file the step wrote below the outdir. With ``resume=True`` a step is
skipped only when its fingerprint is unchanged and its recorded outputs are
all there, unchanged; a step rerun because its outputs were missing or changed
also reruns the steps downstream when it writes different outputs. A step's
outputs are written atomically (see :mod:`caveat.io`), and the marker is written
only after the step returns, so a step killed mid-write is rerun and leaves
nothing that looks complete. A run holds an exclusive lock on
``<outdir>/pipeline_info/.lock``: a second run into the same outdir is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import __version__
from .errors import InputError, storage_error
from .io import TMP_PREFIX, content_digest, dumps_json, file_digest, write_json
from .log import get_logger

log = get_logger("engine")

MARKER_DIR = Path("pipeline_info") / "steps"
LOCK_FILE = Path("pipeline_info") / ".lock"


@dataclass
class StepContext:
    """What a step gets from the engine.

    Attributes
    ----------
    params : dict
        The full, validated params (defaults merged in).
    outdir : Path
        The pipeline's output directory; steps write below it.
    threads : int
        Worker processes/threads the step may use.
    log : logging.Logger
        The step's logger.
    """

    params: dict
    outdir: Path
    threads: int = 1
    log: logging.Logger = field(default_factory=lambda: get_logger("step"))

    def out(self, *parts: str) -> Path:
        """Path below the outdir (parent directories are created)."""
        p = self.outdir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


@dataclass(frozen=True)
class Step:
    """One pipeline step.

    Parameters
    ----------
    name : str
        The step name (``wasp_remap`` …), also the Nextflow process name in upper case.
    run : callable
        ``run(ctx: StepContext) -> dict``; returns the step's one-line summary figures.
    needs : tuple of str
        Upstream step names whose outputs this step reads.
    params : dict
        The params this step reads, with their defaults.
    input_files : callable, optional
        ``input_files(params) -> list of paths`` of external files the step reads
        (genome, BAMs); their content is part of the fingerprint.
    optional_needs : tuple of str
        Upstream steps read when they are part of the run (e.g. peak strata).
    path_params : tuple of str
        Which of ``params`` name files; relative values are resolved against
        the directory of the params file that set them.
    optional_reads : callable, optional
        ``optional_reads(params) -> tuple of str``: which ``optional_needs`` this
        run's params make the step read (default: all). The others still order
        the steps, but are not part of its fingerprint and ``--until`` does not run them.
    """

    name: str
    run: Callable[[StepContext], dict]
    needs: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    input_files: Callable[[dict], Iterable[str | Path]] | None = None
    optional_needs: tuple[str, ...] = ()
    path_params: tuple[str, ...] = ()
    doc: str = ""
    optional_reads: Callable[[dict], tuple[str, ...]] | None = None

    def upstream(self, params: dict) -> tuple[str, ...]:
        """The steps whose outputs this run of the step reads: ``needs`` and the selected ``optional_needs``."""
        extra = self.optional_needs if self.optional_reads is None else self.optional_reads(params)
        return (*self.needs, *(d for d in self.optional_needs if d in extra))


def order_steps(steps: Sequence[Step]) -> list[Step]:
    """Topological order of ``steps``; ties keep the given order."""
    by_name = {s.name: s for s in steps}
    if len(by_name) != len(steps):
        raise ValueError("duplicate step names")
    done: list[Step] = []
    seen: set[str] = set()
    visiting: set[str] = set()

    def visit(s: Step) -> None:
        if s.name in seen:
            return
        if s.name in visiting:
            raise ValueError(f"dependency cycle through step {s.name!r}")
        visiting.add(s.name)
        for dep in s.needs:
            if dep not in by_name:
                raise ValueError(f"step {s.name!r} needs unknown step {dep!r}")
            visit(by_name[dep])
        for dep in s.optional_needs:
            if dep in by_name:
                visit(by_name[dep])
        visiting.discard(s.name)
        seen.add(s.name)
        done.append(s)

    for s in steps:
        visit(s)
    return done


def code_version(step: Step | None = None) -> str:
    """Digest of the source a step runs: its module and every ``caveat`` module it
    imports, transitively (the whole package when ``step`` is None). A change there
    reruns the step on resume; a change elsewhere does not."""
    pkg = Path(__file__).resolve().parent
    files = sorted(pkg.rglob("*.py")) if step is None else _import_closure(step.run.__module__)
    h = hashlib.sha256(__version__.encode())
    for f in files:
        f = Path(f)
        h.update((f.relative_to(pkg).as_posix() if f.is_relative_to(pkg) else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _import_closure(module: str) -> list[Path]:
    """Source files of ``module`` and of the ``caveat`` modules it imports, transitively."""
    import ast
    import importlib.util

    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # a name imported from a module, not a submodule
            continue
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        seen[name] = Path(spec.origin)
        is_pkg = spec.submodule_search_locations is not None
        package = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(seen[name].read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                if base == "caveat" or base.startswith("caveat."):
                    todo.append(base)
                    todo.extend(f"{base}.{a.name}" for a in node.names)  # submodules imported by name
            elif isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.split(".")[0] == "caveat")
        # a module's parent packages run their __init__ too
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
    return sorted(seen.values())


def _portable(value):
    """A param value as the fingerprint records it: an absolute path by its name and content.

    Paths are resolved to absolute ones when params are read, so recording them
    as given would make the same study in another folder look changed (and its
    markers differ byte for byte); a file's name and digest say what matters.
    """
    if isinstance(value, str) and value.startswith("/"):
        p = Path(value)
        return [p.name, file_digest(p)] if p.is_file() else p.name
    if isinstance(value, list):
        return [_portable(v) for v in value]
    return value


def fingerprint(step: Step, params: dict, upstream: dict[str, str], code: str) -> str:
    """Digest of everything a step's result depends on."""
    files = []
    if step.input_files is not None:
        for f in step.input_files(params):
            f = Path(f)
            files.append([f.name, file_digest(f) if f.exists() else "missing"])
    record = {
        "step": step.name,
        "code": code,
        # seed is read by every stochastic step; always part of the fingerprint
        "params": {k: _portable(params.get(k)) for k in sorted({*step.params, "seed"})},
        "files": sorted(files),
        "upstream": {k: upstream[k] for k in sorted(upstream)},
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def run_pipeline(steps: Sequence[Step], params: dict, outdir: str | Path, *,
                 resume: bool = False, until: str | None = None, threads: int = 1) -> dict[str, str]:
    """Run ``steps`` in dependency order.

    Parameters
    ----------
    steps : sequence of Step
    params : dict
        Validated params.
    outdir : path
    resume : bool
        Skip steps whose fingerprint matches the one recorded by a completed run
        and whose recorded outputs are all present and unchanged.
    until : str, optional
        Stop after this step (its upstream steps run, downstream ones do not).
    threads : int

    Returns
    -------
    dict
        Step name → ``"ran"`` or ``"skipped"``.

    Raises
    ------
    InputError
        When another run holds the outdir's lock, or the outdir is not a folder.
    """
    outdir = Path(outdir)
    ordered = order_steps(steps)
    names = [s.name for s in ordered]
    if until is not None and until not in names:
        raise InputError("--until", f"unknown step {until!r}", f"use one of: {', '.join(names)}")
    if until is not None:
        keep = _ancestors(ordered, until, params)
        ordered = [s for s in ordered if s.name in keep]
    with lock_outdir(outdir):
        status = _run_steps(ordered, params, outdir, resume, threads)
    return status


def _run_steps(ordered: Sequence[Step], params: dict, outdir: Path, resume: bool, threads: int) -> dict[str, str]:
    fps: dict[str, str] = {}
    status: dict[str, str] = {}
    changed: set[str] = set()  # steps rerun in this run whose outputs differ from their last record
    t_start = time.monotonic()
    for i, step in enumerate(ordered, 1):
        deps = [d for d in step.upstream(params) if d in fps]
        fp = fingerprint(step, params, {d: fps[d] for d in deps}, code_version(step))
        fps[step.name] = fp
        marker = outdir / MARKER_DIR / f"{step.name}.json"
        recorded = _read_marker(marker)
        if resume:
            why = _stale(recorded, fp, outdir, [d for d in deps if d in changed])
            if why is None:
                log.info("[%d/%d] %s: unchanged, skipped (resume)", i, len(ordered), step.name)
                status[step.name] = "skipped"
                continue
            log.info("[%d/%d] %s: %s", i, len(ordered), step.name, why)
        if marker.exists():
            marker.unlink()
        log.info("[%d/%d] %s: running", i, len(ordered), step.name)
        t0 = time.monotonic()
        before = _snapshot(outdir)
        ctx = StepContext(params=params, outdir=outdir, threads=threads, log=get_logger(step.name))
        summary = _run_one(step, ctx, before)
        outputs = _written(outdir, before, _snapshot(outdir))
        if outputs != recorded.get("outputs"):
            changed.add(step.name)
        write_json({"step": step.name, "fingerprint": fp, "outputs": outputs, "summary": summary}, marker)
        log.info("[%d/%d] %s: done in %.1fs — %s", i, len(ordered), step.name, time.monotonic() - t0,
                 _one_line(summary))
        status[step.name] = "ran"
    log.info("pipeline finished in %.1fs: %d ran, %d skipped; outputs in %s",
             time.monotonic() - t_start, sum(v == "ran" for v in status.values()),
             sum(v == "skipped" for v in status.values()), outdir)
    return status


def _run_one(step: Step, ctx: StepContext, before: dict) -> dict:
    """Run ``step``; when it fails, remove what it wrote (nothing that looks complete is
    left; the step has no marker, so the next run redoes it) and turn a failed write
    (full disk, quota, file size limit, read-only folder) into a user-facing error."""
    try:
        return step.run(ctx) or {}
    except BaseException as e:
        removed = _discard_written(ctx.outdir, before)
        if removed:
            ctx.log.warning("%s failed: removed %d file(s) it had written (%s)", step.name, len(removed),
                            ", ".join(removed[:5]) + (" …" if len(removed) > 5 else ""))
        if isinstance(e, OSError):
            err = storage_error(e, ctx.outdir, f"step {step.name}")
            if err is not None:
                raise err from None
        raise


def _discard_written(outdir: Path, before: dict) -> list[str]:
    """Delete the files below ``outdir`` created or rewritten since the ``before`` snapshot."""
    removed = []
    for rel, st in sorted(_snapshot(outdir).items()):
        if before.get(rel) != st:
            with contextlib.suppress(FileNotFoundError):
                (outdir / rel).unlink()
                removed.append(rel)
    return removed


@contextlib.contextmanager
def lock_outdir(outdir: Path):
    """Hold an exclusive lock on ``outdir`` (``pipeline_info/.lock``) for a run.

    Two runs writing into one outdir would mix their outputs and markers; the
    second is refused at once. The lock is the kernel's (``flock``): a killed
    run releases it, and the empty lock file left behind means nothing.
    """
    if outdir.exists() and not outdir.is_dir():
        raise InputError(outdir, "the outdir exists and is not a folder", "set outdir to a folder (new or existing)")
    lock = outdir / LOCK_FILE
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise InputError(outdir, f"cannot write into the outdir ({e.strerror})",
                         "set outdir to a folder you can write to") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(outdir, "another caveat run is writing into this outdir (it holds "
                             f"{LOCK_FILE.as_posix()})",
                             "wait for that run to finish (or stop it), or give this run another outdir") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_marker(marker: Path) -> dict:
    try:
        return json.loads(marker.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _stale(recorded: dict, fp: str, outdir: Path, changed_deps: list[str]) -> str | None:
    """Why a step must rerun on resume; None when it is up to date."""
    if not recorded:
        return "no record of a completed run, running"
    if recorded.get("fingerprint") != fp:
        return "params, inputs, code or upstream changed, rerunning"
    if changed_deps:
        return f"upstream {', '.join(changed_deps)} wrote different outputs, rerunning"
    outputs = recorded.get("outputs")
    if outputs is None:
        return "marker without a record of its outputs (older caveat), rerunning"
    for rel, want in sorted(outputs.items()):
        path = outdir / rel
        if not path.is_file():
            return f"output {rel} is missing, rerunning"
        if path.stat().st_size != want["size"] or content_digest(path) != want["digest"]:
            return f"output {rel} changed since the step wrote it, rerunning"
    return None


def _snapshot(outdir: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime ns, inode) of every file below ``outdir`` except the engine's own
    ``pipeline_info/`` and temporary files."""
    out = {}
    for root, dirs, files in os.walk(outdir):
        root = Path(root)
        dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX) and not (root == outdir and d == "pipeline_info")]
        for f in files:
            if f.startswith(TMP_PREFIX):
                continue
            p = root / f
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                out[p.relative_to(outdir).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def _written(outdir: Path, before: dict, after: dict) -> dict[str, dict]:
    """Size and content digest of the files a step created or rewrote (a rename onto a path
    gives a new inode, so an output rewritten with the same bytes counts too)."""
    return {rel: {"size": st[0], "digest": content_digest(outdir / rel)}
            for rel, st in sorted(after.items()) if before.get(rel) != st}


def _ancestors(ordered: Sequence[Step], name: str, params: dict) -> set[str]:
    by_name = {s.name: s for s in ordered}
    keep: set[str] = set()
    stack = [name]
    while stack:
        n = stack.pop()
        if n in keep or n not in by_name:
            continue
        keep.add(n)
        stack.extend(d for d in by_name[n].upstream(params) if d in by_name)
    return keep


def _one_line(summary: dict) -> str:
    items = [f"{k}={v}" for k, v in summary.items() if isinstance(v, (int, float, str, bool))]
    return ", ".join(items[:8]) if items else "(no summary)"


__all__ = ["Step", "StepContext", "order_steps", "run_pipeline", "lock_outdir", "fingerprint", "code_version",
           "dumps_json"]
