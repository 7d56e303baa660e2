process WASP_REMAP_GATHER {
    // Joins one sample's per-group WASP output (WASP_REMAP's parts) into what the local engine writes:
    // wasp/<sample>.bam (+ .bai; the parts' records moved as they are, byte for byte the
    // whole-BAM result) and wasp/<sample>.stats.json (the filter's figures summed).
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(bams, stageAs: 'parts/*'), path(stats, stageAs: 'parts/*')

    output:
    tuple val(meta), path("${prefix}.bam"), path("${prefix}.bam.bai"), emit: bam
    tuple val(meta), path("${prefix}.stats.json"), emit: stats
    tuple val("${task.process}"), val('caveat'), eval('wasp_remap.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    prefix = task.ext.prefix ?: "${meta.id}"
    def args = task.ext.args ?: ''
    """
    wasp_remap.py \\
        --gather ${bams} \\
        --part-stats ${stats} \\
        --sample ${meta.id} \\
        --out-bam ${prefix}.bam \\
        --out-stats ${prefix}.stats.json \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.bam ${prefix}.bam.bai
    echo '{"sample": "${meta.id}"}' > ${prefix}.stats.json
    """
}
