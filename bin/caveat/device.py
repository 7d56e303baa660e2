"""Torch device helpers shared by the model steps (train, predict, score_variants): which
device a ``*_device`` param names, bf16 autocast, and CPU thread control that keeps results
independent of the thread count. Neutral, so no step imports another.

Why thread control: on CPU, torch splits some reductions across its intra-op threads (oneDNN
convolution weight gradients, batchnorm statistics, GEMMs, even some forward convolutions of
small batches), so the same model on the same inputs gives different float bits with 1 and 2
threads. Results must depend on the data, params and seed only, never on ``--threads``:

* training runs its arithmetic on a fixed number of threads given by a param
  (:func:`torch_threads`);
* inference runs each batch on one thread and spreads whole batches over threads
  (:func:`map_batches`), so every number is computed the same way whatever the thread count.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

import torch

from .errors import InputError


def resolve_device(name: str = "auto", param: str = "train_device") -> torch.device:
    """``auto`` → CUDA if available, else MPS, else CPU; otherwise the named device.
    ``param`` names the param in errors."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError("params", f"{param} {name!r} is not a torch device", "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("params", f"{param} {name!r} but no CUDA GPU is visible", f"use {param}: auto or cpu")
    return dev


def job_devices(name: str, n_jobs: int) -> list[str | None]:
    """The device of each of ``n_jobs`` concurrent model jobs: round robin over the visible CUDA
    devices (``cuda:0``, ``cuda:1``, …, ``cuda:0``, …) when ``name`` (a ``*_device`` param) is
    ``auto`` or ``cuda`` and several are visible; otherwise ``None`` for every job (each
    resolves ``name`` itself with :func:`resolve_device`: CPU, one GPU, or the device named).

    A model's bits do not depend on which of several identical GPUs computes it.
    """
    n_gpus = torch.cuda.device_count() if name in ("auto", "cuda") and torch.cuda.is_available() else 0
    if n_gpus < 2:
        return [None] * n_jobs
    return [f"cuda:{i % n_gpus}" for i in range(n_jobs)]


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked; a no-op elsewhere."""
    if bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, restoring the previous count after."""
    was = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(was)


T = TypeVar("T")
R = TypeVar("R")


def map_batches(fn: Callable[[T], R], items: Iterable[T], workers: int = 1,
                device: torch.device | None = None) -> Iterator[R]:
    """``fn`` over ``items``, results in order, each item computed by one CPU thread.

    Torch runs single-threaded inside ``fn`` and up to ``workers`` items run at once on
    Python threads (torch releases the GIL in its kernels), so a result never depends on
    ``workers``: the thread count changes the speed, not the bits. On a GPU (``device``
    not CPU) items run one at a time: the GPU's own results do not depend on CPU threads.
    ``fn`` must not share mutable state between calls (or keep it per thread).
    """
    workers = 1 if device is not None and device.type != "cpu" else max(1, int(workers))
    with torch_threads(1):
        if workers == 1:
            yield from map(fn, items)
            return
        with ThreadPoolExecutor(max_workers=workers) as ex:
            yield from ex.map(fn, items)


__all__ = ["autocast", "job_devices", "map_batches", "resolve_device", "torch_threads"]
