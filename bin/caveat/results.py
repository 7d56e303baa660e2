"""Columns of the result tables that several steps read (``metrics.parquet``)."""

from __future__ import annotations

#: metrics.parquet, one row per regime × metric × cell type × stratum (written by ``evaluate``);
#: ``q_value``: Benjamini–Hochberg over every paired regime test (``delong_*`` rows) of the run, else null
METRIC_COLUMNS = ["regime", "metric", "cell_type", "stratum", "value", "ci_low", "ci_high", "n", "p_value",
                  "reference", "q_value"]
