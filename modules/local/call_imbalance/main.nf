process CALL_IMBALANCE {
    // Confirms each donor's het SNPs (REF and ALT reads over its samples), drops artefact sites
    // (blacklist, depth outliers), pools each cell type's donors → binomial (or beta-binomial)
    // test over its in-peak autosomal sites → BH → imbalanced / balanced / untested.
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(counts, stageAs: 'counts/*'), val(cell_types)
    path peaks       // peaks.parquet: each cell type's own peaks (called_<cell type>) and strata
    path blacklist   // BED of artefact regions, or []

    output:
    tuple val(meta), path('imbalance.parquet'), emit: imbalance
    tuple val(meta), path('call_imbalance.summary.json'), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('call_imbalance.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def peaks_arg = peaks ? "--peaks ${peaks}" : ''
    def blacklist_arg = blacklist ? "--blacklist ${blacklist}" : ''
    """
    call_imbalance.py \\
        --counts ${counts} \\
        --cell-types ${cell_types.join(' ')} \\
        ${peaks_arg} \\
        ${blacklist_arg} \\
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
