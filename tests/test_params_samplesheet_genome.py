from __future__ import annotations

import numpy as np
import pytest

from caveat.engine import Step
from caveat.errors import InputError
from caveat.genome import check_contigs, decode, encode, read_contig_map, read_genome, reverse_complement_codes
from caveat.params import load_params, validate
from caveat.samplesheet import cell_types, read_samplesheet

STEPS = [Step("s", lambda c: {}, params={"k_int": 3, "k_float": 0.5, "k_list": ["a"], "k_path": None},
              path_params=("k_path",))]


def test_validate_types_and_unknown_keys():
    p = validate({"k_float": 1}, STEPS)
    assert p["k_float"] == 1.0 and isinstance(p["k_float"], float)
    with pytest.raises(InputError, match="k_int"):
        validate({"k_int": "three"}, STEPS)
    with pytest.raises(InputError, match="did you mean 'k_int'"):
        validate({"k_itn": 3}, STEPS)


def test_load_params_resolves_paths_against_params_file(tmp_path):
    (tmp_path / "p.yaml").write_text("k_path: data/x.bed\ninput: sheet.csv\nk_list: [b, c]\n")
    p = load_params(tmp_path / "p.yaml", steps=STEPS)
    assert p["k_path"] == str(tmp_path / "data" / "x.bed")
    assert p["input"] == str(tmp_path / "sheet.csv")
    assert p["k_list"] == ["b", "c"]
    with pytest.raises(InputError, match="not found"):
        load_params(tmp_path / "missing.yaml", steps=STEPS)


def _sheet(tmp_path, text):
    (tmp_path / "a.bam").write_bytes(b"")
    (tmp_path / "b.bam").write_bytes(b"")
    f = tmp_path / "sheet.csv"
    f.write_text(text)
    return f


def test_samplesheet_ok_and_errors(tmp_path):
    f = _sheet(tmp_path, "sample,donor,cell_type,bam\nD1_x,D1,x,a.bam\nD2_y,D2,y,b.bam\n")
    df = read_samplesheet(f)
    assert df["bam"].tolist() == [str(tmp_path / "a.bam"), str(tmp_path / "b.bam")]
    assert cell_types(df) == ["x", "y"]
    with pytest.raises(InputError, match="appears more than once"):
        read_samplesheet(_sheet(tmp_path, "sample,donor,cell_type,bam\ns,D1,x,a.bam\ns,D2,x,b.bam\n"))
    with pytest.raises(InputError, match="unknown column"):
        read_samplesheet(_sheet(tmp_path, "sample,donor,cell_type,bam,extra\ns,D1,x,a.bam,1\n"))
    with pytest.raises(InputError, match="line 2: bam file .*missing.bam"):
        read_samplesheet(_sheet(tmp_path, "sample,donor,cell_type,bam\ns,D1,x,missing.bam\n"))
    with pytest.raises(InputError, match="no bam"):
        read_samplesheet(_sheet(tmp_path, "sample,donor,cell_type,bam\ns,D1,x,\n"))


def test_genome_codes_roundtrip(tmp_path):
    seq = "ACGTNacgtnRY"
    codes = encode(seq)
    assert codes.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 4, 4]
    assert decode(codes) == "ACGTNACGTNNN"
    assert decode(reverse_complement_codes(encode("AACGTN"))) == "NACGTT"
    fa = tmp_path / "g.fa"
    fa.write_text(">chr1\nACGT\nAC\n>chr2\nNNGG\n")
    g = read_genome(fa)
    assert list(g) == ["chr1", "chr2"] and decode(g["chr1"]) == "ACGTAC"
    assert g["chr2"].dtype == np.uint8
    with pytest.raises(InputError, match="'chr3' is not in the FASTA"):
        read_genome(fa, ["chr3"])


def test_contig_mismatch_hint(tmp_path):
    with pytest.raises(InputError, match="without 'chr'"):
        check_contigs(["chr1"], {"1": 10}, what="VCF", file="x.vcf", reference_file="g.fa")
    with pytest.raises(InputError, match="with 'chr'"):
        check_contigs(["1"], {"chr1": 10}, what="VCF", file="x.vcf", reference_file="g.fa")
    check_contigs(["chr1"], {"chr1": 10}, what="VCF", file="x.vcf", reference_file="g.fa")
    m = tmp_path / "map.tsv"
    m.write_text("1\tchr1\n")
    assert read_contig_map(m) == {"1": "chr1"}


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    """PyYAML (YAML 1.1) reads `1e-3` as a string; where the default is a float it is a number."""
    (tmp_path / "p.yaml").write_text("k_float: 1e-3\n")
    assert load_params(tmp_path / "p.yaml", steps=STEPS)["k_float"] == 0.001
    (tmp_path / "p.yaml").write_text("k_float: fast\n")
    with pytest.raises(InputError, match="'k_float' = 'fast' should be of type float"):
        load_params(tmp_path / "p.yaml", steps=STEPS)


@pytest.mark.parametrize("key,value,words", [
    ("train_batch_size", 0, ">= 1"), ("train_max_epochs", -3, ">= 1"), ("window_size", 0, ">= 1"),
    ("train_lr", 0.0, "> 0"), ("imbalance_fdr", 1.5, "<= 1"), ("model_dropout", 1.0, "< 1"),
    ("aligner", "hisat2", "not one of bowtie2, bwa"), ("concordance_min_both_alleles", 2.0, "<= 1"),
])
def test_impossible_params_are_refused_naming_the_key(key, value, words):
    with pytest.raises(InputError, match=f"param '{key}' = .*{words}"):
        validate({key: value})


def test_param_rules_are_the_nextflow_schema_rules():
    """caveat.params.RULES and nextflow_schema.json state the same bounds and choices."""
    import json
    from pathlib import Path

    from caveat.params import RULES, defaults

    schema = json.loads((Path(__file__).resolve().parents[1] / "nextflow_schema.json").read_text())
    words = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum")
    in_schema = {k: {w: v[w] for w in words if w in v}
                 for g in schema["$defs"].values() for k, v in g["properties"].items() if k in defaults()}
    assert {k: v for k, v in in_schema.items() if v} == RULES


def test_one_bam_for_two_samples_is_refused(tmp_path):
    f = _sheet(tmp_path, "sample,donor,cell_type,bam\nD1_x,D1,x,a.bam\nD2_x,D2,x,./a.bam\n")
    with pytest.raises(InputError, match="line 3: sample D2_x lists the same BAM as sample D1_x"):
        read_samplesheet(f)
