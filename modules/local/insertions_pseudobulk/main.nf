process INSERTIONS_PSEUDOBULK {
    // Sum of a cell type's sample insertion tracks (over donors) → pseudobulk bigWig.
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(bigwigs, stageAs: 'samples/*')
    tuple path(fasta), path(fai)

    output:
    tuple val(meta), path("${prefix}.pseudobulk.bw"), emit: bigwig
    tuple val(meta), path("${prefix}.pseudobulk.json"), emit: stats
    tuple val("${task.process}"), val('caveat'), eval('insertions.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    prefix = task.ext.prefix ?: "${meta.id}"
    def args = task.ext.args ?: ''
    """
    insertions.py \\
        --fasta ${fasta} \\
        --pseudobulk ${bigwigs} \\
        --out-bw ${prefix}.pseudobulk.bw \\
        --stats ${prefix}.pseudobulk.json \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.pseudobulk.bw
    echo '{"cell_type": "${meta.id}"}' > ${prefix}.pseudobulk.json
    """
}
