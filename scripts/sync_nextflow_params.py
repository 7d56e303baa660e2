#!/usr/bin/env python3
"""Keep Nextflow's params in step with the Python steps' params.

The params are one flat namespace shared by the local engine (`caveat run`) and
Nextflow; each step declares its own keys with defaults (``Step.params``) and
:func:`caveat.params.defaults` gathers them. This script writes, from them:

- the ``params {}`` block of ``nextflow.config`` (between the BEGIN/END markers),
- ``nextflow_schema.json`` (nf-schema, JSON Schema draft 2020-12): one group per
  step, in pipeline order. Hand-written details of an existing entry
  (description, enum, format, minimum …) are kept; new keys get a type inferred
  from the default and a placeholder description to edit;
- the tiny-preset block of ``conf/test.config`` from
  ``caveat.simulate.presets.PRESET_PARAMS["tiny"]``.

Usage::

    scripts/sync_nextflow_params.py           # rewrite the three files
    scripts/sync_nextflow_params.py --check   # exit 1 if any is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bin"))

CONFIG = REPO / "nextflow.config"
SCHEMA = REPO / "nextflow_schema.json"
TEST_CONFIG = REPO / "conf" / "test.config"
PARAMS_BEGIN = "    // BEGIN caveat params"
PARAMS_END = "    // END caveat params"
TINY_BEGIN = "    // BEGIN tiny preset params"
TINY_END = "    // END tiny preset params"

COMMON_GROUP = "input_output_options"
#: Options of the Nextflow run itself, not params of a step (the local engine has no use for
#: them): nextflow.config sets them below the generated block, the schema lists them here.
NEXTFLOW_GROUP = "generic_options"
NEXTFLOW_ONLY = {
    "publish_dir_mode": {
        "type": "string", "enum": ["symlink", "rellink", "link", "copy", "copyNoFollow", "move"], "default": "copy",
        "description": "How workflow outputs are written below outdir (Nextflow's workflow.output.mode).",
        "hidden": True},
    "simulate": {
        "type": "string", "enum": ["tiny", "demo", "tiny-sc", "demo-sc"],
        "description": "Run on a study `caveat simulate --preset <this> --seed <seed>` writes in a first task (SIMULATE) "
                       "instead of input/fasta/vcf/aligner_index: what -profile test sets, so it needs no prior command. "
                       "tiny-sc/demo-sc write single-cell libraries (their cell types' peaks are called with MACS3 "
                       "unless cell_type_peaks is set).",
        "help_text": "The simulated BAMs are aligned with bowtie2 and `caveat simulate`'s aligner arguments: -profile test "
                     "sets those (aligner_args) and the preset's model sizes.",
        "fa_icon": "fas fa-flask"},
    "trace_report_suffix": {
        "type": "string",
        "description": "Suffix of the pipeline_info files (execution report, timeline, trace, DAG, params); "
                       "default: the launch time, yyyy-MM-dd_HH-mm-ss, so a relaunch never keeps a stale report.",
        "hidden": True},
}
#: input, fasta and vcf are required unless `simulate` names a study to write instead. nf-schema
#: validates params with a stock JSON Schema validator after dropping null ones
#: (ParameterValidator.validateParametersMap: JsonGenerator `excludeNulls()`), so `required:
#: [simulate]` holds only when it is set, and nf-schema prints a failed `required` as "Missing
#: required parameter(s): …" (ValidationResult.getErrors). nf-core/sarek likewise leaves its
#: input out of `required` where a mode does without it.
INPUTS_UNLESS_SIMULATED = {
    "if": {"required": ["simulate"]},
    "else": {"required": ["input", "fasta", "vcf"],
             "errorMessage": "give --input, --fasta and --vcf, or -profile test (which simulates a study)"},
}
#: Types of params whose default is null (the default cannot tell).
NULL_DEFAULT_TYPES = {
    "target_clip_soft_quantile": "number", "target_clip_quantile": "number",
    "cluster_k": "integer", "train_max_windows": "integer", "train_epoch_batches": "integer",
    "peak_macs3_gsize": "integer",
    "dataset_chroms": "array", "match_max_ratio": "number", "imbalance_chroms": "array",
}


def param_owners() -> dict[str, str]:
    """Param key → the group it belongs to (``input_output_options`` or ``<step>_options``)."""
    from caveat.params import COMMON_PARAMS
    from caveat.pipeline import pipeline_steps

    owners = {k: COMMON_GROUP for k in COMMON_PARAMS}
    for step in pipeline_steps():
        for k in step.params:
            owners.setdefault(k, f"{step.name}_options")
    return owners


def groovy(value) -> str:
    """A Python default as a Nextflow config literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(groovy(v) for v in value) + "]"
    raise TypeError(f"no Nextflow literal for {value!r}")


