process WASP_REMAP_SUMMARY {
    // The run's wasp_remap.summary.json, as the local engine writes it, from every
    // sample's gathered stats and the het-site figures.
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(stats, stageAs: 'stats/*'), path(sites_summary)

    output:
    tuple val(meta), path('wasp_remap.summary.json'), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('wasp_remap.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    wasp_remap.py \\
        --summarize \\
        --part-stats ${stats} \\
        --sites-summary ${sites_summary} \\
        --out-summary wasp_remap.summary.json \\
        ${args}
    """

    stub:
    """
    echo '{"samples": 0}' > wasp_remap.summary.json
    """
}
