"""Atomic, deterministic output writing shared by every step.

Every output is written to a temporary name beside its final path and renamed
only when complete, so a step killed mid-write never leaves a file that looks
finished. JSON is written with sorted keys and no timestamps so that the same
inputs and seed give byte-identical outputs (what makes resume work).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import STORAGE_ERRNOS

TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On an exception the temporary file (or directory) is removed and ``path``
    is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if is_dir:
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        else:
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    except BaseException as e:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if isinstance(e, OSError) and e.filename is None and e.errno in STORAGE_ERRNOS:
            # a failed write() names no file: name the output it was for (full disk, size limit)
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj):
    """Replace NaN/inf by None so the JSON is valid for every reader."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dumps_json(obj) -> str:
    obj = json.loads(json.dumps(obj, default=_json_default))
    return json.dumps(_finite(obj), indent=2, sort_keys=True) + "\n"


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write ``obj`` as deterministic JSON (sorted keys, NaN → null), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(dumps_json(obj))
    return Path(path)


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text())


def write_parquet(df, path: str | os.PathLike) -> Path:
    """Write a pandas/polars DataFrame or an Arrow table to Parquet atomically and deterministically.

    Pandas indexes are dropped; compression is zstd; no pandas metadata with
    absolute paths or timestamps is stored.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(df, pa.Table):
        table = df
    elif hasattr(df, "to_arrow"):  # polars
        table = df.to_arrow()
    else:
        table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(None)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", store_schema=False)
    return Path(path)


def read_parquet(path: str | os.PathLike):
    """Read a Parquet file into a pandas DataFrame."""
    import pandas as pd

    return pd.read_parquet(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def file_digest(path: str | os.PathLike, *, max_bytes_hashed: int = 256 << 20) -> str:
    """Content digest of a file for resume fingerprints.

    Files up to ``max_bytes_hashed`` are hashed in full; larger ones (genome
    BAMs) by size, modification time and their first and last MiB, which is
    how a changed BAM shows without reading gigabytes.
    """
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256()
    if st.st_size <= max_bytes_hashed:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    else:
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        with open(path, "rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()


def content_digest(path: str | os.PathLike, *, max_bytes_hashed: int = 256 << 20, pieces: int = 16) -> str:
    """Digest of a file's content alone, for the engine's record of a step's outputs.

    Unlike :func:`file_digest` no modification time enters, so the same bytes
    always give the same digest (markers stay byte-identical across runs and
    copies). Files up to ``max_bytes_hashed`` are hashed in full; larger ones
    (genome-scale BAMs) by their size and ``pieces`` evenly spaced 1 MiB pieces,
    first and last included: a truncated, replaced or regenerated file shows,
    a change inside an unsampled stretch does not.
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= max_bytes_hashed:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
            return h.hexdigest()
        h.update(str(size).encode())
        piece = 1 << 20
        for k in range(pieces):
            fh.seek((size - piece) * k // (pieces - 1))
            h.update(fh.read(piece))
    return h.hexdigest()
