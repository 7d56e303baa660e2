from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from caveat.io import atomic_path, dumps_json, file_digest, read_parquet, write_json, write_parquet


def test_atomic_path_renames_on_success_and_cleans_on_error(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp != target and tmp.parent == target.parent
        tmp.write_text("done")
    assert target.read_text() == "done"
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise ValueError
    assert target.read_text() == "done"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_atomic_dir(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "a").write_text("1")
    assert (target / "a").read_text() == "1"


def test_json_is_deterministic_and_finite(tmp_path):
    obj = {"b": np.int64(3), "a": [np.float32(1.5), math.nan], "c": np.arange(2)}
    assert dumps_json(obj) == dumps_json(dict(reversed(list(obj.items()))))
    write_json(obj, tmp_path / "x.json")
    assert '"a": [\n    1.5,\n    null\n  ]' in (tmp_path / "x.json").read_text()


def test_parquet_roundtrip_is_byte_identical(tmp_path):
    df = pd.DataFrame({"chrom": ["chr1", "chr2"], "pos": [5, 7], "x": [0.5, 1.0]}, index=[10, 11])
    write_parquet(df, tmp_path / "a.parquet")
    write_parquet(df, tmp_path / "b.parquet")
    assert file_digest(tmp_path / "a.parquet") == file_digest(tmp_path / "b.parquet")
    back = read_parquet(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(back, df.reset_index(drop=True))


def test_write_parquet_accepts_arrow_table_keeping_empty_types(tmp_path):
    import pyarrow as pa

    t = pa.table({"variant_id": pa.array([], pa.string()), "ref_count": pa.array([], pa.int32())})
    write_parquet(t, tmp_path / "e.parquet")
    back = read_parquet(tmp_path / "e.parquet")
    assert len(back) == 0 and str(back["ref_count"].dtype) == "int32"


def test_input_error_survives_pickling():
    import pickle

    from caveat.errors import InputError

    e = pickle.loads(pickle.dumps(InputError("x.bam", "no index", "run samtools index")))
    assert (e.file, e.problem, e.fix) == ("x.bam", "no index", "run samtools index")
    assert "fix: run samtools index" in str(e)
