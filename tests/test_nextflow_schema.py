"""nextflow_schema.json and assets/schema_input.json, checked with Python jsonschema.

The params schema must list exactly the keys of ``caveat.params.defaults()`` with
the same defaults (and nextflow.config the same block): one namespace for both
engines. The samplesheet schema is what nf-schema validates on Nextflow; it is
exercised here on the same file, with nf-schema's two custom keywords
(``uniqueEntries``, ``exists``) implemented as nf-schema documents them, and
rows read from CSV as nf-schema does (empty cells are absent).
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import jsonschema
import pytest

from caveat.errors import InputError
from caveat.params import defaults
from caveat.samplesheet import read_samplesheet

REPO = Path(__file__).resolve().parents[1]
PARAMS_SCHEMA = REPO / "nextflow_schema.json"
INPUT_SCHEMA = REPO / "assets" / "schema_input.json"


def _sync():
    spec = importlib.util.spec_from_file_location("sync_nextflow_params", REPO / "scripts" / "sync_nextflow_params.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _schema_params(schema: dict) -> dict:
    """The steps' params (every group but the Nextflow-only `generic_options`)."""
    return {k: v for name, g in schema["$defs"].items() if name != "generic_options" for k, v in g["properties"].items()}


# ---------------------------------------------------------------- params schema

def test_params_schema_is_valid_draft_2020_12():
    schema = json.loads(PARAMS_SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    # every group is referenced, every param has a type and a description
    assert {r["$ref"].split("/")[-1] for r in schema["allOf"]} == set(schema["$defs"])
    for k, v in _schema_params(schema).items():
        assert v.get("type") and v.get("description"), k


def test_params_schema_keys_and_defaults_match_caveat_params():
    schema_params = _schema_params(json.loads(PARAMS_SCHEMA.read_text()))
    py = defaults()
    missing, extra = sorted(set(py) - set(schema_params)), sorted(set(schema_params) - set(py))
    assert not missing and not extra, (
        f"nextflow_schema.json out of step with caveat.params.defaults(): missing {missing}, extra {extra}; "
        "run scripts/sync_nextflow_params.py")
    for k, v in py.items():
        want = list(v) if isinstance(v, tuple) else v
        assert schema_params[k].get("default") == want, f"{k}: schema default {schema_params[k].get('default')!r} != {want!r}"


def test_nextflow_config_and_schema_are_in_sync():
    stale = [p.relative_to(REPO).as_posix() for p, text in _sync().render().items() if p.read_text() != text]
    assert not stale, f"out of date: {stale}; run scripts/sync_nextflow_params.py"


def test_nextflow_only_options_are_set_in_nextflow_config_and_not_steps_params():
    """publish_dir_mode and trace_report_suffix are options of the Nextflow run: in the
    schema's generic_options group, set in nextflow.config below the generated block, and
    not keys of caveat.params (the local engine has no use for them)."""
    import re

    generic = json.loads(PARAMS_SCHEMA.read_text())["$defs"]["generic_options"]["properties"]
    assert set(generic) == set(_sync().NEXTFLOW_ONLY)
    assert not set(generic) & set(defaults())
    config = (REPO / "nextflow.config").read_text()
    after = config.split("// END caveat params", 1)[1].split("\n}", 1)[0]
    for k, v in generic.items():
        m = re.search(rf"^\s*{k}\s*=\s*(.+)$", after, re.M)
        assert m, f"nextflow.config sets no params.{k}"
        if "default" in v:
            assert m.group(1).strip() == repr(v["default"]), (k, m.group(1))


def test_sync_detects_a_new_param(monkeypatch):
    """The sync check can fail: a step gaining a param makes the files stale."""
    sync = _sync()
    import caveat.params as cp

    monkeypatch.setitem(cp.COMMON_PARAMS, "zz_new_param", 3)
    files = sync.render()
    assert "zz_new_param = 3" in " ".join(files[sync.CONFIG].split())
    assert "zz_new_param" in _schema_params(json.loads(files[sync.SCHEMA]))
    assert files[sync.CONFIG] != sync.CONFIG.read_text()


def test_test_profile_carries_the_tiny_study_params():
    """-profile test runs with the params `caveat simulate --preset tiny` writes: the preset's
    (model size, epochs …) and the aligner arguments the simulated BAMs were made with."""
    import ast
    import re

    pytest.importorskip("caveat.simulate")
    from caveat.simulate.align import BOWTIE2_ARGS
    from caveat.simulate.presets import PRESET_PARAMS

    text = (REPO / "conf" / "test.config").read_text()
    got = {}
    for key, value in re.findall(r"^\s*(\w+)\s*=\s*(.+?)\s*$", text.split("params {", 1)[1], flags=re.M):
        try:
            got[key] = ast.literal_eval(value.replace("true", "True").replace("false", "False"))
        except (ValueError, SyntaxError):
            got[key] = value  # a Groovy expression (paths under projectDir)
    assert got["aligner_args"] == BOWTIE2_ARGS
    for key, value in PRESET_PARAMS["tiny"].items():
        assert got.get(key) == value, (key, got.get(key), value)


def test_default_params_validate_and_bad_types_are_rejected(tmp_path):
    schema = json.loads(PARAMS_SCHEMA.read_text())
    params = {k: v for k, v in defaults().items() if v is not None}
    params.update(input=str(tmp_path / "s.csv"), fasta=str(tmp_path / "g.fa"), vcf=str(tmp_path / "g.vcf.gz"))
    jsonschema.validate(params, schema, cls=jsonschema.Draft202012Validator)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**params, "seed": "seven"}, schema, cls=jsonschema.Draft202012Validator)
    missing = dict(params)
    del missing["input"]
    with pytest.raises(jsonschema.ValidationError, match="input"):
        jsonschema.validate(missing, schema, cls=jsonschema.Draft202012Validator)


