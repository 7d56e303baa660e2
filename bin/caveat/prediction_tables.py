"""Reading ``predictions.parquet`` in bounded memory.

A real study's prediction table is ~77 M rows (test windows and peaks × cell types ×
regimes × replicates). Read with pandas, its five label columns alone take ~80 bytes a
row (8 GB). :func:`read_predictions` scans it with polars, keeps only the columns and rows
asked for, and stores the label columns as categoricals (a 1–4 byte code a row) and
positions as Int32 where they fit: ~25 bytes a row.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl

#: label columns stored as categoricals (few distinct values, repeated on every row)
LABELS = ("regime", "replicate", "kind", "chrom", "cell_type", "peak_id", "model")
POSITIONS = ("start", "end")
INT32_MAX = 2**31 - 1


def read_predictions(path: str | Path, columns=None, kind: str | None = None, categorical: bool = True
                     ) -> pd.DataFrame:
    """Read a prediction table: columns pruned, rows filtered, compact dtypes.

    Parameters
    ----------
    path : str or Path
        ``predictions.parquet`` (any Parquet file; errors are pyarrow's/polars').
    columns : sequence of str, optional
        The columns wanted (those present are read, in the file's order); None: all.
    kind : str, optional
        Keep only rows of this ``kind`` (``window`` / ``peak``), filtered while scanning.
    categorical : bool
        Store :data:`LABELS` columns as pandas categoricals (False: strings).

    Returns
    -------
    DataFrame, shape (n, c)
        Values equal to ``pd.read_parquet(path)[columns]`` (row order kept); label columns
        categorical, ``start``/``end`` int32 when every value fits.
    """
    lf = pl.scan_parquet(path)
    names = lf.collect_schema().names()
    keep = names if columns is None else [c for c in names if c in set(columns)]
    if kind is not None and "kind" in names:
        lf = lf.filter(pl.col("kind") == kind)
    df = lf.select(keep).collect()
    casts = []
    for c in keep:
        if categorical and c in LABELS and df.schema[c] == pl.String:
            # an Enum of the sorted values: pandas categories in lexical order, as astype("category") gives
            casts.append(pl.col(c).cast(pl.Enum(df[c].drop_nulls().unique().sort())))
        elif c in POSITIONS and df.schema[c].is_integer() and len(df) and \
                -INT32_MAX <= df[c].min() and df[c].max() <= INT32_MAX:
            casts.append(pl.col(c).cast(pl.Int32))
    out = (df.with_columns(casts) if casts else df).to_pandas()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].cat.as_unordered()
    return out