def json_type(key: str, value, path_keys: set[str]) -> dict:
    """A schema entry's type part, inferred from the default."""
    if value is None:
        t = NULL_DEFAULT_TYPES.get(key, "string")
        if t == "array":
            return list_type({"type": "string"})
        out = {"type": t}
        if key in path_keys and t == "string":
            out["format"] = "path"
        return out
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, (list, tuple)):
        item = json_type(key, value[0], set()) if value else {"type": "string"}
        return list_type(item)
    return {"type": "string"}


def list_type(item: dict) -> dict:
    """A list param: a list (params file, config) or one comma-separated string (the command
    line: Nextflow gives `--regimes a,b` as the string "a,b"; conf/modules.config and
    workflows/caveat.nf split it). nf-schema checks `items` on a list and `pattern` on a string."""
    if item.get("enum"):
        one = "(" + "|".join(item["enum"]) + ")"
    elif item.get("type") == "integer":
        one = r"-?\d+"
    elif item.get("type") == "number":
        one = r"-?[0-9.eE+-]+"
    else:
        one = r"[^,\s]+"
    return {"type": ["array", "string"], "items": item, "pattern": f"^{one}(,\\s*{one})*$"}


def render_params_block(defaults: dict) -> str:
    width = max(len(k) for k in defaults)
    lines = [f"    {k:<{width}} = {groovy(v)}" for k, v in defaults.items()]
    return "\n".join(lines)


def replace_between(text: str, begin: str, end: str, body: str, where: Path) -> str:
    i = text.find(begin)
    j = text.find(end)
    if i < 0 or j < 0:
        raise SystemExit(f"{where}: markers {begin.strip()!r} … {end.strip()!r} missing")
    i = text.index("\n", i) + 1
    return text[:i] + (body + "\n" if body else "") + text[j:]


def build_schema(defaults: dict, owners: dict[str, str], path_keys: set[str], old: dict) -> dict:
    """The nf-schema document: old hand-written entries kept, new keys added, gone keys dropped."""
    old_defs = old.get("$defs", {})
    old_props = {k: v for g in old_defs.values() for k, v in g.get("properties", {}).items()}
    groups: dict[str, dict] = {}
    for key, value in defaults.items():
        group = owners[key]
        g = groups.setdefault(group, _group_header(group, old_defs.get(group)))
        entry = dict(old_props.get(key) or {})
        inferred = json_type(key, value, path_keys)
        if isinstance(inferred["type"], list) and entry.get("type") in ("array", inferred["type"]):
            # a list param: hand-written item details (enum) kept, the string form's pattern follows them
            entry.update(type=inferred["type"], items=entry.get("items") or inferred["items"])
            entry["pattern"] = list_type(entry["items"])["pattern"]
        elif entry.get("type") != inferred["type"]:
            entry = {**inferred, "description": entry.get("description") or _placeholder(key, group)}
        entry.setdefault("description", _placeholder(key, group))
        if value is None:
            entry.pop("default", None)
        else:
            entry["default"] = list(value) if isinstance(value, tuple) else value
        g["properties"][key] = _ordered(entry)
    groups[NEXTFLOW_GROUP] = _group_header(NEXTFLOW_GROUP, old_defs.get(NEXTFLOW_GROUP))
    groups[NEXTFLOW_GROUP]["properties"] = {k: _ordered(v) for k, v in NEXTFLOW_ONLY.items()}
    if COMMON_GROUP in groups:
        groups[COMMON_GROUP]["required"] = [k for k in ("outdir",) if k in defaults]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://raw.githubusercontent.com/caveat-bench/caveat/main/nextflow_schema.json",
        "title": "caveat pipeline parameters",
        "description": old.get("description") or "Chromatin Accessibility Variant Effect Accuracy Testbed: "
                       "an allele-specific ATAC-seq benchmark for sequence-to-accessibility models. "
                       "The same keys as `caveat run --params` (see `caveat params`).",
        "type": "object",
        "$defs": groups,
        "allOf": [{"$ref": f"#/$defs/{g}"} for g in groups],
        **INPUTS_UNLESS_SIMULATED,
    }


