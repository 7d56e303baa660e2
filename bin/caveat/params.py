"""Pipeline params: one flat namespace, the same keys as Nextflow's ``-params-file``.

Common params live here; each step declares its own params (with defaults) on
its :class:`~caveat.engine.Step`, and :func:`defaults` gathers them. Unknown
keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Sequence

from .errors import InputError

#: Params every step may read. Paths are relative to the params file's directory.
COMMON_PARAMS: dict[str, Any] = {
    "input": None,        # samplesheet CSV: sample, donor, cell_type, bam[, peaks]
    "fasta": None,        # reference genome FASTA (indexed or indexable)
    "vcf": None,          # donor genotypes: multi-sample VCF (bgzipped + tabix)
    "outdir": "results",
    "contig_map": None,   # optional two-column TSV: name in VCF/peaks → name in FASTA/BAM
    "seed": 0,
}
COMMON_PATH_PARAMS = ("input", "fasta", "vcf", "contig_map")


def defaults(steps: Sequence | None = None) -> dict[str, Any]:
    """All params with their defaults: common ones plus each step's."""
    if steps is None:
        from .pipeline import pipeline_steps

        steps = pipeline_steps()
    out = dict(COMMON_PARAMS)
    for s in steps:
        for k, v in s.params.items():
            if k in out and out[k] != v and k not in COMMON_PARAMS:
                raise ValueError(f"param {k!r} declared twice with different defaults")
            out.setdefault(k, v)
    return out


def path_params(steps: Sequence | None = None) -> set[str]:
    if steps is None:
        from .pipeline import pipeline_steps

        steps = pipeline_steps()
    keys = set(COMMON_PATH_PARAMS)
    for s in steps:
        keys.update(s.path_params)
    return keys


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def validate(params: dict, steps: Sequence | None = None, source: str = "params") -> dict:
    """Merge ``params`` over the defaults, checking keys and types.

    Returns
    -------
    dict
        Complete params (floats given as ints are converted to float).
    """
    base = defaults(steps)
    unknown = [k for k in params if k not in base]
    if unknown:
        k = unknown[0]
        close = difflib.get_close_matches(k, base.keys(), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "remove it; `caveat params` lists the known keys"
        raise InputError(source, f"unknown param {k!r}", hint)
    out = dict(base)
    for k, v in params.items():
        if not _type_ok(base[k], v):
            raise InputError(source, f"param {k!r} = {v!r} should be of type {type(base[k]).__name__}",
                             f"set {k} to a {type(base[k]).__name__} (default {base[k]!r})")
        if isinstance(base[k], float) and isinstance(v, int):
            v = float(v)
        if isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out


def load_params(path: str | Path | None, overrides: dict | None = None,
                steps: Sequence | None = None) -> dict:
    """Read a YAML (or JSON) params file, resolve relative paths against its
    directory, apply ``overrides`` and validate."""
    import yaml

    raw: dict = {}
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise InputError(path, "params file not found", "pass an existing YAML file to --params")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise InputError(path, f"not valid YAML: {e}", "fix the syntax (key: value per line)") from None
        if not isinstance(raw, dict):
            raise InputError(path, "top level must be a mapping of key: value", "write one `key: value` per line")
        base_dir = path.resolve().parent
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    keys = path_params(steps)
    for k in keys:
        v = raw.get(k)
        if isinstance(v, str) and v and not Path(v).is_absolute() and "://" not in v:
            raw[k] = str((base_dir / v).resolve())
    return validate(raw, steps, source=str(path) if path else "params")
