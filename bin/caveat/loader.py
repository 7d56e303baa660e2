"""The window/batch data loader: integer-coded genome in, code batches out.

The genome is one uint8 code array (contigs concatenated, each padded by N's
so shifted windows never run off a contig) plus per-contig offsets. A batch is
a single fancy-index gather of (N, L) codes at (shifted) window starts, with
reverse complement applied to a random half on the codes; one-hot encoding
happens afterwards on the model's device (:func:`caveat.onehot.one_hot`).
Nothing one-hot is ever materialised for the whole dataset.
:class:`BatchStream` draws a loader's seeded passes end to end, k batches at a
time (training epochs capped at ``train_epoch_batches``), with a resumable state.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from .errors import InputError
from .genome import COMPLEMENT, read_genome


@dataclass
class GenomeCodes:
    """Concatenated, N-padded genome codes.

    Attributes
    ----------
    codes : numpy.ndarray
        (G,) uint8, A0 C1 G2 T3 N4; every contig is preceded and followed by
        ``pad`` N's.
    offsets : dict
        contig → index of its first base in ``codes``.
    pad : int
    """

    codes: np.ndarray
    offsets: dict
    pad: int

    @classmethod
    def from_fasta(cls, fasta: str | Path, contigs: list[str], pad: int = 16) -> "GenomeCodes":
        """Read ``contigs`` of ``fasta`` into one padded code array."""
        seqs = read_genome(fasta, contigs)
        return cls.from_dict(seqs, pad)

    @classmethod
    def from_dict(cls, seqs: dict, pad: int = 16) -> "GenomeCodes":
        parts, offsets, pos = [], {}, 0
        gap = np.full(pad, 4, np.uint8)
        for name, codes in seqs.items():
            parts += [gap, np.asarray(codes, np.uint8)]
            offsets[name] = pos + pad
            pos += pad + len(codes)
        parts.append(gap)
        return cls(np.concatenate(parts), offsets, pad)

    def abs_starts(self, chroms, starts) -> np.ndarray:
        """Genome-array positions of windows (chrom, start) → (W,) int64."""
        chroms = np.asarray(chroms)
        missing = set(np.unique(chroms)) - set(self.offsets)
        if missing:
            raise InputError("fasta", f"window contig {sorted(missing)[0]!r} is not in the genome",
                             "use the FASTA the dataset was built from")
        uniq, inv = np.unique(chroms, return_inverse=True)
        off = np.array([self.offsets[c] for c in uniq], dtype=np.int64)
        return off[inv] + np.asarray(starts, dtype=np.int64)

    def gather(self, abs_starts: np.ndarray, length: int) -> np.ndarray:
        """Codes of windows at ``abs_starts``: (N,) → (N, length) uint8."""
        return self.codes[abs_starts[:, None] + np.arange(length, dtype=np.int64)[None, :]]


def augment_codes(genome: GenomeCodes, abs_starts: np.ndarray, length: int, rng: np.random.Generator,
                  *, max_shift: int = 0, rc: bool = False) -> np.ndarray:
    """Windows with a random shift in [-max_shift, max_shift] and a random
    reverse complement (probability 1/2): (N,) → (N, length) uint8."""
    if max_shift > genome.pad:
        raise ValueError(f"max_shift {max_shift} exceeds the genome padding {genome.pad}")
    if max_shift:
        abs_starts = abs_starts + rng.integers(-max_shift, max_shift + 1, size=len(abs_starts))
    codes = genome.gather(abs_starts, length)
    if rc:
        flip = rng.random(len(codes)) < 0.5
        codes[flip] = COMPLEMENT[codes[flip, ::-1]]
    return codes


class WindowLoader:
    """Iterate over (codes, targets) batches.

    Parameters
    ----------
    genome : GenomeCodes
    abs_starts : numpy.ndarray
        (W,) int64 window starts in ``genome.codes``.
    targets : numpy.ndarray
        (W, T) float32.
    length : int
        Window length.
    batch_size : int
    shuffle : bool
        New seeded order every epoch (``set_epoch``).
    seed : int
    max_shift : int
        Random shift augmentation (0: none).
    rc : bool
        Random reverse-complement augmentation.
    pin_memory : bool
        Batches in page-locked memory, so ``.to(cuda, non_blocking=True)`` copies them
        while the GPU computes (use on CUDA only; default off).
    prefetch : int
        Batches made ahead by a background thread (:func:`prefetch`; 0: made on demand).
        The batches are the same: one thread draws them in order from the same generator.

    Yields
    ------
    codes : torch.Tensor
        (B, length) uint8.
    targets : torch.Tensor
        (B, T) float32.
    """

    def __init__(self, genome: GenomeCodes, abs_starts: np.ndarray, targets: np.ndarray, length: int, *,
                 batch_size: int = 64, shuffle: bool = False, seed: int = 0, max_shift: int = 0,
                 rc: bool = False, pin_memory: bool = False, prefetch: int = 0):
        self.genome, self.abs_starts, self.targets = genome, np.asarray(abs_starts, np.int64), targets
        self.length, self.batch_size, self.shuffle = length, batch_size, shuffle
        self.seed, self.max_shift, self.rc = seed, max_shift, rc
        self.pin_memory, self.prefetch = pin_memory, prefetch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.abs_starts) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return prefetch(self._batches(), self.prefetch, self.pin_memory)

    def _batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng, order = self.pass_order(self.epoch)
        for i in range(0, len(order), self.batch_size):
            yield self.batch(order[i:i + self.batch_size], rng)

    def pass_order(self, epoch: int) -> tuple[np.random.Generator, np.ndarray]:
        """The generator of pass ``epoch`` (seeded by (seed, epoch)) after it drew the pass's
        window order, and that order, (W,) int64."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.abs_starts)) if self.shuffle else np.arange(len(self.abs_starts))
        return rng, order

    def batch(self, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows ``idx`` (B,) as (codes (B, length) uint8, targets (B, T) float32), augmented with ``rng``."""
        codes = augment_codes(self.genome, self.abs_starts[idx], self.length, rng,
                              max_shift=self.max_shift, rc=self.rc)
        return torch.from_numpy(codes), torch.from_numpy(np.ascontiguousarray(self.targets[idx]))


class BatchStream:
    """A loader's passes end to end, drawn a given number of batches at a time.

    Pass ``p`` (1, 2, ...) is exactly what the loader yields for ``set_epoch(p)``: its seeded
    window order and augmentation. :meth:`take` continues where the previous call stopped, so
    epochs of k batches walk through every window over successive epochs (Basenji's
    ``train_epoch_batches``); k = ``len(loader)`` makes every epoch one whole pass. The
    position and the pass's generator state round-trip through :meth:`state_dict`, so a
    resumed run draws the same batches as an uninterrupted one.

    Parameters
    ----------
    loader : WindowLoader
    """

    def __init__(self, loader: WindowLoader):
        self.loader = loader
        self.pass_, self.next_batch = 1, 0
        self._rng: np.random.Generator | None = None
        self._order: np.ndarray | None = None

    def _advance(self) -> tuple[np.ndarray, np.random.Generator]:
        """Window indices (B,) of the next batch and the generator that augments it; moves on."""
        if self._rng is None:
            self._rng, self._order = self.loader.pass_order(self.pass_)
        bs, rng = self.loader.batch_size, self._rng
        idx = self._order[self.next_batch * bs:(self.next_batch + 1) * bs]
        self.next_batch += 1
        if self.next_batch >= len(self.loader):
            self.pass_, self.next_batch, self._rng, self._order = self.pass_ + 1, 0, None, None
        return idx, rng

    def take(self, k: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The next ``k`` batches (codes (B, length) uint8, targets (B, T) float32)."""
        if len(self.loader) == 0:
            raise ValueError("BatchStream over a loader without windows")
        # made ahead at most up to the k-th batch: after the k batches the stream's state is the same
        return prefetch((self.loader.batch(*self._advance()) for _ in range(k)), self.loader.prefetch,
                        self.loader.pin_memory)

    def windows_ahead(self, k: int) -> int:
        """Windows in the next ``k`` batches (the stream is not moved)."""
        n, bs, nb = len(self.loader.abs_starts), self.loader.batch_size, len(self.loader)
        return sum(min(bs, n - ((self.next_batch + i) % nb) * bs) for i in range(k))

    def state_dict(self) -> dict:
        """Position and generator state (plain ints and strings; JSON-serialisable)."""
        rng = None if self._rng is None else self._rng.bit_generator.state
        return {"pass": self.pass_, "next_batch": self.next_batch, "rng": rng}

    def load_state_dict(self, state: dict) -> None:
        self.pass_, self.next_batch = int(state["pass"]), int(state["next_batch"])
        self._rng, self._order = None, None
        if state["rng"] is not None:
            self._rng, self._order = self.loader.pass_order(self.pass_)
            self._rng.bit_generator.state = state["rng"]


_DONE = object()


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


def _pinned(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(t.pin_memory() for t in batch)


def prefetch(batches: Iterable[tuple[torch.Tensor, ...]], depth: int = 0,
             pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
    """``batches``, in order, made up to ``depth`` ahead by one background thread (numpy's
    gathers and torch's copies release the GIL, so the next batch is made while the model
    trains on this one), each tensor in page-locked memory with ``pin_memory``.

    One thread draws every batch in order from the same iterator, so the batches (and the
    random generator's use) are those of ``depth=0``. ``depth <= 0``: no thread. An error
    making a batch is raised where that batch would have been yielded; a consumer that stops
    early stops the thread.
    """
    if depth <= 0:
        return (_pinned(b) if pin_memory else b for b in batches)
    return _prefetched(iter(batches), depth, pin_memory)


def _prefetched(batches: Iterator, depth: int, pin_memory: bool) -> Iterator:
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for b in batches:
                if not put(_pinned(b) if pin_memory else b):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(_Raised(e))
            return
        put(_DONE)

    worker = threading.Thread(target=produce, name="caveat-batches", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