# ---------------------------------------------------------------- samplesheet schema

def _unique_entries(validator, columns, instance, schema):
    """nf-schema's ``uniqueEntries``: no two rows share the values of these columns, over the
    columns a row has (nf-schema 2.x UniqueEntriesEvaluator.evaluate: ``subMap(uniqueEntries)``
    keeps the present keys, and a row with none of them, an empty Tuple, is skipped)."""
    if not validator.is_type(instance, "array"):
        return
    seen = {}
    for i, row in enumerate(instance):
        key = tuple((c, row[c]) for c in columns if c in row)
        if not key:
            continue
        if key in seen:
            yield jsonschema.ValidationError(
                f"rows {seen[key] + 1} and {i + 1} share {dict(key)}: {'/'.join(columns)} must be unique")
        seen.setdefault(key, i)


def _exists(validator, wanted, instance, schema):
    """nf-schema's ``exists`` (with a file-path format): the file must exist."""
    if wanted and isinstance(instance, str) and not Path(instance).exists():
        yield jsonschema.ValidationError(f"the file or directory '{instance}' does not exist")


NfSchemaValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"uniqueEntries": _unique_entries, "exists": _exists})


def _rows(csv_path: Path) -> list[dict]:
    """CSV → list of objects as nf-schema sees them: empty cells are absent."""
    with open(csv_path, newline="") as f:
        return [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _errors(csv_path: Path) -> list[str]:
    schema = json.loads(INPUT_SCHEMA.read_text())
    return [e.message for e in NfSchemaValidator(schema).iter_errors(_rows(csv_path))]


@pytest.fixture
def sheet_dir(tmp_path):
    for name in ("D1_ctA.bam", "D2_ctA.bam", "D1_ctB.bam", "ctA.bed"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


GOOD = ("sample,donor,cell_type,bam,peaks\n"
        "D1_ctA,D1,ctA,{d}/D1_ctA.bam,{d}/ctA.bed\n"
        "D2_ctA,D2,ctA,{d}/D2_ctA.bam,\n"
        "D1_ctB,D1,ctB,{d}/D1_ctB.bam,\n")

BAD = {
    "missing_bam": ("sample,donor,cell_type,bam\nD1_ctA,D1,ctA,{d}/D1_ctA.bam\nD2_ctA,D2,ctA,\n", "'bam' is a required property"),
    "duplicated_sample": ("sample,donor,cell_type,bam\nD1_ctA,D1,ctA,{d}/D1_ctA.bam\nD1_ctA,D2,ctA,{d}/D2_ctA.bam\n", "sample must be unique"),
    "unknown_column": ("sample,donor,cell_type,bam,condition\nD1_ctA,D1,ctA,{d}/D1_ctA.bam,treated\n", "'condition' was unexpected"),
    "duplicated_donor_cell_type": ("sample,donor,cell_type,bam\nD1_ctA,D1,ctA,{d}/D1_ctA.bam\nD1_ctA_2,D1,ctA,{d}/D2_ctA.bam\n", "donor/cell_type/fragments must be unique"),
    "bad_sample_name": ("sample,donor,cell_type,bam\nD1 ctA,D1,ctA,{d}/D1_ctA.bam\n", "does not match"),
    "empty": ("sample,donor,cell_type,bam\n", "should be non-empty"),
}


def test_samplesheet_schema_is_valid_and_accepts_a_good_sheet(sheet_dir):
    schema = json.loads(INPUT_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    p = sheet_dir / "good.csv"
    p.write_text(GOOD.format(d=sheet_dir))
    assert _errors(p) == []
    assert len(read_samplesheet(p)) == 3  # the local engine agrees


@pytest.mark.parametrize("case", sorted(BAD))
def test_samplesheet_schema_rejects_bad_sheets_as_the_local_engine_does(sheet_dir, case):
    text, message = BAD[case]
    p = sheet_dir / f"{case}.csv"
    p.write_text(text.format(d=sheet_dir))
    errs = _errors(p)
    assert any(message in e for e in errs), errs
    with pytest.raises(InputError):
        read_samplesheet(p)


def test_a_missing_bam_is_left_to_the_pipeline_which_resolves_paths_like_the_local_engine(sheet_dir):
    """nf-schema's `exists` would look for a relative path in the launch directory, so the
    schema does not check existence: PREPARE_INPUTS does, after resolving the path against the
    samplesheet's folder (tests/test_nextflow_runtime.py runs that code), and the local engine
    does the same."""
    p = sheet_dir / "missing.csv"
    p.write_text("sample,donor,cell_type,bam\nD1_ctA,D1,ctA,nope.bam\n")
    assert _errors(p) == []
    with pytest.raises(InputError, match="relative to the samplesheet"):
        read_samplesheet(p)


def test_schema_meta_fields_are_the_samplesheet_columns():
    """nf-schema builds each row's meta map from these (meta.id, meta.donor, meta.cell_type):
    the names the modules use."""
    props = json.loads(INPUT_SCHEMA.read_text())["items"]["properties"]
    assert {k: v.get("meta") for k, v in props.items() if "meta" in v} == {
        "sample": ["id"], "donor": ["donor"], "cell_type": ["cell_type"]}
    from caveat.samplesheet import LIBRARY_COLUMNS, OPTIONAL, REQUIRED

    # samplesheetToList emits [meta, bam, peaks, fragments, barcodes] in this order (nf-schema
    # SamplesheetConverter.formatEntry loops over the schema's properties), absent cells as []
    assert list(props) == [*REQUIRED, *OPTIONAL, *LIBRARY_COLUMNS]


# ---------------------------------------------------------------- single-cell library rows

def test_schema_accepts_the_tiny_sc_samplesheet_and_a_mixed_sheet(sheet_dir, tmp_path):
    """The simulator's tiny-sc sheet (two pooled libraries), a one-donor library (donor on the
    row) and bulk rows beside libraries, as read_study accepts them; two one-donor libraries of
    one donor are not duplicates (uniqueEntries counts the fragments column too)."""
    from caveat.simulate.presets import PRESETS
    from caveat.simulate.single_cell import sheet_lines

    sc = tmp_path / "sc.csv"
    sc.write_text("\n".join(sheet_lines(PRESETS["tiny-sc"])) + "\n")  # what `caveat simulate --preset tiny-sc` writes
    assert len(_rows(sc)) == 2 and _errors(sc) == []
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(GOOD.format(d=sheet_dir).replace("bam,peaks\n", "bam,peaks,fragments,barcodes\n")
                     + "libA,D3,,a.bam,,a.fragments.tsv.gz,a.barcodes.csv\n"
                     + "libB,D3,,b.bam,,b.fragments.tsv.gz,b.barcodes.tsv\n")
    assert _errors(mixed) == []


LIB_HEADER = "sample,donor,cell_type,bam,peaks,fragments,barcodes\n"
BAD_LIBRARY = {
    "no_barcodes": ("lib1,,,l.bam,,l.fragments.tsv.gz,\n", "'barcodes' is a required property"),
    "no_fragments": ("lib1,,,l.bam,,,l.barcodes.csv\n", "'fragments' is a required property"),
    "no_bam": ("lib1,,,,,l.fragments.tsv.gz,l.barcodes.csv\n", "'bam' is a required property"),
    "cell_type_on_library": ("lib1,,ctA,l.bam,,l.fragments.tsv.gz,l.barcodes.csv\n", "should not be valid"),
    "peaks_on_library": ("lib1,,,l.bam,ctA.bed,l.fragments.tsv.gz,l.barcodes.csv\n", "should not be valid"),
    "fragments_not_tsv_gz": ("lib1,,,l.bam,,l.fragments.tsv,l.barcodes.csv\n", "does not match"),
    "bulk_without_cell_type": ("s1,D1,,s1.bam,,,\n", "'cell_type' is a required property"),
    "same_library_twice": ("lib1,,,l.bam,,l.fragments.tsv.gz,l.barcodes.csv\n"
                           "lib1,,,m.bam,,m.fragments.tsv.gz,m.barcodes.csv\n", "sample must be unique"),
}


@pytest.mark.parametrize("case", sorted(BAD_LIBRARY))
def test_schema_refuses_bad_library_rows(tmp_path, case):
    text, message = BAD_LIBRARY[case]
    p = tmp_path / f"{case}.csv"
    p.write_text(LIB_HEADER + text)
    errs = [e for e in _all_errors(p)]
    assert any(message in e for e in errs), errs


def _all_errors(csv_path: Path) -> list[str]:
    """Every error message, those of the if/then/else branches included (jsonschema nests them
    under the ``allOf``/``then`` error's context)."""
    schema = json.loads(INPUT_SCHEMA.read_text())

    def walk(e):
        yield e.message
        for c in e.context or ():
            yield from walk(c)

    return [m for e in NfSchemaValidator(schema).iter_errors(_rows(csv_path)) for m in walk(e)]