def _group_header(group: str, old: dict | None) -> dict:
    title = ("Input/output options" if group == COMMON_GROUP else "Generic options" if group == NEXTFLOW_GROUP
             else group.removesuffix("_options").replace("_", " ") + " options")
    head = {"title": title, "type": "object", "description": "", "properties": {}}
    if old:
        head.update({k: v for k, v in old.items() if k not in ("properties", "required")})
    if not head["description"]:
        head["description"] = ("Samplesheet, genome, genotypes and where outputs go." if group == COMMON_GROUP
                               else "Options of the Nextflow run itself (not read by the steps)." if group == NEXTFLOW_GROUP
                               else f"Params of the `{group.removesuffix('_options')}` step.")
    head["properties"] = {}
    return head


def _placeholder(key: str, group: str) -> str:
    return f"TODO: describe `{key}` ({group.removesuffix('_options')})."


_ORDER = ("type", "format", "exists", "mimetype", "schema", "items", "enum", "minimum", "maximum",
          "exclusiveMinimum", "pattern", "default", "description", "help_text", "fa_icon", "hidden")


def _ordered(entry: dict) -> dict:
    keys = [k for k in _ORDER if k in entry] + sorted(k for k in entry if k not in _ORDER)
    return {k: entry[k] for k in keys}


def tiny_preset_block() -> str:
    try:
        from caveat.simulate.presets import PRESET_PARAMS
    except ImportError:
        return ""
    tiny = PRESET_PARAMS.get("tiny", {})
    return "\n".join(f"    {k} = {groovy(v)}" for k, v in tiny.items())


def render() -> dict[Path, str]:
    """The three files' new text."""
    from caveat.params import defaults as all_defaults, path_params

    defaults = all_defaults()
    owners = param_owners()
    old = json.loads(SCHEMA.read_text()) if SCHEMA.exists() else {}
    schema = build_schema(defaults, owners, path_params(), old)
    config = replace_between(CONFIG.read_text(), PARAMS_BEGIN, PARAMS_END, render_params_block(defaults), CONFIG)
    test_config = replace_between(TEST_CONFIG.read_text(), TINY_BEGIN, TINY_END, tiny_preset_block(), TEST_CONFIG)
    return {CONFIG: config, SCHEMA: json.dumps(schema, indent=4) + "\n", TEST_CONFIG: test_config}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only report files that are out of date (exit 1)")
    args = ap.parse_args(argv)
    stale = []
    for path, text in render().items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
            if not args.check:
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_text(text)
                tmp.replace(path)
    for p in stale:
        print(f"{'out of date' if args.check else 'updated'}: {p.relative_to(REPO)}")
    schema = json.loads(SCHEMA.read_text())
    todo = [k for g in schema["$defs"].values() for k, e in g["properties"].items()
            if e.get("description", "").startswith("TODO")]
    if todo:
        print(f"note: {len(todo)} params still have a TODO description in nextflow_schema.json")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
