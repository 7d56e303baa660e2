"""Columns of the result tables that several steps read (``metrics.parquet``)."""

from __future__ import annotations

#: metrics.parquet, one row per regime × replicate × metric × cell type × stratum (written by ``evaluate``);
#: ``replicate``: ``rep<k>`` (one model), ``ensemble`` (the mean over replicates, scored as its own model)
#: or ``median`` (the median over replicates, no CI); ``replicate_sd``: the sd over replicates (median
#: and ensemble rows); ``q_value``: Benjamini–Hochberg over the ensemble's paired regime tests
#: (``delong_*`` rows), else null
METRIC_COLUMNS = ["regime", "replicate", "metric", "cell_type", "stratum", "value", "ci_low", "ci_high", "n",
                  "p_value", "reference", "q_value", "replicate_sd"]
