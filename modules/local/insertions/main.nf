process INSERTIONS {
    // Tn5 insertion sites (+4/-5 shifted) of one sample's properly paired fragments → bigWig.
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(bam), path(bai)
    tuple path(fasta), path(fai)

    output:
    tuple val(meta), path("${meta.id}.bw"), emit: bigwig
    tuple val(meta), path("${meta.id}.insertions.json"), emit: stats
    tuple val("${task.process}"), val('caveat'), eval('insertions.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insertions.py \\
        --fasta ${fasta} \\
        --bam ${bam} \\
        --sample ${meta.id} \\
        --out-bw ${meta.id}.bw \\
        --stats ${meta.id}.insertions.json \\
        ${args}
    """

    stub:
    """
    touch ${meta.id}.bw
    echo '{"sample": "${meta.id}", "fragments": 0}' > ${meta.id}.insertions.json
    """
}
