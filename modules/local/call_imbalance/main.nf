process CALL_IMBALANCE {
    // Pools each cell type's donors per het SNP → binomial (or beta-binomial) test → BH →
    // imbalanced / balanced / untested, for every cell type (counts gathered per cell type).
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(counts, stageAs: 'counts/*'), val(cell_types)
    path peaks

    output:
    tuple val(meta), path('imbalance.parquet'), emit: imbalance
    tuple val(meta), path('call_imbalance.summary.json'), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('call_imbalance.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def peaks_arg = peaks ? "--peaks ${peaks}" : ''
    """
    call_imbalance.py \\
        --counts ${counts} \\
        --cell-types ${cell_types.join(' ')} \\
        ${peaks_arg} \\
        --out imbalance.parquet \\
        --summary call_imbalance.summary.json \\
        ${args}
    """

    stub:
    """
    touch imbalance.parquet
    echo '{"tested": 0}' > call_imbalance.summary.json
    """
}
