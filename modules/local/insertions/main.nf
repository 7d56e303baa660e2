process INSERTIONS {
    // Tn5 insertion sites (+4/-5 shifted) of one sample's properly paired fragments → bigWig.
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(bam), path(bai)
    tuple path(fasta), path(fai)

    output:
    tuple val(meta), path("${prefix}.bw"), emit: bigwig
    tuple val(meta), path("${prefix}.insertions.json"), emit: stats
    tuple val("${task.process}"), val('caveat'), eval('insertions.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    prefix = task.ext.prefix ?: "${meta.id}"
    def args = task.ext.args ?: ''
    """
    insertions.py \\
        --fasta ${fasta} \\
        --bam ${bam} \\
        --sample ${meta.id} \\
        --out-bw ${prefix}.bw \\
        --stats ${prefix}.insertions.json \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.bw
    echo '{"sample": "${meta.id}", "fragments": 0}' > ${prefix}.insertions.json
    """
}
