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

#: Allowed values of params, in JSON Schema words (the same rules ``nextflow_schema.json``
#: states for Nextflow; a test keeps the two equal). A param not listed is free.
RULES: dict[str, dict] = {
    "aligner": {"enum": ["bowtie2", "bwa"]},
    "wasp_max_snps_per_read": {"minimum": 1},
    "wasp_max_versions": {"minimum": 1},
    "wasp_group_bp": {"minimum": 1},
    "min_mapq": {"minimum": 0},
    "min_base_quality": {"minimum": 0},
    "concordance_min_reads": {"minimum": 1},
    "concordance_min_both_alleles": {"minimum": 0, "maximum": 1},
    "concordance_min_sites": {"minimum": 1},
    "insertions_source": {"enum": ["wasp", "raw"]},
    "insertions_min_mapq": {"minimum": 0},
    "imbalance_min_total": {"minimum": 0},
    "imbalance_fdr": {"maximum": 1, "exclusiveMinimum": 0},
    "imbalance_balanced_min_pvalue": {"minimum": 0, "maximum": 1},
    "imbalance_test": {"enum": ["binomial", "betabinomial"]},
    "imbalance_null": {"enum": ["fixed", "estimate"]},
    "imbalance_null_ref_fraction": {"exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "imbalance_het_min_reads": {"minimum": 0},
    "imbalance_max_depth_ratio": {"minimum": 0},
    "match_bins": {"minimum": 1},
    "match_target_ratio": {"minimum": 0},
    "match_min_bins": {"minimum": 1},
    "match_max_ratio": {"minimum": 0},
    "stratum_match_bins": {"minimum": 1},
    "region_match_ratio": {"minimum": 0},
    "region_match_bins": {"minimum": 1},
    "peak_merge": {"enum": ["auto", "summit", "merge"]},
    "peak_width": {"minimum": 1},
    "peak_macs3_qvalue": {"maximum": 1, "exclusiveMinimum": 0},
    "peak_macs3_gsize": {"minimum": 1},
    "cluster_k": {"minimum": 2},
    "cluster_k_max": {"minimum": 2},
    "predict_peak_value": {"enum": ["centre", "mean", "sum"]},
    "window_size": {"minimum": 1},
    "window_stride": {"minimum": 1},
    "target_bin": {"minimum": 1},
    "unmappable_max_fraction": {"minimum": 0, "maximum": 1},
    "target_norm": {"enum": ["mean_depth", "cpm", "none"]},
    "target_clip_soft_quantile": {"exclusiveMinimum": 0, "maximum": 1},
    "target_clip_quantile": {"exclusiveMinimum": 0, "maximum": 1},
    "model_filters": {"minimum": 1},
    "model_filters_max": {"minimum": 1},
    "model_tower_blocks": {"minimum": 0},
    "model_bottleneck": {"minimum": 1},
    "model_dense": {"minimum": 1},
    "model_dropout": {"minimum": 0, "exclusiveMaximum": 1},
    "train_optimizer": {"enum": ["sgd", "adamw"]},
    "train_lr": {"exclusiveMinimum": 0},
    "train_lr_single_task": {"exclusiveMinimum": 0},
    "train_momentum": {"minimum": 0, "exclusiveMaximum": 1},
    "train_weight_decay": {"minimum": 0},
    "train_clip_norm": {"minimum": 0},
    "train_batch_size": {"minimum": 1},
    "train_batch_size_single_task": {"minimum": 1},
    "train_max_epochs": {"minimum": 1},
    "train_min_epochs": {"minimum": 1},
    "train_patience": {"minimum": 0},
    "train_cpu_threads": {"minimum": 1},
    "train_max_windows": {"minimum": 1},
    "train_epoch_batches": {"minimum": 1},
    "train_replicates": {"minimum": 1},
    "augment_shift": {"minimum": 0},
    "baseline_kmer_k": {"minimum": 1, "maximum": 8},
    "predict_batch_size": {"minimum": 1},
    "score_batch_size": {"minimum": 1},
    "evaluate_height_bin": {"exclusiveMinimum": 0},
    "evaluate_bootstrap": {"minimum": 0},
    "evaluate_ci_level": {"exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "evaluate_block_bp": {"minimum": 1},
}
_BOUND_WORDS = {"minimum": (">=", lambda v, b: v >= b), "maximum": ("<=", lambda v, b: v <= b),
                "exclusiveMinimum": (">", lambda v, b: v > b), "exclusiveMaximum": ("<", lambda v, b: v < b)}


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
    """Merge ``params`` over the defaults, checking keys, types and :data:`RULES`.

    A string where the default is a float is read as a float when it parses as one
    (YAML reads ``1e-3`` as a string).

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
        v = _as_float(base[k], v)
        if not _type_ok(base[k], v):
            raise InputError(source, f"param {k!r} = {v!r} should be of type {type(base[k]).__name__}",
                             f"set {k} to a {type(base[k]).__name__} (default {base[k]!r})")
        if isinstance(base[k], float) and isinstance(v, int):
            v = float(v)
        if isinstance(v, tuple):
            v = list(v)
        check_rule(k, v, source)
        out[k] = v
    return out


def _as_float(default: Any, value: Any) -> Any:
    """``1e-3`` as a float: YAML 1.1 (PyYAML) reads an exponent without a dot as a string."""
    if isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_rule(key: str, value: Any, source: str = "params") -> None:
    """Raise an :class:`InputError` naming ``key`` when ``value`` breaks its rule in :data:`RULES`."""
    rule = RULES.get(key)
    if rule is None or value is None:
        return
    if "enum" in rule and value not in rule["enum"]:
        raise InputError(source, f"param {key!r} = {value!r} is not one of {', '.join(map(str, rule['enum']))}",
                         f"set {key} to one of: {', '.join(map(str, rule['enum']))}")
    for word, bound in rule.items():
        if word in _BOUND_WORDS and isinstance(value, (int, float)) and not _BOUND_WORDS[word][1](value, bound):
            raise InputError(source, f"param {key!r} = {value!r} is out of range (it must be {_BOUND_WORDS[word][0]} {bound})",
                             f"set {key} {_BOUND_WORDS[word][0]} {bound}")


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
