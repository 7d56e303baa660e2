process WASP_REMAP_GATHER {
    // Joins one sample's per-chromosome WASP output into what the local engine writes:
    // wasp/<sample>.bam (+ .bai; the parts' records moved as they are, byte for byte the
    // whole-BAM result) and wasp/<sample>.stats.json (the filter's figures summed).
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(bams, stageAs: 'chroms/*'), path(stats, stageAs: 'chroms/*')

    output:
    tuple val(meta), path("${meta.id}.bam"), path("${meta.id}.bam.bai"), emit: bam
    tuple val(meta), path("${meta.id}.stats.json"), emit: stats
    tuple val("${task.process}"), val('caveat'), eval('wasp_remap.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    wasp_remap.py \\
        --gather ${bams} \\
        --part-stats ${stats} \\
        --sample ${meta.id} \\
        --out-bam ${meta.id}.bam \\
        --out-stats ${meta.id}.stats.json \\
        ${args}
    """

    stub:
    """
    touch ${meta.id}.bam ${meta.id}.bam.bai
    echo '{"sample": "${meta.id}"}' > ${meta.id}.stats.json
    """
}
