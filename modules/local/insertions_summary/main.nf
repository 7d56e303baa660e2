process INSERTIONS_SUMMARY {
    // The run's insertions.summary.json, as the local engine writes it, from every sample's
    // and cell type's track figures (<sample>.insertions.json, <cell type>.pseudobulk.json);
    // samplesheet: the run's samples table (WASP_REMAP_STUDY: bulk rows and library groups).
    tag "${meta.id}"
    label 'process_single'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(stats, stageAs: 'stats/*'), path(samplesheet)

    output:
    tuple val(meta), path('insertions.summary.json'), emit: summary
    tuple val("${task.process}"), val('caveat'), eval('insertions.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insertions.py \\
        --summarize ${stats} \\
        --input ${samplesheet} \\
        --out-summary insertions.summary.json \\
        ${args}
    """

    stub:
    """
    echo '{"samples": {}}' > insertions.summary.json
    """
}
