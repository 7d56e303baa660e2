"""Independent jobs (samples, cell types, chromosomes) run concurrently under one thread budget.

The local engine gives a step ``--threads N``. A step with S independent samples runs up to
``min(N, S)`` of them at once and splits the N threads among them (:func:`thread_shares`):
each job gets its share for its own inner work (chromosomes, the aligner's ``-p``), so a
32-core server runs 32 samples at a time rather than one sample on 32 threads, and one
sample alone still gets every thread.

Outputs never depend on N: results come back in input order whatever order the jobs end in,
and a job must share no mutable state (no common random generator: the steps' randomness is
a seeded hash of each read's name). A failing job stops the jobs not yet started; the ones
running finish (so nothing is written after the step has failed and its outputs are being
discarded), and the error of the first failing job *in input order* is raised, the one a
one-at-a-time run raises, naming its job.

Log lines written inside a job are prefixed with the job's name (``D1_ctA: classify chr1 …``)
unless they already name it, also from threads the job starts through :func:`map_ordered`
and from worker processes: concurrent samples' progress lines stay attributable. Each
Python logging record is written whole, so lines never interleave mid-line.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence, TypeVar

from .errors import InputError

T = TypeVar("T")
R = TypeVar("R")

#: the name of the job the current thread (or worker process) works for; prefixes its log lines
JOB = contextvars.ContextVar("caveat_job", default="")


def thread_shares(threads: int, n_jobs: int) -> tuple[int, list[int]]:
    """How many jobs run at once, and each job's threads.

    Parameters
    ----------
    threads : int
        The step's thread budget (``--threads``).
    n_jobs : int

    Returns
    -------
    width : int
        Jobs run at once: ``min(threads, n_jobs)``, at least 1.
    shares : list of int, length n_jobs
        Job i's threads: ``threads // width``, plus one for the first ``threads % width``
        of every ``width`` consecutive jobs, so the jobs running together use the budget.
    """
    threads = max(1, int(threads))
    width = max(1, min(threads, n_jobs))
    base, extra = divmod(threads, width)
    return width, [base + (1 if i % width < extra else 0) for i in range(n_jobs)]


def map_jobs(fn: Callable[[T, int], R], items: Sequence[T], threads: int, *,
             names: Sequence[str] | None = None, processes: bool = False, what: str = "sample") -> list[R]:
    """``fn(item, job_threads)`` for every item, up to ``threads`` at once; results in input order.

    Parameters
    ----------
    fn : callable
        ``fn(item, job_threads) -> result``. With ``processes`` it must be a module-level
        function and items and results picklable.
    items : sequence
        One item per job.
    threads : int
        The thread budget, split among concurrent jobs (:func:`thread_shares`).
    names : sequence of str, optional
        Job names (default: ``str(item)``), used as log prefixes and in errors.
    processes : bool
        Run jobs in worker processes (for work that holds the GIL, e.g. pysam iteration)
        instead of threads (numba kernels, BGZF, numpy and child processes release it).
    what : str
        What a job is ("sample", "cell type"), for errors.

    Returns
    -------
    list
        ``fn``'s results, ``len(items)`` of them, in the order of ``items``.

    Raises
    ------
    Exception
        The error of the first failing job in input order; an :class:`InputError` that does
        not name its job is re-raised naming it (``sample D1_ctA: …``).
    """
    items = list(items)
    names = [str(x) for x in items] if names is None else [str(n) for n in names]
    if len(names) != len(items):
        raise ValueError(f"{len(names)} names for {len(items)} jobs")
    width, shares = thread_shares(threads, len(items))
    if width <= 1:
        return [_serial_job(fn, item, shares[i], what, names[i]) for i, item in enumerate(items)]
    _install_prefix()
    with (ProcessPoolExecutor(width) if processes else ThreadPoolExecutor(width)) as pool:
        futures = [_submit(pool, processes, fn, item, shares[i], names[i]) for i, item in enumerate(items)]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            for f in pending:
                f.cancel()  # not started yet: never runs; running ones finish before the pool closes
    for i, f in enumerate(futures):
        if not f.cancelled() and f.exception() is not None:
            _raise_named(f.exception(), what, names[i])
    return [f.result() for f in futures]


def map_ordered(fn: Callable[[T], R], items: Sequence[T], threads: int) -> list[R]:
    """``fn`` over ``items`` on up to ``threads`` threads (inner work of one job, e.g. its
    chromosomes); results in input order; the caller's job name goes with each call."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as ex:
        futures: list[Future] = [ex.submit(contextvars.copy_context().run, fn, x) for x in items]
    return [f.result() for f in futures]


def _run_job(fn: Callable[[Any, int], Any], item: Any, threads: int, name: str) -> Any:
    """One job with its name set for the log prefix (in a thread's copied context, or a worker process)."""
    JOB.set(name)
    return fn(item, threads)


def _submit(pool: Executor, processes: bool, fn: Callable, item: Any, threads: int, name: str) -> Future:
    if processes:
        return pool.submit(_run_job, fn, item, threads, name)
    return pool.submit(contextvars.copy_context().run, _run_job, fn, item, threads, name)


def _serial_job(fn: Callable[[Any, int], Any], item: Any, threads: int, what: str, name: str) -> Any:
    """One job in this thread (one at a time: no prefix needed), its error named."""
    try:
        return fn(item, threads)
    except BaseException as e:  # noqa: BLE001 - re-raised, named
        _raise_named(e, what, name)


def _raise_named(e: BaseException, what: str, name: str):
    if isinstance(e, InputError) and name not in str(e):
        raise InputError(e.file, f"{what} {name}: {e.problem}", e.fix) from e
    raise e


_PREFIX_INSTALLED = False


def _install_prefix() -> None:
    """Prefix log records made inside a job with its name (a record factory: every logger and
    handler sees it, pytest's too). Outside jobs records are untouched."""
    global _PREFIX_INSTALLED
    if _PREFIX_INSTALLED:
        return
    make = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        rec = make(*args, **kwargs)
        job = JOB.get()
        if job and rec.name.startswith("caveat"):
            msg = rec.getMessage()
            if job not in msg:
                rec.msg, rec.args = f"{job}: {msg}", ()
        return rec

    logging.setLogRecordFactory(factory)
    _PREFIX_INSTALLED = True


__all__ = ["JOB", "map_jobs", "map_ordered", "thread_shares"]
