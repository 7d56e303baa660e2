process COUNT_ALLELES_SUMMARY {
    // The run's count_alleles.summary.json, as the local engine writes it, from every sample's counts.
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(counts, stageAs: 'counts/*')

    output:
    tuple val(meta), path('count_alleles.summary.json'), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('count_alleles.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    count_alleles.py \\
        --summarize ${counts} \\
        --out count_alleles.summary.json \\
        ${args}
    """

    stub:
    """
    echo '{"samples": 0}' > count_alleles.summary.json
    """
}
