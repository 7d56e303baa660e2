process MATCH_NEGATIVES {
    // Balanced sites matched to the imbalanced ones on log total count, per cell type.
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(imbalance)
    path(peaks)   // peaks.parquet: peak values and centres for the region-controlled negatives

    output:
    tuple val(meta), path('variant_sets.parquet'), emit: variant_sets
    tuple val(meta), path('variant_sets_stratum_matched.parquet'), emit: stratum_matched
    tuple val(meta), path('match_negatives.summary.json'), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('match_negatives.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    match_negatives.py \\
        --imbalance ${imbalance} \\
        --peaks ${peaks} \\
        --out variant_sets.parquet \\
        --stratum-out variant_sets_stratum_matched.parquet \\
        --summary match_negatives.summary.json \\
        ${args}
    """

    stub:
    """
    touch variant_sets.parquet variant_sets_stratum_matched.parquet
    echo '{"positives": 0, "negatives": 0}' > match_negatives.summary.json
    """
}
