"""Resume checkpoints of a training run: written after every epoch, read when the run restarts.

A checkpoint is one file, ``<model folder>/.tmp-resume/last.pt``, written atomically (the bytes
are serialised in memory, written under a temporary name and renamed), so a kill at any moment
leaves either the previous epoch's checkpoint or the new one. The ``.tmp-`` prefix keeps it out
of the local engine's view (:mod:`caveat.engine` skips ``.tmp-*``): it is never taken for a step
output, and it survives a failed step (which otherwise loses what it wrote), so the rerun can
resume. It is removed once the model's final files are written (by a step that writes several
models, once all are written, so a rerun rewrites the finished ones without training them). Under
Nextflow a retried task runs in a new work directory, so it starts over unless the checkpoint is
copied there.

The checkpoint stores a digest of the run's params and data (:func:`run_digest`); resuming
with a checkpoint of another digest is refused, since the result would match neither run.
Host RNG states (numpy's global generator, Python's ``random``, the data stream's generator)
travel as a JSON string, torch's as tensors, so the file loads with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .errors import InputError
from .io import TMP_PREFIX, atomic_path

RESUME_FORMAT = "caveat-train-resume/1"
RESUME_DIR = TMP_PREFIX + "resume"


def resume_path(folder: str | Path) -> Path:
    """Where the resume checkpoint of the model written to ``folder`` lives."""
    return Path(folder) / RESUME_DIR / "last.pt"


def clear_resume(folder: str | Path) -> None:
    """Remove ``folder``'s resume checkpoint (the model is complete)."""
    shutil.rmtree(Path(folder) / RESUME_DIR, ignore_errors=True)


def clear_resume_below(root: str | Path) -> None:
    """Remove every resume checkpoint below ``root`` (all its models are complete)."""
    root = Path(root)
    if root.is_dir():
        for d in sorted(root.rglob(RESUME_DIR)):
            shutil.rmtree(d, ignore_errors=True)


def run_digest(settings: dict, arrays: Iterable[np.ndarray]) -> str:
    """SHA-256 of a run's settings (JSON, sorted keys) and its data arrays (dtype, shape, bytes)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def rng_states(device: torch.device, extra: dict | None = None) -> dict:
    """torch CPU (and CUDA) RNG states as tensors; numpy's global, Python's ``random`` and
    ``extra`` (JSON-serialisable states, e.g. a data stream's) as one JSON string."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in np_state["state"].items()}
    host = {"numpy": np_state, "random": random.getstate(), "extra": extra or {}}
    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else []
    return {"torch": torch.get_rng_state(), "cuda": cuda, "host": json.dumps(host)}


def set_rng_states(states: dict, device: torch.device) -> dict:
    """Restore what :func:`rng_states` captured; returns its ``extra``."""
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    host = json.loads(states["host"])
    np_state = host["numpy"]
    np_state["state"] = {k: (np.asarray(v, np.uint32) if isinstance(v, list) else v)
                         for k, v in np_state["state"].items()}
    np.random.set_state(np_state)
    version, internal, gauss = host["random"]
    random.setstate((version, tuple(internal), gauss))
    return host["extra"]


def save_resume(path: Path, digest: str, payload: dict) -> None:
    """Write ``payload`` (tensors and plain values) with ``digest`` atomically to ``path``."""
    buf = io.BytesIO()
    torch.save({"format": RESUME_FORMAT, "digest": digest, **payload}, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_resume(path: Path, digest: str) -> dict:
    """The payload of the checkpoint at ``path``, checked against ``digest``.

    Raises
    ------
    InputError
        The file is unreadable, not a resume checkpoint, or made with other params or data.
    """
    fix = "delete it to start over (or rerun with the params and data it was made with)"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign or damaged file: writes are atomic, so not a half-written one
        raise InputError(path, f"not a readable resume checkpoint ({e})", "delete it to start over") from None
    if not isinstance(obj, dict) or obj.get("format") != RESUME_FORMAT:
        raise InputError(path, "not a caveat training resume checkpoint", "delete it to start over")
    if obj.get("digest") != digest:
        raise InputError(path, "resume checkpoint made with other params or data than this run "
                         f"(digest {str(obj.get('digest'))[:12]}…, this run {digest[:12]}…)", fix)
    return obj


__all__ = ["RESUME_DIR", "clear_resume", "clear_resume_below", "load_resume", "resume_path", "rng_states", "run_digest",
           "save_resume", "set_rng_states"]
