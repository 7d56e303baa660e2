process COUNT_ALLELES {
    // REF/ALT/other counts at a sample's het SNPs on its WASP-filtered BAM, each fragment once.
    // One task per sample (not per chromosome): see docs/nextflow.md, "How the work is split".
    tag "${meta.id}"
    label 'process_low'
    container 'ghcr.io/caveat-bench/caveat:0.1.0'

    input:
    tuple val(meta), path(bam), path(bai)
    path het_snps

    output:
    tuple val(meta), path("${prefix}.parquet"), emit: counts
    tuple val("${task.process}"), val('caveat'), eval('count_alleles.py --version'), emit: versions_caveat, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    prefix = task.ext.prefix ?: "${meta.id}"
    def args = task.ext.args ?: ''
    """
    count_alleles.py \\
        --bam ${bam} \\
        --het-snps ${het_snps} \\
        --sample ${meta.id} \\
        --donor ${meta.donor} \\
        --cell-type ${meta.cell_type} \\
        --threads ${task.cpus} \\
        --out ${prefix}.parquet \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.parquet
    """
}
