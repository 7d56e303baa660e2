process EVALUATE {
    // Reference accuracy, over-correlation, variant-effect AUROCs, effect sizes and cross-cell-type scores (block-bootstrap CIs), by stratum.
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(predictions), path(scores), path(variant_sets), path(stratum_sets), path(imbalance), path(peaks), path(donor_counts), path(windows), path(dataset_summary)
    tuple path(fasta), path(fai)

    output:
    tuple val(meta), path('metrics.parquet'), emit: metrics
    tuple val(meta), path('evaluate.summary.json'), emit: summary
    tuple val(meta), path('benchmark_bundle'), emit: bundle
    tuple val("${task.process}"), val('caveat'), eval('evaluate.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    evaluate.py \\
        --predictions ${predictions} \\
        --scores ${scores} \\
        --variant-sets ${variant_sets} \\
        --stratum-sets ${stratum_sets} \\
        --imbalance ${imbalance} \\
        --peaks ${peaks} \\
        --donor-counts ${donor_counts} \\
        --out metrics.parquet \\
        --bundle benchmark_bundle \\
        --windows ${windows} \\
        --dataset-summary ${dataset_summary} \\
        --fasta ${fasta} \\
        ${args}
    """

    stub:
    """
    touch metrics.parquet
    mkdir benchmark_bundle
    echo '{"rows": 0}' > evaluate.summary.json
    """
}
